import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Tap } from '../../sfu/Tap.ts';
import { EmulatedLink, RtpSink, type LayerSpec, type SimulcastRtpSource, startTree, waitFor, type TreeNode } from '../support/cascade-harness.ts';

// A capped village link (issue 11): the village node's uplink is configured at 300 kbit/s
// (CascadeOptions.uplinkKbps) and its media path to the town crosses a link emulator limited to
// 300 kbit/s. A 3-layer H.264 simulcast camera at the city (≈ 60 / 276 / 432 kbit/s) must reach a
// consumer at the capped village as ONE layer that fits (layer 0) over the link's PlainTransport, with
// the link's bytes within the cap, while an uncapped sibling village gets all layers over its pipe and
// decodes layer 2. Demand: what consumers below want reaches the origin's Room (room.demand()).

const ROOM = 'conf-capped';
const CAP_KBPS = 300;
const LAYERS: LayerSpec[] = [
  { ssrc: 0x5100, fps: 15, size: 500, maxBitrate: 100_000 },
  { ssrc: 0x5101, fps: 30, size: 1150, maxBitrate: 350_000 },
  { ssrc: 0x5102, fps: 45, size: 1200, maxBitrate: 800_000 },
];

describe('capped village link: single-layer video that fits, demand to the origin', { timeout: 120_000 }, () => {
  let nodes: Map<string, TreeNode>;
  let city: TreeNode, town: TreeNode, capped: TreeNode, wide: TreeNode;
  let source: SimulcastRtpSource;
  let sink: RtpSink;
  let chairId: string;
  let capTap: Tap, wideTap: Tap;
  const closers: Array<() => void> = [];
  const satellite = new EmulatedLink('village-cap', 'town', { link: { delayMs: 20, rateBps: CAP_KBPS * 1000, queueBytes: 32 * 1024 }, seed: 11 });

  const portOf = (t: Tap) => t.transport.tuple.localPort;

  before(async () => {
    nodes = await startTree([['city'], ['town', 'city'], ['village-cap', 'town'], ['village-wide', 'town']], {
      admission: 'open',
      pipeRouteFor: satellite.routeFor,
      uplinkKbpsFor: (name) => (name === 'village-cap' ? CAP_KBPS : undefined),
      lingerMs: 300,
      pingIntervalMs: 1000,
    });
    city = nodes.get('city')!;
    town = nodes.get('town')!;
    capped = nodes.get('village-cap')!;
    wide = nodes.get('village-wide')!;
    sink = await RtpSink.create();
    const chair = await city.simulcastCamera(ROOM, { layers: LAYERS, displayName: 'chair' });
    source = chair.source;
    chairId = chair.ingest.producer.id;
    // Each village takes part (a small camera of its own keeps its room open).
    for (const [i, v] of [capped, wide].entries()) {
      const cam = await v.camera(ROOM, { ssrc: 0x5200 + i, fps: 5, size: 200 });
      closers.push(() => cam.source.close());
    }
  });

  after(async () => {
    for (const c of closers) c();
    source?.close();
    sink?.close();
    for (const n of [...(nodes?.values() ?? [])].reverse()) await n.stop().catch(() => undefined);
    await satellite.close();
  });

  test('the capped village gets layer 0 within the cap; the uncapped sibling gets layer 2', async () => {
    await waitFor('chair camera announced at both villages', () => [capped, wide].every((v) => v.cascadeRoom(ROOM)?.producer(chairId) !== undefined), 10_000);
    // Let the origin measure its layers' bitrates first.
    await new Promise((r) => setTimeout(r, 1500));
    const plis0 = [...source.plis];
    capTap = await capped.node.tap(ROOM, chairId, { ip: '127.0.0.1', port: sink.port });
    wideTap = await wide.node.tap(ROOM, chairId, { ip: '127.0.0.1', port: sink.port });
    // Server-side consumers wanting the top layer, as a page's consumer would.
    capped.node.rooms.get(ROOM)!.setConsumerDemand(chairId, capTap.consumer.id, 2);
    wide.node.rooms.get(ROOM)!.setConsumerDemand(chairId, wideTap.consumer.id, 2);
    await waitFor('media at both villages', () => sink.count(portOf(capTap)).packets > 20 && sink.count(portOf(wideTap)).packets > 20, 15_000);

    const sub = capped.cascadeRoom(ROOM)!.subscriptions.get(chairId)!;
    assert.equal(sub.single, true, 'the capped village receives the camera as a single-layer stream');
    assert.equal(wide.cascadeRoom(ROOM)!.subscriptions.get(chairId)!.single, false, 'the uncapped village gets the pipe (all layers)');
    const down = town.link(ROOM, 'child:village-cap')!;
    assert.ok(down.plain && down.capacityKbps === CAP_KBPS, 'the town side knows the link is capped');
    assert.equal(down.single.get(chairId)?.preferredLayers?.spatialLayer, 0, 'the town sends layer 0 over the capped link');

    // Measure a steady window.
    await new Promise((r) => setTimeout(r, 2500));
    const c0 = { cap: { ...sink.count(portOf(capTap)), layers: new Map(sink.count(portOf(capTap)).layers) }, wide: { ...sink.count(portOf(wideTap)), layers: new Map(sink.count(portOf(wideTap)).layers) } };
    const b0 = await satellite.bytesIn();
    const [e0] = await satellite.emulators();
    const drops0 = (await satellite.emulators()).reduce((n, e) => n + e.counters.bToA.queueDrops, 0);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 5000));
    const s = (performance.now() - t0) / 1000;
    const b1 = await satellite.bytesIn();
    const drops1 = (await satellite.emulators()).reduce((n, e) => n + e.counters.bToA.queueDrops, 0);
    const cap1 = sink.count(portOf(capTap));
    const wide1 = sink.count(portOf(wideTap));
    const layerDelta = (now: Map<number, number>, before: Map<number, number>) => [0, 1, 2].map((l) => (now.get(l) ?? 0) - (before.get(l) ?? 0));
    const capLayers = layerDelta(cap1.layers, c0.cap.layers);
    const wideLayers = layerDelta(wide1.layers, c0.wide.layers);
    const downKbps = ((b1.bToA - b0.bToA) * 8) / s / 1000;
    const upKbps = ((b1.aToB - b0.aToB) * 8) / s / 1000;
    const sourceKbps = LAYERS.map((l) => (l.fps * l.size * 8) / 1000);
    console.log(
      `# capped link (${CAP_KBPS} kbit/s): town->village ${downKbps.toFixed(0)} kbit/s, village->town ${upKbps.toFixed(0)} kbit/s over ${s.toFixed(1)} s ` +
        `(pipe + plain, ${(await satellite.emulators()).length} emulated paths, queue drops ${drops1 - drops0}); source layers ${sourceKbps.map((k) => k.toFixed(0)).join('/')} kbit/s; ` +
        `packets by layer at the capped village ${capLayers.join('/')}, at the uncapped village ${wideLayers.join('/')}; ` +
        `PLI/FIR per layer at the source since the taps: ${source.plis.map((n, i) => n - plis0[i]!).join('/')}`,
    );
    assert.ok(e0, 'the capped link went through the emulator');
    assert.ok(capLayers[0]! > 30 && capLayers[1] === 0 && capLayers[2] === 0, `only layer 0 reaches the capped village: ${capLayers}`);
    assert.ok(wideLayers[2]! > 100 && wideLayers[0] === 0 && wideLayers[1] === 0, `layer 2 reaches the uncapped village: ${wideLayers}`);
    assert.ok(downKbps <= CAP_KBPS, `bytes on the capped link stay within the cap: ${downKbps.toFixed(0)} kbit/s`);
    assert.ok(downKbps > 40, `the capped link does carry the chair: ${downKbps.toFixed(0)} kbit/s`);
    assert.equal(drops1 - drops0, 0, 'nothing had to be dropped at the bottleneck');
    assert.ok(source.plis[0]! - plis0[0]! >= 1, 'a keyframe request for layer 0 reached the simulcast source through the capped path');
    // The node's metrics show the link's bytes (pipe + plain).
    const text = await town.node.metrics.registry.metrics();
    const m = /sfu_cascade_link_bytes\{link="child:village-cap",direction="sent"\} (\d+)/.exec(text);
    assert.ok(m && Number(m[1]) > 20_000, `sfu_cascade_link_bytes for the capped link: ${m?.[0]}`);
  });

  test("demand: the origin sees the highest layer wanted below, and 0 when only a layer-0 consumer is left", async () => {
    const cityRoom = city.node.rooms.get(ROOM)!;
    await waitFor('origin demand 2 (the uncapped village wants layer 2)', () => cityRoom.demand(chairId) === 2, 5000);
    // The capped link reports at most what fits beyond it.
    assert.equal(town.node.rooms.get(ROOM)!.demand(chairId), 2);
    // The uncapped village's consumer goes (its subscription lingers 300 ms, then is released);
    // the capped village's consumer asks only for layer 0.
    wide.node.rooms.get(ROOM)!.setConsumerDemand(chairId, wideTap.consumer.id, -1);
    wideTap.close();
    const capRoom = capped.node.rooms.get(ROOM)!;
    capRoom.setConsumerDemand(chairId, capTap.consumer.id, 0);
    const ms = await waitFor('origin demand 0', () => cityRoom.demand(chairId) === 0, 8000);
    console.log(`# only a layer-0 consumer below: the city's room.demand() = 0 after ${ms.toFixed(0)} ms`);
    capRoom.setConsumerDemand(chairId, capTap.consumer.id, -1);
    capTap.close();
    await waitFor('origin demand -1 when nobody consumes', () => cityRoom.demand(chairId) === -1, 8000);
  });

});
