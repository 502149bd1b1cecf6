import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { waitFor } from '../support/cascade-harness.ts';
import { SignalClient, startLimitedNode, type LimitedNode } from './sfu-support.ts';

// Attack 7 (signalling share) of issue 12: ghost sites and socket floods on /sfu. A node with
// shortened limits: a socket that never joins is closed at the deadline; a site whose socket stops
// answering pings is closed and leaves its room (the others hear peerLeft); connections beyond the
// per-address and per-node caps are refused while the existing ones keep working.

const LIMITS = { joinDeadlineMs: 400, pingIntervalMs: 250, maxConnections: 7, maxConnectionsPerAddress: 4 };

describe('signalling session limits', { timeout: 60_000 }, () => {
  let n: LimitedNode;
  const clients: SignalClient[] = [];

  before(async () => {
    n = await startLimitedNode(LIMITS);
  });

  after(async () => {
    for (const c of clients) c.close();
    await n?.close();
  });

  test('a socket that never joins is closed after the join deadline', async () => {
    const silent = new SignalClient(n.wsUrl);
    clients.push(silent);
    await silent.opened();
    const t0 = performance.now();
    const code = await silent.closed();
    const tookMs = performance.now() - t0;
    console.log(`# silent socket closed after ${tookMs.toFixed(0)} ms (deadline ${LIMITS.joinDeadlineMs} ms), code ${code}`);
    assert.equal(code, 4008, 'closed by the join deadline');
    assert.ok(tookMs >= LIMITS.joinDeadlineMs - 50 && tookMs < LIMITS.joinDeadlineMs + 1500, `closed at ${tookMs} ms`);
    // A site that joins in time is not closed by the deadline.
    const site = await SignalClient.join(n.wsUrl, { userId: 1, room: 'limits' });
    clients.push(site);
    await new Promise((r) => setTimeout(r, LIMITS.joinDeadlineMs + 300));
    assert.equal(site.ws.readyState, WebSocket.OPEN, 'a joined site stays');
    assert.equal((await site.request('raiseHand', { raised: true })).ok, true);
    // Leaving does not buy an idle connection: the deadline starts again.
    assert.equal((await site.request('leave')).ok, true);
    assert.equal(await site.closed(), 4008, 'closed by the join deadline after leaving');
    await waitFor('count back to 0', () => n.node.connections === 0, 5000);
  });

  test('a site whose socket stops answering pings leaves the room; the others hear peerLeft', async () => {
    const alive = await SignalClient.join(n.wsUrl, { userId: 2, room: 'ghosts' });
    const ghost = await SignalClient.join(n.wsUrl, { userId: 3, room: 'ghosts' }, { autoPong: false });
    clients.push(alive, ghost);
    const room = n.node.rooms.get('ghosts')!;
    assert.equal(room.peers.size, 2);
    const t0 = performance.now();
    await waitFor('ghost removed from the room', () => !room.peers.has(ghost.peerId), 5000);
    const tookMs = performance.now() - t0;
    await waitFor('peerLeft heard', () => alive.notes.some((x) => x.method === 'peerLeft' && (x.data as { peerId: string }).peerId === ghost.peerId), 2000);
    console.log(`# ghost site (no pongs) removed after ${tookMs.toFixed(0)} ms with a ${LIMITS.pingIntervalMs} ms ping interval`);
    assert.ok(room.peers.has(alive.peerId), 'the site that answers pings stays');
    assert.equal((await alive.request('raiseHand', { raised: true })).ok, true);
    alive.close();
    await waitFor('count back to 0', () => n.node.connections === 0, 5000);
  });

  test('connections beyond the per-address and node caps are refused; existing ones keep working', async () => {
    const fromA: SignalClient[] = [];
    for (let i = 0; i < LIMITS.maxConnectionsPerAddress; i++) fromA.push(await SignalClient.join(n.wsUrl, { userId: 10 + i, room: 'caps' }));
    clients.push(...fromA);
    const extraA = new SignalClient(n.wsUrl);
    await assert.rejects(extraA.opened(), /refused: 429/, 'a fifth connection from one address is refused');
    // Other addresses (127.0.0.2, .3 on loopback) still get in, up to the node's cap.
    const fromB: SignalClient[] = [];
    for (let i = 0; i < LIMITS.maxConnections - LIMITS.maxConnectionsPerAddress; i++) {
      const c = await SignalClient.join(n.wsUrl, { userId: 20 + i, room: 'caps' }, { localAddress: '127.0.0.2' });
      fromB.push(c);
    }
    clients.push(...fromB);
    const extraC = new SignalClient(n.wsUrl, { localAddress: '127.0.0.3' });
    await assert.rejects(extraC.opened(), /refused: 503/, 'beyond the node cap everyone is refused');
    assert.equal(n.node.connections, LIMITS.maxConnections);
    // Nobody already in was hurt.
    for (const c of [...fromA, ...fromB]) assert.equal((await c.request('raiseHand', { raised: true })).ok, true);
    assert.equal(n.node.rooms.get('caps')!.peers.size, LIMITS.maxConnections);
    const metrics = await n.node.metrics.registry.metrics();
    assert.match(metrics, /sfu_connections_refused_total\{reason="address"\} 1/);
    assert.match(metrics, /sfu_connections_refused_total\{reason="node"\} 1/);
    // A slot freed is a slot available again.
    fromA[0]!.close();
    await waitFor('slot freed', () => n.node.connections === LIMITS.maxConnections - 1, 5000);
    const again = await SignalClient.join(n.wsUrl, { userId: 30, room: 'caps' });
    clients.push(again);
    assert.ok(again.peerId);
  });
});
