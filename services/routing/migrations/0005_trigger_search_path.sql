-- Trigger functions name tables without a schema; pin their search_path to this schema so
-- an operator editing rules from any session (psql, a console) does not fail with
-- "relation does not exist".
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION rules_before_write() SET search_path = %I, public', current_schema());
    EXECUTE format('ALTER FUNCTION rules_record_version() SET search_path = %I, public', current_schema());
END $$;
