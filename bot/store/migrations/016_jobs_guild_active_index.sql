-- Admission counts a guild's jobs in flight (the concurrency limits) inside its write
-- transaction; with only jobs_guild (guild_id, created_at) that read every job the guild ever
-- had. A partial index over the active ones keeps it to the few under way.
CREATE INDEX jobs_guild_active ON jobs (guild_id, status)
    WHERE status IN ('queued', 'submitted', 'running', 'delivering');
