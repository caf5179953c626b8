-- A review item's history (shown on every render of its message) and the releases resumed at
-- start look audit events up by target; the table is kept forever, so without this index each
-- lookup read all of it.
CREATE INDEX audit_target ON audit_events (target, id);
