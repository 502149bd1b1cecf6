import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { openPtyPair } from '../support/pty-pair.ts';
import { BeidouTerminalSim, type SimOptions } from '../support/beidou-terminal-sim.ts';
import { BeidouTerminal, type BeidouConfig, type BeidouHooks, type IncomingMessage } from '../../scheduler/channels/BeidouTerminal.ts';
import { Codec21 } from '../../scheduler/channels/beidou/Codec21.ts';
import { Codec40, frame40 } from '../../scheduler/channels/beidou/Codec40.ts';
import { CodecBd3 } from '../../scheduler/channels/beidou/CodecBd3.ts';
import { capacityBitsFor } from '../../scheduler/channels/beidou/capacity.ts';
import { beidouBody, beidouShortText } from '../../scheduler/channels/beidou/shortForms.ts';
import { beidouText, type ReminderFacts } from '../../scheduler/reminders/messages.ts';
import { obligationNamesZh, type ObligationCode } from '../../scheduler/obligations/types.ts';
import type { DeliveryReceipt, SendTracker } from '../../scheduler/channels/types.ts';
import iconv from 'iconv-lite';

// Each dialect against the independent simulator (tests/support/beidou-terminal-sim.ts, written from
// the protocol descriptions in its header) on a pseudo-terminal pair.

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

async function rig(sim: SimOptions, cfg: Partial<BeidouConfig> = {}, hooks: BeidouHooks = {}): Promise<{ s: BeidouTerminalSim; t: BeidouTerminal }> {
  const pty = await openPtyPair();
  cleanups.push(() => pty.close());
  const s = new BeidouTerminalSim(pty.b, sim);
  await s.open();
  cleanups.push(() => s.close());
  const t = new BeidouTerminal({ path: pty.a, feedbackTimeoutMs: 3000, suppressedBackoffMs: 200, ...cfg }, hooks);
  cleanups.push(() => t.close());
  await t.open();
  return { s, t };
}

const facts = (o: Partial<ReminderFacts> = {}): ReminderFacts => ({
  target: 'secretary', branchName: '宝城街道第十二村党支部', unitName: '宝城街道', obligation: 'member_meeting', period: 'quarter',
  periodKey: '2026-Q1', periodEnd: new Date('2026-03-31T16:00:00Z'), done: 0, required: 1, ...o,
});

test('2.1, 4.0 and BD-3 terminals are detected with their cards (8-digit card, level 0, encryption flag)', async () => {
  const got: IncomingMessage[] = [];
  const onMessage = (m: IncomingMessage) => void got.push(m);
  const a = await rig({ protocol: '2.1', card: '0242407', intervalS: 60, level: 1 }, {}, { onMessage });
  const b = await rig({ protocol: '4.0', card: '15240507', intervalS: 30, level: 2, encrypted: true }, {}, { onMessage });
  const c = await rig({ protocol: 'bd3', card: '15240508', intervalS: 1, level: 0 }, {}, { onMessage });
  assert.deepEqual(a.t.card, { protocol: '2.1', card: '0242407', broadcastId: '2097151', intervalS: 60, level: 1, encrypted: false, capacityBits: 110, capacityBytes: 12 });
  assert.deepEqual(b.t.card, { protocol: '4.0', card: '15240507', broadcastId: '2097151', intervalS: 30, level: 2, encrypted: true, capacityBits: 360, capacityBytes: 44 });
  // Level 0 (BD-3): the conservative level-1 figure.
  assert.deepEqual(c.t.card, { protocol: 'bd3', card: '15240508', broadcastId: '2097151', intervalS: 1, level: 0, encrypted: false, capacityBits: 110, capacityBytes: 12 });

  // One message each, to an 8-digit card on 4.0 and BD-3.
  const r = await Promise.all([a.t.send('0300001', '请开党员大会'), b.t.send('16000001', '请召开支部党员大会'), c.t.send('16000002', '大会0331前开')]);
  assert.ok(r.every((x) => x.ok), JSON.stringify(r));
  assert.deepEqual(a.s.accepted.map((m) => [m.to, m.text]), [['0300001', '请开党员大会']]);
  assert.deepEqual(b.s.accepted.map((m) => [m.to, m.text]), [['16000001', '请召开支部党员大会']]);
  assert.deepEqual(c.s.accepted.map((m) => [m.to, m.text]), [['16000002', '大会0331前开']]);

  // Incoming messages in each dialect ($BDTXR, $TXXX, $BDTCI) reach the hook with the sender's card.
  a.s.deliver('0166166', '1 12-20');
  b.s.deliver('16000001', '2 下月');
  c.s.deliver('16000002', '1');
  const deadline = Date.now() + 5000;
  while (got.length < 3 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(got.map((m) => [m.from, m.text]).sort(), [['0166166', '1 12-20'], ['16000001', '2 下月'], ['16000002', '1']]);
});

test('published BD-3 card answers are read: 8-digit card, interval, level (5 gets the conservative figure)', () => {
  const icp = (line: string) => new CodecBd3().decode({ kind: 'ascii', id: 'BDICP', fields: line.slice(7, line.indexOf('*')).split(',') });
  assert.deepEqual(icp('$BDICP,4238473,0,0,3,0,N,2,N,1,0,0,3,1,60,2,0,0,0,0,21,0,0,0*48'),
    { kind: 'card', card: { card: '4238473', broadcastId: '0', level: 2, encrypted: false, intervalS: 60 } });
  assert.deepEqual(icp('$BDICP,15240507,2032472,1,3,0,N,1,Y,1,0,0,3,1,1,5,1,1,2,2,500,100,10,10*65'),
    { kind: 'card', card: { card: '15240507', broadcastId: '2032472', level: 5, encrypted: false, intervalS: 1 } });
  assert.equal(capacityBitsFor(5, false), 110);
  assert.equal(capacityBitsFor(0, true), 140);
  assert.equal(capacityBitsFor(4, true), 1680);
  assert.equal(capacityBitsFor(1, false, { N1: 200 }), 200, 'an operator override');
});

test('feedback and suppression codes are read per dialect', () => {
  const fb21 = (body: string) => new Codec21().decode({ kind: 'ascii', id: 'BDFKI', fields: body.split(',') });
  assert.deepEqual(fb21('TXA,Y,Y,0,0040'), { kind: 'feedback', feedback: { kind: 'ok' } });
  assert.deepEqual(fb21('TXA,N,N,0,0105'), { kind: 'feedback', feedback: { kind: 'interval', waitS: 65, detail: 'interval not elapsed (frequency)' } });
  assert.match(JSON.stringify(fb21('TXA,N,Y,3,0000')), /suppressed.*radio silence/);
  assert.match(JSON.stringify(fb21('TXA,N,Y,2,0000')), /suppressed.*battery/);
  assert.match(JSON.stringify(fb21('TXA,N,Y,0,0000')), /refused/);
  const fb3 = (body: string) => new CodecBd3().decode({ kind: 'ascii', id: 'BDFKI', fields: body.split(',') });
  assert.deepEqual(fb3('082920.00,TCQ,Y,0,0'), { kind: 'feedback', feedback: { kind: 'ok' } }, 'the leading time field is skipped');
  assert.deepEqual(fb3('082920.00,TCQ,N,6,42'), { kind: 'feedback', feedback: { kind: 'interval', waitS: 42, detail: 'interval not elapsed (frequency)' } });
  assert.match(JSON.stringify(fb3('082920.00,TCQ,N,8,0')), /suppressed.*radio silence/);
  assert.match(JSON.stringify(fb3('082920.00,TCQ,N,11,0')), /refused.*permission/);
  const add = Buffer.alloc(5);
  add[0] = 4;
  add.writeUInt32BE(30, 1);
  assert.deepEqual(new Codec40().decode({ kind: 'binary', cmd: 'FKXX', bytes: frame40('FKXX', 242407, add) }),
    { kind: 'feedback', feedback: { kind: 'interval', waitS: 30, detail: 'interval not elapsed (frequency)' } });
  add[0] = 2;
  assert.match(JSON.stringify(new Codec40().decode({ kind: 'binary', cmd: 'FKXX', bytes: frame40('FKXX', 242407, add) })), /suppressed.*signal not locked/);
});

test('a level-1 unencrypted card: every frame within 110 bits, the short form by default, numbered frames when asked, paced by the interval', async () => {
  // Every short form fits 110 bits (13 bytes with the mixed-mode flag).
  for (const ob of Object.keys(obligationNamesZh) as ObligationCode[]) {
    for (const target of ['secretary', 'supervisor'] as const) {
      const s = beidouShortText(facts({ obligation: ob, target }));
      assert.ok((1 + iconv.encode(s, 'gb2312').length) * 8 <= 110, `${ob}/${target}: ${s}`);
    }
  }
  const { s, t } = await rig({ protocol: '2.1', intervalS: 1, level: 1 });
  const f = facts();
  const r1 = await t.send('0300001', beidouBody(beidouText(f), beidouShortText(f)));
  assert.ok(r1.ok && r1.parts.length === 1, JSON.stringify(r1));
  assert.deepEqual(s.accepted.map((m) => m.text), ['大会0331前开']);

  const split = new BeidouTerminal({ path: (t as unknown as { cfg: { path: string } }).cfg.path, tooLong: 'split', feedbackTimeoutMs: 3000 });
  await t.close();
  await split.open();
  cleanups.push(() => split.close());
  const long = '请于三月底前召开党员大会并录像';
  const r2 = await split.send('0300001', beidouBody(long, '大会0331前开'));
  assert.ok(r2.ok && r2.parts.length > 1, JSON.stringify(r2));
  const frames = s.accepted.slice(1);
  const n = frames.length;
  assert.ok(frames.every((m) => m.bytes * 8 <= 110), JSON.stringify(frames.map((m) => m.bytes)));
  assert.equal(frames.map((m, i) => m.text.replace(`(${i + 1}/${n})`, '')).join(''), long, 'split on purpose, nothing cut');
  for (let i = 1; i < s.accepted.length; i++) assert.ok(s.accepted[i]!.at - s.accepted[i - 1]!.at >= 950, 'the card interval (1 s) between transmissions');
  assert.equal(s.refusedTooLong.length, 0);
});

test('an ambiguous timeout (no feedback) is not retransmitted: the send is uncertain, the frame stays unconfirmed', async () => {
  const { s, t } = await rig({ protocol: 'bd3', card: '15240508', intervalS: 1, level: 2, silentNext: 1 }, { feedbackTimeoutMs: 600 });
  const calls: string[] = [];
  const tracker: SendTracker = {
    concatRef: null,
    begin: async () => new Set<number>(),
    submitting: async (p) => void calls.push(`submitting ${p}`),
    accepted: async (p) => void calls.push(`accepted ${p}`),
    refused: async (p) => void calls.push(`refused ${p}`),
  };
  const r = await t.send('0300001', '请召开支部党员大会', 1, tracker);
  assert.ok(!r.ok && r.uncertain === true && r.retryable === false, JSON.stringify(r));
  assert.match(r.ok ? '' : r.reason, /uncertain/);
  assert.deepEqual(calls, ['submitting 1'], 'neither accepted nor refused: the part stays unconfirmed');
  const again = await t.send('0300001', '请召开支部党员大会');
  assert.ok(!again.ok && !again.retryable, 'the same frame is not transmitted again by this terminal');
  assert.equal(s.accepted.filter((m) => m.text === '请召开支部党员大会').length, 1, 'transmitted exactly once');
  const other = await t.send('0300001', '另一条');
  assert.ok(other.ok);
  assert.ok(s.accepted[1]!.at - s.accepted[0]!.at >= 950, 'the interval counts from the uncertain transmission');
  assert.equal(s.refusedInterval.length, 0);
});

test('characters outside GB2312 are refused with the reason, never sent as "?"; the short form without names goes', async () => {
  const { s, t } = await rig({ protocol: '2.1', intervalS: 1, level: 2 });
  const tibetan = 'བཀྲ་ཤིས་ཆོས་རྫོང་';
  const r = await t.send('0300001', `${tibetan}党支部请召开党员大会`);
  assert.ok(!r.ok && !r.retryable, JSON.stringify(r));
  assert.match(r.ok ? '' : r.reason, /GB2312.*U\+0F56/);
  const rare = await t.send('0300001', '䶮村党支部请召开党员大会'); // U+4DAE: GBK/GB18030 only
  assert.match(rare.ok ? '' : rare.reason, /U\+4DAE/);
  assert.equal(s.accepted.length, 0, 'nothing transmitted');
  const f = facts({ branchName: `${tibetan}村党支部` });
  const ok = await t.send('0300001', beidouBody(beidouText(f), beidouShortText(f)));
  assert.ok(ok.ok, JSON.stringify(ok));
  assert.deepEqual(s.accepted.map((m) => m.text), ['大会0331前开']);
  assert.ok(!s.accepted.some((m) => m.text.includes('?')));
});

test('receipts: 2.1 $BDHZR and the BD-3 confirm flag settle the message they belong to', async () => {
  const receipts: DeliveryReceipt[] = [];
  const onReceipt = (x: DeliveryReceipt) => void receipts.push(x);
  const a = await rig({ protocol: '2.1', intervalS: 1, level: 2, receipts: true }, {}, { onReceipt });
  const c = await rig({ protocol: 'bd3', intervalS: 1, level: 2, receipts: true }, {}, { onReceipt });
  const ra = await a.t.send('0300001', '回执测试一');
  const rc = await c.t.send('15240509', '回执测试二');
  assert.ok(ra.ok && rc.ok);
  assert.equal(c.s.accepted[0]!.receiptRequested, true, 'the BD-3 send asked for confirmation');
  const deadline = Date.now() + 5000;
  while (receipts.length < 2 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  const ids = [ra.ok ? ra.parts[0]!.providerMessageId : null, rc.ok ? rc.parts[0]!.providerMessageId : null];
  assert.ok(ids.every((id) => typeof id === 'string'));
  assert.deepEqual(receipts.map((x) => x.providerMessageId).sort(), [...ids].sort());
  assert.ok(receipts.every((x) => x.outcome === 'delivered'));
});
