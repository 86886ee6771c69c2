-- Retention (shared/retention.py, repository.prune_*): delivered webhooks, oldest first.
CREATE INDEX deliveries_delivered ON deliveries (delivered_at) WHERE status = 'delivered';
