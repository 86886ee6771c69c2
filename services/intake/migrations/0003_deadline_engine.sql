-- The deadline engine (issue 10), intake's side: the admin koordinator's corrections, the
-- withdrawal of a disposition, progress updates, the system's archive of an expired
-- deferral, and what the status answer shows of each clock.

-- Berkadar pengawasan was only in ``submission``; the admin koordinator may now correct it.
ALTER TABLE complaints
    ADD COLUMN berkadar_pengawasan boolean NOT NULL DEFAULT false,
    -- Dispositions the admin koordinator withdrew: they do not count toward the hop cap.
    ADD COLUMN withdrawals         integer NOT NULL DEFAULT 0 CHECK (withdrawals >= 0),
    -- Who archived: 'admin_koordinator', or 'system' (DITUNDA expired, sla.deferral_expired).
    ADD COLUMN archived_by         text;
UPDATE complaints
   SET berkadar_pengawasan = COALESCE((submission ->> 'berkadar_pengawasan')::boolean, false)
 WHERE submission ? 'berkadar_pengawasan';
UPDATE complaints SET archived_by = 'admin_koordinator' WHERE archive_reason IS NOT NULL;

-- A progress update (perkembangan tindak lanjut) is a response that is not final. The
-- Open311 facade's ``status_notes`` reads the latest row, final or not.
ALTER TABLE responses ADD COLUMN final boolean NOT NULL DEFAULT true;

-- One row per clock instance (an OPD clock again after a reporter's reply or a reopen, a
-- completion clock per reopen, a reply window per response); what sla tells about it.
ALTER TABLE clocks
    ADD COLUMN instance                 integer NOT NULL DEFAULT 0,
    ADD COLUMN paused_working_days      integer NOT NULL DEFAULT 0,
    ADD COLUMN beyond_calendar_coverage boolean NOT NULL DEFAULT false,
    ADD COLUMN cancelled                boolean NOT NULL DEFAULT false,  -- stopped as cancelled
    ADD COLUMN escalation_level         integer NOT NULL DEFAULT 0,      -- highest sla.escalated
    ADD COLUMN escalated_to             text,
    ADD COLUMN working_days_late        integer,
    -- The time of the newest event that set ``deadline`` (a late start must not undo a
    -- recomputation, sla.deadline_changed).
    ADD COLUMN deadline_as_of           timestamptz;
ALTER TABLE clocks DROP CONSTRAINT clocks_pkey;
ALTER TABLE clocks ADD PRIMARY KEY (complaint_id, clock, hop, instance);
