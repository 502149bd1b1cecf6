-- Up Migration
-- Review images are made every thumbnailEverySeconds per camera and shared by the segments between
-- (issue 15 item 9). Retention keeps an image while a remaining segment still names it: that lookup
-- goes by thumb_key (a segment's strip is always its thumbnail's sibling).
CREATE INDEX recording_segments_thumb_key_idx ON recording_segments (thumb_key) WHERE thumb_key IS NOT NULL;
