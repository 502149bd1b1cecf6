/** Svelte action: show a MediaStream in a <video>/<audio> element. */
export function srcObject(node: HTMLMediaElement, stream: MediaStream | null) {
  node.srcObject = stream;
  return {
    update(next: MediaStream | null) {
      if (node.srcObject !== next) node.srcObject = next;
    },
  };
}
