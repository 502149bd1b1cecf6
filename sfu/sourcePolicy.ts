import type { MediaSource, PeerInfo } from './protocol.ts';

/**
 * Which sources a producer may declare. The chair's mute and a film broadcast hold every audio
 * producer of the sites, so audio may not hide under a video source: a browser sends audio only as
 * its microphone (a shared screen is video only in the pages), video as its camera or screen.
 * `film` is the server's (web/film-broadcasts.ts adopts it through Ingest), never a browser's; a
 * viewer sends nothing.
 */
const CLIENT_SOURCES: Record<'audio' | 'video', readonly MediaSource[]> = {
  audio: ['microphone'],
  video: ['camera', 'screen'],
};

/** Why a peer may not produce `kind` as `source`, or undefined if it may. */
export function refusedSource(role: PeerInfo['role'], kind: 'audio' | 'video', source: MediaSource): string | undefined {
  if (role === 'viewer') return 'viewers cannot send media';
  if (!CLIENT_SOURCES[kind].includes(source)) return `${kind} cannot be sent as ${source} (allowed: ${CLIENT_SOURCES[kind].join(', ')})`;
  return undefined;
}
