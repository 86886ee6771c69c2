-- The firing log (issue 10 item 1). Timers are a cache of what a complaint's facts give; what
-- fired is history: every timer that fired — a warning point, a breach, an escalation step
-- (emitted at its due time or, under quiet hours, at the next opening), a reply window's
-- elapse, DITUNDA's expiry — by the scanner or at once by a message, as one row that is never
-- updated or deleted. It is written by the triggers below, so by the very statement that marks
-- the timer fired, in the transaction that stages its event; a clock deleted with its timers
-- (a routing that never took) keeps its firings. ``domain.derive`` reads it to know which
-- timers have fired and which are still to fire.
CREATE TABLE firings (
    complaint_id uuid        NOT NULL,
    clock        text        NOT NULL,
    hop          int         NOT NULL,
    instance     int         NOT NULL,
    kind         text        NOT NULL,
    point        text        NOT NULL,
    due_at       timestamptz NOT NULL,
    fire_at      timestamptz NOT NULL,  -- when it was to be emitted (quiet hours may hold it)
    fired_at     timestamptz NOT NULL,
    PRIMARY KEY (complaint_id, clock, hop, instance, kind, point, due_at)
);

CREATE FUNCTION timers_log_firing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO firings (complaint_id, clock, hop, instance, kind, point, due_at, fire_at,
                         fired_at)
    SELECT c.complaint_id, c.clock, c.hop, c.instance, NEW.kind, NEW.point, NEW.due_at,
           NEW.fire_at, NEW.fired_at
    FROM clocks c WHERE c.id = NEW.clock_id
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION timers_log_firing() SET search_path = %I, public', current_schema());
END $$;

CREATE TRIGGER timers_fired_on_insert AFTER INSERT ON timers FOR EACH ROW
    WHEN (NEW.fired_at IS NOT NULL) EXECUTE FUNCTION timers_log_firing();
CREATE TRIGGER timers_fired_on_update AFTER UPDATE OF fired_at ON timers FOR EACH ROW
    WHEN (OLD.fired_at IS NULL AND NEW.fired_at IS NOT NULL) EXECUTE FUNCTION timers_log_firing();

-- What fired before this migration.
INSERT INTO firings (complaint_id, clock, hop, instance, kind, point, due_at, fire_at, fired_at)
SELECT c.complaint_id, c.clock, c.hop, c.instance, t.kind, t.point, t.due_at, t.fire_at,
       t.fired_at
FROM timers t JOIN clocks c ON c.id = t.clock_id
WHERE t.fired_at IS NOT NULL
ON CONFLICT DO NOTHING;
