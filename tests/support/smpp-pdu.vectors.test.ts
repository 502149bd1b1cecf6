import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { CMD, decodeBind, decodeSm, decodeUcs2, encodeBind, encodePdu, receiptText, splitPdus, splitUdh } from './smpp-pdu.ts';
import { SmscSimulator } from './smsc-simulator.ts';

// The test SMSC's own SMPP v3.4 codec against byte vectors assembled by hand from the specification
// (v3.4 Issue 1.2 §3.2 header, §4.1.5 bind_transceiver, §4.4.1 submit_sm, §4.11.1 enquire_link,
// §4.3.1 generic_nack, Appendix B receipt), and the simulator's session rules on a raw TCP socket.
// None of this uses the `smpp` npm package the client uses.
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('enquire_link and generic_nack headers are the spec bytes', () => {
  assert.deepEqual(encodePdu(CMD.enquire_link, 0, 1), hex('00000010 00000015 00000000 00000001'));
  assert.deepEqual(encodePdu(CMD.generic_nack, 3, 7), hex('00000010 80000000 00000003 00000007'));
  const { pdus, rest } = splitPdus(hex('00000010 80000015 00000000 00000001 0000'));
  assert.deepEqual(pdus.map((p) => [p.commandId, p.status, p.seq]), [[0x80000015, 0, 1]]);
  assert.equal(rest.length, 2, 'a partial PDU stays buffered');
  assert.throws(() => splitPdus(hex('00000008 00000015 00000000 00000001')), /command_length/);
});

test('bind_transceiver body: C-octet strings and integers in spec order', () => {
  const body = hex('736368656400 73656372657400 00 34 00 00 00'); // "sched", "secret", "", 0x34, ton 0, npi 0, ""
  assert.deepEqual(decodeBind(body), { systemId: 'sched', password: 'secret', systemType: '', interfaceVersion: 0x34, addrTon: 0, addrNpi: 0, addressRange: '' });
  assert.deepEqual(encodeBind(decodeBind(body)), body);
  assert.deepEqual(encodePdu(CMD.bind_transceiver, 0, 1, body).subarray(0, 4), hex('00000022'));
});

test('submit_sm with a UDH concatenation header and UCS-2 text decodes field by field', () => {
  const pdu = hex(`00000039 00000004 00000000 00000002
    00 05 00 313036393000 01 01 313338303030303030303100
    40 00 00 00 00 01 00 08 00 08 050003090201 515A`);
  const [p] = splitPdus(pdu).pdus;
  assert.equal(p!.commandId, CMD.submit_sm);
  const sm = decodeSm(p!.body);
  assert.equal(sm.source, '10690');
  assert.equal(sm.sourceTon, 5);
  assert.equal(sm.dest, '13800000001');
  assert.equal(sm.esmClass, 0x40);
  assert.equal(sm.registeredDelivery, 1);
  assert.equal(sm.dataCoding, 8);
  const { ies, payload } = splitUdh(sm.shortMessage);
  assert.deepEqual(ies.map((i) => [i.iei, [...i.data]]), [[0, [9, 2, 1]]]);
  assert.equal(decodeUcs2(payload), '党');
  assert.throws(() => decodeSm(p!.body.subarray(0, 20)), /short|unterminated/);
});

test('delivery receipt text follows Appendix B', () => {
  const t = receiptText({ id: '0123456789', sub: 1, dlvrd: 1, submit: new Date(Date.UTC(2026, 2, 31, 8, 5)), done: new Date(Date.UTC(2026, 2, 31, 8, 6)), stat: 'DELIVRD', err: 0, text: '' });
  assert.equal(t, 'id:0123456789 sub:001 dlvrd:001 submit date:2603310805 done date:2603310806 stat:DELIVRD err:000 Text:');
});

const smsc = new SmscSimulator();
after(() => smsc.stop());

function exchange(sock: net.Socket, out: Buffer, n: number): Promise<ReturnType<typeof splitPdus>['pdus']> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const got: ReturnType<typeof splitPdus>['pdus'] = [];
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const r = splitPdus(buf);
      buf = r.rest;
      got.push(...r.pdus);
      if (got.length >= n) {
        sock.off('data', onData);
        resolve(got);
      }
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.write(out);
  });
}

test('session rules on the wire: nack unknown commands, refuse submit before bind, bind checks the password', async () => {
  const port = await smsc.start();
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const [nack] = await exchange(sock, encodePdu(0x00000103, 0, 5), 1);
  assert.deepEqual([nack!.commandId, nack!.status, nack!.seq], [CMD.generic_nack, 0x03, 5]);
  const [early] = await exchange(sock, encodePdu(CMD.submit_sm, 0, 6, hex('00 05 00 3100 01 01 3200 00 00 00 00 00 01 00 00 00 01 41')), 1);
  assert.deepEqual([early!.commandId, early!.status, early!.body.length], [CMD.submit_sm_resp, 0x04, 0], 'ESME_RINVBNDSTS, no body');
  const bad = encodeBind({ systemId: 'sched', password: 'wrong', systemType: '', interfaceVersion: 0x34, addrTon: 0, addrNpi: 0, addressRange: '' });
  const [refused] = await exchange(sock, encodePdu(CMD.bind_transceiver, 0, 7, bad), 1);
  assert.deepEqual([refused!.commandId, refused!.status], [CMD.bind_transceiver_resp, 0x0d]);
  const good = encodeBind({ systemId: 'sched', password: 'secret', systemType: '', interfaceVersion: 0x34, addrTon: 0, addrNpi: 0, addressRange: '' });
  const [bound] = await exchange(sock, encodePdu(CMD.bind_transceiver, 0, 8, good), 1);
  assert.deepEqual([bound!.commandId, bound!.status, bound!.body.subarray(0, 6).toString('latin1')], [CMD.bind_transceiver_resp, 0, 'SIMSC\0']);
  const [el] = await exchange(sock, encodePdu(CMD.enquire_link, 0, 9), 1);
  assert.deepEqual(encodePdu(el!.commandId, el!.status, el!.seq, el!.body), hex('00000010 80000015 00000000 00000009'));
  const [ub] = await exchange(sock, encodePdu(CMD.unbind, 0, 10), 1);
  assert.deepEqual([ub!.commandId, ub!.status], [CMD.unbind_resp, 0]);
  sock.destroy();
});
