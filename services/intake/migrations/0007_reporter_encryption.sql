-- Reporter data encrypted at rest (issue 8): name, phone, e-mail and NIK are sealed with
-- AES-256-GCM under a per-reporter data key, stored here wrapped by the master key
-- (services/intake/crypto.py). SQL cannot encrypt with the application's key, so existing
-- plaintext moves to ``reporters_plaintext`` and intake encrypts it at start-up (or
-- ``sp4n encrypt-existing``), deleting each row as it goes; reads fall back to it meanwhile.

-- One wrapped data key per reporter (per complaint). Deleting the row erases the reporter:
-- their ciphertexts no longer decrypt (crypto-shredding); the complaint's history stays.
CREATE TABLE reporter_keys (
    complaint_id uuid PRIMARY KEY REFERENCES complaints (id) ON DELETE CASCADE,
    key_id       text NOT NULL,   -- the master key that wrapped it
    wrapped_key  bytea NOT NULL,  -- nonce || AES-GCM(master, data key)
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reporter_keys_by_master ON reporter_keys (key_id);

CREATE TABLE reporters_plaintext AS
    SELECT complaint_id, name, phone, email, nik FROM reporters
     WHERE name IS NOT NULL OR phone IS NOT NULL OR email IS NOT NULL OR nik IS NOT NULL;
ALTER TABLE reporters_plaintext ADD PRIMARY KEY (complaint_id);
ALTER TABLE reporters_plaintext ADD FOREIGN KEY (complaint_id)
    REFERENCES complaints (id) ON DELETE CASCADE;

ALTER TABLE reporters
    DROP COLUMN name, DROP COLUMN phone, DROP COLUMN email, DROP COLUMN nik,
    ADD COLUMN name_ct  bytea,   -- nonce || AES-GCM(data key, value, "…/reporter:<id>/name")
    ADD COLUMN phone_ct bytea,
    ADD COLUMN email_ct bytea,
    ADD COLUMN nik_ct   bytea,
    ADD COLUMN erased_at timestamptz;  -- the data key was destroyed (sp4n erase-reporter)

-- Reporters are found by their pseudonym (erase by reporter_ref), never by plaintext.
CREATE INDEX complaints_by_reporter_ref ON complaints (reporter_ref);

-- An inbound AMQP submission that could not be accepted, kept for repair: the raw body is
-- sealed under its own data key; the DLQ message carries only this row's id and the reason.
-- Purged after settings.intake.failed_submission_retention_days.
CREATE TABLE failed_submissions (
    id          uuid PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL,
    source      text,            -- as the body names it (unverified), when it does
    key_id      text NOT NULL,
    wrapped_key bytea NOT NULL,
    body        bytea NOT NULL   -- nonce || AES-GCM(data key, raw body, "…/failed-submission:<id>/body")
);
CREATE INDEX failed_submissions_by_time ON failed_submissions (received_at);
CREATE INDEX failed_submissions_by_master ON failed_submissions (key_id);
