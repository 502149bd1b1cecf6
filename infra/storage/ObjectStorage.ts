import fs from 'node:fs';
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

  presignGet(key: string, expirySeconds = 600): Promise<string> {
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
