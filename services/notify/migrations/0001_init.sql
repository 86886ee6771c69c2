-- Webhook subscriptions: configuration, editable with the sp4n CLI or synced from the
-- subscriptions file at start-up (upsert by name).
CREATE TABLE subscriptions (
    name        text PRIMARY KEY,
    url         text NOT NULL CHECK (url ~ '^https?://'),
    secret      text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    event_types text[] NOT NULL CHECK (cardinality(event_types) > 0),
    opd_codes   text[] CHECK (opd_codes IS NULL OR cardinality(opd_codes) > 0),  -- NULL = every OPD
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per (event, subscription): the unique key is what makes a redelivered event
-- never produce a second webhook. ``body`` is the exact CloudEvent JSON sent (text, not
-- jsonb, so every attempt signs and sends the same bytes). No foreign key to
-- subscriptions: history outlives a removed subscription.
CREATE TABLE deliveries (
    id               bigserial PRIMARY KEY,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    event_name       text NOT NULL,
    event_time       timestamptz NOT NULL,
    complaint_id     uuid,
    subscription     text NOT NULL,
    webhook_id       text NOT NULL,
    body             text NOT NULL,
    -- the same CloudEvent, queryable (ops: ``payload->>'subject'``)
    payload          jsonb GENERATED ALWAYS AS (body::jsonb) STORED,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'dead_lettered')),
    -- attempts made in the current round; a replay starts a new round.
    attempts         integer NOT NULL DEFAULT 0,
    round            integer NOT NULL DEFAULT 1,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- lease of the replica sending it now; a stale lease (crashed replica) expires.
    locked_until     timestamptz,
    lease_token      uuid,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    dead_lettered_at timestamptz,
    UNIQUE (event_id, subscription)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_dead ON deliveries (dead_lettered_at) WHERE status = 'dead_lettered';

CREATE TABLE delivery_attempts (
    id          bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    round       integer NOT NULL,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    status_code integer,
    error       text,
    UNIQUE (delivery_id, round, attempt)
);
