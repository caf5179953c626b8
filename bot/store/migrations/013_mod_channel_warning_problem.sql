-- The problem with the moderation channel the guild's owner was last told of (NULL: none, or
-- fixed since), instead of one "warned" flag: a different problem (access lost, the channel
-- deleted) is told as well, and one that comes back after a fix is told again.
ALTER TABLE guild_settings ADD COLUMN mod_channel_warning TEXT;
UPDATE guild_settings SET mod_channel_warning = 'told' WHERE mod_channel_warned;
ALTER TABLE guild_settings DROP COLUMN mod_channel_warned;
