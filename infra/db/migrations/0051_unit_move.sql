-- Up Migration
-- Units can be moved under another parent (issue 17), through units_move() only: it rewrites the
-- materialised path and depth of the whole subtree in one statement. A direct UPDATE of parent_id
-- or path is still refused, and a unit never changes level.
CREATE OR REPLACE FUNCTION units_forbid_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.level <> OLD.level OR ((NEW.parent_id IS DISTINCT FROM OLD.parent_id OR NEW.path <> OLD.path)
     AND current_setting('grassroots.moving_units', true) IS DISTINCT FROM 'on') THEN
    RAISE EXCEPTION 'units cannot be moved or change level';
  END IF;
  RETURN NEW;
END $$;

CREATE FUNCTION units_move(p_unit bigint, p_parent bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  me units%ROWTYPE;
  parent units%ROWTYPE;
  new_path text;
BEGIN
  SELECT * INTO me FROM units WHERE id = p_unit FOR UPDATE;
  IF NOT FOUND THEN RAISE EXCEPTION 'unit % does not exist', p_unit; END IF;
  SELECT * INTO parent FROM units WHERE id = p_parent FOR SHARE;
  IF NOT FOUND THEN RAISE EXCEPTION 'parent unit % does not exist', p_parent; END IF;
  IF parent.path LIKE me.path || '%' THEN RAISE EXCEPTION 'a unit cannot be moved under itself'; END IF;
  IF unit_level_rank(me.level) <= unit_level_rank(parent.level) THEN
    RAISE EXCEPTION 'a % cannot be placed under a %', me.level, parent.level;
  END IF;
  new_path := parent.path || me.id::text || '.';
  PERFORM set_config('grassroots.moving_units', 'on', true);
  UPDATE units
     SET path = new_path || substr(path, length(me.path) + 1),
         depth = depth + (parent.depth + 1 - me.depth),
         parent_id = CASE WHEN id = me.id THEN parent.id ELSE parent_id END
   WHERE path LIKE me.path || '%';
  PERFORM set_config('grassroots.moving_units', 'off', true);
END $$;

-- Down Migration
DROP FUNCTION units_move(bigint, bigint);
CREATE OR REPLACE FUNCTION units_forbid_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.parent_id IS DISTINCT FROM OLD.parent_id OR NEW.path <> OLD.path OR NEW.level <> OLD.level THEN
    RAISE EXCEPTION 'units cannot be moved or change level';
  END IF;
  RETURN NEW;
END $$;
