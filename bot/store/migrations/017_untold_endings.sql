-- A job's ending is told (its status message, a kept-back result's private notice) after the
-- transaction that settles it. A row here, written in that transaction and removed once told,
-- lets the next start tell an ending the process died (or stopped) before telling.
CREATE TABLE untold_endings (
    job_id TEXT PRIMARY KEY REFERENCES jobs (id),
    created_at TEXT NOT NULL
);
