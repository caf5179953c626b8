-- A result the member was sent by DM instead of its channel (the channel refused it, took Embed
-- Links away, its slowmode ran past the deadline, or the image it answers was deleted): where
-- it went and why, so /jobs and the status message say so after a restart too.
ALTER TABLE jobs ADD COLUMN dm_channel_id INTEGER;
ALTER TABLE jobs ADD COLUMN dm_reason TEXT;
