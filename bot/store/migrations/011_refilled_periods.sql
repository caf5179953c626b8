-- Every period an account was refilled in, whether the top-up added anything or not (a full
-- bucket gets no 'refill' entry): a period already refilled is never refilled again, when the
-- rule's period changes and changes back, or the clock steps back over a turn and forward again.
CREATE TABLE refilled_periods (
    guild_id   INTEGER NOT NULL,
    member_id  INTEGER NOT NULL,
    period_key TEXT    NOT NULL,
    PRIMARY KEY (guild_id, member_id, period_key)
) WITHOUT ROWID;

INSERT OR IGNORE INTO refilled_periods (guild_id, member_id, period_key)
    SELECT guild_id, member_id, period_key FROM ledger_entries
    WHERE kind = 'refill' AND period_key IS NOT NULL;
INSERT OR IGNORE INTO refilled_periods (guild_id, member_id, period_key)
    SELECT guild_id, member_id, last_refill_key FROM accounts WHERE last_refill_key IS NOT NULL;
