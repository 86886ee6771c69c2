-- Issue 8: API keys bound to a source, scoped per action and expiring; the append-only
-- audit trail; who acted, on the timeline.

ALTER TABLE api_keys
    ADD COLUMN expires_at     timestamptz,  -- NULL: never; checked at every verification
    ADD COLUMN revoked_reason text;         -- why a key was revoked (by an operator or a migration)
COMMENT ON COLUMN api_keys.revoked_reason IS
    'why the key was revoked; migration 0005 revoked every active portal key without a source';

-- What this migration does to existing keys, said as it does it (psql shows the NOTICEs;
-- ``sp4n list-api-keys`` shows each revoked key's reason afterwards):
-- 1. a portal key bound to source 'lapor' was the LAPOR! importer's (only it could send
--    history): it becomes an ``importer`` key;
-- 2. an active portal key without a source could read and act on every portal's complaints:
--    it is revoked, with the reason recorded on its row. Its holder needs a new key with
--    ``--source``.
DO $$
DECLARE
    n integer;
BEGIN
    UPDATE api_keys SET role = 'importer' WHERE role = 'portal' AND source = 'lapor';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RAISE NOTICE 'sp4n 0005: % portal key(s) bound to source lapor became importer keys', n;
    END IF;
    UPDATE api_keys
       SET revoked_at = now(),
           revoked_reason = 'migration 0005: portal key without a source (it could read and act '
                            'on every portal''s complaints); create a new key with --source'
     WHERE role = 'portal' AND source IS NULL AND revoked_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RAISE NOTICE 'sp4n 0005: revoked % portal key(s) without a source; see sp4n list-api-keys', n;
    END IF;
END $$;

-- Every key's scopes, per role, as ``services.intake.apikeys.SCOPES`` gives new keys
-- (tests/unit/test_intake_apikeys.py checks the two agree).
UPDATE api_keys SET scopes = ARRAY['complaints:submit', 'complaints:read', 'complaints:reopen',
    'complaints:reply', 'complaints:rate'] WHERE role = 'portal';
UPDATE api_keys SET scopes = ARRAY['complaints:submit', 'complaints:read', 'complaints:history',
    'complaints:backdate'] WHERE role = 'importer';
UPDATE api_keys SET scopes = ARRAY['complaints:submit', 'complaints:read', 'complaints:verify',
    'complaints:defer', 'complaints:resume', 'complaints:archive', 'complaints:dispose',
    'complaints:forward', 'complaints:close', 'complaints:reopen', 'complaints:reclassify',
    'complaints:withdraw', 'complaints:backdate', 'identity:read', 'identity:nik', 'audit:read']
    WHERE role = 'admin_koordinator';
UPDATE api_keys SET scopes = ARRAY['complaints:read', 'complaints:respond', 'complaints:return',
    'identity:read'] WHERE role = 'opd';

-- A portal or importer key speaks for exactly one source (NULL no longer means "any").
-- Revoked keys are exempt: a revoked unbound key stays as a record and cannot be un-revoked.
ALTER TABLE api_keys ADD CONSTRAINT api_keys_source_bound
    CHECK (role NOT IN ('portal', 'importer') OR source IS NOT NULL OR revoked_at IS NOT NULL);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role
    CHECK (role IN ('portal', 'importer', 'admin_koordinator', 'opd'));

-- Who did what to which complaint, and who read a reporter's identity. Append-only: the
-- service connects as the table's owner (REVOKE would not bind it), so triggers refuse
-- UPDATE, DELETE and TRUNCATE for everyone. No foreign key: the trail outlives what it names.
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    key_id       bigint,         -- NULL: no key (the system)
    key_name     text,
    role         text NOT NULL,
    action       text NOT NULL,  -- a lifecycle action, or 'read_identity'
    complaint_id uuid,
    request_id   text,
    client_addr  text
);
CREATE INDEX audit_log_by_complaint ON audit_log (complaint_id, id);
CREATE INDEX audit_log_by_key ON audit_log (key_id, id);
CREATE INDEX audit_log_by_time ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- The acting key on the timeline (NULL: an event from another service).
ALTER TABLE timeline
    ADD COLUMN actor_role text,
    ADD COLUMN actor_name text;
