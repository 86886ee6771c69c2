-- The whole lifecycle: clock instances, DITUNDA pauses, the reply window (auto_close), and the
-- lifecycle facts that stop clocks created after their stopping event.

-- A clock is (complaint, clock, hop, instance): a newer response restarts auto_close as a new
-- instance of the same OPD hop (instance = response_no).
ALTER TABLE clocks ADD COLUMN instance int NOT NULL DEFAULT 0;
ALTER TABLE clocks DROP CONSTRAINT clocks_complaint_id_clock_hop_key;
ALTER TABLE clocks ADD CONSTRAINT clocks_identity UNIQUE (complaint_id, clock, hop, instance);

-- Pauses: the deadline is recomputed as initial_deadline moved later by paused_working_days
-- (never shifted from its previous value); paused_at is set while DITUNDA.
ALTER TABLE clocks ADD COLUMN initial_deadline timestamptz;
ALTER TABLE clocks ADD COLUMN initial_warn_at timestamptz;
ALTER TABLE clocks ADD COLUMN paused_working_days int NOT NULL DEFAULT 0;
ALTER TABLE clocks ADD COLUMN paused_at timestamptz;
UPDATE clocks SET initial_deadline = deadline, initial_warn_at = warn_at;
ALTER TABLE clocks ALTER COLUMN initial_deadline SET NOT NULL;

-- Every DITUNDA period applied to a clock (idempotency of resume, and its history).
CREATE TABLE clock_pauses (
    clock_id        bigint NOT NULL REFERENCES clocks (id),
    deferred_at     timestamptz NOT NULL,
    resumed_at      timestamptz NOT NULL,
    working_days    int NOT NULL CHECK (working_days >= 0),
    deadline_before timestamptz NOT NULL,
    deadline_after  timestamptz NOT NULL,
    calendar_version text NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clock_id, deferred_at)
);

-- Lifecycle facts per complaint (event time, not arrival time). A re-published event (new id,
-- same fact) adds nothing.
CREATE TABLE facts (
    complaint_id uuid NOT NULL,
    kind         text NOT NULL,
    at           timestamptz NOT NULL,
    hop          int NOT NULL DEFAULT 0,
    deferred_at  timestamptz,
    event_id     text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (complaint_id, kind, at, hop)
);

-- Timers: a paused clock's timers are cancelled and new ones made on resume, so only one
-- live (pending or fired) timer per kind; 'elapse' ends the reply window.
ALTER TABLE timers DROP CONSTRAINT timers_clock_id_kind_key;
CREATE UNIQUE INDEX timers_live_kind ON timers (clock_id, kind) WHERE cancelled_at IS NULL;
ALTER TABLE timers DROP CONSTRAINT timers_kind_check;
ALTER TABLE timers ADD CONSTRAINT timers_kind_check CHECK (kind IN ('warning', 'breach', 'elapse'));

-- Early stops are now derived from facts; the table stays for rows written before.
