import type { SfuClient } from './SfuClient.ts';

/**
 * The chair's "broadcast my screen" switch, shared by the open-room and venue controls: publish the
 * screen and make it the conference's broadcast, or stop both. The node holds the sites' microphones
 * while a broadcast runs; this only sends the commands.
 */
export class ScreenBroadcast {
  #track: MediaStreamTrack | undefined;
  // A getter: the component's `client` prop is read when used, not captured once.
  readonly #client: () => SfuClient;

  constructor(client: () => SfuClient) {
    this.#client = client;
  }

  /** Starts when `on` is false, stops when true; errors (no permission, node refused) are thrown. */
  async toggle(on: boolean): Promise<void> {
    const client = this.#client();
    if (on) {
      await client.chair({ action: 'broadcast', producerId: null });
      this.#track?.stop();
      this.#track = undefined;
      await client.unpublish('screen');
      return;
    }
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 } });
    this.#track = stream.getVideoTracks()[0];
    if (!this.#track) return;
    await client.publish(this.#track, 'screen');
    const id = client.producerId('screen');
    if (id) await client.chair({ action: 'broadcast', producerId: id });
  }
}
