-- A text step's result, as JSON: a prompt enhancement's rewrite, issues and recommendations
-- (NULL for every job that makes images).
ALTER TABLE jobs ADD COLUMN output TEXT;
-- The message a job's result answers: an upscale or a cut-out is posted as a reply to the
-- image it was made from.
ALTER TABLE jobs ADD COLUMN reply_to_message_id INTEGER;

-- What a member chose after a prompt enhancement, once: the enhanced prompt, their own, or
-- nothing. The image job (if any) is admitted after the choice is recorded.
CREATE TABLE prompt_choices (
    job_id     TEXT    PRIMARY KEY REFERENCES jobs (id),
    choice     TEXT    NOT NULL CHECK (choice IN ('enhanced', 'mine', 'cancel')),
    member_id  INTEGER NOT NULL,
    created_at TEXT    NOT NULL
);

-- Models (and tools) the orchestrator said are unavailable or retired: off for the whole
-- deployment until an admin switches them on again.
CREATE TABLE retired_models (
    model      TEXT PRIMARY KEY,
    reason     TEXT,
    job_id     TEXT,
    retired_at TEXT NOT NULL
);
