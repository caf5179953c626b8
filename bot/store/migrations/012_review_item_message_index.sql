-- A deleted message is looked up among the review items' messages (every message deleted in
-- a guild the bot is in): an index, not a scan of every item ever made.
CREATE INDEX review_message ON review_items (message_id) WHERE message_id IS NOT NULL;
