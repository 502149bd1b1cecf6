import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The demo's one film, so a first-run chair has something to broadcast. */
export const DEMO_FILM = '党课教育片(演示).mp4';

/**
 * Makes a short H.264/AAC film with ffmpeg (a test pattern with a moving clock and a tone) in the films
 * folder when the folder has none, as the demo's stand-in for a real education film.
 */
export async function ensureDemoFilm(filmsDir: string, seconds = 60): Promise<string | undefined> {
  fs.mkdirSync(filmsDir, { recursive: true });
  if (fs.readdirSync(filmsDir).some((n) => !n.startsWith('.'))) return undefined;
  const file = path.join(filmsDir, DEMO_FILM);
  const partial = path.join(filmsDir, '.demo-film.partial.mp4');
  await run('ffmpeg', [
    '-v', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=640x360:rate=25:duration=${seconds}`,
    '-f', 'lavfi', '-i', `sine=frequency=440:beep_factor=4:sample_rate=48000:duration=${seconds}`,
    '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-g', '50',
    '-c:a', 'aac', '-b:a', '64k', '-movflags', '+faststart', '-shortest', partial,
  ]);
  fs.renameSync(partial, file);
  return file;
}
