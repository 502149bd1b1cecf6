import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AccessCase, AccessWorld } from './types.ts';
import { listWithout } from './types.ts';

// H5 (issue 16): the big-screen summary and video on demand (web/api/routes/big-screen.ts, films.ts).
// Films are county A's (owned by the county, watched by its village); the outsider is the same role
// and level in county B, for whom they do not exist (404), or who uploads into its own county only.

/** A film owned by county A (row only: the routes presign its key without reading the object). */
const filmOfA = async (w: AccessWorld): Promise<number> => {
  const { rows } = await w.pool.query<{ id: string }>(
    `INSERT INTO films (unit_id, title, object_key, bytes, duration_s, video_codec, audio_codec)
     VALUES ($1, $2, $3, 1000, 20, 'h264', 'aac') RETURNING id`,
    [w.A.units.county, `教育片${w.unique()}`, `films/test/${w.unique()}-${Date.now()}.mp4`],
  );
  return Number(rows[0]!.id);
};

let clip: Buffer | undefined;
/** A 1-second H.264/AAC MP4 made by ffmpeg (once). */
const mp4 = (): Buffer => {
  if (!clip) {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'access-film-')), 'clip.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10', '-f', 'lavfi', '-i', 'sine', '-t', '1',
      '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', file]);
    clip = fs.readFileSync(file);
  }
  return clip;
};

export const cases: AccessCase[] = [
  {
    method: 'GET', route: '/api/big-screen/summary',
    allowed: { role: 'leader', level: 'county' },
    build: (w) => ({ path: `/api/big-screen/summary?unitId=${w.A.units.county}` }),
    allowedStatus: [200],
    check: (r, w) => {
      const b = r.body as { unit: { id: number }; warnings: { camerasOffline: number }; today: { sessions: unknown[] } };
      assert.equal(b.unit.id, w.A.units.county);
      assert.ok(Array.isArray(b.today.sessions));
    },
  },
  {
    method: 'POST', route: '/api/vod/films',
    allowed: { role: 'operator', level: 'county' },
    build: () => ({ path: `/api/vod/films?title=${encodeURIComponent('访问测试影片')}`, raw: mp4(), contentType: 'video/mp4' }),
    // Uploading is not an object of county A: county B's operator may publish, but into county B only.
    outsider: async (r, w) => {
      if (r.status === 403 || r.status === 404) return;
      assert.equal(r.status, 201, r.text);
      const film = r.body as { id: number; unitId: number };
      assert.equal(film.unitId, w.B.units.county, 'an upload belongs to the uploader\'s own county');
      const { rows } = await w.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM films WHERE unit_id = $1', [w.A.units.county]);
      assert.equal(rows[0]!.n, 0, 'nothing was published for county A');
    },
    allowedStatus: [201],
    check: (r, w) => {
      const film = r.body as { unitId: number; videoCodec: string };
      assert.equal(film.unitId, w.A.units.county);
      assert.equal(film.videoCodec, 'h264');
    },
  },
  (() => {
    let id = 0;
    return {
      method: 'GET', route: '/api/vod/films',
      allowed: { role: 'secretary', level: 'village' },
      build: async (w: AccessWorld) => {
        id = await filmOfA(w);
        return { path: '/api/vod/films' };
      },
      outsider: listWithout(() => [id]),
      allowedStatus: [200],
      check: (r) => assert.ok((r.body as { items: { id: number }[] }).items.some((f) => f.id === id), 'the village sees its county\'s film'),
    } satisfies AccessCase;
  })(),
  {
    method: 'GET', route: '/api/vod/films/{id}',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: `/api/vod/films/${await filmOfA(w)}` }),
    allowedStatus: [200],
    check: (r) => assert.match((r.body as { url: string }).url, /X-Amz-Signature=/),
  },
  {
    method: 'POST', route: '/api/vod/films/{id}/views',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: `/api/vod/films/${await filmOfA(w)}/views` }),
    allowedStatus: [201],
    check: async (r, w) => {
      const { rows } = await w.pool.query<{ unit_id: string }>('SELECT unit_id FROM film_views WHERE id = $1', [(r.body as { id: number }).id]);
      assert.equal(Number(rows[0]!.unit_id), w.A.units.village, 'recorded for the viewing site');
    },
  },
  {
    method: 'POST', route: '/api/vod/films/{id}/views/{viewId}/progress',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => {
      const film = await filmOfA(w);
      const me = await w.actor('A', 'secretary', 'village');
      const v = await w.call('POST', `/api/vod/films/${film}/views`, { token: me.token });
      assert.equal(v.status, 201, v.text);
      return { path: `/api/vod/films/${film}/views/${(v.body as { id: number }).id}/progress`, body: { watchedS: 12 } };
    },
    allowedStatus: [200],
    check: (r) => assert.equal((r.body as { watchedS: number }).watchedS, 12),
  },
  {
    method: 'GET', route: '/api/vod/films/{id}/views',
    allowed: { role: 'operator', level: 'county' },
    build: async (w) => {
      const film = await filmOfA(w);
      await w.pool.query('INSERT INTO film_views (film_id, unit_id, watched_s) VALUES ($1, $2, 5)', [film, w.A.units.village]);
      return { path: `/api/vod/films/${film}/views` };
    },
    allowedStatus: [200],
    check: (r, w) => assert.deepEqual((r.body as { sites: { unitId: number }[] }).sites.map((s) => s.unitId), [w.A.units.village]),
  },
  {
    method: 'DELETE', route: '/api/vod/films/{id}',
    allowed: { role: 'operator', level: 'county' },
    build: async (w) => ({ path: `/api/vod/films/${await filmOfA(w)}` }),
    allowedStatus: [204],
    check: async (_r, w) => {
      const { rows } = await w.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM films WHERE unit_id = $1 AND retired_at IS NOT NULL', [w.A.units.county]);
      assert.ok(rows[0]!.n >= 1, 'the film is retired');
    },
  },
];
