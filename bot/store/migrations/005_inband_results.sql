-- Images that arrive in-band (bytes in the answer, not URLs: the OpenAI lane). They are written
-- in the transaction that settles the job, so a restart between the upstream call and the post
-- loses nothing; delivery reads them back. Retention deletes them like edit sources.
CREATE TABLE job_results (
    job_id TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx    INTEGER NOT NULL,
    mime   TEXT    NOT NULL,
    width  INTEGER,
    height INTEGER,
    data   BLOB    NOT NULL,
    PRIMARY KEY (job_id, idx)
);
-- What the upstream service reported using for the job (the OpenAI lane's token counts,
-- partial images included), as JSON: shown in Details, kept for reconciling with its bill.
ALTER TABLE jobs ADD COLUMN usage TEXT;
