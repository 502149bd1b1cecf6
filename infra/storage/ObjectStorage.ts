import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import * as Minio from 'minio';

export interface ObjectStorageOptions {
  endPoint: string;
  port?: number;
  useSSL?: boolean;
  accessKey: string;
  secretKey: string;
  bucket: string;
  region?: string;
  /**
   * Where browsers reach the store (scheme://host[:port], e.g. https://media.county.example): presigned
   * URLs are signed for this address instead of the internal endpoint. A proxy in front must pass the
   * Host header through unchanged, since SigV4 signs it.
   */
  publicUrl?: string;
}

/** The endpoint parts of a public S3 address; refuses paths, queries and credentials (SigV4 signs the path). */
export function parsePublicUrl(url: string): { endPoint: string; port: number; useSSL: boolean } {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('S3 public URL must be http or https');
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash || u.username || u.password) {
    throw new Error('S3 public URL must be scheme://host[:port] only (no path, query or credentials)');
  }
  const useSSL = u.protocol === 'https:';
  return { endPoint: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : useSSL ? 443 : 80, useSSL };
}

export interface ObjectInfo {
  key: string;
  size: number;
  etag: string;
  lastModified: Date;
}

/**
 * The media store: one bucket on MinIO (or any S3-compatible server) reached with the minio client.
 * Path-style addressing so a plain host:port endpoint works without DNS bucket names.
 */
export class ObjectStorage {
  readonly bucket: string;
  readonly #client: Minio.Client;
  readonly #region: string;
  /** Signs browser-facing URLs; the internal client when no public address is set. */
  readonly #presigner: Minio.Client;

  constructor(opts: ObjectStorageOptions) {
    this.bucket = opts.bucket;
    this.#region = opts.region ?? 'us-east-1';
    this.#client = new Minio.Client({
      endPoint: opts.endPoint,
      port: opts.port,
      useSSL: opts.useSSL ?? false,
      accessKey: opts.accessKey,
      secretKey: opts.secretKey,
      region: this.#region,
      pathStyle: true,
    });
    // With the region fixed, presigning is a local computation: the public address need not be
    // reachable from this host.
    this.#presigner = opts.publicUrl
      ? new Minio.Client({ ...parsePublicUrl(opts.publicUrl), accessKey: opts.accessKey, secretKey: opts.secretKey, region: this.#region, pathStyle: true })
      : this.#client;
  }

  async ensureBucket(): Promise<void> {
    if (!(await this.#client.bucketExists(this.bucket))) {
      try {
        await this.#client.makeBucket(this.bucket, this.#region);
      } catch (err) {
        // Another process may have created it in between.
        if (!(await this.#client.bucketExists(this.bucket))) throw err;
      }
    }
  }

  async putFile(key: string, file: string, contentType: string, meta: Record<string, string> = {}): Promise<void> {
    const { size } = await fs.promises.stat(file);
    await this.#client.putObject(this.bucket, key, fs.createReadStream(file), size, { 'Content-Type': contentType, ...meta });
  }

  /**
   * Streams a file into the store through a presigned PUT (UNSIGNED-PAYLOAD): putFile reads the whole
   * file into memory and hashes it (SHA-256 and MD5) on the event loop before sending; the recorder's
   * per-segment uploads skip both. Answers other than 200 reject with S3's status and error code.
   */
  async putFileStreamed(key: string, file: string, contentType: string, timeoutMs = 60_000): Promise<void> {
    const { size } = await fs.promises.stat(file);
    const url = new URL(await this.#client.presignedPutObject(this.bucket, key, 900));
    await new Promise<void>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? https : http).request(url, { method: 'PUT', headers: { 'Content-Length': size, 'Content-Type': contentType } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body = (body + d.toString()).slice(0, 2_000)));
        res.on('error', reject);
        res.on('end', () => {
          if (res.statusCode === 200) resolve();
          else reject(Object.assign(new Error(`S3 PUT ${key}: HTTP ${res.statusCode} ${/<Code>([^<]*)</.exec(body)?.[1] ?? ''}`.trim()), { code: /<Code>([^<]*)</.exec(body)?.[1] }));
        });
      });
      req.on('error', reject);
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`S3 PUT ${key} timed out`)));
      const src = fs.createReadStream(file);
      src.on('error', (err) => req.destroy(err));
      src.pipe(req);
    });
  }

  async putBuffer(key: string, body: Buffer, contentType: string): Promise<void> {
    await this.#client.putObject(this.bucket, key, body, body.length, { 'Content-Type': contentType });
  }

  /** The object's size and etag, or undefined when it does not exist. */
  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const s = await this.#client.statObject(this.bucket, key);
      return { key, size: s.size, etag: s.etag, lastModified: s.lastModified };
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'NotFound' || code === 'NoSuchKey') return undefined;
      throw err;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    const stream = this.#client.listObjectsV2(this.bucket, prefix, true);
    for await (const item of stream as AsyncIterable<Minio.BucketItem>) {
      if (item.name) out.push({ key: item.name, size: item.size, etag: item.etag ?? '', lastModified: item.lastModified ?? new Date(0) });
    }
    return out;
  }

  /** A URL for a browser (on the public address when one is set). */
  presignGet(key: string, expirySeconds = 600, respHeaders?: Record<string, string>): Promise<string> {
    return this.#presigner.presignedGetObject(this.bucket, key, expirySeconds, respHeaders ?? {});
  }

  /** A URL for this host's own tools (ffmpeg reading a segment): always the internal endpoint. */
  presignInternal(key: string, expirySeconds = 600): Promise<string> {
    return this.#client.presignedGetObject(this.bucket, key, expirySeconds);
  }

  getStream(key: string): Promise<Readable> {
    return this.#client.getObject(this.bucket, key);
  }

  async getBuffer(key: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of await this.getStream(key)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  async remove(keys: string[]): Promise<void> {
    if (keys.length) await this.#client.removeObjects(this.bucket, keys);
  }
}
