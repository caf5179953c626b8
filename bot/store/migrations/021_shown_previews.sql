-- Previews (the OpenAI lane's partial images) put on a job's status message and not taken off
-- yet. A row is written before the preview is uploaded and removed once an edit takes it off
-- (or Discord refuses that for good): the next start takes off what a stopped process left.
CREATE TABLE shown_previews (
    job_id TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    shown_at TEXT NOT NULL
);
