-- The relay claims rows with a lease instead of holding a transaction while it publishes
-- (shared/outbox.py). ``lease_until``: the row is being published (or waits for its retry)
-- until then; NULL or past = claimable. ``attempts``: claims so far. ``last_error``: why the
-- last attempt failed. ``set_aside_at``: given up after too many failed attempts — kept,
-- never published again until an operator releases it (``sp4n outbox retry``).
ALTER TABLE outbox
    ADD COLUMN IF NOT EXISTS lease_until  timestamptz,
    ADD COLUMN IF NOT EXISTS attempts     integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_error   text,
    ADD COLUMN IF NOT EXISTS set_aside_at timestamptz;

-- The relay's claim and the unsent gauges: rows still to publish, in id order.
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id)
    WHERE sent_at IS NULL AND set_aside_at IS NULL;
DROP INDEX IF EXISTS outbox_unsent;
-- Set-aside rows (the gauge, ``sp4n outbox list``).
CREATE INDEX IF NOT EXISTS outbox_set_aside ON outbox (id)
    WHERE sent_at IS NULL AND set_aside_at IS NOT NULL;
-- Retention (shared/retention.py): sent rows and consumed ids, oldest first.
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS inbox_consumed ON inbox (consumed_at);
