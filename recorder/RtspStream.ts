// Splits an RTSP/TCP byte stream into interleaved frames ($, channel, 16-bit length, payload) and
// RTSP messages. Frames are handed on as views of the socket's own chunks (no copy), except the few
// that straddle two chunks; only the 4-byte header of a frame is read.

export interface RtspMessage {
  /** Request: [method, uri, version]; response: [version, status, reason]. */
  start: [string, string, string];
  headers: Array<[string, string]>;
  body: Buffer;
}

export interface RtspStreamLimits {
  /** Largest start line + headers. */
  maxHeaderBytes: number;
  /** Largest Content-Length. */
  maxBodyBytes: number;
}

export class RtspStreamError extends Error {}

export class RtspStreamReader {
  readonly #limits: RtspStreamLimits;
  readonly #onFrame: (channel: number, frame: Buffer) => void;
  readonly #onMessage: (m: RtspMessage) => void;
  /** A frame that straddles chunks, filled as they come. */
  #frame: Buffer | undefined;
  #frameFill = 0;
  /** Unfinished message text (or a frame header cut before its 4 bytes). */
  #carry: Buffer | undefined;

  constructor(limits: RtspStreamLimits, onFrame: (channel: number, frame: Buffer) => void, onMessage: (m: RtspMessage) => void) {
    this.#limits = limits;
    this.#onFrame = onFrame;
    this.#onMessage = onMessage;
  }

  /** Throws RtspStreamError on a malformed or oversized message (the connection should be dropped). */
  push(chunk: Buffer): void {
    let b = chunk;
    if (this.#frame) {
      const f = this.#frame;
      const n = Math.min(f.length - this.#frameFill, b.length);
      b.copy(f, this.#frameFill, 0, n);
      this.#frameFill += n;
      b = b.subarray(n);
      if (this.#frameFill < f.length) return;
      this.#frame = undefined;
      this.#onFrame(f[1]!, f);
    } else if (this.#carry) {
      b = Buffer.concat([this.#carry, b]);
      this.#carry = undefined;
    }
    while (b.length > 0) {
      if (b[0] === 0x24) {
        if (b.length < 4) {
          this.#carry = Buffer.from(b);
          return;
        }
        const len = 4 + b.readUInt16BE(2);
        if (b.length < len) {
          const f = Buffer.allocUnsafe(len);
          b.copy(f);
          this.#frame = f;
          this.#frameFill = b.length;
          return;
        }
        this.#onFrame(b[1]!, b.subarray(0, len));
        b = b.subarray(len);
        continue;
      }
      const end = b.indexOf('\r\n\r\n');
      if (end < 0) {
        if (b.length > this.#limits.maxHeaderBytes) throw new RtspStreamError('RTSP header too long');
        this.#carry = b;
        return;
      }
      if (end > this.#limits.maxHeaderBytes) throw new RtspStreamError('RTSP header too long');
      const lines = b.subarray(0, end).toString('utf8').split('\r\n');
      const headers: Array<[string, string]> = [];
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers.push([l.slice(0, i).trim(), l.slice(i + 1).trim()]);
      }
      const bodyLen = Number(headerOf(headers, 'content-length') ?? '0');
      if (!Number.isInteger(bodyLen) || bodyLen < 0 || bodyLen > this.#limits.maxBodyBytes) throw new RtspStreamError('bad Content-Length');
      if (b.length < end + 4 + bodyLen) {
        this.#carry = b;
        return;
      }
      const first = lines[0] ?? '';
      const a = first.indexOf(' ');
      const c = a < 0 ? -1 : first.indexOf(' ', a + 1);
      const start: [string, string, string] = a < 0 ? [first, '', ''] : c < 0 ? [first.slice(0, a), first.slice(a + 1), ''] : [first.slice(0, a), first.slice(a + 1, c), first.slice(c + 1)];
      const body = Buffer.from(b.subarray(end + 4, end + 4 + bodyLen));
      b = b.subarray(end + 4 + bodyLen);
      this.#onMessage({ start, headers, body });
    }
  }
}

export function headerOf(headers: Array<[string, string]>, name: string): string | undefined {
  return headers.find(([k]) => k.toLowerCase() === name)?.[1];
}
