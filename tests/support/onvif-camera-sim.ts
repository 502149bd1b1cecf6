import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

// A camera's ONVIF side, written from the specifications (not from any client library):
// - ONVIF Core Specification (2.x): SOAP 1.2 over HTTP POST to the device service ("Web services
//   framework"); the default access policy's PRE_AUTH class (GetSystemDateAndTime, GetServices,
//   GetCapabilities answer without credentials, everything else needs a user); user authentication
//   by WS-Security UsernameToken ("User-based access control"); generic SOAP faults ("Error
//   handling": env:Sender / ter:NotAuthorized "Sender not Authorized", answered with HTTP 400 as the
//   SOAP 1.2 HTTP binding does for Sender faults; env:Receiver / ter:ActionNotSupported, HTTP 500);
//   Device management: GetServices (tds:Service with Namespace, XAddr, Version), GetCapabilities
//   (tt:Device / tt:Media XAddr), GetDeviceInformation (Manufacturer, Model, FirmwareVersion,
//   SerialNumber, HardwareId), GetSystemDateAndTime (tt:SystemDateTime with UTCDateTime).
// - ONVIF Media Service Specification, ver10 (trt): GetProfiles (tt:Profile with
//   VideoSourceConfiguration and VideoEncoderConfiguration: Encoding, Resolution, RateControl, H264),
//   GetStreamUri (StreamSetup RTP-Unicast over RTSP -> tt:MediaUri), GetSnapshotUri (-> tt:MediaUri
//   of an HTTP JPEG); an unknown ProfileToken is env:Sender / ter:InvalidArgVal / ter:NoProfile.
// - OASIS WSS UsernameToken Profile 1.0, section 3.1: PasswordDigest = Base64(SHA-1(nonce + created +
//   password)) with the nonce's decoded bytes; the digest is VERIFIED (timing-safe), Created must be
//   within 5 minutes of the device clock and a nonce is accepted once (replay protection, 3.1 note).
// - The snapshot URI is served over HTTP with Digest authentication (RFC 2617, MD5, qop=auth), as
//   Hikvision/Dahua/Uniview cameras serve theirs.

export interface SimProfile {
  token: string;
  name: string;
  encoding: 'H264' | 'H265' | 'JPEG';
  h264Profile?: 'Baseline' | 'Main' | 'High';
  width: number;
  height: number;
  fps: number;
  bitrateKbps: number;
  /** What GetStreamUri answers for this profile (an RTSP URI of a real server). */
  streamUri: string;
}

export interface OnvifSimOptions {
  username: string;
  password: string;
  profiles: SimProfile[];
  device?: { manufacturer: string; model: string; firmwareVersion: string; serialNumber: string; hardwareId: string };
  /** Host named in XAddrs and snapshot URIs (a camera behind NAT names its LAN address); default 127.0.0.1. */
  advertisedHost?: string;
  /** The device clock's offset from ours (a camera whose clock is wrong). */
  clockOffsetMs?: number;
}

export interface SimRequest {
  operation: string;
  /** null: PRE_AUTH (not checked); true/false: the UsernameToken verified or not. */
  authorized: boolean | null;
}

const NS = {
  env: 'http://www.w3.org/2003/05/soap-envelope',
  tds: 'http://www.onvif.org/ver10/device/wsdl',
  trt: 'http://www.onvif.org/ver10/media/wsdl',
  tt: 'http://www.onvif.org/ver10/schema',
  ter: 'http://www.onvif.org/ver10/error',
};
const PRE_AUTH = new Set(['GetSystemDateAndTime', 'GetServices', 'GetCapabilities', 'GetServiceCapabilities']);
const CREATED_WINDOW_MS = 5 * 60_000;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Text of the first element with this local name (any prefix), entities decoded. */
function element(xml: string, local: string): { attrs: string; text: string } | undefined {
  const m = new RegExp(`<(?:[\\w.-]+:)?${local}(\\s[^>]*)?>([^<]*)</(?:[\\w.-]+:)?${local}\\s*>`).exec(xml);
  if (!m) return undefined;
  const decode = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
  return { attrs: m[1] ?? '', text: decode(m[2]!.trim()) };
}

function envelope(body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="${NS.env}" xmlns:tds="${NS.tds}" xmlns:trt="${NS.trt}" xmlns:tt="${NS.tt}" xmlns:ter="${NS.ter}"><env:Body>${body}</env:Body></env:Envelope>`;
}

function fault(code: 'env:Sender' | 'env:Receiver', subcodes: string[], reason: string): string {
  const sub = subcodes.reduceRight((inner, v) => `<env:Subcode><env:Value>${v}</env:Value>${inner}</env:Subcode>`, '');
  return envelope(`<env:Fault><env:Code><env:Value>${code}</env:Value>${sub}</env:Code><env:Reason><env:Text xml:lang="en">${esc(reason)}</env:Text></env:Reason></env:Fault>`);
}

export class OnvifCameraSim {
  readonly requests: SimRequest[] = [];
  /** Snapshot GETs answered with the picture. */
  snapshotsServed = 0;
  readonly jpeg: Buffer;
  readonly #o: Required<Omit<OnvifSimOptions, 'device'>> & Pick<OnvifSimOptions, 'device'>;
  readonly #server: http.Server;
  readonly #nonces = new Set<string>();
  readonly #digestNonce = crypto.randomBytes(12).toString('hex');

  private constructor(o: OnvifSimOptions, jpeg: Buffer) {
    this.#o = { advertisedHost: '127.0.0.1', clockOffsetMs: 0, ...o };
    this.jpeg = jpeg;
    this.#server = http.createServer((req, res) => this.#handle(req, res));
  }

  static async start(o: OnvifSimOptions): Promise<OnvifCameraSim> {
    // The snapshot: one real JPEG frame made by ffmpeg, at the main profile's size.
    const main = [...o.profiles].sort((a, b) => b.width * b.height - a.width * a.height)[0];
    const size = main ? `${main.width}x${main.height}` : '640x360';
    const jpeg = execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=1`, '-frames:v', '1', '-f', 'image2', '-c:v', 'mjpeg', 'pipe:1'], { maxBuffer: 16 << 20 });
    const sim = new OnvifCameraSim(o, jpeg);
    await new Promise<void>((r) => sim.#server.listen(0, '127.0.0.1', r));
    return sim;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  operations(): string[] {
    return this.requests.map((r) => r.operation);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  #base(): string {
    return `http://${this.#o.advertisedHost}:${this.port}`;
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > 1 << 20) req.destroy();
      else chunks.push(d);
    });
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://sim');
      if (req.method === 'GET' && url.pathname === '/onvif/snapshot') return this.#snapshot(req, res);
      if (req.method !== 'POST' || !url.pathname.startsWith('/onvif/')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const { status, xml } = this.#soap(url.pathname, Buffer.concat(chunks).toString('utf8'));
      res.writeHead(status, { 'content-type': 'application/soap+xml; charset=utf-8' }).end(xml);
    });
  }

  /** SOAP 1.2: the operation is the Body's first element; its namespace says which service. */
  #soap(path: string, xml: string): { status: number; xml: string } {
    const body = /<(?:[\w.-]+:)?Body\b[^>]*>\s*<(?:([\w.-]+):)?(\w+)([^>]*)>?/.exec(xml);
    if (!body) return { status: 400, xml: fault('env:Sender', ['ter:WellFormed'], 'Well-formed Error') };
    const [, prefix, operation = '', attrs = ''] = body;
    const nsDecl = prefix ? new RegExp(`xmlns:${prefix}="([^"]+)"`).exec(xml) : /xmlns="([^"]+)"/.exec(attrs);
    const ns = nsDecl?.[1];
    const service = ns === NS.tds ? 'device' : ns === NS.trt ? 'media' : undefined;
    if (!service || (service === 'media') !== (path === '/onvif/media_service')) {
      this.requests.push({ operation, authorized: null });
      return { status: 500, xml: fault('env:Receiver', ['ter:ActionNotSupported'], 'Optional Action Not Implemented') };
    }
    let authorized: boolean | null = null;
    if (!PRE_AUTH.has(operation)) {
      authorized = this.#verifyUsernameToken(xml);
      this.requests.push({ operation, authorized });
      if (!authorized) return { status: 400, xml: fault('env:Sender', ['ter:NotAuthorized'], 'Sender not Authorized') };
    } else this.requests.push({ operation, authorized });
    return service === 'device' ? this.#device(operation) : this.#media(operation, xml);
  }

  /** WSS UsernameToken Profile 1.0, 3.1: PasswordDigest over the decoded nonce, Created and the password. */
  #verifyUsernameToken(xml: string): boolean {
    const security = /<(?:[\w.-]+:)?Security\b[\s\S]*?<\/(?:[\w.-]+:)?Security\s*>/.exec(xml)?.[0];
    if (!security) return false;
    const user = element(security, 'Username')?.text;
    const password = element(security, 'Password');
    const nonce = element(security, 'Nonce')?.text;
    const created = element(security, 'Created')?.text;
    if (user === undefined || !password || !nonce || !created) return false;
    if (!/#PasswordDigest"/.test(password.attrs)) return false;
    const at = Date.parse(created);
    if (!Number.isFinite(at) || Math.abs(at - (Date.now() + this.#o.clockOffsetMs)) > CREATED_WINDOW_MS) return false;
    if (this.#nonces.has(nonce)) return false;
    const nonceBytes = Buffer.from(nonce, 'base64');
    const expected = crypto.createHash('sha1').update(Buffer.concat([nonceBytes, Buffer.from(created, 'utf8'), Buffer.from(this.#o.password, 'utf8')])).digest();
    const given = Buffer.from(password.text, 'base64');
    const ok = user === this.#o.username && given.length === expected.length && crypto.timingSafeEqual(given, expected);
    if (ok) {
      this.#nonces.add(nonce);
      if (this.#nonces.size > 1000) this.#nonces.delete(this.#nonces.values().next().value!);
    }
    return ok;
  }

  #device(operation: string): { status: number; xml: string } {
    const base = this.#base();
    const ok = (body: string) => ({ status: 200, xml: envelope(body) });
    switch (operation) {
      case 'GetSystemDateAndTime': {
        const d = new Date(Date.now() + this.#o.clockOffsetMs);
        const dt = `<tt:Time><tt:Hour>${d.getUTCHours()}</tt:Hour><tt:Minute>${d.getUTCMinutes()}</tt:Minute><tt:Second>${d.getUTCSeconds()}</tt:Second></tt:Time><tt:Date><tt:Year>${d.getUTCFullYear()}</tt:Year><tt:Month>${d.getUTCMonth() + 1}</tt:Month><tt:Day>${d.getUTCDate()}</tt:Day></tt:Date>`;
        return ok(
          `<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>CST-8</tt:TZ></tt:TimeZone><tt:UTCDateTime>${dt}</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>`,
        );
      }
      case 'GetServices': {
        const svc = (ns: string, path: string, minor: number) =>
          `<tds:Service><tds:Namespace>${ns}</tds:Namespace><tds:XAddr>${esc(base + path)}</tds:XAddr><tds:Version><tt:Major>2</tt:Major><tt:Minor>${minor}</tt:Minor></tds:Version></tds:Service>`;
        return ok(`<tds:GetServicesResponse>${svc(NS.tds, '/onvif/device_service', 60)}${svc(NS.trt, '/onvif/media_service', 60)}</tds:GetServicesResponse>`);
      }
      case 'GetCapabilities':
        return ok(
          `<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Device><tt:XAddr>${esc(`${base}/onvif/device_service`)}</tt:XAddr></tt:Device><tt:Media><tt:XAddr>${esc(`${base}/onvif/media_service`)}</tt:XAddr><tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media></tds:Capabilities></tds:GetCapabilitiesResponse>`,
        );
      case 'GetDeviceInformation': {
        const d = this.#o.device ?? { manufacturer: 'HIKVISION', model: 'DS-2CD2T47G2-L', firmwareVersion: 'V5.7.3 build 220112', serialNumber: 'DS-2CD2T47G2-L20220101AACHE00000001', hardwareId: '88' };
        return ok(
          `<tds:GetDeviceInformationResponse><tds:Manufacturer>${esc(d.manufacturer)}</tds:Manufacturer><tds:Model>${esc(d.model)}</tds:Model><tds:FirmwareVersion>${esc(d.firmwareVersion)}</tds:FirmwareVersion><tds:SerialNumber>${esc(d.serialNumber)}</tds:SerialNumber><tds:HardwareId>${esc(d.hardwareId)}</tds:HardwareId></tds:GetDeviceInformationResponse>`,
        );
      }
      default:
        return { status: 500, xml: fault('env:Receiver', ['ter:ActionNotSupported'], 'Optional Action Not Implemented') };
    }
  }

  #media(operation: string, xml: string): { status: number; xml: string } {
    const ok = (body: string) => ({ status: 200, xml: envelope(body) });
    const profileOf = () => {
      const token = element(xml, 'ProfileToken')?.text;
      return this.#o.profiles.find((p) => p.token === token);
    };
    const noProfile = { status: 400, xml: fault('env:Sender', ['ter:InvalidArgVal', 'ter:NoProfile'], 'The requested profile token ProfileToken does not exist') };
    const mediaUri = (uri: string) =>
      `<trt:MediaUri><tt:Uri>${esc(uri)}</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri>`;
    switch (operation) {
      case 'GetProfiles':
        return ok(`<trt:GetProfilesResponse>${this.#o.profiles.map((p, i) => this.#profile(p, i)).join('')}</trt:GetProfilesResponse>`);
      case 'GetStreamUri': {
        const p = profileOf();
        if (!p) return noProfile;
        return ok(`<trt:GetStreamUriResponse>${mediaUri(p.streamUri)}</trt:GetStreamUriResponse>`);
      }
      case 'GetSnapshotUri': {
        const p = profileOf();
        if (!p) return noProfile;
        return ok(`<trt:GetSnapshotUriResponse>${mediaUri(`${this.#base()}/onvif/snapshot?token=${encodeURIComponent(p.token)}`)}</trt:GetSnapshotUriResponse>`);
      }
      default:
        return { status: 500, xml: fault('env:Receiver', ['ter:ActionNotSupported'], 'Optional Action Not Implemented') };
    }
  }

  #profile(p: SimProfile, i: number): string {
    const main = [...this.#o.profiles].sort((a, b) => b.width * b.height - a.width * a.height)[0]!;
    const h264 = p.encoding === 'H264' ? `<tt:H264><tt:GovLength>${p.fps * 2}</tt:GovLength><tt:H264Profile>${p.h264Profile ?? 'Main'}</tt:H264Profile></tt:H264>` : '';
    return (
      `<trt:Profiles token="${esc(p.token)}" fixed="true"><tt:Name>${esc(p.name)}</tt:Name>` +
      `<tt:VideoSourceConfiguration token="VideoSourceToken"><tt:Name>VideoSourceConfig</tt:Name><tt:UseCount>${this.#o.profiles.length}</tt:UseCount><tt:SourceToken>VideoSource_1</tt:SourceToken><tt:Bounds x="0" y="0" width="${main.width}" height="${main.height}"/></tt:VideoSourceConfiguration>` +
      `<tt:VideoEncoderConfiguration token="VideoEncoderToken_${i + 1}"><tt:Name>VideoEncoder_${i + 1}</tt:Name><tt:UseCount>1</tt:UseCount><tt:Encoding>${p.encoding}</tt:Encoding>` +
      `<tt:Resolution><tt:Width>${p.width}</tt:Width><tt:Height>${p.height}</tt:Height></tt:Resolution><tt:Quality>3</tt:Quality>` +
      `<tt:RateControl><tt:FrameRateLimit>${p.fps}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>${p.bitrateKbps}</tt:BitrateLimit></tt:RateControl>${h264}` +
      `<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>8860</tt:Port><tt:TTL>128</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast><tt:SessionTimeout>PT5S</tt:SessionTimeout></tt:VideoEncoderConfiguration>` +
      `</trt:Profiles>`
    );
  }

  /** RFC 2617 Digest (MD5, qop=auth) in front of the JPEG. */
  #snapshot(req: http.IncomingMessage, res: http.ServerResponse): void {
    const challenge = (): void =>
      void res.writeHead(401, { 'www-authenticate': `Digest realm="IP Camera", qop="auth", nonce="${this.#digestNonce}", algorithm=MD5`, 'content-type': 'text/plain' }).end('401 Unauthorized');
    const auth = req.headers.authorization;
    if (!auth || !/^Digest\s/i.test(auth)) return challenge();
    const p: Record<string, string> = {};
    for (const m of auth.slice(7).matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]*))/g)) p[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
    const md5 = (s: string) => crypto.createHash('md5').update(s).digest('hex');
    if (p.username !== this.#o.username || p.nonce !== this.#digestNonce || p.uri !== req.url) return challenge();
    const ha1 = md5(`${this.#o.username}:IP Camera:${this.#o.password}`);
    const ha2 = md5(`GET:${p.uri}`);
    const expected = p.qop ? md5(`${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:${p.qop}:${ha2}`) : md5(`${ha1}:${p.nonce}:${ha2}`);
    if (p.response !== expected) return challenge();
    this.snapshotsServed++;
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(this.jpeg.length) }).end(this.jpeg);
  }
}
