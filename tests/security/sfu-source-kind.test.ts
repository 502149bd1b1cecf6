import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import type { types } from 'mediasoup';
import type { Tap } from '../../sfu/Tap.ts';
import { RtpSink, waitFor } from '../support/cascade-harness.ts';
import { SignalClient, startLimitedNode, type LimitedNode } from './sfu-support.ts';

// Attack 4 of issue 12: a site declares its audio as "camera", "screen" or "film" so that the
// chair's mute-all (which held only "microphone" producers) and a film broadcast do not silence it.
// Real signalling clients try every lying combination over a real WebRTC send transport: each is
// refused and no producer exists. The honest microphone, fed real RTP, is measured at a tap (what
// another consumer receives): it stops under mute-all and the site cannot resume it.

const ROOM = 'source-kind';
const opus = (ssrc: number) => ({ codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 }], encodings: [{ ssrc }] });
const vp8 = (ssrc: number) => ({ codecs: [{ mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 }], encodings: [{ ssrc }] });

describe('a producer\'s declared source must fit its kind and its sender\'s role', { timeout: 60_000 }, () => {
  let n: LimitedNode;
  let chair: SignalClient, site: SignalClient, viewer: SignalClient;
  let sink: RtpSink;
  let tap: Tap | undefined;
  let mic: { transport: types.PlainTransport; producer: types.Producer; socket: dgram.Socket; timer: NodeJS.Timeout } | undefined;
  let sendTransport = '';

  before(async () => {
    n = await startLimitedNode({});
    chair = await SignalClient.join(n.wsUrl, { userId: 1, room: ROOM, role: 'chair' });
    site = await SignalClient.join(n.wsUrl, { userId: 2, room: ROOM });
    viewer = await SignalClient.join(n.wsUrl, { userId: 3, room: ROOM, role: 'viewer' });
    const t = await site.request('createTransport', { direction: 'send' });
    assert.equal(t.ok, true);
    sendTransport = (t.data as { transportId: string }).transportId;
    sink = await RtpSink.create();
  });

  after(async () => {
    if (mic) {
      clearInterval(mic.timer);
      mic.socket.close();
    }
    tap?.close();
    sink?.close();
    for (const c of [chair, site, viewer]) c?.close();
    await n?.close();
  });

  const producersInRoom = () => [...n.node.rooms.get(ROOM)!.peers.values()].reduce((k, p) => k + p.producers.size, 0);

  test('audio as camera, screen or film, and video as microphone or film, are refused', async () => {
    const lies: Array<[kind: 'audio' | 'video', source: string]> = [
      ['audio', 'camera'],
      ['audio', 'screen'],
      ['audio', 'film'],
      ['video', 'microphone'],
      ['video', 'film'],
    ];
    for (const [i, [kind, source]] of lies.entries()) {
      const r = await site.request('produce', { transportId: sendTransport, kind, rtpParameters: kind === 'audio' ? opus(7000 + i) : vp8(7000 + i), source });
      assert.equal(r.ok, false, `${kind} as ${source} accepted`);
      assert.equal(r.error?.code, 'bad_request', `${kind} as ${source}: ${r.error?.code}`);
    }
    assert.equal(producersInRoom(), 0, 'no producer was created');
    assert.equal(chair.notes.filter((x) => x.method === 'newProducer').length, 0, 'nobody was told of one');
  });

  test('a viewer produces nothing, whatever it declares', async () => {
    assert.equal((await viewer.request('createTransport', { direction: 'send' })).error?.code, 'forbidden');
    const recv = await viewer.request('createTransport', { direction: 'recv' });
    const transportId = (recv.data as { transportId: string }).transportId;
    for (const source of ['microphone', 'camera', 'film']) {
      const r = await viewer.request('produce', { transportId, kind: source === 'microphone' ? 'audio' : 'video', rtpParameters: source === 'microphone' ? opus(7100) : vp8(7100), source });
      assert.equal(r.error?.code, 'forbidden', `viewer producing ${source}`);
    }
    assert.equal(producersInRoom(), 0);
  });

  test('honest sources are accepted: video as camera and screen, audio as microphone', async () => {
    for (const [kind, source, ssrc] of [['video', 'camera', 7201], ['video', 'screen', 7202], ['audio', 'microphone', 7203]] as const) {
      const r = await site.request('produce', { transportId: sendTransport, kind, rtpParameters: kind === 'audio' ? opus(ssrc) : vp8(ssrc), source });
      assert.equal(r.ok, true, `${kind} as ${source}: ${JSON.stringify(r.error)}`);
    }
    assert.equal(producersInRoom(), 3);
    // A second microphone under another name is not possible either: the only audio name is taken.
    const again = await site.request('produce', { transportId: sendTransport, kind: 'audio', rtpParameters: opus(7204), source: 'microphone' });
    assert.equal(again.error?.code, 'bad_request');
  });

  test('a gateway cannot adopt audio under a video source; the site\'s audio stops reaching consumers under mute-all', async () => {
    const room = n.node.rooms.get(ROOM)!;
    const peer = room.peers.get(site.peerId)!;
    // Free the microphone slot taken above, then bring audio in over a PlainTransport (a phone gateway's path).
    for (const p of peer.producers.values()) if (p.kind === 'audio') p.close();
    const transport = await room.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    const lying = await transport.produce({ kind: 'audio', rtpParameters: opus(7300) as types.RtpParameters });
    await assert.rejects(peer.adoptProducer(lying, 'screen'), /audio cannot be sent as screen/);
    lying.close();
    const producer = await transport.produce({ kind: 'audio', rtpParameters: opus(7301) as types.RtpParameters });
    await peer.adoptProducer(producer, 'microphone');
    const socket = dgram.createSocket('udp4');
    let seq = 0;
    const timer = setInterval(() => {
      const pkt = Buffer.alloc(80);
      pkt[0] = 0x80;
      pkt[1] = 100;
      pkt.writeUInt16BE(seq & 0xffff, 2);
      pkt.writeUInt32BE((seq * 960) >>> 0, 4);
      pkt.writeUInt32BE(7301, 8);
      pkt[12] = 0xfc;
      seq++;
      socket.send(pkt, transport.tuple.localPort, '127.0.0.1');
    }, 20);
    mic = { transport, producer, socket, timer };
    tap = await n.node.tap(ROOM, producer.id, { ip: '127.0.0.1', port: sink.port });
    const received = () => sink.count(tap!.transport.tuple.localPort).packets;
    await waitFor('site audio reaches the tap', () => received() > 10);

    assert.equal((await chair.request('chairCommand', { action: 'muteAll' })).ok, true);
    await waitFor('site audio paused', () => producer.paused, 5000);
    await new Promise((r) => setTimeout(r, 150));
    const before = received();
    await new Promise((r) => setTimeout(r, 600));
    const during = received() - before;
    console.log(`# under mute-all: ${during} audio packets reached a consumer in 600 ms`);
    assert.equal(during, 0, 'no audio reaches a consumer under mute-all');
    assert.equal((await site.request('resumeProducer', { producerId: producer.id })).error?.code, 'forbidden', 'the site cannot resume it');
  });
});
