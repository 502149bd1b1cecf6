import fs from 'node:fs/promises';
import path from 'node:path';

export interface SegmentRef {
  id: number;
  bucket: string;
  objectKey: string;
}

/**
 * Where ffmpeg reads a recorded segment from. Production: a presigned S3/MinIO URL (the recorder's
 * infra/storage); tests and single-machine runs: files under a local directory.
 */
export interface SegmentSource {
  inputFor(segment: SegmentRef): Promise<string>;
  /**
   * Whether the store holds the segment: false when it is known to be missing; throws when the store
   * cannot answer (unreachable, timing out), which is a reason to check later, not a verdict.
   */
  exists?(segment: SegmentRef): Promise<boolean>;
}

export class LocalFileSegmentSource implements SegmentSource {
  constructor(private readonly root: string) {}
  async inputFor(s: SegmentRef): Promise<string> {
    const p = path.resolve(this.root, s.bucket, s.objectKey);
    if (!p.startsWith(path.resolve(this.root) + path.sep)) throw new Error(`segment key escapes the root: ${s.objectKey}`);
    return p;
  }
  async exists(s: SegmentRef): Promise<boolean> {
    try {
      await fs.stat(await this.inputFor(s));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }
}

/** Anything that can presign a GET for an object (the minio client's presignedGetObject fits). */
export interface Presigner {
  presignedGetObject(bucket: string, key: string, expirySeconds?: number): Promise<string>;
}

export class PresignedUrlSegmentSource implements SegmentSource {
  constructor(private readonly presigner: Presigner, private readonly expirySeconds = 3600) {}
  inputFor(s: SegmentRef): Promise<string> {
    return this.presigner.presignedGetObject(s.bucket, s.objectKey, this.expirySeconds);
  }
}

/** The recorder's infra/storage/ObjectStorage (one bucket, presignGet) as a segment source. */
export interface BucketPresigner {
  readonly bucket: string;
  presignGet(key: string, expirySeconds?: number): Promise<string>;
  /** A URL for this host's own ffmpeg (the internal address, where S3_PUBLIC_URL is only for browsers). */
  presignInternal?(key: string, expirySeconds?: number): Promise<string>;
  /** The object's metadata, undefined when missing; throws when the store cannot be reached. */
  stat?(key: string): Promise<unknown>;
}

export class ObjectStorageSegmentSource implements SegmentSource {
  constructor(private readonly storage: BucketPresigner, private readonly expirySeconds = 3600) {}
  inputFor(s: SegmentRef): Promise<string> {
    if (s.bucket !== this.storage.bucket) {
      return Promise.reject(new Error(`segment ${s.id} is in bucket ${s.bucket}, storage serves ${this.storage.bucket}`));
    }
    return this.storage.presignInternal ? this.storage.presignInternal(s.objectKey, this.expirySeconds) : this.storage.presignGet(s.objectKey, this.expirySeconds);
  }
  async exists(s: SegmentRef): Promise<boolean> {
    if (!this.storage.stat || s.bucket !== this.storage.bucket) return true; // ffmpeg's read will tell
    return (await this.storage.stat(s.objectKey)) !== undefined;
  }
}
