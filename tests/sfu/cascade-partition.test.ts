import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Tap } from '../../sfu/Tap.ts';
import { EmulatedLink, RtpSink, type RtpSource, startChain, waitFor, type TreeNode } from '../support/cascade-harness.ts';
import { TcpRelay } from '../support/tcp-relay.ts';

// A silent outage between the town and the village: media (through the link emulator) and the
// control link (through a TCP relay) are both cut without any FIN or RST, as when a satellite or
// microwave link fails. Both nodes must notice by themselves (ws pings), the village keeps its own
// call going, and when the link comes back it re-attaches and the chair's media resumes.

const ROOM = 'conf-partition';
const PING_MS = 400;

describe('silent outage of the town <-> village link', { timeout: 90_000 }, () => {
  let nodes: TreeNode[];
  let city: TreeNode, town: TreeNode, village: TreeNode;
  let relay: TcpRelay | undefined;
  const media = new EmulatedLink('village', 'town', { link: { delayMs: 20 }, seed: 5 });
  const sources: RtpSource[] = [];
  let sink: RtpSink;
  let chairId: string;
  let villageCamId: string;

  before(async () => {
    // The village dials the town through the relay, which learns the town's port when the village is set up.
    relay = await TcpRelay.create();
    const relayPort = relay.port;
    nodes = await startChain(['city', 'town', 'village'], {
      admission: 'open',
      pingIntervalMs: PING_MS,
      pipeRouteFor: media.routeFor,
      parentUrlFor: (child, url) => {
        if (child !== 'village') return url;
        relay!.target = { host: '127.0.0.1', port: Number(new URL(url).port) };
        return `ws://127.0.0.1:${relayPort}/cascade`;
      },
    });
    [city, town, village] = nodes as [TreeNode, TreeNode, TreeNode];
    sink = await RtpSink.create();
    const cam = async (n: TreeNode, ssrc: number, fps: number) => {
      const { ingest, source } = await n.camera(ROOM, { ssrc, fps, size: 800 });
      sources.push(source);
      return ingest.producer.id;
    };
    chairId = await cam(city, 0x9000, 30);
    villageCamId = await cam(village, 0x9001, 15);
  });

  after(async () => {
    for (const s of sources) s.close();
    sink?.close();
    for (const n of [...(nodes ?? [])].reverse()) await n.stop().catch(() => undefined);
    relay?.close();
    await media.close();
  });

  test('both sides detect the dead link by pings, the village call goes on, and everything resumes when it returns', async () => {
    const packets = (t: Tap) => sink.count(t.transport.tuple.localPort).packets;
    await waitFor('chair listed at the village', () => village.cascadeRoom(ROOM)?.producer(chairId) !== undefined, 10_000);
    const chairTap = await village.node.tap(ROOM, chairId, { ip: '127.0.0.1', port: sink.port });
    const localTap = await village.node.tap(ROOM, villageCamId, { ip: '127.0.0.1', port: sink.port });
    await waitFor('media at the village', () => packets(chairTap) > 10 && packets(localTap) > 5, 10_000);

    const cutAt = performance.now();
    relay!.down = true;
    await media.setDown(true);
    await Promise.all([
      waitFor('village notices', () => !village.node.cascade!.parentConnected, 10_000),
      waitFor('town notices', () => town.node.cascade!.children.length === 0, 10_000),
    ]);
    const detectedMs = performance.now() - cutAt;
    // The consumer closes on the producer's close event, a moment after the link state flips.
    await waitFor('the chair consumer at the village was closed', () => chairTap.closed, 2_000);
    const n0 = packets(localTap);
    await new Promise((r) => setTimeout(r, 600));
    assert.ok(packets(localTap) > n0 + 3, 'the village call goes on during the outage');

    const restoredAt = performance.now();
    relay!.down = false;
    await media.setDown(false);
    await waitFor('chair listed at the village again', () => village.cascadeRoom(ROOM)?.producer(chairId) !== undefined, 15_000);
    const again = await village.node.tap(ROOM, chairId, { ip: '127.0.0.1', port: sink.port });
    await waitFor('chair media at the village again', () => packets(again) > 10, 10_000);
    console.log(
      `# silent outage detected by both sides after ${detectedMs.toFixed(0)} ms (ping ${PING_MS} ms); ` +
        `chair media at the village ${(performance.now() - restoredAt).toFixed(0)} ms after the link returned`,
    );
    assert.ok(detectedMs < 4 * PING_MS + 500, `detected within about two ping intervals: ${detectedMs}`);
  });
});
