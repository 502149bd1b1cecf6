import fs from 'node:fs';

// A structural check of a fragmented MP4 that ffmpeg has closed and listed: the top-level boxes
// (ftyp, moov, then moof/mdat pairs) must chain exactly to the end of the file. It reads a few
// bytes per box instead of starting an ffprobe, and catches what goes wrong with a listed segment
// on a recorder host (a truncated file, a full disk, a file replaced by something else). A file that
// fails is handed to ffprobe for the verdict.
//
// The moov and moof boxes are small (ffmpeg writes an empty moov and a fragment every half second),
// so they are read whole: the sample entries name the codecs and the picture size that ffprobe
// would report (ISO/IEC 14496-12 §8.5.2, 14496-14 §5.6 for mp4a's esds), and the track runs must
// carry video samples. So a run's first segment needs no ffprobe either when its codecs are known.
// The reads are synchronous: the file was just written (page cache), a segment takes a few dozen
// small reads, and 64 cameras' worth of them queued on libuv's four threads (behind uploads and
// image work) cost seconds of waiting where the reads themselves cost microseconds.

/** What the segment's own boxes say about its media, in ffprobe's codec names. */
export interface Mp4Media {
  videoCodec: string;
  audioCodec: string | undefined;
  width: number | undefined;
  height: number | undefined;
  /** Samples in the file's track runs, per kind. */
  videoSamples: number;
}

export interface Mp4Inspection {
  /** Undefined when the file is a complete fragmented MP4 with media; otherwise why not. */
  problem: string | undefined;
  /** Present when the codecs are ones this check knows (else ffprobe is asked). */
  media: Mp4Media | undefined;
}

/** Sample entry fourcc -> ffprobe's codec_name. mp4a/mp4v are resolved from their esds. */
const VIDEO: Record<string, string> = { avc1: 'h264', avc3: 'h264', hvc1: 'hevc', hev1: 'hevc', vp08: 'vp8', vp09: 'vp9', av01: 'av1' };
const AUDIO: Record<string, string> = { alac: 'alac', Opus: 'opus', 'ac-3': 'ac3', 'ec-3': 'eac3', fLaC: 'flac', '.mp3': 'mp3' };
/** MPEG-4 objectTypeIndication (esds) -> codec_name. */
const OTI: Record<number, string> = { 0x40: 'aac', 0x66: 'aac', 0x67: 'aac', 0x68: 'aac', 0x69: 'mp3', 0x6b: 'mp3' };
const CONTAINERS = new Set(['moov', 'trak', 'mdia', 'minf', 'stbl', 'moof', 'traf']);
const MAX_MOOV = 4 * 1024 * 1024;
const MAX_MOOF = 2 * 1024 * 1024;

interface Track {
  id: number;
  handler: string;
  codec: string | undefined;
  width: number | undefined;
  height: number | undefined;
}

/** Undefined when the file is a complete fragmented MP4 with media; otherwise why not. */
export async function checkFragmentedMp4(file: string): Promise<string | undefined> {
  return (await inspectFragmentedMp4(file)).problem;
}

/** The structural check plus what the file's boxes say about its codecs and samples. */
export async function inspectFragmentedMp4(file: string): Promise<Mp4Inspection> {
  return inspectFragmentedMp4Sync(file);
}

export function inspectFragmentedMp4Sync(file: string): Mp4Inspection {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    return { problem: `cannot open: ${(err as Error).message}`, media: undefined };
  }
  const fail = (problem: string): Mp4Inspection => ({ problem, media: undefined });
  try {
    const { size } = fs.fstatSync(fd);
    const head = Buffer.alloc(16);
    let pos = 0;
    let boxes = 0;
    let fragments = 0;
    let tracks: Track[] | undefined;
    const samples = new Map<number, number>();
    let lastType = '';
    // Bounded: a segment has a handful of fragments; 10,000 boxes would be a broken writer.
    while (pos < size && boxes < 10_000) {
      const bytesRead = fs.readSync(fd, head, 0, 16, pos);
      if (bytesRead < 8) return fail(`truncated box header at ${pos}`);
      let len = head.readUInt32BE(0);
      let hdr = 8;
      const type = head.toString('latin1', 4, 8);
      if (boxes === 0 && type !== 'ftyp') return fail(`starts with "${type}", not ftyp`);
      if (len === 1) {
        if (bytesRead < 16) return fail(`truncated large box at ${pos}`);
        len = Number(head.readBigUInt64BE(8));
        hdr = 16;
      } else if (len === 0) len = size - pos;
      if (len < hdr) return fail(`box "${type}" of ${len} bytes at ${pos}`);
      if (pos + len > size) return fail(`box "${type}" runs past the end (${pos + len} > ${size})`);
      if (type === 'moov' || type === 'moof') {
        if (len > (type === 'moov' ? MAX_MOOV : MAX_MOOF)) return fail(`box "${type}" of ${len} bytes is implausibly large`);
        const body = Buffer.alloc(len - hdr);
        if (fs.readSync(fd, body, 0, body.length, pos + hdr) < body.length) return fail(`short read of "${type}" at ${pos}`);
        try {
          if (type === 'moov') tracks = parseMoov(body);
          else for (const [id, n] of parseMoof(body)) samples.set(id, (samples.get(id) ?? 0) + n);
        } catch (err) {
          return fail(`malformed "${type}" at ${pos}: ${(err as Error).message}`);
        }
      }
      if (type === 'mdat' && lastType === 'moof') fragments++;
      lastType = type;
      pos += len;
      boxes++;
    }
    if (pos !== size) return fail('too many boxes');
    if (!tracks) return fail('no moov box');
    if (fragments === 0) return fail('no media fragment');
    const video = tracks.find((t) => t.handler === 'vide');
    if (!video) return fail('no video track');
    const videoSamples = samples.get(video.id) ?? 0;
    if (videoSamples === 0) return fail('no video samples');
    const audio = tracks.find((t) => t.handler === 'soun');
    // A codec this check cannot name: the file is sound, but ffprobe names the media.
    const known = video.codec !== undefined && (!audio || audio.codec !== undefined);
    return {
      problem: undefined,
      media: known ? { videoCodec: video.codec!, audioCodec: audio?.codec, width: video.width, height: video.height, videoSamples } : undefined,
    };
  } finally {
    fs.closeSync(fd);
  }
}

/** Child boxes of `buf` from `start`: [type, body start, body end]. Throws on a box running past its parent. */
function* children(buf: Buffer, start = 0): Generator<[string, number, number]> {
  let p = start;
  while (p + 8 <= buf.length) {
    let len = buf.readUInt32BE(p);
    let hdr = 8;
    const type = buf.toString('latin1', p + 4, p + 8);
    if (len === 1) {
      if (p + 16 > buf.length) throw new Error(`truncated large "${type}"`);
      len = Number(buf.readBigUInt64BE(p + 8));
      hdr = 16;
    } else if (len === 0) len = buf.length - p;
    if (len < hdr || p + len > buf.length) throw new Error(`"${type}" runs past its parent`);
    yield [type, p + hdr, p + len];
    p += len;
  }
}

function parseMoov(moov: Buffer): Track[] {
  const tracks: Track[] = [];
  for (const [type, s, e] of children(moov)) {
    if (type !== 'trak') continue;
    const t: Track = { id: 0, handler: '', codec: undefined, width: undefined, height: undefined };
    walk(moov.subarray(s, e), t);
    tracks.push(t);
  }
  return tracks;
}

function walk(buf: Buffer, t: Track): void {
  for (const [type, s, e] of children(buf)) {
    const b = buf.subarray(s, e);
    if (CONTAINERS.has(type)) walk(b, t);
    else if (type === 'tkhd') t.id = b.readUInt32BE(b[0] === 1 ? 20 : 12);
    else if (type === 'hdlr') t.handler = b.toString('latin1', 8, 12);
    else if (type === 'stsd') sampleEntry(b, t);
  }
}

/** The first sample entry of an stsd (full box, entry count, then entries). */
function sampleEntry(stsd: Buffer, t: Track): void {
  if (stsd.length < 8 || stsd.readUInt32BE(4) < 1) return;
  const first = children(stsd, 8).next();
  if (first.done) return;
  const [fourcc, s, e] = first.value;
  const entry = stsd.subarray(s, e);
  if (t.handler === 'vide') {
    // VisualSampleEntry: 6 reserved, data_reference_index, 16 bytes pre-defined/reserved, then width, height.
    if (entry.length >= 28) {
      t.width = entry.readUInt16BE(24);
      t.height = entry.readUInt16BE(26);
    }
    t.codec = VIDEO[fourcc] ?? (fourcc === 'mp4v' && esdsOti(entry, 78) === 0x20 ? 'mpeg4' : undefined);
  } else if (t.handler === 'soun') {
    // AudioSampleEntry (version 0): 28 bytes before its child boxes.
    t.codec = AUDIO[fourcc] ?? (fourcc === 'mp4a' ? OTI[esdsOti(entry, 28) ?? -1] : undefined);
  }
}

/** objectTypeIndication from the esds box among a sample entry's children (ISO/IEC 14496-1 descriptors). */
function esdsOti(entry: Buffer, childrenAt: number): number | undefined {
  if (entry.length < childrenAt) return undefined;
  try {
    return findOti(entry, childrenAt);
  } catch {
    // A sample entry laid out otherwise (a QuickTime v1 sound description): unknown, ffprobe names it.
    return undefined;
  }
}

function findOti(entry: Buffer, childrenAt: number): number | undefined {
  for (const [type, s, e] of children(entry, childrenAt)) {
    if (type !== 'esds') continue;
    const d = entry.subarray(s + 4, e); // after version/flags
    let p = 0;
    const descriptor = (): { tag: number; end: number } | undefined => {
      if (p >= d.length) return undefined;
      const tag = d[p++]!;
      let size = 0;
      for (let i = 0; i < 4 && p < d.length; i++) {
        const b = d[p++]!;
        size = (size << 7) | (b & 0x7f);
        if (!(b & 0x80)) break;
      }
      return { tag, end: p + size };
    };
    const es = descriptor();
    if (!es || es.tag !== 0x03 || p + 3 > d.length) return undefined;
    p += 2; // ES_ID
    const flags = d[p++]!;
    if (flags & 0x80) p += 2; // dependsOn_ES_ID
    if (flags & 0x40) p += 1 + (d[p] ?? 0); // URL
    if (flags & 0x20) p += 2; // OCR_ES_Id
    const dc = descriptor();
    if (!dc || dc.tag !== 0x04 || p >= d.length) return undefined;
    return d[p];
  }
  return undefined;
}

/** Sample counts per track id in a moof's track runs. */
function parseMoof(moof: Buffer): Map<number, number> {
  const out = new Map<number, number>();
  for (const [type, s, e] of children(moof)) {
    if (type !== 'traf') continue;
    const traf = moof.subarray(s, e);
    let id = 0;
    let n = 0;
    for (const [t, ts] of children(traf)) {
      if (t === 'tfhd') id = traf.readUInt32BE(ts + 4);
      else if (t === 'trun') n += traf.readUInt32BE(ts + 4);
    }
    out.set(id, (out.get(id) ?? 0) + n);
  }
  return out;
}
