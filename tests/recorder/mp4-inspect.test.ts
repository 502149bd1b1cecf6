import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { inspectFragmentedMp4 } from '../../recorder/Mp4Check.ts';
import { probe } from '../../recorder/probe.ts';
import { tempDir } from '../support/recorder-fixture.ts';

// The spool names a listed segment's codecs and picture size from its own MP4 boxes instead of
// starting an ffprobe (issue 15: no second probe where ffmpeg already reported). Checked against
// ffprobe itself on files real ffmpeg writes the way the recorder's segment muxer does, for the
// codecs cameras send; what the check cannot name or finds damaged goes back to ffprobe.

const MOVFLAGS = 'frag_keyframe+empty_moov+default_base_moof';

describe('MP4 inspection: codecs and size from the segment boxes, as ffprobe says them', () => {
  let dir: string;
  const make = (name: string, args: string[]): string => {
    const f = path.join(dir, name);
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=10', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
      '-t', '2', ...args, '-frag_duration', '500000', '-movflags', MOVFLAGS, '-f', 'mp4', f]);
    return f;
  };

  before(() => {
    dir = tempDir('mp4-inspect-');
  });

  const cases: Array<[string, string[]]> = [
    ['h264 + aac', ['-map', '0:v', '-map', '1:a', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10', '-c:a', 'aac']],
    ['hevc + mp3', ['-map', '0:v', '-map', '1:a', '-c:v', 'libx265', '-preset', 'ultrafast', '-x265-params', 'log-level=error:keyint=10', '-tag:v', 'hvc1', '-c:a', 'libmp3lame']],
    ['h264 + opus', ['-map', '0:v', '-map', '1:a', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10', '-c:a', 'libopus']],
    ['h264, no audio', ['-map', '0:v', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10']],
  ];
  for (const [name, args] of cases) {
    test(`${name}: the boxes name what ffprobe names`, async () => {
      const f = make(`${name.replace(/\W+/g, '_')}.mp4`, args);
      const [got, want] = await Promise.all([inspectFragmentedMp4(f), probe(f)]);
      assert.equal(got.problem, undefined);
      assert.ok(got.media, 'codecs named without ffprobe');
      assert.equal(got.media.videoCodec, want.videoCodec);
      assert.equal(got.media.audioCodec, want.audioCodec);
      assert.equal(got.media.width, want.width);
      assert.equal(got.media.height, want.height);
      assert.equal(got.media.videoSamples, 20, '2 s at 10 fps in the track runs');
    });
  }

  test('a codec the check does not know is sound but left to ffprobe', async () => {
    const f = make('mjpeg.mp4', ['-map', '0:v', '-c:v', 'mjpeg', '-q:v', '5']);
    const got = await inspectFragmentedMp4(f);
    assert.equal(got.problem, undefined);
    assert.equal(got.media, undefined);
  });

  test('damaged files are refused with a reason: cut short, a broken moov, no video samples', async () => {
    const good = make('good.mp4', ['-map', '0:v', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10']);
    const bytes = fs.readFileSync(good);

    const cut = path.join(dir, 'cut.mp4');
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 100));
    assert.match((await inspectFragmentedMp4(cut)).problem ?? '', /runs past the end/);

    // The trak inside the moov claims more bytes than its parent holds.
    const broken = Buffer.from(bytes);
    const trak = broken.indexOf('trak', 0, 'latin1');
    assert.ok(trak > 0);
    broken.writeUInt32BE(0x00ffffff, trak - 4);
    const bad = path.join(dir, 'broken-moov.mp4');
    fs.writeFileSync(bad, broken);
    assert.match((await inspectFragmentedMp4(bad)).problem ?? '', /malformed "moov"/);

    // Every track run emptied (sample_count 0): boxes chain, but there is no video in it.
    const empty = Buffer.from(bytes);
    let runs = 0;
    for (let i = empty.indexOf('trun', 0, 'latin1'); i > 0; i = empty.indexOf('trun', i + 4, 'latin1')) {
      empty.writeUInt32BE(0, i + 8);
      runs++;
    }
    assert.ok(runs > 1);
    const none = path.join(dir, 'no-samples.mp4');
    fs.writeFileSync(none, empty);
    assert.equal((await inspectFragmentedMp4(none)).problem, 'no video samples');
  });
});
