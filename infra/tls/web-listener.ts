import type http from 'node:http';
import path from 'node:path';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { localCertificates, operatorCertificates, type TlsMaterial } from './certificates.ts';
import { listenHttpsFront } from './https-front.ts';
import { startTurnFromConfig } from '../turn/turn-from-config.ts';

const isLoopbackHost = (h: string): boolean => h === 'localhost' || h === '::1' || h.startsWith('127.');

/** Whether this configuration serves HTTPS: `auto` does beyond loopback, where browsers need it for cameras. */
export function tlsWanted(config: Pick<Config, 'TLS_MODE' | 'HTTP_HOST'>): boolean {
  return config.TLS_MODE === 'on' || (config.TLS_MODE === 'auto' && !isLoopbackHost(config.HTTP_HOST));
}

/** The operator's certificate files, or the local CA's leaf for HTTP_HOST and TLS_HOSTNAMES. */
export async function tlsMaterialFromConfig(config: Config): Promise<TlsMaterial> {
  if (config.TLS_CERT_FILE && config.TLS_KEY_FILE) {
    return operatorCertificates({ certFile: config.TLS_CERT_FILE, keyFile: config.TLS_KEY_FILE, ...(config.TLS_CA_FILE ? { caFile: config.TLS_CA_FILE } : {}) });
  }
  const hosts = [config.HTTP_HOST, ...(config.TLS_HOSTNAMES ?? '').split(','), ...(config.SFU_ANNOUNCED_IP ? [config.SFU_ANNOUNCED_IP] : [])];
  return localCertificates(path.join(config.DATA_DIR, 'tls'), hosts);
}

/**
 * `npm start`'s listener: plain HTTP on loopback; beyond it HTTPS and WSS on the same port, plain HTTP
 * there answering a page that says to use HTTPS and where the CA certificate is. Resolves to the URL.
 */
export async function listenWeb(server: http.Server, config: Config, log: Logger, tls?: TlsMaterial, port = config.HTTP_PORT): Promise<string> {
  if (!tlsWanted(config)) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, config.HTTP_HOST, () => (server.off('error', reject), resolve()));
    });
    return `http://${config.HTTP_HOST}:${port}/`;
  }
  const material = tls ?? (await tlsMaterialFromConfig(config));
  const front = await listenHttpsFront(server, { host: config.HTTP_HOST, port, tls: material });
  const host = config.HTTP_HOST.includes(':') ? `[${config.HTTP_HOST}]` : config.HTTP_HOST;
  log.info(
    { source: material.source, caFingerprint256: material.fingerprint256, spkiSha256: material.spkiSha256 },
    material.source === 'local'
      ? `HTTPS with the local CA in ${path.join(config.DATA_DIR, 'tls')}: kiosks install http://${host}:${front.port}/tls/ca.pem (check the fingerprint)`
      : 'HTTPS with the operator\'s certificate',
  );
  return `https://${host}:${front.port}/`;
}

/**
 * A process's front (`npm start`, or a standalone node or API process with `port`): the web listener
 * (HTTPS beyond loopback) and, when TURN_ENABLED and `turn` is not false, Debian's coturn with the same
 * certificate for turns:. Returns the URL and a stop for both.
 */
export async function startWebFront(server: http.Server, config: Config, log: Logger, opts: { port?: number; turn?: boolean } = {}): Promise<{ url: string; stop: () => void }> {
  const tls = tlsWanted(config) ? await tlsMaterialFromConfig(config) : undefined;
  const url = await listenWeb(server, config, log, tls, opts.port ?? config.HTTP_PORT);
  const stopTurn = opts.turn === false ? () => undefined : await startTurnFromConfig(config, tls, log);
  return { url, stop: stopTurn };
}
