-- Transactional outbox: rows written in the same transaction as the state change that
-- caused them; the relay publishes and marks them sent.
CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial PRIMARY KEY,
    event_id    text NOT NULL UNIQUE,
    routing_key text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- Inbox: ids of consumed events, recorded in the same transaction as their effect.
CREATE TABLE IF NOT EXISTS inbox (
    event_id    text PRIMARY KEY,
    event_type  text NOT NULL,
    consumed_at timestamptz NOT NULL DEFAULT now()
);
