import { spawn, type ChildProcess } from 'node:child_process';
import type { RtspServer } from './rtsp-server.ts';

// A fake village camera: ffmpeg test patterns (H.264 + audio) published to the test RTSP server.
// stop() is "the camera dies", start() again is "it comes back".

export type CameraAudio = 'pcm_mulaw' | 'aac' | 'opus' | 'none';

export interface TestCameraOptions {
  server: RtspServer;
  path: string;
  audio?: CameraAudio;
  width?: number;
  height?: number;
  fps?: number;
  /** What the camera encodes: H.264 (default) or H.265, as Hikvision/Dahua cameras send by default. */
  video?: 'h264' | 'h265';
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export class TestCamera {
  readonly #opts: Required<TestCameraOptions>;
  #proc: ChildProcess | undefined;

  constructor(opts: TestCameraOptions) {
    this.#opts = { audio: 'pcm_mulaw', width: 640, height: 360, fps: 15, video: 'h264', ...opts };
  }

  get url(): string {
    return this.#opts.server.url(this.#opts.path);
  }

  get running(): boolean {
    return this.#proc !== undefined;
  }

  async start(): Promise<void> {
    if (this.#proc) return;
    const { width, height, fps, audio } = this.#opts;
    const args = ['-hide_banner', '-loglevel', 'error', '-nostats', '-re', '-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=${fps}`];
    if (audio !== 'none') args.push('-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=8000');
    args.push('-map', '0:v');
    if (audio !== 'none') args.push('-map', '1:a');
    if (this.#opts.video === 'h265') args.push('-c:v', 'libx265', '-preset', 'ultrafast', '-tune', 'zerolatency', '-x265-params', 'log-level=error', '-pix_fmt', 'yuv420p');
    else args.push('-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p');
    args.push('-g', String(fps), '-keyint_min', String(fps), '-sc_threshold', '0', '-threads', '1');
    if (audio === 'pcm_mulaw') args.push('-c:a', 'pcm_mulaw', '-ar', '8000', '-ac', '1');
    if (audio === 'aac') args.push('-c:a', 'aac', '-ar', '16000', '-ac', '1', '-b:a', '32k');
    if (audio === 'opus') args.push('-c:a', 'libopus', '-ar', '48000', '-ac', '1', '-b:a', '24k');
    args.push('-f', 'rtsp', '-rtsp_transport', 'tcp', this.url);
    const proc = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-2000);
    });
    live.add(proc);
    this.#proc = proc;
    proc.once('exit', () => {
      live.delete(proc);
      if (this.#proc === proc) this.#proc = undefined;
    });
    try {
      await this.#opts.server.waitForPublish(this.#opts.path);
    } catch (e) {
      await this.stop();
      throw new Error(`camera ${this.#opts.path} failed to publish: ${(e as Error).message} ${err}`);
    }
  }

  /** Kills the publisher (the camera "dies"); resolves once the process has exited. */
  async stop(): Promise<void> {
    const proc = this.#proc;
    if (!proc) return;
    this.#proc = undefined;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  }
}
