-- Trigger functions name tables without a schema; pin their search_path to this schema so
-- an operator editing policies or calendar_overrides from any session (psql, a console)
-- does not fail with "relation does not exist".
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION policies_bump_version() SET search_path = %I, public', current_schema());
    EXECUTE format('ALTER FUNCTION calendar_bump_revision() SET search_path = %I, public', current_schema());
END $$;
