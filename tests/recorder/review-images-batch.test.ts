import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { ReviewImageBatch } from '../../recorder/thumbnails.ts';
import { tempDir } from '../support/recorder-fixture.ts';

// Cameras that start together ask for review images together: one ffmpeg decodes them all (real
// ffmpeg, counted through a wrapper script), each segment still gets its own thumbnail and strip,
// and a damaged segment in the batch fails alone.

describe('review images in batches: one ffmpeg for segments that ask together', () => {
  let dir: string;
  let ffmpegPath: string;
  const calls = (): number => {
    const f = path.join(dir, 'ffmpeg.calls');
    return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
  };
  const segment = (name: string, size: string): string => {
    const f = path.join(dir, name);
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=10`, '-t', '2', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10',
      '-movflags', 'frag_keyframe+empty_moov+default_base_moof', f]);
    return f;
  };
  const opts = { durationS: 2, frames: 2, thumbWidth: 160, stripFrameWidth: 64, keyframesOnly: true };

  before(() => {
    dir = tempDir('images-batch-');
    ffmpegPath = path.join(dir, 'ffmpeg');
    fs.writeFileSync(ffmpegPath, `#!/bin/sh\necho x >> ${path.join(dir, 'ffmpeg.calls')}\nexec ffmpeg "$@"\n`, { mode: 0o755 });
  });

  test('five segments asked together: one ffmpeg, five thumbnails and strips of the right size', async () => {
    const files = [0, 1, 2, 3, 4].map((i) => segment(`a${i}.mp4`, i % 2 ? '320x180' : '640x360'));
    const before = calls();
    const batch = new ReviewImageBatch({ ffmpegPath, windowMs: 200 });
    const images = await Promise.all(files.map((f) => batch.make(f, opts)));
    assert.equal(calls() - before, 1, 'one ffmpeg for the batch');
    for (const im of images) {
      const t = await sharp(im.thumb).metadata();
      const s = await sharp(im.strip).metadata();
      assert.equal(t.format, 'jpeg');
      assert.equal(t.width, 160);
      assert.equal(s.width, 64 * 2, 'two keyframes in two seconds');
    }
  });

  test('a damaged segment in the batch fails alone; the others get their images', async () => {
    const good = [segment('b0.mp4', '320x180'), segment('b1.mp4', '320x180')];
    const bad = path.join(dir, 'bad.mp4');
    fs.writeFileSync(bad, Buffer.alloc(4_096, 7));
    const batch = new ReviewImageBatch({ ffmpegPath, windowMs: 200 });
    const results = await Promise.allSettled([batch.make(good[0]!, opts), batch.make(bad, opts), batch.make(good[1]!, opts)]);
    assert.equal(results[0]!.status, 'fulfilled');
    assert.equal(results[2]!.status, 'fulfilled');
    assert.equal(results[1]!.status, 'rejected');
    assert.match(String((results[1] as PromiseRejectedResult).reason), /frame extraction failed/);
  });
});
