-- AI pre-moderation checks by their externalId, written before each is submitted. Open
-- (settled_at NULL) while it runs or while what it was charged is not known; settled in the
-- transaction that counts its cost in guild_charges. A check the bot was stopped in the middle
-- of, or whose charge could not be read, is found upstream later, stopped and counted: once,
-- because only the write that settles an open row counts it.
CREATE TABLE premoderation_checks (
    external_id TEXT    PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    member_id   INTEGER NOT NULL,
    job_id      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    settled_at  TEXT
);
CREATE INDEX premoderation_checks_open ON premoderation_checks (created_at)
    WHERE settled_at IS NULL;
