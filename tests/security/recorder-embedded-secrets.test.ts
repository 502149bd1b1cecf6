import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../infra/db/embedded-postgres.ts';

// Issue 12, item 11: the embedded PostgreSQL's superuser password is no longer the fixed 'embedded'
// of the source code but generated per installation into the data folder (0600); an installation
// made with the fixed one is moved to a generated one on its next start. A real PostgreSQL.

const signIn = async (port: number, password: string): Promise<boolean> => {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres', connectionTimeoutMillis: 5_000 });
  try {
    await c.connect();
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
};

test('the embedded PostgreSQL password is generated per installation, kept 0600, and a fixed legacy one is replaced', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grassroots-pgpw-'));
  fs.chmodSync(dir, 0o755); // PostgreSQL runs as its own OS user and must reach the folder
  const dataDir = path.join(dir, 'postgres');
  const pwFile = path.join(dataDir, 'password');
  try {
    const first = await startEmbeddedPostgres(dataDir, 'grassroots');
    let port: number;
    let generated: string;
    try {
      port = Number(new URL(first.url).port);
      generated = fs.readFileSync(pwFile, 'utf8').trim();
      assert.ok(generated.length >= 32, 'a long random password');
      assert.equal(fs.statSync(pwFile).mode & 0o777, 0o600, 'readable by the owner only');
      assert.equal(decodeURIComponent(new URL(first.url).password), generated);
      assert.equal(await signIn(port, 'embedded'), false, 'the old fixed password does not open it');
      assert.equal(await signIn(port, generated), true);
      // Simulate an installation made before: the server knows only the fixed password, no file.
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: generated, database: 'postgres' });
      await c.connect();
      await c.query(`ALTER ROLE postgres PASSWORD 'embedded'`);
      await c.end();
      fs.rmSync(pwFile);
    } finally {
      await first.stop();
    }
    const second = await startEmbeddedPostgres(dataDir, 'grassroots', port);
    try {
      const rotated = fs.readFileSync(pwFile, 'utf8').trim();
      assert.notEqual(rotated, 'embedded');
      assert.notEqual(rotated, generated);
      assert.equal(await signIn(port, 'embedded'), false, 'the legacy password was replaced');
      assert.equal(await signIn(port, rotated), true);
      const db = new pg.Client({ connectionString: second.url });
      await db.connect();
      assert.equal((await db.query('SELECT current_database() AS d')).rows[0].d, 'grassroots');
      await db.end();
      generated = rotated;
    } finally {
      await second.stop();
    }
    // Rotation by the operator: password -> password.old, start.
    fs.renameSync(pwFile, `${pwFile}.old`);
    const third = await startEmbeddedPostgres(dataDir, 'grassroots', port);
    try {
      const fresh = fs.readFileSync(pwFile, 'utf8').trim();
      assert.notEqual(fresh, generated, 'a new password');
      assert.equal(fs.existsSync(`${pwFile}.old`), false);
      assert.equal(await signIn(port, generated), false, 'the rotated-out password no longer works');
      assert.equal(await signIn(port, fresh), true);
    } finally {
      await third.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the embedded S3 server answers only requests signed with the installation key (generated, 0600, kept across restarts)', async () => {
  const { startEmbeddedS3 } = await import('../../infra/storage/embedded-s3.ts');
  const { ObjectStorage } = await import('../../infra/storage/ObjectStorage.ts');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grassroots-s3key-'));
  try {
    const s3 = await startEmbeddedS3(dir);
    const port = s3.port;
    const credFile = path.join(dir, '.credentials.json');
    try {
      assert.equal(fs.statSync(credFile).mode & 0o777, 0o600);
      assert.notEqual(s3.accessKey, 'S3RVER');
      assert.ok(s3.secretKey.length >= 32);
      const good = new ObjectStorage({ endPoint: s3.endpoint, port, useSSL: false, accessKey: s3.accessKey, secretKey: s3.secretKey, bucket: 'recordings' });
      await good.ensureBucket();
      await good.putBuffer('unit/1/evidence.mp4', Buffer.from('evidence'), 'video/mp4');
      const base = `http://127.0.0.1:${port}/recordings/unit/1/evidence.mp4`;
      // Anonymous reads, writes and deletes, the s3rver default key, and a wrong secret: all refused.
      assert.equal((await fetch(base)).status, 403);
      assert.equal((await fetch(`http://127.0.0.1:${port}/recordings/unit/1/forged.mp4`, { method: 'PUT', body: 'x' })).status, 403);
      assert.equal((await fetch(base, { method: 'DELETE' })).status, 403);
      assert.equal((await fetch(`http://127.0.0.1:${port}/recordings?list-type=2`)).status, 403);
      for (const [accessKey, secretKey] of [['S3RVER', 'S3RVER'], [s3.accessKey, 'x'.repeat(40)]] as const) {
        const bad = new ObjectStorage({ endPoint: s3.endpoint, port, useSSL: false, accessKey, secretKey, bucket: 'recordings' });
        await assert.rejects(bad.putBuffer('unit/1/forged.mp4', Buffer.from('x'), 'video/mp4'));
        await bad.remove(['unit/1/evidence.mp4']).catch(() => undefined);
        assert.ok(await good.stat('unit/1/evidence.mp4'), `a delete signed with ${accessKey === 'S3RVER' ? 'the default key' : 'a wrong secret'} removed nothing`);
      }
      // A presigned URL works as issued, not once tampered with.
      const url = await good.presignGet('unit/1/evidence.mp4', 60);
      const ok = await fetch(url);
      assert.equal(ok.status, 200);
      assert.equal(await ok.text(), 'evidence');
      assert.equal((await fetch(url.replace('evidence.mp4', 'evidencf.mp4'))).status, 403);
      assert.equal((await fetch(url.replace(/X-Amz-Expires=\d+/, 'X-Amz-Expires=999999'))).status, 403);
      assert.ok(await good.stat('unit/1/evidence.mp4'), 'nothing an unsigned or forged request did removed the object');
    } finally {
      await s3.close();
    }
    const again = await startEmbeddedS3(dir, port);
    try {
      assert.equal(again.accessKey, s3.accessKey, 'the installation keeps its key');
      const good = new ObjectStorage({ endPoint: again.endpoint, port, useSSL: false, accessKey: again.accessKey, secretKey: again.secretKey, bucket: 'recordings' });
      assert.ok(await good.stat('unit/1/evidence.mp4'));
    } finally {
      await again.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
