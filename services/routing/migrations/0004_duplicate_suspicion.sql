-- Duplicate suspicion: one row per submitted complaint that names a desa (complaints
-- without desa are never flagged, so they are not stored). category and desa are stored
-- normalised (services/routing/duplicates.py), so equality is the whole comparison.
--
-- Nothing is pruned yet: the table grows by one small row per complaint. Only rows within
-- duplicate_window_days of a new complaint's received_at are ever read, so a later job may
-- delete rows older than the largest window still in use (received_at, not recorded_at:
-- backdated imports compare by their original date).
CREATE TABLE recent_submissions (
    complaint_id  uuid PRIMARY KEY,
    category      text NOT NULL,
    desa          text NOT NULL CHECK (desa <> ''),
    received_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

-- The lookup: equality on (category, desa), a range on received_at.
CREATE INDEX recent_submissions_lookup ON recent_submissions (category, desa, received_at);
