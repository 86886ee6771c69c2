-- Every calendar version is kept, so a deadline computed under any of them can be computed
-- again (``sp4n calendar verify``, ``domain.drift``). A clock's ``calendar_version`` is
-- ``holidays-<release>+ovr-<revision>``: the holidays package's release (immutable data, in
-- the code) and the override revision, whose content is this table's row. Rows are written by
-- the revision trigger itself, so no path that changes the overrides or the confirmed years
-- (the CLI, an operator's psql session) can make a version without its content; who changed
-- what and why stays in ``calendar_changes`` (same revision). Never updated or deleted.
CREATE TABLE calendar_versions (
    revision        int PRIMARY KEY,
    overrides       jsonb NOT NULL CHECK (jsonb_typeof(overrides) = 'object'),  -- {"2026-11-04": false}
    confirmed_years int[] NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION calendar_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'calendar_versions is append-only: a calendar version never changes';
END $$;
CREATE TRIGGER calendar_versions_append_only BEFORE UPDATE OR DELETE ON calendar_versions
    FOR EACH ROW EXECUTE FUNCTION calendar_versions_immutable();
CREATE TRIGGER calendar_versions_no_truncate BEFORE TRUNCATE ON calendar_versions
    FOR EACH STATEMENT EXECUTE FUNCTION calendar_versions_immutable();

-- The bump now records the content of the revision it makes. Two statements on purpose: a
-- concurrent change waits on the revision row in the UPDATE, and the INSERT's snapshot, taken
-- after that wait, sees the change it waited for (one statement's snapshot would predate it).
-- An INSERT … ON CONFLICT DO UPDATE fires both the INSERT and the UPDATE statement triggers,
-- so an upsert makes two revisions; both are recorded (same content).
CREATE OR REPLACE FUNCTION calendar_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    made int;
BEGIN
    UPDATE calendar_revision SET revision = revision + 1 RETURNING revision INTO made;
    INSERT INTO calendar_versions (revision, overrides, confirmed_years)
    SELECT made,
           (SELECT coalesce(jsonb_object_agg(day::text, working), '{}'::jsonb) FROM calendar_overrides),
           (SELECT coalesce(array_agg(year ORDER BY year), '{}') FROM calendar_confirmed_years);
    RETURN NULL;
END $$;

DO $$
BEGIN
    -- CREATE OR REPLACE dropped the pinned search_path of 0004.
    EXECUTE format('ALTER FUNCTION calendar_bump_revision() SET search_path = %I, public', current_schema());
    EXECUTE format('ALTER FUNCTION calendar_versions_immutable() SET search_path = %I, public', current_schema());
END $$;

-- Versions made before this migration. The current one is what the tables hold now. Older
-- ones are rebuilt from the change log only when it provably covers every revision: folded in
-- order from revision 0 (no overrides, no confirmed year), each logged change must account for
-- exactly the revisions its statement made (a set or a confirmation is an upsert: two; a
-- removal: one), the last must be the current revision, and the fold must end at the current
-- content. Otherwise (a change made outside the CLI left no log row) only the current version
-- is recorded, and clocks under an older one are reported as not recomputable, never guessed.
DO $$
DECLARE
    current_revision int := (SELECT revision FROM calendar_revision);
    current_overrides jsonb := (SELECT coalesce(jsonb_object_agg(day::text, working), '{}'::jsonb)
                                FROM calendar_overrides);
    current_years int[] := (SELECT coalesce(array_agg(year ORDER BY year), '{}')
                            FROM calendar_confirmed_years);
    folded jsonb := '{}'::jsonb;
    years int[] := '{}';
    expected int := 0;
    complete boolean := true;
    -- The fold so far, one element per logged revision (no temporary table: the service roles
    -- that may run this migration have no TEMP privilege).
    fold jsonb := '[]'::jsonb;
    ch record;
BEGIN
    FOR ch IN SELECT revision, day, working, confirmed_year FROM calendar_changes
              ORDER BY revision, changed_at LOOP
        IF ch.confirmed_year IS NOT NULL THEN
            expected := expected + 2;
            IF NOT ch.confirmed_year = ANY (years) THEN
                years := (SELECT array_agg(y ORDER BY y) FROM unnest(years || ch.confirmed_year) y);
            END IF;
        ELSIF ch.working IS NULL THEN
            expected := expected + 1;
            folded := folded - ch.day::text;
        ELSE
            expected := expected + 2;
            folded := folded || jsonb_build_object(ch.day::text, ch.working);
        END IF;
        IF ch.revision <> expected THEN
            complete := false;
            EXIT;
        END IF;
        fold := fold || jsonb_build_array(jsonb_build_object(
            'revision', ch.revision, 'overrides', folded, 'confirmed_years', to_jsonb(years)));
    END LOOP;
    complete := complete AND expected = current_revision AND folded = current_overrides
                AND years = current_years;
    IF complete THEN
        INSERT INTO calendar_versions (revision, overrides, confirmed_years)
        SELECT 0, '{}'::jsonb, '{}' UNION ALL
        SELECT (f->>'revision')::int, f->'overrides',
               ARRAY(SELECT jsonb_array_elements_text(f->'confirmed_years'))::int[]
        FROM jsonb_array_elements(fold) f WHERE (f->>'revision')::int > 0;
    ELSE
        INSERT INTO calendar_versions (revision, overrides, confirmed_years)
        VALUES (current_revision, current_overrides, current_years);
    END IF;
END $$;
