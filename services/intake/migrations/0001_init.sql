-- Complaints as accepted from the portals. ``submission`` is the canonical, validated
-- submission without the reporter (kept to answer idempotent retries and name conflicts).
CREATE TABLE complaints (
    id                  uuid PRIMARY KEY,
    tracking_id         text NOT NULL UNIQUE,
    source              text NOT NULL,
    external_id         text NOT NULL,
    fingerprint         text NOT NULL,
    submission          jsonb NOT NULL,
    classification      text NOT NULL,
    category            text NOT NULL,
    title               text NOT NULL,
    kecamatan           text,
    desa                text,
    anonymous           boolean NOT NULL,
    confidential        boolean NOT NULL,
    reporter_ref        text NOT NULL,
    received_at         timestamptz NOT NULL,
    accepted_at         timestamptz NOT NULL,
    status              text NOT NULL DEFAULT 'DITERIMA',
    needs_triage        boolean NOT NULL DEFAULT false,
    opd_code            text,
    opd_name            text,
    hop                 integer NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, external_id)
);

-- The reporter's identity never leaves this table: not in events, not in logs.
CREATE TABLE reporters (
    complaint_id uuid PRIMARY KEY REFERENCES complaints (id) ON DELETE CASCADE,
    name         text,
    phone        text,
    email        text,
    nik          text,
    fingerprint  text NOT NULL
);

-- What happened to a complaint, as learned from events (the status endpoint's timeline).
CREATE TABLE timeline (
    id           bigserial PRIMARY KEY,
    complaint_id uuid NOT NULL REFERENCES complaints (id) ON DELETE CASCADE,
    event_id     text NOT NULL UNIQUE,
    event_type   text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    summary      text NOT NULL,
    data         jsonb NOT NULL
);
CREATE INDEX timeline_by_complaint ON timeline (complaint_id, occurred_at);

-- Deadlines as reported by sla (sla.clock_started / sla.clock_stopped / sla.breached).
CREATE TABLE clocks (
    complaint_id     uuid NOT NULL REFERENCES complaints (id) ON DELETE CASCADE,
    clock            text NOT NULL,
    hop              integer NOT NULL,
    opd_code         text,
    started_at       timestamptz,
    deadline         timestamptz,
    working_days     integer,
    calendar_version text,
    policy_version   integer,
    stopped_at       timestamptz,
    breached         boolean NOT NULL DEFAULT false,
    warned           boolean NOT NULL DEFAULT false,
    PRIMARY KEY (complaint_id, clock, hop)
);

-- Portal API keys: only a SHA-256 of the 256-bit random secret is stored.
CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL,
    prefix       text NOT NULL UNIQUE,
    secret_hash  text NOT NULL,
    role         text NOT NULL,
    scopes       text[] NOT NULL,
    source       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
