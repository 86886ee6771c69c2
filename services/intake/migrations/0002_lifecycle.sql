-- The whole complaint lifecycle (admin koordinator, OPD and portal actions) and per-role keys.

-- API keys: role 'opd' is scoped to one OPD (pejabat penghubung). Existing keys keep working.
ALTER TABLE api_keys ADD COLUMN opd_code text;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_opd_scope
    CHECK ((role = 'opd') = (opd_code IS NOT NULL));

-- ``opd_code`` / ``opd_name`` / ``hop`` keep naming the last OPD the complaint was disposed to
-- (a reopen goes back to it); whether it is *currently* with that OPD follows from ``status``.
ALTER TABLE complaints
    ADD COLUMN original_title       text,         -- set when the admin koordinator edits the title
    ADD COLUMN resume_state         text,         -- the state a deferral (DITUNDA) interrupted
    ADD COLUMN deferred_at          timestamptz,
    ADD COLUMN last_transition_at   timestamptz,  -- NULL: none since received_at
    ADD COLUMN archive_reason       text,
    ADD COLUMN duplicate_of         uuid,
    ADD COLUMN forwarded_to         text,
    ADD COLUMN return_reason        text,
    ADD COLUMN suggested_opd_code   text,
    ADD COLUMN suggested_opd_name   text,
    ADD COLUMN suggested_rule_id    integer,
    ADD COLUMN suggested_at         timestamptz,
    ADD COLUMN duplicate_candidates uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN rating               integer CHECK (rating BETWEEN 1 AND 5),
    ADD COLUMN rated_at             timestamptz,
    ADD COLUMN last_responded_at    timestamptz,
    ADD COLUMN last_reply_at        timestamptz,
    ADD COLUMN closed_at            timestamptz,
    ADD COLUMN closed_by            text,
    ADD COLUMN closed_event_id      text;

CREATE INDEX complaints_by_status ON complaints (status, received_at);
CREATE INDEX complaints_by_opd ON complaints (opd_code, status);
CREATE INDEX complaints_by_source ON complaints (source, received_at);

-- OPD responses (tindak lanjut). Column names are a contract: the Open311 facade reads the
-- latest row for ``status_notes``.
CREATE TABLE responses (
    id           bigserial PRIMARY KEY,
    complaint_id uuid NOT NULL REFERENCES complaints (id) ON DELETE CASCADE,
    opd_code     text NOT NULL,
    hop          integer NOT NULL,
    response_no  integer NOT NULL,
    body         text NOT NULL,
    attachments  jsonb NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL,
    UNIQUE (complaint_id, response_no)
);

-- What the reporter wrote back through the portal (to a response, or the information a
-- deferral asked for). Stays in intake: events carry no citizen text.
CREATE TABLE reporter_replies (
    id           bigserial PRIMARY KEY,
    complaint_id uuid NOT NULL REFERENCES complaints (id) ON DELETE CASCADE,
    hop          integer NOT NULL,
    body         text NOT NULL,
    attachments  jsonb NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL
);
CREATE INDEX reporter_replies_by_complaint ON reporter_replies (complaint_id, created_at);
