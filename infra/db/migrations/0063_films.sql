-- Up Migration
-- Video on demand (seed 001): control centres upload education films into the media store (S3);
-- the sites below them watch on demand at the kiosk, and every viewing is recorded per site.
CREATE TABLE films (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unit_id      bigint NOT NULL REFERENCES units(id) ON DELETE CASCADE,  -- owner: the control centre's unit
  title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  description  text CHECK (length(description) <= 2000),
  object_key   text NOT NULL UNIQUE,
  bytes        bigint NOT NULL CHECK (bytes > 0),
  duration_s   double precision NOT NULL CHECK (duration_s > 0),
  video_codec  text NOT NULL,
  audio_codec  text,
  width        integer,
  height       integer,
  created_by   bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  retired_at   timestamptz
);
CREATE INDEX films_unit_idx ON films (unit_id) WHERE retired_at IS NULL;

CREATE TABLE film_views (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  film_id     bigint NOT NULL REFERENCES films(id) ON DELETE CASCADE,
  unit_id     bigint NOT NULL REFERENCES units(id) ON DELETE CASCADE,  -- the viewing site
  user_id     bigint REFERENCES users(id) ON DELETE SET NULL,
  started_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  watched_s   double precision NOT NULL DEFAULT 0 CHECK (watched_s >= 0),
  completed   boolean NOT NULL DEFAULT false
);
CREATE INDEX film_views_film_idx ON film_views (film_id, unit_id);

-- Down Migration
DROP TABLE film_views, films;
