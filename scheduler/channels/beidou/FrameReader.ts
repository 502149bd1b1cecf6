import { parseSentence } from '../nmea.ts';
import type { WireFrame } from './types.ts';

/** 4.0 binary commands: "$" + 4 letters + 2-byte big-endian total length (not a comma). */
const binaryCommands = new Set(['TXXX', 'FKXX', 'ICXX', 'ICJC', 'TXSQ', 'ZJXX', 'XTZJ', 'SJXX', 'DWXX', 'GLZK', 'BBXX', 'TXHZ']);

/**
 * Splits a serial byte stream into ASCII sentences (2.1, BD-3) and 4.0 binary frames, which may contain
 * "$", CR and LF inside their payload. Garbage is skipped byte by byte; the buffer is bounded.
 */
export class FrameReader {
  private buf = Buffer.alloc(0);
  badFrames = 0;

  constructor(private readonly maxBuffer = 8192) {}

  push(chunk: Buffer): WireFrame[] {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (this.buf.length > this.maxBuffer) {
      this.badFrames++;
      this.buf = this.buf.subarray(this.buf.length - this.maxBuffer);
    }
    const out: WireFrame[] = [];
    for (;;) {
      const start = this.buf.indexOf(0x24); // '$'
      if (start < 0) {
        if (this.buf.some((b) => b > 0x20)) this.badFrames++;
        this.buf = Buffer.alloc(0);
        return out;
      }
      if (start > 0) {
        if (this.buf.subarray(0, start).some((b) => b > 0x20)) this.badFrames++;
        this.buf = this.buf.subarray(start);
      }
      if (this.buf.length < 7) return out;
      const cmd = this.buf.subarray(1, 5).toString('latin1');
      if (binaryCommands.has(cmd) && this.buf[5] !== 0x2c) {
        const len = this.buf.readUInt16BE(5);
        if (len < 11 || len > 2048) {
          this.badFrames++;
          this.buf = this.buf.subarray(1);
          continue;
        }
        if (this.buf.length < len) return out;
        const frame = Buffer.from(this.buf.subarray(0, len));
        let x = 0;
        for (let i = 0; i < len - 1; i++) x ^= frame[i]!;
        if (x === frame[len - 1]) {
          out.push({ kind: 'binary', cmd, bytes: frame });
          this.buf = this.buf.subarray(len);
        } else {
          this.badFrames++;
          this.buf = this.buf.subarray(1);
        }
        continue;
      }
      const nl = this.buf.indexOf('\r\n', 0, 'latin1');
      const next = this.buf.indexOf(0x24, 1);
      if (nl < 0) {
        // No line end yet; a later "$" means this one was cut off.
        if (next > 0) {
          this.badFrames++;
          this.buf = this.buf.subarray(next);
          continue;
        }
        return out;
      }
      if (next > 0 && next < nl) {
        this.badFrames++;
        this.buf = this.buf.subarray(next);
        continue;
      }
      const line = this.buf.subarray(0, nl).toString('latin1');
      this.buf = this.buf.subarray(nl + 2);
      const s = parseSentence(line);
      if (s) out.push({ kind: 'ascii', id: s.id, fields: s.fields });
      else this.badFrames++;
    }
  }
}
