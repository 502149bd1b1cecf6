// Beyond loopback, for real: a village kiosk on another machine (a network namespace) opens the system
// over HTTPS with the local CA's certificate, publishes its camera and a town clerk decodes it; the
// same address over plain HTTP answers a page that says to use HTTPS. Then the kiosk's network loses
// its route to the node's media address: it joins a meeting through Debian's coturn over TCP/TLS
// (TURN REST credentials from the join) and decodes the chair through the relay. Last, a network that
// carries only TCP to a node: ICE over TCP on the worker's WebRtcServer port, without a relay.
//
// Chromium trusts the CA by --ignore-certificate-errors-spki-list (the leaf's and CA's SPKI SHA-256).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { createLogger } from '../../infra/logger.ts';
import { localCertificates, type TlsMaterial } from '../../infra/tls/certificates.ts';
import { listenHttpsFront, type HttpsFront } from '../../infra/tls/https-front.ts';
import { CoturnServer } from '../../infra/turn/CoturnServer.ts';
import { TurnCredentials } from '../../infra/turn/TurnCredentials.ts';
import { signJoinToken } from '../../infra/tokens.ts';
import { SfuNode } from '../../sfu/SfuNode.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';
import { launchChromium, tmpDir } from '../support/browser.ts';
import { NetLab } from '../support/netns.ts';
import { checkedScreenshot, mediaStats, openMeetingLink, signIn, waitUntil } from '../support/pages.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

const run = promisify(execFile);
const TURN_SECRET = 'turn-secret-for-tests-0123456789';
const SERVICE_NAMES: Record<string, string> = { civil_affairs: '民政事务', social_security: '社会保障', medical_insurance: '医疗保险', legal_aid: '法律援助', agriculture: '农业技术', household_registration: '户籍办理', elderly_care: '养老服务' };

interface IceRoute { local: string; remote: string; protocol: string; relayProtocol?: string }

async function iceRoutes(page: Page): Promise<{ send?: IceRoute; recv?: IceRoute }> {
  return page.evaluate(async () => {
    const c = (window as unknown as { sfuClient?: { iceRoutes(): Promise<{ send?: IceRoute; recv?: IceRoute }> } }).sfuClient;
    return c ? c.iceRoutes() : {};
  });
}

describe('HTTPS beyond loopback, and TURN over TCP/TLS', { timeout: 240_000 }, () => {
  let lab: NetLab;
  let h: SystemHarness;
  let tls: TlsMaterial;
  let front: HttpsFront;
  let turn: CoturnServer;
  let host: Browser;
  let kioskBrowser: Browser;
  let httpsBase: string;
  /** The node's media address: on the host, reachable from the kiosk's namespace only while it has a route. */
  let mediaIp: string;
  let kioskNs: string;
  const relayPorts = rtcPortRange(100);

  before(async () => {
    lab = await NetLab.create(['kiosk']);
    kioskNs = lab.node('kiosk').ns;
    mediaIp = `10.79.${process.pid % 250}.1`;
    const { stdout } = await run('ip', ['-o', '-4', 'addr', 'show', 'to', `${lab.hostIp}/32`]);
    const bridge = stdout.trim().split(/\s+/)[1]!;
    // On the lab's bridge (removed with it), but outside every namespace's subnet: unroutable without a route.
    await run('ip', ['addr', 'add', `${mediaIp}/32`, 'dev', bridge]);
    tls = await localCertificates(tmpDir('https-ca-'), [lab.hostIp]);
    turn = new CoturnServer({
      dir: tmpDir('turn-'),
      listenIp: lab.hostIp,
      port: 3478,
      tlsPort: 5349,
      tls: { cert: tls.cert, key: tls.key },
      secret: TURN_SECRET,
      relayIp: mediaIp,
      relayMinPort: relayPorts.rtcMinPort,
      relayMaxPort: relayPorts.rtcMaxPort,
      allowedPeers: [mediaIp],
      // A network that drops UDP: the relay is reachable over TCP and TLS only.
      noUdp: true,
      logger: createLogger('turn-test'),
    });
    await turn.start();
    h = await startSystemHarness({
      listenIp: mediaIp,
      sfuNodeHosts: `loopback,*.example,${lab.hostIp}`,
      turn: new TurnCredentials({ urls: [`turn:${lab.hostIp}:3478?transport=tcp`, `turns:${lab.hostIp}:5349?transport=tcp`], secret: TURN_SECRET, ttlSeconds: 600 }),
    });
    front = await listenHttpsFront(h.server, { host: lab.hostIp, port: 0, tls });
    httpsBase = `https://${lab.hostIp}:${front.port}`;
    // The kiosk's Chromium runs inside its namespace: another machine on the county network.
    const wrapper = path.join(tmpDir('chromium-ns-'), 'chromium-in-ns.sh');
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec /usr/sbin/ip netns exec ${kioskNs} ${process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'} "$@"\n`, { mode: 0o755 });
    const trust = [`--ignore-certificate-errors-spki-list=${tls.spkiSha256.join(',')}`];
    kioskBrowser = await launchChromium({ executablePath: wrapper, args: trust });
    host = await launchChromium();
  });

  after(async () => {
    await kioskBrowser?.close().catch(() => undefined);
    await host?.close().catch(() => undefined);
    await h?.close();
    turn?.stop();
    relayPorts.release();
    await lab?.close();
  });

  test('plain HTTP from another machine is refused with a page naming the https:// address and the CA certificate', async () => {
    const page = await (await kioskBrowser.newContext()).newPage();
    const res = await page.goto(`http://${lab.hostIp}:${front.port}/#/kiosk`);
    assert.equal(res?.status(), 403);
    await page.getByText('请使用 HTTPS 访问本系统').waitFor();
    await page.getByText('Please use HTTPS').first().waitFor();
    assert.equal(await page.locator('#https-url').getAttribute('href'), `${httpsBase}/`);
    assert.equal(await page.evaluate(() => window.isSecureContext), false, 'why: no camera without a secure context');
    const ca = await page.evaluate(async () => (await fetch('/tls/ca.pem')).text());
    assert.equal(ca, tls.caPem);
    const api = await page.evaluate(async () => (await fetch('/api/health')).json() as Promise<{ error: { code: string; message: string } }>);
    assert.equal(api.error.code, 'https_required');
    assert.match(api.error.message, /请使用 HTTPS.*Please use HTTPS/);
    await page.context().close();
  });

  test('the kiosk over HTTPS (WSS signalling) publishes its camera and the town clerk decodes it', async () => {
    await run('ip', ['-n', kioskNs, 'route', 'add', `${mediaIp}/32`, 'via', lab.hostIp]);
    const sec = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!;
    const q = async <T>(sql: string, args: unknown[]) => (await h.db.pool.query(sql, args)).rows as T[];
    const [town] = await q<{ id: number }>(`SELECT t.id FROM units t, units v WHERE v.id = $1 AND t.level = 'town' AND v.path LIKE t.path || '%'`, [sec.unitId]);
    const [centre] = await q<{ services: string[] }>(`SELECT services FROM service_points WHERE unit_id = $1 AND kind = 'centre'`, [town!.id]);
    const [station] = await q<{ services: string[] }>(`SELECT services FROM service_points WHERE unit_id = $1 AND kind = 'station'`, [sec.unitId]);
    const offered = station!.services.length ? station!.services : centre!.services;
    const service = centre!.services.find((x) => offered.includes(x))!;
    const clerk = h.demo.users.find((u) => u.role === 'clerk' && u.unitId === town!.id)!.username;

    const kiosk = await signIn(kioskBrowser, httpsBase, sec.username, h.demo.password, { camera: '320x240@15' });
    assert.deepEqual(await kiosk.evaluate(() => [location.protocol, window.isSecureContext, typeof navigator.mediaDevices?.getUserMedia]), ['https:', true, 'function']);
    await kiosk.getByText('请选择您要办理的业务').waitFor();
    await kiosk.getByRole('button', { name: SERVICE_NAMES[service]! }).click();
    await kiosk.getByText('正在排队,请稍候').waitFor();
    const desk = await signIn(host, h.baseUrl, clerk, h.demo.password, { camera: '320x240@15' });
    await desk.getByRole('button', { name: '接听' }).first().click();
    const s = await waitUntil('the clerk decodes the kiosk camera', () => mediaStats(desk), (m) => Object.values(m.videoFramesDecoded).some((n) => n > 30), 60_000);
    assert.ok(Object.values(s.videoFramesDecoded).some((n) => n > 30));
    const routes = await iceRoutes(kiosk);
    console.log('kiosk ICE routes (direct phase):', JSON.stringify(routes));
    assert.ok(routes.send, 'the kiosk sends over a selected candidate pair');
    await checkedScreenshot(kiosk, 'https-kiosk-in-call');
    await desk.getByLabel('办理结果备注').fill('HTTPS');
    await desk.getByRole('button', { name: '结束并保存' }).click();
    await kiosk.getByText('通话已结束,感谢使用').waitFor({ timeout: 15_000 });
    await kiosk.context().close();
    await desk.context().close();
    await run('ip', ['-n', kioskNs, 'route', 'del', `${mediaIp}/32`, 'via', lab.hostIp]);
  });

  test('with the media address unroutable, the kiosk joins a meeting through TURN over TCP/TLS and decodes the chair', async () => {
    // Proof the direct path is gone: the kernel has no route from the kiosk to the media address.
    await assert.rejects(run('ip', ['netns', 'exec', kioskNs, 'ip', 'route', 'get', mediaIp]), /unreachable/i);
    const sec = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!;
    const q = async <T>(sql: string, args: unknown[]) => (await h.db.pool.query(sql, args)).rows as T[];
    const [town] = await q<{ id: number }>(`SELECT t.id FROM units t, units v WHERE v.id = $1 AND t.level = 'town' AND v.path LIKE t.path || '%'`, [sec.unitId]);
    const leader = h.demo.users.find((u) => u.role === 'leader' && u.unitId === town!.id)!;
    const leaderToken = await h.login(leader.username);
    const siteToken = await h.login(sec.username);
    const m = await h.call<{ id: number }>(leaderToken, 'POST', '/api/meetings', { title: 'TURN 测试会', unitIds: [sec.unitId] });
    assert.equal(m.status, 201, JSON.stringify(m.body));
    const chairJoin = await h.call<{ token: string }>(leaderToken, 'POST', `/api/meetings/${m.body.id}/join-token`);
    const siteJoin = await h.call<{ token: string }>(siteToken, 'POST', `/api/meetings/${m.body.id}/join-token`);
    const chair = await openMeetingLink(host, h.baseUrl, chairJoin.body.token, 'chair');
    const site = await openMeetingLink(kioskBrowser, httpsBase, siteJoin.body.token, 'village');
    const s = await waitUntil('the village site decodes the chair through the relay', () => mediaStats(site), (v) => Object.values(v.videoFramesDecoded).some((n) => n > 30), 90_000);
    assert.ok(Object.values(s.videoFramesDecoded).some((n) => n > 30));
    const routes = await iceRoutes(site);
    console.log('village ICE routes (TURN phase):', JSON.stringify(routes));
    assert.equal(routes.recv?.local, 'relay', `selected pair: ${JSON.stringify(routes.recv)}`);
    assert.ok(['tcp', 'tls'].includes(routes.recv?.relayProtocol ?? ''), `the page reached the relay over ${routes.recv?.relayProtocol}`);
    await chair.context().close();
    await site.context().close();
  });

  test("ICE over TCP: a page whose network carries only TCP to the node publishes over the worker's WebRtcServer TCP port", async () => {
    const tcpPorts = rtcPortRange(100);
    const icePort = tcpPorts.rtcMinPort;
    const { stdout } = await run('ip', ['-o', '-4', 'addr', 'show', 'to', `${lab.hostIp}/32`]);
    const tcpOnlyIp = `10.79.${process.pid % 250}.2`;
    await run('ip', ['addr', 'add', `${tcpOnlyIp}/32`, 'dev', stdout.trim().split(/\s+/)[1]!]);
    // The node announces the lab address; there only TCP is carried on to its WebRtcServer (a firewall
    // that passes TCP and drops UDP), and nothing answers UDP.
    const node = new SfuNode({ joinKey: TEST_JOIN_KEYS.publicKey, numWorkers: 1, listenIp: tcpOnlyIp, announcedAddress: lab.hostIp, webRtcBasePort: icePort, rtcMinPort: icePort + 1, rtcMaxPort: icePort + 99, logger: createLogger('sfu-tcp-only') });
    await node.start();
    node.attach(h.server, '/sfu-tcp');
    const relay = net.createServer((c) => {
      const up = net.connect(icePort, tcpOnlyIp);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
      c.pipe(up).pipe(c);
    });
    await new Promise<void>((r) => relay.listen(icePort, lab.hostIp, r));
    try {
      const sec = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!;
      const sfuUrl = `wss://${lab.hostIp}:${front.port}/sfu-tcp`;
      await h.db.pool.query(`INSERT INTO sfu_nodes (unit_id, name, signalling_url) VALUES ($1, 'tcp-only', $2)`, [sec.unitId, sfuUrl]);
      const token = await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId: 1, displayName: 'tcp', unitId: sec.unitId, room: 'tcp-only', role: 'participant' });
      const page = await openMeetingLink(kioskBrowser, httpsBase, token, 'tcp-only', sfuUrl);
      const bytes = async (): Promise<number> => {
        let sum = 0;
        for (const peer of node.rooms.get('tcp-only')?.peers.values() ?? []) for (const p of peer.producers.values()) if (p.kind === 'video') for (const st of await p.getStats()) sum += st.byteCount;
        return sum;
      };
      await waitUntil('the node receives the page camera', bytes, (n) => n > 50_000, 60_000);
      const routes = await iceRoutes(page);
      console.log('ICE routes (TCP-only network):', JSON.stringify(routes));
      // Straight to the node's TCP candidate, no relay (Chromium names its active TCP side peer-reflexive).
      assert.deepEqual([routes.send?.remote, routes.send?.protocol], ['host', 'tcp']);
      assert.ok(['host', 'prflx'].includes(routes.send?.local ?? ''), `local candidate: ${routes.send?.local}`);
      await page.context().close();
    } finally {
      relay.close();
      await node.close();
      tcpPorts.release();
    }
  });
});
