-- Up Migration
-- Core organisation model. Every other table hangs off units, so access control can always be
-- expressed as "the row's unit lies in the caller's subtree".

CREATE TABLE units (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  parent_id   bigint REFERENCES units(id) ON DELETE RESTRICT,
  level       text NOT NULL CHECK (level IN ('city', 'county', 'town', 'community', 'village')),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  code        text UNIQUE,                 -- administrative division code, if known
  -- Materialised path of ancestor ids including self, e.g. '1.7.93.' ; a subtree is a prefix match.
  path        text NOT NULL,
  depth       smallint NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CHECK ((parent_id IS NULL) = (level = 'city'))
);
CREATE INDEX units_path_idx ON units (path text_pattern_ops);
CREATE INDEX units_parent_idx ON units (parent_id);
CREATE INDEX units_level_idx ON units (level);

CREATE FUNCTION unit_level_rank(level text) RETURNS int IMMUTABLE LANGUAGE sql AS $$
  SELECT CASE level WHEN 'city' THEN 1 WHEN 'county' THEN 2 WHEN 'town' THEN 3
                    WHEN 'community' THEN 4 WHEN 'village' THEN 5 END
$$;

-- Path and depth are derived from the parent; a child must sit at a lower level than its parent
-- (a village may hang directly under a town where there is no community level).
CREATE FUNCTION units_set_path() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE parent units%ROWTYPE;
BEGIN
  IF NEW.parent_id IS NULL THEN
    NEW.path := NEW.id::text || '.';
    NEW.depth := 0;
  ELSE
    SELECT * INTO parent FROM units WHERE id = NEW.parent_id;
    IF NOT FOUND THEN RAISE EXCEPTION 'parent unit % does not exist', NEW.parent_id; END IF;
    IF unit_level_rank(NEW.level) <= unit_level_rank(parent.level) THEN
      RAISE EXCEPTION 'a % cannot be placed under a %', NEW.level, parent.level;
    END IF;
    NEW.path := parent.path || NEW.id::text || '.';
    NEW.depth := parent.depth + 1;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER units_set_path_trg BEFORE INSERT ON units FOR EACH ROW EXECUTE FUNCTION units_set_path();

-- Moving units is not supported in place: it would rewrite every descendant's path.
CREATE FUNCTION units_forbid_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.parent_id IS DISTINCT FROM OLD.parent_id OR NEW.path <> OLD.path OR NEW.level <> OLD.level THEN
    RAISE EXCEPTION 'units cannot be moved or change level';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER units_forbid_move_trg BEFORE UPDATE ON units FOR EACH ROW EXECUTE FUNCTION units_forbid_move();

-- Party branches (党支部) belong to a unit (usually a village or community).
CREATE TABLE branches (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unit_id     bigint NOT NULL REFERENCES units(id) ON DELETE CASCADE,
  name        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX branches_unit_idx ON branches (unit_id);

CREATE TABLE members (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  branch_id        bigint NOT NULL REFERENCES branches(id) ON DELETE CASCADE,
  name             text NOT NULL,
  is_secretary     boolean NOT NULL DEFAULT false,
  mobile           text CHECK (mobile ~ '^\+?[0-9]{5,20}$'),
  beidou_card      text CHECK (beidou_card ~ '^[0-9]{6,7}$'),   -- RDSS user card number
  preferred_channel text NOT NULL DEFAULT 'sms' CHECK (preferred_channel IN ('sms', 'beidou')),
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX members_branch_idx ON members (branch_id);
CREATE UNIQUE INDEX members_one_secretary ON members (branch_id) WHERE is_secretary;

-- Service stations (village, 服务站) and service centres (town/city, 服务中心).
CREATE TABLE service_points (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unit_id     bigint NOT NULL REFERENCES units(id) ON DELETE CASCADE,
  kind        text NOT NULL CHECK (kind IN ('station', 'centre')),
  name        text NOT NULL,
  services    text[] NOT NULL DEFAULT '{}',   -- e.g. civil_affairs, medical, legal, agriculture
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_points_unit_idx ON service_points (unit_id);

-- Cameras. rtsp_url carries no credentials; username/password never leave the server
-- (API responses select explicit columns, never these).
CREATE TABLE cameras (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unit_id          bigint NOT NULL REFERENCES units(id) ON DELETE CASCADE,
  service_point_id bigint REFERENCES service_points(id) ON DELETE SET NULL,
  name             text NOT NULL,
  rtsp_url         text NOT NULL CHECK (rtsp_url ~ '^rtsps?://'),
  username         text,
  password         text,
  location         text,
  enabled          boolean NOT NULL DEFAULT true,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cameras_unit_idx ON cameras (unit_id);

-- SFU nodes: the unit hosting a control centre and its parent node in the cascade.
CREATE TABLE sfu_nodes (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unit_id         bigint NOT NULL UNIQUE REFERENCES units(id) ON DELETE CASCADE,
  parent_node_id  bigint REFERENCES sfu_nodes(id) ON DELETE SET NULL,
  name            text NOT NULL,
  signalling_url  text NOT NULL,        -- ws(s):// URL browsers and child nodes connect to
  created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  username       text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.-]{3,64}$'),
  display_name   text NOT NULL,
  unit_id        bigint NOT NULL REFERENCES units(id) ON DELETE RESTRICT,
  role           text NOT NULL CHECK (role IN ('leader', 'clerk', 'supervisor', 'secretary', 'operator', 'admin')),
  password_hash  text NOT NULL,          -- scrypt$N$r$p$salt$hash
  disabled       boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_unit_idx ON users (unit_id);

-- Append-only audit log: UPDATE and DELETE are refused.
CREATE TABLE audit_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  user_id     bigint REFERENCES users(id) ON DELETE SET NULL,
  username    text,
  action      text NOT NULL,            -- e.g. login.ok, login.fail, camera.view, recording.view
  object_type text,
  object_id   text,
  unit_id     bigint,
  ip          text,
  detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_action_idx ON audit_log (action, at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Down Migration
DROP TABLE audit_log, users, sfu_nodes, cameras, service_points, members, branches, units CASCADE;
DROP FUNCTION IF EXISTS audit_log_append_only, units_forbid_move, units_set_path, unit_level_rank;
