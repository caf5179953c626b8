-- The part of the last refills' top-ups that only happened because allowance was held by jobs
-- from an earlier period: when such a job is released, that much of its allowance expires
-- (no more), so a member whose job waited across a refill ends where they would have without it.
ALTER TABLE accounts ADD COLUMN refill_excess INTEGER NOT NULL DEFAULT 0;
