-- Result delivery is patient: a job that reaches `delivering` keeps trying (downloads and
-- posts) until this time, across restarts.
ALTER TABLE jobs ADD COLUMN deliver_by TEXT;
-- Images of a finished job that could not be fetched by then (posted: the others).
ALTER TABLE jobs ADD COLUMN missing_images INTEGER NOT NULL DEFAULT 0;
-- What a moderator's Refund gives back: NULL for everything the job cost, else this share
-- (the missing images' share of a partly delivered result).
ALTER TABLE review_items ADD COLUMN refund_amount INTEGER CHECK (refund_amount > 0);
