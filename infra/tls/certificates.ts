import { execFile } from 'node:child_process';
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** What an HTTPS listener needs, and what a browser or a child node is told to trust. */
export interface TlsMaterial {
  key: string;
  cert: string;
  /** The CA certificate published at /tls/ca.pem (the local CA, or TLS_CA_FILE); absent if the operator gave none. */
  caPem?: string;
  /** SHA-256 fingerprint (AB:CD:…) of the CA, or of the leaf without a CA: what a child node pins. */
  fingerprint256: string;
  /** base64 SHA-256 of the leaf's and the CA's SubjectPublicKeyInfo (Chromium's --ignore-certificate-errors-spki-list). */
  spkiSha256: string[];
  /** `local`: made here by the local CA; `operator`: files the operator gave. */
  source: 'local' | 'operator';
}

export const spkiSha256 = (pem: string): string =>
  createHash('sha256').update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');

// A renewed leaf keeps the CA, so kiosks that trust the CA keep working; renew a month ahead.
const LEAF_DAYS = 397;
const RENEW_BEFORE_MS = 30 * 86400_000;

async function openssl(args: string[]): Promise<void> {
  await run('openssl', args, { timeout: 30_000 });
}

/** The local CA in `dir` (ca.key mode 0600, ca.crt), created on first use. */
async function ensureCa(dir: string): Promise<{ keyFile: string; certFile: string }> {
  const keyFile = path.join(dir, 'ca.key');
  const certFile = path.join(dir, 'ca.crt');
  if (fs.existsSync(keyFile) && fs.existsSync(certFile)) return { keyFile, certFile };
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmpKey = `${keyFile}.tmp`;
  await openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', tmpKey, '-out', `${certFile}.tmp`,
    '-days', '3650', '-subj', `/O=grassroots-av/CN=grassroots-av local CA ${new Date().toISOString().slice(0, 10)}`,
    '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  fs.chmodSync(tmpKey, 0o600);
  fs.renameSync(tmpKey, keyFile);
  fs.renameSync(`${certFile}.tmp`, certFile);
  return { keyFile, certFile };
}

function leafIsCurrent(certFile: string, hostsFile: string, hosts: string[]): boolean {
  if (!fs.existsSync(certFile) || !fs.existsSync(hostsFile)) return false;
  if (fs.readFileSync(hostsFile, 'utf8') !== JSON.stringify(hosts)) return false;
  return Date.parse(new X509Certificate(fs.readFileSync(certFile)).validTo) - Date.now() > RENEW_BEFORE_MS;
}

/**
 * The local CA (kept in `dir`, e.g. DATA_DIR/tls) and a leaf certificate it signs for `hosts` (IP
 * addresses and names); the leaf is re-issued when the hosts change or it nears expiry.
 */
export async function localCertificates(dir: string, hostsIn: readonly string[]): Promise<TlsMaterial> {
  const hosts = [...new Set(hostsIn.map((h) => h.trim().toLowerCase()).filter((h) => h !== '' && h !== '0.0.0.0' && h !== '::'))].sort();
  if (hosts.length === 0) throw new Error('no host name or address for the certificate (set HTTP_HOST or TLS_HOSTNAMES)');
  for (const h of hosts) if (!net.isIP(h) && !/^(\*\.)?[a-z0-9]([a-z0-9-]{0,62}\.)*[a-z0-9-]{1,63}$/.test(h)) throw new Error(`"${h}" is not a host name or IP address`);
  const ca = await ensureCa(dir);
  const keyFile = path.join(dir, 'server.key');
  const certFile = path.join(dir, 'server.crt');
  const hostsFile = path.join(dir, 'server.hosts.json');
  if (!leafIsCurrent(certFile, hostsFile, hosts)) {
    const san = hosts.map((h) => (net.isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
    const ext = path.join(dir, 'server.ext');
    fs.writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`);
    const csr = path.join(dir, 'server.csr');
    await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${keyFile}.tmp`, '-out', csr, '-subj', `/O=grassroots-av/CN=${hosts[0]}`]);
    await openssl(['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-set_serial', `0x${Date.now().toString(16)}`, '-days', String(LEAF_DAYS), '-sha256', '-extfile', ext, '-out', `${certFile}.tmp`]);
    fs.chmodSync(`${keyFile}.tmp`, 0o600);
    fs.renameSync(`${keyFile}.tmp`, keyFile);
    fs.renameSync(`${certFile}.tmp`, certFile);
    fs.writeFileSync(hostsFile, JSON.stringify(hosts));
    fs.rmSync(csr, { force: true });
  }
  const caPem = fs.readFileSync(ca.certFile, 'utf8');
  const cert = fs.readFileSync(certFile, 'utf8');
  return {
    key: fs.readFileSync(keyFile, 'utf8'),
    // The chain: leaf then CA, so a client that pins or trusts the CA sees it.
    cert: cert.trimEnd() + '\n' + caPem,
    caPem,
    fingerprint256: new X509Certificate(caPem).fingerprint256,
    spkiSha256: [spkiSha256(cert), spkiSha256(caPem)],
    source: 'local',
  };
}

/** Certificate files the operator gives (the organisation's own CA or a public one). */
export function operatorCertificates(files: { certFile: string; keyFile: string; caFile?: string }): TlsMaterial {
  const cert = fs.readFileSync(files.certFile, 'utf8');
  const key = fs.readFileSync(files.keyFile, 'utf8');
  const leaf = new X509Certificate(cert);
  if (!leaf.checkPrivateKey(createPrivateKey(key))) throw new Error(`TLS_KEY_FILE does not belong to the certificate in TLS_CERT_FILE`);
  const caPem = files.caFile ? fs.readFileSync(files.caFile, 'utf8') : undefined;
  return {
    key,
    cert,
    ...(caPem ? { caPem } : {}),
    fingerprint256: new X509Certificate(caPem ?? cert).fingerprint256,
    spkiSha256: [spkiSha256(cert), ...(caPem ? [spkiSha256(caPem)] : [])],
    source: 'operator',
  };
}

