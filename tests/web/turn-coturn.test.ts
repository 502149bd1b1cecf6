// `npm start` with TURN_ENABLED: Debian's coturn is configured from the project's configuration and
// started; its shared secret is in a private file, never on its command line.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../infra/config.ts';
import { createLogger } from '../../infra/logger.ts';
import { startTurnFromConfig } from '../../infra/turn/turn-from-config.ts';
import { tmpDir } from '../support/browser.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';

test('TURN_ENABLED starts coturn with use-auth-secret; the secret stays out of the process list; relays only to the media address', async () => {
  const ports = rtcPortRange(100);
  const dataDir = tmpDir('turn-cfg-');
  const secret = 'turn-secret-never-on-argv-0123456789';
  const config = loadConfig({
    DATA_DIR: dataDir,
    TURN_ENABLED: 'true',
    TURN_SECRET: secret,
    TURN_LISTEN_IP: '127.0.0.1',
    TURN_PORT: String(ports.rtcMinPort),
    TURN_TLS_PORT: String(ports.rtcMinPort + 1),
    SFU_RTC_MAX_PORT: String(ports.rtcMinPort + 1),
  });
  const stop = await startTurnFromConfig(config, undefined, createLogger('turn-test'));
  try {
    const pid = Number(fs.readFileSync(path.join(dataDir, 'turn', 'turnserver.pid'), 'utf8').trim());
    assert.ok(pid > 0);
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    assert.match(argv, /turnserver/);
    assert.ok(!argv.includes(secret), 'the secret is not on the command line');
    const conf = path.join(dataDir, 'turn', 'turnserver.conf');
    assert.equal(fs.statSync(conf).mode & 0o077, 0, 'the configuration (with the secret) is private');
    const text = fs.readFileSync(conf, 'utf8');
    assert.match(text, /^use-auth-secret$/m);
    assert.match(text, new RegExp(`^static-auth-secret=${secret}$`, 'm'));
    assert.match(text, /^denied-peer-ip=0\.0\.0\.0-255\.255\.255\.255$/m);
    assert.match(text, /^allowed-peer-ip=127\.0\.0\.1$/m, 'the SFU media address (SFU_LISTEN_IP) only');
    await new Promise<void>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: ports.rtcMinPort }, () => (s.destroy(), resolve()));
      s.once('error', reject);
    });
  } finally {
    stop();
    ports.release();
  }
});
