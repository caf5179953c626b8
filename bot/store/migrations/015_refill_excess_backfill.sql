-- Migration 010 added refill_excess as 0 for every account, but an account refilled before it
-- (by the bot without it) may hold allowance from an earlier period that its last refill counted
-- as spent: the bot before 010 expired that much when such a hold was released, the bot since
-- expires refill_excess, so with 0 a job held across the refill gave its allowance back on top
-- of the full top-up (a held job rejected after the upgrade: the member gains what it held).
--
-- Only the accounts whose last refill was made before 010 was applied are set here: the bot
-- since 010 keeps refill_excess itself at every refill. What the refill added only because of
-- the holds still open from earlier periods (at most their allowance), less what releases since
-- already expired.
UPDATE accounts SET refill_excess = MAX(0, MIN(
    (SELECT refill.amount FROM ledger_entries AS refill
        WHERE refill.guild_id = accounts.guild_id AND refill.member_id = accounts.member_id
        AND refill.kind = 'refill' AND refill.period_key = accounts.last_refill_key)
    - (SELECT COALESCE(SUM(expired.amount), 0) FROM ledger_entries AS expired
        WHERE expired.guild_id = accounts.guild_id AND expired.member_id = accounts.member_id
        AND expired.kind = 'adjust' AND expired.hold_id IS NOT NULL
        AND expired.reason = 'unused allowance of an earlier period expired'
        AND expired.id > (SELECT refill.id FROM ledger_entries AS refill
            WHERE refill.guild_id = accounts.guild_id AND refill.member_id = accounts.member_id
            AND refill.kind = 'refill' AND refill.period_key = accounts.last_refill_key)),
    (SELECT COALESCE(SUM(holds.from_allowance), 0) FROM holds
        WHERE holds.guild_id = accounts.guild_id AND holds.member_id = accounts.member_id
        AND holds.settled_at IS NULL AND holds.refill_key IS NOT accounts.last_refill_key)
))
WHERE refill_excess = 0 AND last_refill_key IS NOT NULL AND EXISTS (
    SELECT 1 FROM ledger_entries AS refill
    WHERE refill.guild_id = accounts.guild_id AND refill.member_id = accounts.member_id
    AND refill.kind = 'refill' AND refill.period_key = accounts.last_refill_key
    AND refill.created_at < (SELECT applied_at FROM schema_version WHERE version = 10)
);
