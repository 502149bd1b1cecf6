import type { ControlChannel } from './ControlChannel.ts';

/** One neighbour in the tree: our parent, or one of our children. */
export interface Link {
  /** 'parent' or 'child:<nodeId>'. */
  readonly id: string;
  readonly kind: 'parent' | 'child';
  /** The neighbour's node id (for a parent: as configured, it is not told). */
  readonly nodeId: string;
  readonly channel: ControlChannel;
}
