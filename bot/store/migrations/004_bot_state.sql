-- What the bot remembers about itself between runs (not per guild): which command set it last
-- registered where, and the dev guild it last used (its commands are cleared when the bot
-- goes global, so no command shows twice).
CREATE TABLE bot_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
