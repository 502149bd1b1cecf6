-- Up Migration
-- Support for subtree-scoped access, the org import and the audit trail.

-- An RTSP URL must never carry credentials: they live only in cameras.username/password, which
-- no API response selects. Refusing userinfo here keeps them out of the one column that is shown.
ALTER TABLE cameras ADD CONSTRAINT cameras_rtsp_url_no_userinfo CHECK (rtsp_url !~ '^rtsps?://[^/?#]*@');

-- "All villages under town X" filters by level inside a subtree.
CREATE INDEX units_level_path_idx ON units (level, path text_pattern_ops);
CREATE INDEX cameras_service_point_idx ON cameras (service_point_id);
CREATE INDEX sfu_nodes_parent_idx ON sfu_nodes (parent_node_id);

-- Audit queries: by user, by object (who viewed camera 12), by unit.
CREATE INDEX audit_log_user_idx ON audit_log (user_id, at);
CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id, at);
CREATE INDEX audit_log_unit_idx ON audit_log (unit_id, at);

-- Down Migration
DROP INDEX IF EXISTS audit_log_unit_idx, audit_log_object_idx, audit_log_user_idx,
  sfu_nodes_parent_idx, cameras_service_point_idx, units_level_path_idx;
ALTER TABLE cameras DROP CONSTRAINT IF EXISTS cameras_rtsp_url_no_userinfo;
