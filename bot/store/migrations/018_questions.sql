-- What the bot asked a member and they have not answered yet (a Confirm / Cancel before a
-- costly job, the offers after a refusal, a tool's confirmation): kept here, not in memory,
-- so a click after a restart is answered as before it. The first click wins (state), and an
-- answered or expired question keeps no payload.
CREATE TABLE questions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    member_id INTEGER NOT NULL,
    payload BLOB,
    size INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'answered', 'expired')),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    -- Where the question was shown (an interaction's webhook), to say so once it expired.
    application_id INTEGER,
    interaction_token TEXT,
    token_expires_at TEXT,
    -- NULL: the interaction's original response.
    message_id INTEGER,
    closed_at TEXT
);
CREATE INDEX questions_open ON questions (state, expires_at);
CREATE INDEX questions_member ON questions (member_id, kind, state);
