/** Svelte action: show a MediaStream in a <video>/<audio> element. */
export function srcObject(node: HTMLMediaElement, stream: MediaStream | null) {
  node.srcObject = stream;
  return {
    update(next: MediaStream | null) {
      if (node.srcObject !== next) node.srcObject = next;
    },
  };
}

/** The ICE candidate pair a transport uses: its local and remote candidate types and the protocol. */
export interface IceRoute {
  local: string;
  remote: string;
  protocol: string;
  /** For a relay candidate: how the page reaches the TURN server (udp, tcp, tls). */
  relayProtocol?: string;
}

/** Reads the selected candidate pair from an RTCStatsReport (the transport's, or the pair that succeeded and is nominated). */
export function selectedIceRoute(report: RTCStatsReport): IceRoute | undefined {
  const all = [...report.values()] as Array<Record<string, unknown> & { type: string; id: string }>;
  const byId = new Map(all.map((s) => [s.id, s]));
  const selectedId = all.find((s) => s.type === 'transport' && typeof s.selectedCandidatePairId === 'string')?.selectedCandidatePairId as string | undefined;
  const pair = (selectedId ? byId.get(selectedId) : undefined) ?? all.find((s) => s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated === true);
  if (!pair) return undefined;
  const local = byId.get(pair.localCandidateId as string);
  const remote = byId.get(pair.remoteCandidateId as string);
  if (!local || !remote) return undefined;
  return {
    local: String(local.candidateType),
    remote: String(remote.candidateType),
    protocol: String(local.protocol),
    ...(typeof local.relayProtocol === 'string' ? { relayProtocol: local.relayProtocol } : {}),
  };
}
