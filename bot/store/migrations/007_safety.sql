-- Safety (#13): content levels per channel, mature results and AI pre-moderation in the
-- review queue, and what the guild itself pays for (pre-moderation checks).

-- The highest content level (NSFWLevel) the job's channel allowed when it was asked for:
-- decided at admission, so a restart or a later settings change cannot alter it. NULL for
-- jobs from before: nothing is checked for them.
ALTER TABLE jobs ADD COLUMN max_rating TEXT
    CHECK (max_rating IN ('pg', 'pg13', 'r', 'x', 'xxx'));

-- A guild's safety settings. max_rating NULL: everything each channel's age restriction
-- allows (PG-13 where Discord's age restriction is off, everything where it is on).
CREATE TABLE safety_settings (
    guild_id               INTEGER PRIMARY KEY,
    max_rating             TEXT CHECK (max_rating IN ('pg', 'pg13', 'r', 'x', 'xxx')),
    -- The age-restricted channel moderators may release results rated above a channel's level to.
    release_channel_id     INTEGER,
    premoderation          INTEGER NOT NULL DEFAULT 0,
    -- JSON list of xGuard labels to evaluate; [] for all of them.
    premoderation_labels   TEXT    NOT NULL DEFAULT '[]',
    -- When the check itself fails: hold the job for review, or let it through.
    premoderation_fallback TEXT    NOT NULL DEFAULT 'hold'
        CHECK (premoderation_fallback IN ('hold', 'allow')),
    updated_at             TEXT    NOT NULL
);

-- A channel's own content level (its threads follow it), still capped by its age restriction.
CREATE TABLE channel_ratings (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    max_rating TEXT    NOT NULL CHECK (max_rating IN ('pg', 'pg13', 'r', 'x', 'xxx')),
    PRIMARY KEY (guild_id, channel_id)
);

-- Costs the guild pays, not a member: counted against the guild's budget with the holds.
-- job_id has no foreign key: a request checked and then refused never becomes a job.
CREATE TABLE guild_charges (
    id         INTEGER PRIMARY KEY,
    guild_id   INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('premoderation')),
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    job_id     TEXT,
    member_id  INTEGER,
    created_at TEXT    NOT NULL
);
CREATE INDEX guild_charges_time ON guild_charges (guild_id, created_at);

-- Review items gain a kind ('mature': a result rated above its channel's level), a status
-- ('released'), where each came from (source) and what moderators need to see about it
-- (details, JSON). A job may now have several items over its life (held by pre-moderation,
-- approved, then its result rated above the channel's level), but only one open at a time.
--
-- SQLite cannot change a CHECK in place: the table is rebuilt. strikes and bans reference
-- review_items(id) and foreign keys are on (they cannot be switched off inside the
-- migration's transaction), so the checks are deferred to the COMMIT: the rows are set
-- aside, the old table dropped (its rows count as missing parents for now), and the new
-- table created under the final name and refilled with the same ids, which finds every
-- strike's and ban's parent again. Had any row been lost, the COMMIT would fail and the
-- whole migration roll back. (Renaming a new table into place would not do: the drop's
-- missing parents stay counted against a table that is gone.)
PRAGMA defer_foreign_keys = ON;

CREATE TABLE review_items_before_007 AS SELECT * FROM review_items;
DROP TABLE review_items;

CREATE TABLE review_items (
    id                 INTEGER PRIMARY KEY,
    guild_id           INTEGER NOT NULL,
    job_id             TEXT    NOT NULL REFERENCES jobs (id),
    kind               TEXT    NOT NULL CHECK (kind IN ('blocked', 'held', 'undelivered', 'mature')),
    reason             TEXT,
    status             TEXT    NOT NULL DEFAULT 'open' CHECK (status IN (
        'open', 'approved', 'rejected', 'refunded', 'dismissed', 'withdrawn', 'released')),
    handled_by         INTEGER,
    handled_at         TEXT,
    note               TEXT,
    message_channel_id INTEGER,
    message_id         INTEGER,
    appeal_note        TEXT,
    appealed_at        TEXT,
    created_at         TEXT    NOT NULL,
    refund_amount      INTEGER CHECK (refund_amount > 0),
    -- filter (the prompt filter), premoderation (AI), orchestrator (blocked upstream),
    -- mature (rated above the channel's level), delivery (could not be posted).
    source             TEXT    NOT NULL CHECK (source IN (
        'filter', 'premoderation', 'orchestrator', 'mature', 'delivery')),
    details            TEXT    NOT NULL DEFAULT '{}'
);

INSERT INTO review_items (
    id, guild_id, job_id, kind, reason, status, handled_by, handled_at, note,
    message_channel_id, message_id, appeal_note, appealed_at, created_at, refund_amount,
    source
)
SELECT
    id, guild_id, job_id, kind, reason, status, handled_by, handled_at, note,
    message_channel_id, message_id, appeal_note, appealed_at, created_at, refund_amount,
    CASE kind WHEN 'held' THEN 'filter' WHEN 'blocked' THEN 'orchestrator' ELSE 'delivery' END
FROM review_items_before_007;

DROP TABLE review_items_before_007;

CREATE INDEX review_open ON review_items (guild_id, status);
CREATE INDEX review_source ON review_items (guild_id, source, status);
CREATE INDEX review_job ON review_items (job_id, id);
CREATE UNIQUE INDEX review_one_open_per_job ON review_items (job_id) WHERE status = 'open';
