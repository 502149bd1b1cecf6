import { SignallingError } from './protocol.ts';
import { TypedEmitter } from './TypedEmitter.ts';

export type DrainEvents = {
  draining: [];
  /** No room is open on the node any more: it can be stopped without cutting a meeting. */
  idle: [];
};

/**
 * A node being emptied for an upgrade: once draining, it opens no new room (browsers and children
 * asking for one get `busy` and go to another node or retry after the upgrade), while rooms already
 * open keep running until their meetings end or their sites move. Readiness reports false from the
 * start of the drain, so a load balancer and the API's routing stop sending new meetings here.
 */
export class DrainControl extends TypedEmitter<DrainEvents> {
  #since: number | undefined;
  readonly #openRooms: () => number;

  constructor(openRooms: () => number) {
    super();
    this.#openRooms = openRooms;
  }

  get draining(): boolean {
    return this.#since !== undefined;
  }

  /** Starts draining (again: no change). */
  start(): void {
    if (this.#since !== undefined) return;
    this.#since = Date.now();
    this.emit('draining');
    this.roomClosed();
  }

  /** Called when a room closes: a draining node with none left is idle. */
  roomClosed(): void {
    if (this.#since !== undefined && this.#openRooms() === 0) this.emit('idle');
  }

  /** Throws `busy` when a room that is not open here would have to be created. */
  refuseNewRoom(roomId: string): void {
    if (this.#since === undefined) return;
    throw new SignallingError('busy', `this node is draining for maintenance and opens no new meeting (${roomId.slice(0, 64)}); use another node or retry later`);
  }

  state(): { draining: boolean; sinceMs?: number; rooms: number } {
    return { draining: this.draining, ...(this.#since !== undefined ? { sinceMs: Date.now() - this.#since } : {}), rooms: this.#openRooms() };
  }
}
