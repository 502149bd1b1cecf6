import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import iconv from 'iconv-lite';
import { openPtyPair, type PtyPair } from '../support/pty-pair.ts';
import { BeidouTerminalSim } from '../support/beidou-terminal-sim.ts';
import { BeidouTerminal, splitForCapacity } from '../../scheduler/channels/BeidouTerminal.ts';
import { checksum, frame, parseSentence } from '../../scheduler/channels/nmea.ts';

let pty: PtyPair;
let sim: BeidouTerminalSim;
const terminals: BeidouTerminal[] = [];

async function terminal(extra: Partial<{ suppressedBackoffMs: number }> = {}): Promise<BeidouTerminal> {
  const t = new BeidouTerminal({ path: pty.a, feedbackTimeoutMs: 2000, suppressedBackoffMs: 300, ...extra });
  terminals.push(t);
  await t.open();
  return t;
}

before(async () => {
  pty = await openPtyPair();
  sim = new BeidouTerminalSim(pty.b, { card: '0242407', intervalS: 1, level: 2 });
  await sim.open();
});
after(async () => {
  for (const t of terminals) await t.close();
  await sim?.close();
  await pty?.close();
});

test('NMEA framing: XOR checksum between $ and *, bad checksums rejected', () => {
  assert.equal(frame('CCICA,0,00'), '$CCICA,0,00*7B\r\n'); // the widely published card query sentence
  assert.equal(checksum('BDFKI,TXA,Y,Y,0,0000'), '13');
  assert.deepEqual(parseSentence('$BDFKI,TXA,Y,Y,0,0000*13')?.fields, ['TXA', 'Y', 'Y', '0', '0000']);
  assert.equal(parseSentence('$BDFKI,TXA,Y,Y,0,0000*14'), null);
  assert.equal(parseSentence('\u0000\u00ff garbage'), null);
});

test('the card is read with $CCICA: number, interval and capacity from $BDICI', async () => {
  const t = await terminal();
  // Level 2 unencrypted: 408 bits = 51 bytes, one of which is the mixed-mode flag.
  assert.deepEqual(t.card, { protocol: '2.1', card: '0242407', broadcastId: '2097151', intervalS: 1, level: 2, encrypted: false, capacityBits: 408, capacityBytes: 50 });
  await t.close();
});

test('five messages to one card are paced by its service interval', async () => {
  const t = await terminal();
  const before = sim.accepted.length;
  const texts = ['一号村党支部请召开支委会', '二号村党支部请召开支委会', '三号村党支部请召开党课', '四号村党支部请召开党员大会', '五号村党支部请召开党小组会'];
  const t0 = Date.now();
  const results = await Promise.all(texts.map((x) => t.send('0242408', x)));
  const elapsed = Date.now() - t0;
  assert.ok(results.every((r) => r.ok), JSON.stringify(results));
  const got = sim.accepted.slice(before);
  assert.deepEqual(got.map((m) => m.text), texts, 'each message arrives once, in order, decoded from GB2312');
  for (let i = 1; i < got.length; i++) {
    const gap = got[i]!.at - got[i - 1]!.at;
    assert.ok(gap >= 950, `transmissions ${i - 1} and ${i} are ${gap} ms apart (card interval 1 s)`);
  }
  assert.ok(elapsed >= 3900, `five sends take at least four intervals (${elapsed} ms)`);
  assert.equal(sim.refusedInterval.length, 0, 'a driver that knows the interval is never refused');
  await t.close();
});

test('"interval not elapsed" feedback: a restarted driver that does not know the last send waits as told', async () => {
  const t1 = await terminal();
  assert.ok((await t1.send('0242408', '第一条')).ok);
  await t1.close();
  const t2 = await terminal();
  const refusedBefore = sim.refusedInterval.length;
  const acceptedBefore = sim.accepted.length;
  const r = await t2.send('0242408', '第二条');
  assert.ok(r.ok, JSON.stringify(r));
  assert.ok(sim.refusedInterval.length > refusedBefore, 'the terminal answered $BDFKI ... N,N (frequency not elapsed)');
  assert.deepEqual(sim.accepted.slice(acceptedBefore).map((m) => m.text), ['第二条'], 'then sent once');
  await t2.close();
});

test('a message over the card capacity is split into numbered frames, never truncated', async () => {
  const t = await terminal();
  const long = '【三会一课提醒】宝城街道第十二村党支部：2026年第一季度支部党员大会尚未召开，已完成零次，要求一次，请于三月三十一日前召开并在站点摄像头下全程录像。';
  assert.ok(iconv.encode(long, 'gb2312').length > 50);
  const before = sim.accepted.length;
  const r = await t.send('0242408', long);
  assert.ok(r.ok && r.parts.length > 1, JSON.stringify(r));
  const frames = sim.accepted.slice(before);
  assert.equal(frames.length, r.ok ? r.parts.length : -1);
  assert.ok(frames.every((f) => f.bytes <= 51), 'every frame within the level-2 capacity (51 bytes with the flag)');
  const n = frames.length;
  const rebuilt = frames.map((f, i) => {
    assert.ok(f.text.startsWith(`(${i + 1}/${n})`), f.text);
    return f.text.slice(`(${i + 1}/${n})`.length);
  }).join('');
  assert.equal(rebuilt, long, 'the frames carry the whole text');
  assert.equal(sim.refusedTooLong.length, 0);
  assert.throws(() => splitForCapacity('很长很长很长', 5), /too small/);
  await t.close();
});

test('garbled serial lines and transmit suppression do not break the driver', async () => {
  const t = await terminal();
  sim.writeRaw('$BDFKI,TXA,Y,Y,0,0000*00\r\n\u0000\u00ff\u0013garbage\r\n$BDTXR,1,02424*ZZ\r\n');
  const before = sim.accepted.length;
  (sim as unknown as { opts: { suppressNext: number } }).opts.suppressNext = 1;
  const r = await t.send('0242408', '无信号后重发');
  assert.ok(r.ok, JSON.stringify(r));
  assert.ok(t.badLines >= 2, `garbled lines counted and ignored (${t.badLines})`);
  assert.deepEqual(sim.accepted.slice(before).map((m) => m.text), ['无信号后重发']);
  await t.close();
});

test('the outbox is bounded: sends beyond it are refused for a later retry', async () => {
  const t = new BeidouTerminal({ path: pty.a, outboxMax: 2 });
  terminals.push(t);
  await t.open();
  const rs = await Promise.all([t.send('0242408', '甲'), t.send('0242408', '乙'), t.send('0242408', '丙')]);
  assert.equal(rs.filter((r) => r.ok).length, 2);
  const refused = rs.find((r) => !r.ok);
  assert.ok(refused && !refused.ok && refused.retryable && /outbox full/.test(refused.reason));
  await t.close();
});
