-- sla schema: policies, calendar overrides, clocks (deadlines), timers.
-- Runs with search_path = sla (see shared/db.py); never name the schema here.

-- Policy is data: one row per policy key. Editing a row bumps its version (trigger).
CREATE TABLE policies (
    clock                    text PRIMARY KEY,
    working_days             int  NOT NULL CHECK (working_days > 0),
    warn_before_working_days int  NOT NULL DEFAULT 1 CHECK (warn_before_working_days >= 0),
    version                  int  NOT NULL DEFAULT 1,
    updated_at               timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION policies_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.working_days, NEW.warn_before_working_days)
       IS DISTINCT FROM (OLD.working_days, OLD.warn_before_working_days) THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER policies_version BEFORE UPDATE ON policies
    FOR EACH ROW EXECUTE FUNCTION policies_bump_version();

-- Operator overrides of the working-day calendar; they win over the holidays package.
CREATE TABLE calendar_overrides (
    day        date PRIMARY KEY,
    working    boolean NOT NULL,
    reason     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A single row counting override changes; part of every deadline's calendar version.
CREATE TABLE calendar_revision (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision  int NOT NULL
);
INSERT INTO calendar_revision (singleton, revision) VALUES (true, 0);

CREATE FUNCTION calendar_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE calendar_revision SET revision = revision + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER calendar_overrides_revision
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON calendar_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION calendar_bump_revision();

-- One row per (complaint, clock kind, hop). The deadline is computed once from the start
-- instant, policy and calendar, and never edited in place.
CREATE TABLE clocks (
    id               bigserial PRIMARY KEY,
    complaint_id     uuid NOT NULL,
    clock            text NOT NULL CHECK (clock IN ('verification', 'opd_response', 'completion', 'auto_close')),
    hop              int  NOT NULL DEFAULT 0,
    policy_key       text NOT NULL,
    opd_code         text,
    started_at       timestamptz NOT NULL,
    working_days     int NOT NULL,
    deadline         timestamptz NOT NULL,
    warn_at          timestamptz,
    calendar_version text NOT NULL,
    policy_version   int NOT NULL,
    stopped_at       timestamptz,
    stop_reason      text CHECK (stop_reason IN ('stopped', 'cancelled')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (complaint_id, clock, hop),
    CHECK ((stopped_at IS NULL) = (stop_reason IS NULL))
);
CREATE INDEX clocks_open ON clocks (clock) WHERE stopped_at IS NULL;

-- Stops that arrived before their clock existed (events are reordered by competing
-- consumers); applied when the clock is created.
CREATE TABLE early_stops (
    complaint_id uuid NOT NULL,
    clock        text NOT NULL,
    hop          int  NOT NULL,
    stopped_at   timestamptz NOT NULL,
    reason       text NOT NULL CHECK (reason IN ('stopped', 'cancelled')),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (complaint_id, clock, hop)
);

-- Warning and breach timers. Scanners claim due rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE timers (
    id           bigserial PRIMARY KEY,
    clock_id     bigint NOT NULL REFERENCES clocks (id),
    kind         text NOT NULL CHECK (kind IN ('warning', 'breach')),
    due_at       timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    fired_at     timestamptz,
    cancelled_at timestamptz,
    UNIQUE (clock_id, kind),
    CHECK (fired_at IS NULL OR cancelled_at IS NULL)
);
CREATE INDEX timers_pending_due ON timers (due_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;
