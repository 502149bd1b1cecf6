// `npm start`: the whole system in one process on embedded defaults — PostgreSQL (embedded unless
// DATABASE_URL), migrations, a demo organisation on first start, the API, the web pages and an SFU
// node on one HTTP origin. Production runs the same parts with real servers configured.
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { loadTokenSecret } from './secret.ts';
import { migrateUp } from './db/migrate.ts';
import { createPool } from './db/pool.ts';
import { startEmbeddedPostgres } from './db/embedded-postgres.ts';
import { generateDemoOrganisation } from './demo/generate.ts';
import { createWebServer } from '../web/server.ts';
import { SfuNode } from '../sfu/SfuNode.ts';

const config = loadConfig();
const log = createLogger('system');
const stops: Array<() => Promise<void> | void> = [];

const embedded = config.DATABASE_URL ? undefined : await startEmbeddedPostgres(config.DATA_DIR, 'grassroots');
if (embedded) stops.push(() => embedded.stop());
const databaseUrl = config.DATABASE_URL ?? embedded!.url;
await migrateUp(databaseUrl);
const pool = createPool(databaseUrl, 20);
stops.push(() => pool.end());

const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM units');
if ((rows[0]?.n ?? 0) === 0) {
  log.info('empty database: generating the demo organisation (潍坊市, ~10,000 units)');
  const demo = await generateDemoOrganisation(pool);
  const byLevel = new Map<string, string>();
  for (const u of demo.users) if (!byLevel.has(`${u.level}/${u.role}`)) byLevel.set(`${u.level}/${u.role}`, u.username);
  fs.writeFileSync(
    path.join(config.DATA_DIR, 'demo-users.txt'),
    [...byLevel.entries()].map(([k, v]) => `${k}\t${v}`).join('\n') + `\npassword\t${demo.password}\n`,
  );
  log.info({ units: demo.units, password: demo.password, sampleUsers: Object.fromEntries(byLevel) }, 'demo organisation ready');
}

const tokenSecret = loadTokenSecret(config.DATA_DIR, config.TOKEN_SECRET);
const sfu = new SfuNode({
  tokenSecret,
  numWorkers: config.SFU_NUM_WORKERS,
  listenIp: config.SFU_LISTEN_IP,
  ...(config.SFU_ANNOUNCED_IP ? { announcedAddress: config.SFU_ANNOUNCED_IP } : {}),
  webRtcBasePort: config.SFU_RTC_PORT,
  rtcMinPort: config.SFU_RTC_MIN_PORT,
  rtcMaxPort: config.SFU_RTC_MAX_PORT,
  logger: createLogger('sfu'),
});
await sfu.start();
stops.push(() => sfu.close());

const server = createWebServer({ pool, tokenSecret, sfu });
server.listen(config.HTTP_PORT, config.HTTP_HOST, () => {
  log.info(`ready: http://${config.HTTP_HOST}:${config.HTTP_PORT}/  (demo logins in ${path.join(config.DATA_DIR, 'demo-users.txt')})`);
});

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    server.closeAllConnections();
    server.close();
    for (const stop of stops.reverse()) await Promise.resolve(stop()).catch(() => undefined);
    process.exit(0);
  });
}
