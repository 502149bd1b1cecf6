import path from 'node:path';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { TlsMaterial } from '../tls/certificates.ts';
import { CoturnServer } from './CoturnServer.ts';
import { TurnCredentials } from './TurnCredentials.ts';

type TurnConfig = Pick<Config, 'TURN_ENABLED' | 'TURN_URLS' | 'TURN_SECRET' | 'TURN_TTL_SECONDS' | 'TURN_LISTEN_IP' | 'TURN_PORT' | 'TURN_TLS_PORT' | 'SFU_ANNOUNCED_IP' | 'HTTP_HOST'>;

/** Where pages reach the TURN server: TURN_URLS, or this host's UDP, TCP and TLS listeners. */
export function turnUrls(config: TurnConfig): string[] {
  if (config.TURN_URLS) return config.TURN_URLS.split(',').map((u) => u.trim()).filter((u) => u !== '');
  const raw = config.SFU_ANNOUNCED_IP ?? config.TURN_LISTEN_IP ?? config.HTTP_HOST;
  const host = raw.includes(':') ? `[${raw}]` : raw;
  return [`turn:${host}:${config.TURN_PORT}?transport=udp`, `turn:${host}:${config.TURN_PORT}?transport=tcp`, `turns:${host}:${config.TURN_TLS_PORT}?transport=tcp`];
}

/** The credentials each join hands out (SfuNode option `turn`), when TURN_ENABLED. */
export function turnCredentialsFromConfig(config: TurnConfig): TurnCredentials | undefined {
  if (config.TURN_ENABLED !== 'true' || !config.TURN_SECRET) return undefined;
  return new TurnCredentials({ urls: turnUrls(config), secret: config.TURN_SECRET, ttlSeconds: config.TURN_TTL_SECONDS });
}

/**
 * Starts Debian's coturn for this host when TURN_ENABLED and TURN_START (turns: with the web
 * certificate when there is one); relays go only to this node's media addresses. Returns its stop.
 */
export async function startTurnFromConfig(config: Config, tls: TlsMaterial | undefined, log: Logger): Promise<() => void> {
  if (config.TURN_ENABLED !== 'true' || config.TURN_START !== 'true' || !config.TURN_SECRET) return () => undefined;
  const listenIp = config.TURN_LISTEN_IP ?? (config.HTTP_HOST === '0.0.0.0' ? config.SFU_LISTEN_IP : config.HTTP_HOST);
  // Relayed ports right above the SFU's own range.
  const relayMinPort = Math.min(config.SFU_RTC_MAX_PORT + 1, 64535);
  const turn = new CoturnServer({
    dir: path.join(config.DATA_DIR, 'turn'),
    listenIp,
    port: config.TURN_PORT,
    tlsPort: config.TURN_TLS_PORT,
    ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    secret: config.TURN_SECRET,
    relayMinPort,
    relayMaxPort: relayMinPort + 999,
    allowedPeers: [...new Set([config.SFU_LISTEN_IP, ...(config.SFU_ANNOUNCED_IP ? [config.SFU_ANNOUNCED_IP] : [])])].filter((a) => a !== '0.0.0.0'),
    logger: log,
  });
  await turn.start();
  return () => turn.stop();
}
