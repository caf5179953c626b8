-- Guild settings: one row per guild once an admin changes something. NULL means "the bot's
-- configured default", so a later change of the defaults still reaches every guild that did
-- not set its own value.
CREATE TABLE guild_settings (
    guild_id               INTEGER PRIMARY KEY,
    mod_channel_id         INTEGER,
    log_channel_id         INTEGER,
    default_model          TEXT,
    confirm_above          INTEGER CHECK (confirm_above >= 0),
    per_member_concurrency INTEGER CHECK (per_member_concurrency >= 1),
    per_guild_concurrency  INTEGER CHECK (per_guild_concurrency >= 1),
    reroll_anyone          INTEGER,
    moderator_role_id      INTEGER,
    admin_role_id          INTEGER,
    strikes_to_ban         INTEGER CHECK (strikes_to_ban >= 0),
    strike_window_days     INTEGER CHECK (strike_window_days >= 1),
    budget_amount          INTEGER CHECK (budget_amount IS NULL OR budget_amount >= 0),
    budget_period          TEXT CHECK (budget_period IN ('none', 'daily', 'weekly', 'monthly')),
    mod_channel_warned     INTEGER,
    updated_at             TEXT    NOT NULL
);

-- Models switched off in a guild (all five are on unless listed here with enabled = 0).
CREATE TABLE guild_models (
    guild_id INTEGER NOT NULL,
    model    TEXT    NOT NULL,
    enabled  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, model)
);

-- Channel rules: with any allowed = 1 row, only those channels; allowed = 0 rows are refused.
CREATE TABLE guild_channels (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    allowed    INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);

-- Allowances: guild default (target_id 0), per role, per member.
CREATE TABLE allowances (
    guild_id   INTEGER NOT NULL,
    scope      TEXT    NOT NULL CHECK (scope IN ('default', 'role', 'member')),
    target_id  INTEGER NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    period     TEXT    NOT NULL CHECK (period IN ('none', 'daily', 'weekly', 'monthly')),
    updated_by INTEGER,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (guild_id, scope, target_id)
);

-- The cached balance, split in two buckets: the allowance (topped up each period) and
-- grants (never expire). Kept in the same transaction as every ledger entry.
CREATE TABLE accounts (
    guild_id          INTEGER NOT NULL,
    member_id         INTEGER NOT NULL,
    allowance_balance INTEGER NOT NULL DEFAULT 0 CHECK (allowance_balance >= 0),
    grant_balance     INTEGER NOT NULL DEFAULT 0 CHECK (grant_balance >= 0),
    last_refill_key   TEXT,
    -- The allowance the last refill topped up to.
    refill_level      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (guild_id, member_id)
);

CREATE TABLE jobs (
    id                     TEXT    PRIMARY KEY,
    guild_id               INTEGER NOT NULL,
    channel_id             INTEGER NOT NULL,
    member_id              INTEGER NOT NULL,
    model                  TEXT    NOT NULL,
    operation              TEXT    NOT NULL,
    options                TEXT    NOT NULL,
    step                   TEXT    NOT NULL,
    sources                TEXT    NOT NULL DEFAULT '[]',
    estimate               INTEGER NOT NULL CHECK (estimate >= 0),
    whatif                 INTEGER,
    status                 TEXT    NOT NULL CHECK (status IN (
        'held', 'queued', 'submitted', 'running', 'delivering', 'done',
        'failed', 'blocked', 'canceled', 'expired', 'rejected')),
    workflow_id            TEXT,
    workflow_status        TEXT,
    queue_position         INTEGER,
    charged                INTEGER,
    result_images          TEXT    NOT NULL DEFAULT '[]',
    delivered_message_ids  TEXT    NOT NULL DEFAULT '[]',
    status_message_id      INTEGER,
    upload_limit           INTEGER,
    interaction_token      TEXT,
    interaction_expires_at TEXT,
    parent_job_id          TEXT REFERENCES jobs (id),
    error                  TEXT,
    simulated              INTEGER NOT NULL DEFAULT 0,
    cancel_requested_by    INTEGER,
    deadline_at            TEXT,
    created_at             TEXT    NOT NULL,
    updated_at             TEXT    NOT NULL,
    -- Set just before the first submit request: from then on the workflow may exist upstream.
    submit_attempted_at    TEXT,
    submitted_at           TEXT,
    started_at             TEXT,
    finished_at            TEXT,
    delivered_at           TEXT
);
CREATE INDEX jobs_active ON jobs (status)
    WHERE status IN ('queued', 'submitted', 'running', 'delivering');
CREATE INDEX jobs_member ON jobs (guild_id, member_id, created_at);
CREATE INDEX jobs_guild ON jobs (guild_id, created_at);

-- Source images for edits, stored once and referenced from the step as source://N.
CREATE TABLE job_sources (
    job_id   TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    role     TEXT    NOT NULL CHECK (role IN ('image', 'mask')),
    mime     TEXT    NOT NULL,
    width    INTEGER NOT NULL,
    height   INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    PRIMARY KEY (job_id, idx)
);

-- A job's status history.
CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY,
    job_id     TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    status     TEXT    NOT NULL,
    detail     TEXT,
    created_at TEXT    NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- One hold per job; settled exactly once (captured + released = amount).
CREATE TABLE holds (
    id             INTEGER PRIMARY KEY,
    guild_id       INTEGER NOT NULL,
    member_id      INTEGER NOT NULL,
    job_id         TEXT    NOT NULL UNIQUE REFERENCES jobs (id),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    from_allowance INTEGER NOT NULL CHECK (from_allowance >= 0),
    from_grant     INTEGER NOT NULL CHECK (from_grant >= 0),
    -- The account's refill period when the hold was made: a refill since means the held
    -- allowance belongs to an earlier period.
    refill_key     TEXT,
    captured       INTEGER CHECK (captured >= 0),
    released       INTEGER CHECK (released >= 0),
    extra_charged  INTEGER NOT NULL DEFAULT 0 CHECK (extra_charged >= 0),
    loss           INTEGER NOT NULL DEFAULT 0 CHECK (loss >= 0),
    refunded       INTEGER NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    created_at     TEXT    NOT NULL,
    settled_at     TEXT,
    CHECK (from_allowance + from_grant = amount),
    CHECK (settled_at IS NULL OR captured + released = amount),
    CHECK (refunded <= COALESCE(captured, 0) + extra_charged)
);
CREATE INDEX holds_open ON holds (guild_id, member_id) WHERE settled_at IS NULL;
CREATE INDEX holds_guild_time ON holds (guild_id, created_at);
CREATE INDEX holds_member_time ON holds (guild_id, member_id, created_at);

-- The append-only ledger. amount is what the entry is about; the deltas are its effect on the
-- two buckets (their sum is the change in balance).
CREATE TABLE ledger_entries (
    id              INTEGER PRIMARY KEY,
    guild_id        INTEGER NOT NULL,
    member_id       INTEGER NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN (
        'grant', 'refill', 'hold', 'capture', 'release', 'refund', 'adjust')),
    amount          INTEGER NOT NULL CHECK (amount >= 0),
    delta_allowance INTEGER NOT NULL,
    delta_grant     INTEGER NOT NULL,
    hold_id         INTEGER REFERENCES holds (id),
    job_id          TEXT,
    actor_id        INTEGER,
    reason          TEXT,
    period_key      TEXT,
    created_at      TEXT    NOT NULL
);
CREATE INDEX ledger_member ON ledger_entries (guild_id, member_id, id);
CREATE UNIQUE INDEX ledger_one_refill ON ledger_entries (guild_id, member_id, period_key)
    WHERE kind = 'refill';

-- Review items for moderators: blocked jobs and jobs held by the prompt filter.
CREATE TABLE review_items (
    id                 INTEGER PRIMARY KEY,
    guild_id           INTEGER NOT NULL,
    job_id             TEXT    NOT NULL UNIQUE REFERENCES jobs (id),
    kind               TEXT    NOT NULL CHECK (kind IN ('blocked', 'held', 'undelivered')),
    reason             TEXT,
    status             TEXT    NOT NULL DEFAULT 'open' CHECK (status IN (
        'open', 'approved', 'rejected', 'refunded', 'dismissed', 'withdrawn')),
    handled_by         INTEGER,
    handled_at         TEXT,
    note               TEXT,
    message_channel_id INTEGER,
    message_id         INTEGER,
    appeal_note        TEXT,
    appealed_at        TEXT,
    created_at         TEXT    NOT NULL
);
CREATE INDEX review_open ON review_items (guild_id, status);

CREATE TABLE strikes (
    id             INTEGER PRIMARY KEY,
    guild_id       INTEGER NOT NULL,
    member_id      INTEGER NOT NULL,
    actor_id       INTEGER,
    reason         TEXT,
    review_item_id INTEGER REFERENCES review_items (id),
    created_at     TEXT    NOT NULL
);
CREATE INDEX strikes_member ON strikes (guild_id, member_id, created_at);
-- A review item can give a member one strike, however many moderators press Strike.
CREATE UNIQUE INDEX strikes_one_per_item ON strikes (review_item_id)
    WHERE review_item_id IS NOT NULL;

CREATE TABLE bans (
    id         INTEGER PRIMARY KEY,
    guild_id   INTEGER NOT NULL,
    member_id  INTEGER NOT NULL,
    actor_id   INTEGER,
    reason     TEXT,
    created_at TEXT    NOT NULL,
    expires_at TEXT,
    lifted_at  TEXT,
    lifted_by  INTEGER,
    review_item_id INTEGER REFERENCES review_items (id)
);
CREATE INDEX bans_member ON bans (guild_id, member_id);
CREATE UNIQUE INDEX bans_one_per_item ON bans (review_item_id) WHERE review_item_id IS NOT NULL;

CREATE TABLE prompt_filters (
    id         INTEGER PRIMARY KEY,
    guild_id   INTEGER NOT NULL,
    pattern    TEXT    NOT NULL,
    is_regex   INTEGER NOT NULL DEFAULT 0,
    created_by INTEGER,
    created_at TEXT    NOT NULL,
    UNIQUE (guild_id, pattern, is_regex)
);

CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY,
    guild_id   INTEGER,
    actor_id   INTEGER,
    action     TEXT    NOT NULL,
    target     TEXT,
    details    TEXT    NOT NULL DEFAULT '{}',
    created_at TEXT    NOT NULL
);
CREATE INDEX audit_guild ON audit_events (guild_id, id);
