-- Warning points and escalation ladders as data; quiet hours (issue 10).

-- Several warnings per clock (one per point: "2hk" = 2 working days before the deadline,
-- "50%" = half the clock elapsed) and the escalation steps: a timer is now (clock, kind,
-- point). ``fire_at`` is when the scanner fires it: its due time, or for a staff-facing
-- warning/escalation due outside office hours, the next opening (``due_at`` stays the
-- original due time, carried by the event).
ALTER TABLE timers ADD COLUMN point text NOT NULL DEFAULT '';
ALTER TABLE timers ADD COLUMN fire_at timestamptz;
UPDATE timers SET fire_at = due_at;
ALTER TABLE timers ALTER COLUMN fire_at SET NOT NULL;
DROP INDEX timers_live_kind;
CREATE UNIQUE INDEX timers_live_point ON timers (clock_id, kind, point) WHERE cancelled_at IS NULL;
DROP INDEX timers_pending_due;
CREATE INDEX timers_pending_fire ON timers (fire_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;
ALTER TABLE timers DROP CONSTRAINT timers_kind_check;
ALTER TABLE timers ADD CONSTRAINT timers_kind_check
    CHECK (kind IN ('warning', 'breach', 'elapse', 'escalate'));

-- NULL: the single point of warn_before_working_days ("<n>hk"), as before.
ALTER TABLE policies ADD COLUMN warn_points text[];
CREATE OR REPLACE FUNCTION policies_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.working_days, NEW.warn_before_working_days, NEW.warn_points)
       IS DISTINCT FROM (OLD.working_days, OLD.warn_before_working_days, OLD.warn_points) THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

-- Escalation ladders: per clock kind, optionally per OPD and/or category (the most specific
-- one wins). ``steps``: [{"level": 1, "after_working_days": 0, "target": "pejabat_penghubung"},
-- …], each step fired once, N working days after the breach. An edit bumps the version.
CREATE TABLE escalation_ladders (
    id         serial PRIMARY KEY,
    clock      text NOT NULL,
    opd_code   text,
    category   text,
    steps      jsonb NOT NULL CHECK (jsonb_typeof(steps) = 'array'),
    version    int NOT NULL DEFAULT 1,
    updated_by text NOT NULL DEFAULT 'seed',
    reason     text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX escalation_ladders_scope
    ON escalation_ladders (clock, coalesce(opd_code, ''), coalesce(category, ''));

CREATE FUNCTION ladders_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.steps IS DISTINCT FROM OLD.steps THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER escalation_ladders_version BEFORE UPDATE ON escalation_ladders
    FOR EACH ROW EXECUTE FUNCTION ladders_bump_version();
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION ladders_bump_version() SET search_path = %I, public', current_schema());
    EXECUTE format('ALTER FUNCTION policies_bump_version() SET search_path = %I, public', current_schema());
END $$;

-- Kabupaten Sekadau's default ladders (edit with `sp4n ladder set`).
INSERT INTO escalation_ladders (clock, steps) VALUES
    ('opd_response', '[{"level": 1, "after_working_days": 0, "target": "pejabat_penghubung"},
                       {"level": 2, "after_working_days": 2, "target": "kepala_opd"},
                       {"level": 3, "after_working_days": 5, "target": "admin_koordinator"},
                       {"level": 4, "after_working_days": 10, "target": "sekda"}]'),
    ('completion',   '[{"level": 1, "after_working_days": 0, "target": "admin_koordinator"},
                       {"level": 2, "after_working_days": 5, "target": "sekda"},
                       {"level": 3, "after_working_days": 10, "target": "bupati"}]'),
    ('verification', '[{"level": 1, "after_working_days": 0, "target": "admin_koordinator"},
                       {"level": 2, "after_working_days": 3, "target": "sekda"}]'),
    ('redisposition', '[{"level": 1, "after_working_days": 0, "target": "admin_koordinator"},
                        {"level": 2, "after_working_days": 3, "target": "sekda"}]');

-- The complaint's category on its clocks (a ladder may be scoped to one).
ALTER TABLE clocks ADD COLUMN category text;

-- Every calendar change is a new version with who and why; confirming a year is one too.
CREATE TABLE calendar_changes (
    revision       int NOT NULL,
    day            date,
    working        boolean,           -- NULL: the override was removed
    confirmed_year int,
    reason         text NOT NULL,
    changed_by     text NOT NULL,
    keep_deadlines boolean NOT NULL DEFAULT false,
    changed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER calendar_confirmed_years_revision
    AFTER INSERT OR UPDATE OR DELETE ON calendar_confirmed_years
    FOR EACH STATEMENT EXECUTE FUNCTION calendar_bump_revision();
