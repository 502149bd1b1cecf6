/** The node already has as many playback conversions waiting as it will hold (answered 503 transcode_busy). */
export class TranscodeBusyError extends Error {}
