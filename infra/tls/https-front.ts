import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { TlsMaterial } from './certificates.ts';

// One port for both protocols: the first byte of a connection tells a TLS ClientHello (0x16) from
// plain HTTP. TLS connections are handed, decrypted, to the application's own http.Server (so its
// routes and WebSocket upgrades — /sfu, /cascade — serve HTTPS and WSS unchanged). Plain HTTP from
// another machine gets a page that says to use HTTPS and where the CA certificate is; from loopback
// (this host's own tools) it is still served.

export const CA_CERT_PATH = '/tls/ca.pem';
const TLS_HANDSHAKE = 0x16;
const FIRST_BYTE_TIMEOUT_MS = 10_000;

export interface HttpsFrontOptions {
  host: string;
  port: number;
  tls: TlsMaterial;
  /** Name or address put into the https:// link of the refusal page; default HTTP_HOST. */
  publicHost?: string;
}

export interface HttpsFront {
  server: net.Server;
  port: number;
  close(): void;
}

const isLoopback = (addr: string | undefined): boolean => !!addr && (addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.'));

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The page (or JSON error) a plain-HTTP request from another machine gets. */
function refusalHandler(opts: HttpsFrontOptions, portOf: () => number): http.RequestListener {
  return (req, res) => {
    const hostHeader = (req.headers.host ?? '').replace(/:\d+$/, '');
    // The link names the host the person typed only if it looks like a host; never echo anything else.
    const linkHost = opts.publicHost ?? (/^[A-Za-z0-9.-]{1,253}$|^\[[0-9a-fA-F:]+\]$/.test(hostHeader) ? hostHeader : opts.host);
    const base = `https://${net.isIPv6(linkHost) ? `[${linkHost}]` : linkHost}:${portOf()}`;
    const path = (req.url ?? '/').startsWith('/') ? (req.url ?? '/') : '/';
    if (req.method === 'GET' && path === CA_CERT_PATH && opts.tls.caPem) {
      res.writeHead(200, { 'content-type': 'application/x-pem-file', 'content-disposition': 'attachment; filename="grassroots-av-ca.pem"', 'cache-control': 'no-store' });
      return void res.end(opts.tls.caPem);
    }
    const httpsUrl = base + path;
    const zh = '请使用 HTTPS 访问本系统';
    const en = 'Please use HTTPS';
    if (/json/.test(req.headers.accept ?? '') || path.startsWith('/api')) {
      res.writeHead(403, { 'content-type': 'application/json; charset=utf-8' });
      return void res.end(JSON.stringify({ error: { code: 'https_required', message: `${zh}：${httpsUrl} / ${en}: ${httpsUrl}` } }));
    }
    const ca = opts.tls.caPem
      ? `<p>若浏览器提示证书不受信任，请先下载并安装本系统的 CA 证书：<a href="${CA_CERT_PATH}">${CA_CERT_PATH}</a>（SHA-256 指纹 <code>${opts.tls.fingerprint256}</code>，请与管理员核对）。</p>
<p lang="en">If the browser says the certificate is not trusted, install this system's CA certificate first: <a href="${CA_CERT_PATH}">${CA_CERT_PATH}</a> (SHA-256 fingerprint <code>${opts.tls.fingerprint256}</code>; check it with your administrator).</p>`
      : '';
    res.writeHead(403, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>${zh} / ${en}</title></head><body style="font:18px sans-serif;max-width:46em;margin:3em auto">
<h1>${zh}</h1><h2 lang="en">${en}</h2>
<p>摄像头和麦克风只能在安全连接（HTTPS）下使用。请改用：<a id="https-url" href="${escapeHtml(httpsUrl)}">${escapeHtml(httpsUrl)}</a></p>
<p lang="en">Camera and microphone work only over a secure connection. Open: <a href="${escapeHtml(httpsUrl)}">${escapeHtml(httpsUrl)}</a></p>
${ca}</body></html>`);
  };
}

/** Serves `app` (an http.Server that is not listening itself) on host:port over HTTPS and WSS. */
export function listenHttpsFront(app: http.Server, opts: HttpsFrontOptions): Promise<HttpsFront> {
  const secure = tls.createServer({ key: opts.tls.key, cert: opts.tls.cert, minVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'], handshakeTimeout: 10_000 });
  secure.on('secureConnection', (socket) => app.emit('connection', socket));
  // A failed handshake is that client's problem, never the node's.
  secure.on('tlsClientError', (_err, socket) => socket.destroy());
  let boundPort = opts.port;
  const refusal = http.createServer({ headersTimeout: 10_000, requestTimeout: 10_000 }, refusalHandler(opts, () => boundPort));
  const sockets = new Set<net.Socket>();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const timer = setTimeout(() => socket.destroy(), FIRST_BYTE_TIMEOUT_MS);
    socket.once('close', () => clearTimeout(timer));
    socket.once('data', (head: Buffer) => {
      clearTimeout(timer);
      socket.pause();
      socket.unshift(head);
      if (head[0] === TLS_HANDSHAKE) secure.emit('connection', socket);
      else if (isLoopback(socket.remoteAddress)) app.emit('connection', socket);
      else refusal.emit('connection', socket);
      process.nextTick(() => socket.resume());
    });
  });
  const close = (): void => {
    front.close();
    for (const s of sockets) s.destroy();
  };
  app.once('close', close);
  return new Promise((resolve, reject) => {
    front.once('error', reject);
    front.listen(opts.port, opts.host, () => {
      front.off('error', reject);
      boundPort = (front.address() as net.AddressInfo).port;
      resolve({ server: front, port: boundPort, close });
    });
  });
}
