-- Edit sources uploaded once to the orchestrator's blob store, by the SHA-256 of their bytes:
-- a re-roll, or a resubmit after a restart, sends the blob's URL instead of the bytes again.
-- The bytes themselves stay in job_sources: a blob that expired or was lost is uploaded anew.
CREATE TABLE source_blobs (
    digest         TEXT PRIMARY KEY,
    blob_id        TEXT NOT NULL,
    url            TEXT NOT NULL,
    -- When the signed URL stops working (NULL: the orchestrator gave no time).
    url_expires_at TEXT,
    -- Uploaded, or refreshed (RefreshBlob resets the blob's own lifetime too).
    renewed_at     TEXT NOT NULL,
    -- The orchestrator's rating of the image (its on-the-fly moderation at upload): a source
    -- rated once is not uploaded again to be rated for a re-roll.
    nsfw_level     TEXT
);
