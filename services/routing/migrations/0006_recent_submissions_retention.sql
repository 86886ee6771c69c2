-- Retention (shared/retention.py, repository.prune_recent_submissions): the oldest recorded
-- submissions first.
CREATE INDEX recent_submissions_recorded ON recent_submissions (recorded_at);
