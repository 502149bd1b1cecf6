import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../infra/logger.ts';
import { LiveCameraIngest } from '../recorder/LiveCameraIngest.ts';
import { Ingest } from '../sfu/Ingest.ts';
import type { SfuNode } from '../sfu/SfuNode.ts';

export interface FilmBroadcastsOptions {
  sfu: SfuNode;
  /** Where films are: MP4 (or any ffmpeg-readable) files an operator put there. */
  filmsDir: string;
  log: Logger;
  /** Films playing at once on this node (one per meeting). */
  maxPlaying?: number;
}

export interface FilmInfo {
  name: string;
  bytes: number;
}

export interface PlayingFilm {
  film: string;
  producerId: string;
}

/** A film's file name: no paths, no hidden files. */
export const filmNamePattern = /^[^/\\\0]{1,200}\.(mp4|mkv|mov|webm|ts)$/i;

/**
 * The chair's "broadcast a film to every site": the film is played in real time into the meeting's
 * room on this node (recorder/LiveCameraIngest), becomes the conference's broadcast (every site shows
 * it, every microphone but the chairs' is held), and crosses each cascade link once like any stream.
 * It stops when the chair stops it, when it ends, or when the meeting ends.
 */
export class FilmBroadcasts {
  readonly #o: Required<FilmBroadcastsOptions>;
  readonly #playing = new Map<string, { ingest: LiveCameraIngest; film: string; producerId: string }>();

  constructor(options: FilmBroadcastsOptions) {
    this.#o = { maxPlaying: 16, ...options };
  }

  /** The films on offer, by name. */
  list(): FilmInfo[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.#o.filmsDir);
    } catch {
      return [];
    }
    return names
      .filter((n) => filmNamePattern.test(n) && !n.startsWith('.'))
      .map((name) => ({ name, bytes: fs.statSync(path.join(this.#o.filmsDir, name)).size }))
      .sort((a, b) => a.name.localeCompare(b.name, 'zh'));
  }

  playing(roomId: string): PlayingFilm | undefined {
    const p = this.#playing.get(roomId);
    return p && !p.ingest.closed ? { film: p.film, producerId: p.producerId } : undefined;
  }

  /** Plays a film into a meeting room as its broadcast (replacing one already playing there). */
  async play(roomId: string, film: string, unitId: number): Promise<PlayingFilm> {
    if (!filmNamePattern.test(film) || !this.list().some((f) => f.name === film)) throw new FilmError('not_found', `no such film: ${film}`);
    this.stop(roomId);
    if (this.#playing.size >= this.#o.maxPlaying) throw new FilmError('busy', `at most ${this.#o.maxPlaying} films at once`);
    const room = await this.#o.sfu.openRoom(roomId);
    if (room.control.ended) throw new FilmError('ended', 'the meeting has ended');
    const ingest = await LiveCameraIngest.create({
      router: room.router,
      pullUrl: path.join(this.#o.filmsDir, film),
      label: `film ${film}`,
      film: { loop: false },
      log: this.#o.log.child({ room: roomId, film }),
    });
    const who = { displayName: `教育片 · ${film.replace(/\.[^.]+$/, '')}`.slice(0, 64), unitId, peerId: `film-${roomId}` };
    Ingest.adopt(room, ingest.videoProducer, { ...who, source: 'film' });
    if (ingest.audioProducer) Ingest.adopt(room, ingest.audioProducer, { ...who, source: 'film' });
    const entry = { ingest, film, producerId: ingest.videoProducer.id };
    this.#playing.set(roomId, entry);
    const done = (): void => {
      ingest.close();
      if (this.#playing.get(roomId) !== entry) return;
      this.#playing.delete(roomId);
      // Back to the meeting: the broadcast is lifted unless the chair has moved on to something else.
      if (!room.closed && !room.control.ended && room.control.state.broadcast === entry.producerId) room.control.command({ action: 'broadcast', producerId: null });
    };
    ingest.once('closed', done);
    room.once('close', done);
    room.once('ended', done);
    room.control.command({ action: 'broadcast', producerId: entry.producerId });
    this.#o.log.info({ room: roomId, film }, 'film broadcast started');
    return { film, producerId: entry.producerId };
  }

  stop(roomId: string): boolean {
    const p = this.#playing.get(roomId);
    if (!p) return false;
    p.ingest.close();
    return true;
  }

  close(): void {
    for (const p of this.#playing.values()) p.ingest.close();
    this.#playing.clear();
  }
}

export class FilmError extends Error {
  constructor(
    readonly code: 'not_found' | 'busy' | 'ended',
    message: string,
  ) {
    super(message);
  }
}
