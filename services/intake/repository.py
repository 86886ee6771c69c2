"""All of intake's SQL. A repository works on one unit of work (``shared.uow.PgTx``) and
returns typed values (``domain.model``), never database records. It persists what the domain
decided (``domain.complaint.Outcome``, ``domain.effects``): no status is named here."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import datetime
from enum import Enum
from typing import Any

import asyncpg

from services.intake import audit
from services.intake.audit import AuditEntry, AuditRow
from services.intake.domain.complaint import Actor, Outcome
from services.intake.domain.effects import (
    AddDuplicateCandidates,
    ChangeDeadline,
    EscalateClock,
    EventDecision,
    FlagClock,
    MarkNeedsTriage,
    MarkRouted,
    SetSuggestion,
    StartClock,
)
from services.intake.domain.model import (
    ClockRow,
    ComplaintBrief,
    ComplaintListRow,
    ComplaintRow,
    EventApplied,
    NewComplaint,
    ReplyRow,
    ReporterRow,
    ResponseRow,
    SealedReporter,
    StoredSubmission,
    TimelineRow,
)
from services.intake.lifecycle import State
from shared.events import CloudEvent
from shared.outbox import outbox_row
from shared.uow import PgTx

_COMPLAINT = ", ".join(f.name for f in dataclasses.fields(ComplaintRow))
_LISTED = ", ".join(f.name for f in dataclasses.fields(ComplaintListRow))
_CLOCK = ", ".join(f.name for f in dataclasses.fields(ClockRow))


class IntakeRepository:
    """intake's SQL on one unit of work: it folds the inbox row and the staged events into
    its single-statement paths (``accept``, ``apply_event``)."""

    def __init__(self, tx: PgTx[IntakeRepository]) -> None:
        self.tx = tx
        self.conn: asyncpg.Connection = tx.conn

    async def accept(self, c: NewComplaint, summary: str) -> bool:
        """Insert the complaint, its reporter, its first timeline entry and the staged
        ``complaint.submitted`` event in ONE statement (atomic on its own; one round trip on
        the hot path). Nothing is written when the (source, external_id) or the tracking id
        is taken; True when this call created the complaint. On False the caller looks the
        submission up: found means a retry; not found, a tracking-id clash.
        """
        [event] = self.tx.take_staged()
        r = c.reporter
        event_id, routing_key, payload = outbox_row(event)
        created = await self.conn.fetchval(
            """WITH c AS (
                   INSERT INTO complaints (id, tracking_id, source, external_id, fingerprint,
                       submission, classification, category, title, kecamatan, desa, anonymous,
                       confidential, reporter_ref, received_at, accepted_at, status,
                       berkadar_pengawasan)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$27,$28)
                   ON CONFLICT DO NOTHING RETURNING id
               ), r AS (
                   INSERT INTO reporters (complaint_id, name_ct, phone_ct, email_ct, nik_ct, fingerprint)
                   SELECT id, $17, $18, $19, $20, $21 FROM c
               ), k AS (
                   INSERT INTO reporter_keys (complaint_id, key_id, wrapped_key)
                   SELECT id, $29, $30 FROM c WHERE $30::bytea IS NOT NULL
               ), t AS (
                   INSERT INTO timeline (complaint_id, event_id, event_type, occurred_at, summary, data)
                   SELECT id, $22, $23, $24, $25, $26 FROM c
               ), o AS (
                   INSERT INTO outbox (event_id, routing_key, payload) SELECT $22, $23, $26 FROM c
               )
               SELECT count(*) FROM c""",
            c.id, c.tracking_id, c.source, c.external_id, c.fingerprint, c.submission,
            c.classification, c.category, c.title, c.kecamatan, c.desa, c.anonymous,
            c.confidential, c.reporter_ref, c.received_at, c.accepted_at,
            r.name, r.phone, r.email, r.nik, c.reporter_fp,
            event_id, routing_key, event.time, summary, payload, c.status.value,
            c.berkadar_pengawasan, r.key_id, r.wrapped_key,
        )
        return bool(created)

    async def find_by_source(self, source: str, external_id: str) -> StoredSubmission | None:
        r = await self.conn.fetchrow(
            """SELECT c.id, c.tracking_id, c.status, c.submission, r.fingerprint AS reporter_fp
               FROM complaints c JOIN reporters r ON r.complaint_id = c.id
               WHERE c.source = $1 AND c.external_id = $2""",
            source, external_id,
        )
        return None if r is None else StoredSubmission(r["id"], r["tracking_id"], State(r["status"]),
                                                       r["submission"], r["reporter_fp"])

    async def find(self, key: str) -> ComplaintRow | None:
        """By complaint id (uuid) or tracking id."""
        return await self._find(key, "")

    async def find_for_update(self, key: str) -> ComplaintRow | None:
        """Like ``find``, locking the row until the transaction ends (actions serialise on it)."""
        return await self._find(key, " FOR UPDATE")

    async def lock(self, complaint_id: uuid.UUID) -> ComplaintRow | None:
        return _complaint(await self.conn.fetchrow(
            f"SELECT {_COMPLAINT} FROM complaints WHERE id = $1 FOR UPDATE", complaint_id))

    async def _find(self, key: str, lock: str) -> ComplaintRow | None:
        try:
            cid = uuid.UUID(key)
        except ValueError:
            return _complaint(await self.conn.fetchrow(
                f"SELECT {_COMPLAINT} FROM complaints WHERE tracking_id = $1{lock}", key.upper()))
        return _complaint(await self.conn.fetchrow(
            f"SELECT {_COMPLAINT} FROM complaints WHERE id = $1{lock}", cid))

    async def save(self, outcome: Outcome) -> None:
        """Persist an action's outcome: its column changes and a timeline entry per event
        (the events themselves are staged on the unit of work)."""
        if outcome.changes:
            await self._update(outcome.before.id, outcome.changes)
        for r in outcome.recorded:
            await self.add_timeline(outcome.before.id, r.event, r.summary, outcome.actor)

    async def record_audit(self, entry: AuditEntry) -> None:
        """One audit-trail row, on this unit of work (an action's: in its transaction)."""
        await audit.insert(self.conn, entry)

    async def audit_rows(self, *, complaint_id: uuid.UUID | None, key_id: int | None,
                         since: datetime | None, after: int, limit: int) -> list[AuditRow]:
        return await audit.fetch(self.conn, complaint_id=complaint_id, key_id=key_id,
                                 since=since, after=after, limit=limit)

    async def _update(self, complaint_id: uuid.UUID, fields: dict[str, Any]) -> None:
        """Set the given columns (names from code, never from input) and ``updated_at``."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        cols = list(fields)
        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=2))
        await self.conn.execute(
            f"UPDATE complaints SET {assignments}, updated_at = now() WHERE id = $1",
            complaint_id, *(_db(fields[c]) for c in cols))

    async def insert_response(self, complaint_id: uuid.UUID, opd_code: str | None, hop: int, body: str,
                              attachments: list[str], at: datetime, final: bool = True) -> int:
        """Store an OPD response (``final`` False: a progress update); returns its number within
        the complaint (1, 2, …). The caller holds the complaint's row lock, so numbering
        cannot race."""
        no: int = await self.conn.fetchval(
            """INSERT INTO responses (complaint_id, opd_code, hop, response_no, body, attachments,
                                      created_at, final)
               SELECT $1, $2, $3, COALESCE(max(response_no), 0) + 1, $4, $5, $6, $7
               FROM responses WHERE complaint_id = $1
               RETURNING response_no""",
            complaint_id, opd_code, hop, body, attachments, at, final)
        return no

    async def insert_reply(self, complaint_id: uuid.UUID, hop: int, body: str,
                           attachments: list[str], at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO reporter_replies (complaint_id, hop, body, attachments, created_at)"
            " VALUES ($1, $2, $3, $4, $5)", complaint_id, hop, body, attachments, at)

    async def responses_of(self, complaint_id: uuid.UUID) -> list[ResponseRow]:
        rows = await self.conn.fetch(
            "SELECT response_no, opd_code, hop, body, attachments, created_at, final FROM responses"
            " WHERE complaint_id = $1 ORDER BY response_no", complaint_id)
        return [ResponseRow(**dict(r)) for r in rows]

    async def replies_of(self, complaint_id: uuid.UUID) -> list[ReplyRow]:
        rows = await self.conn.fetch(
            "SELECT hop, body, attachments, created_at FROM reporter_replies"
            " WHERE complaint_id = $1 ORDER BY created_at, id", complaint_id)
        return [ReplyRow(**dict(r)) for r in rows]

    async def reporter_of(self, complaint_id: uuid.UUID) -> SealedReporter | ReporterRow | None:
        """The stored identity: sealed, or (a row from before encryption that intake has not
        yet encrypted, migration 0007) plain."""
        r = await self.conn.fetchrow(
            """SELECT r.name_ct, r.phone_ct, r.email_ct, r.nik_ct, r.erased_at, k.key_id,
                      k.wrapped_key, p.complaint_id IS NOT NULL AS legacy,
                      p.name, p.phone, p.email, p.nik
               FROM reporters r
               LEFT JOIN reporter_keys k ON k.complaint_id = r.complaint_id
               LEFT JOIN reporters_plaintext p ON p.complaint_id = r.complaint_id
               WHERE r.complaint_id = $1""", complaint_id)
        if r is None:
            return None
        if r["legacy"]:
            return ReporterRow(name=r["name"], phone=r["phone"], email=r["email"], nik=r["nik"])
        return SealedReporter(name=r["name_ct"], phone=r["phone_ct"], email=r["email_ct"],
                              nik=r["nik_ct"], key_id=r["key_id"], wrapped_key=r["wrapped_key"],
                              erased=r["erased_at"] is not None)

    async def briefs(self, ids: list[uuid.UUID]) -> list[ComplaintBrief]:
        rows = await self.conn.fetch(
            "SELECT id, tracking_id, status FROM complaints WHERE id = ANY($1::uuid[])", ids)
        return [ComplaintBrief(r["id"], r["tracking_id"], State(r["status"])) for r in rows]

    async def list_complaints(self, *, status: State | None, needs_triage: bool | None,
                              opd_code: str | None, source: str | None,
                              states: frozenset[State] | None, limit: int, offset: int
                              ) -> tuple[int, list[ComplaintListRow]]:
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if status is not None:
            where.append(f"status = {arg(status.value)}")
        if needs_triage is not None:
            where.append(f"needs_triage = {arg(needs_triage)}")
        if opd_code is not None:
            where.append(f"opd_code = {arg(opd_code)}")
        if source is not None:
            where.append(f"source = {arg(source)}")
        if states is not None:
            where.append(f"status = ANY({arg([s.value for s in states])}::text[])")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total: int = await self.conn.fetchval(f"SELECT count(*) FROM complaints {clause}", *args)
        rows = await self.conn.fetch(
            f"""SELECT {_LISTED} FROM complaints {clause}
                ORDER BY received_at DESC, id LIMIT {arg(limit)} OFFSET {arg(offset)}""", *args)
        return total, [ComplaintListRow(**{**dict(r), "status": State(r["status"])}) for r in rows]

    async def clocks_of(self, complaint_id: uuid.UUID) -> list[ClockRow]:
        rows = await self.conn.fetch(
            f"SELECT {_CLOCK} FROM clocks WHERE complaint_id = $1"
            " ORDER BY started_at NULLS LAST, clock, hop, instance", complaint_id)
        return [ClockRow(**dict(r)) for r in rows]

    async def timeline_of(self, complaint_id: uuid.UUID) -> list[TimelineRow]:
        rows = await self.conn.fetch(
            "SELECT event_type, occurred_at, summary, actor_role, actor_name FROM timeline"
            " WHERE complaint_id = $1 ORDER BY occurred_at, id", complaint_id)
        return [TimelineRow(**dict(r)) for r in rows]

    async def add_timeline(self, complaint_id: uuid.UUID, event: CloudEvent, summary: str,
                           actor: Actor | None = None) -> None:
        await self.conn.execute(
            "INSERT INTO timeline (complaint_id, event_id, event_type, occurred_at, summary, data,"
            " actor_role, actor_name) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (event_id) DO NOTHING",
            complaint_id, event.id, event.event_name, event.time, summary, event.data,
            actor.role if actor else None, actor.name if actor else None)

    async def apply_event(self, complaint_id: uuid.UUID, event: CloudEvent,
                          decision: EventDecision) -> EventApplied | None:
        """Lock the row + record the inbox row + the effect + the timeline entry, in ONE
        statement; reports the inbox outcome to the unit of work (``set_claimed``).

        On the event's first delivery only: the effect runs, and the timeline gets the
        decision's summary (None: no entry) — for a conditional effect (``MarkRouted``) only
        when it applied. None when the complaint is unknown (nothing written).
        ``status``/``hop`` are the complaint's before the effect.
        """
        effect = decision.effect
        sql, conditional = "SELECT 1 WHERE false", False
        names: tuple[str, ...] = ()
        values: list[Any] = []
        if effect is not None:
            sql, names = _EFFECTS[type(effect)]
            conditional = effect.conditional
            values = [_db(getattr(effect, n)) for n in names]
        r = await self.conn.fetchrow(
            f"""WITH c AS MATERIALIZED (SELECT status, hop FROM complaints WHERE id = $1 FOR UPDATE),
               first AS (
                   INSERT INTO inbox (event_id, event_type) SELECT $2, $3 FROM c
                   ON CONFLICT (event_id) DO NOTHING RETURNING 1
               ), e AS ({sql}),
               t AS (
                   INSERT INTO timeline (complaint_id, event_id, event_type, occurred_at, summary, data)
                   SELECT $1, $2, $4, $5, $6, $7 FROM first
                   WHERE $6::text IS NOT NULL {"AND EXISTS (SELECT 1 FROM e)" if conditional else ""}
                   ON CONFLICT (event_id) DO NOTHING
               )
               SELECT c.status, c.hop, EXISTS (SELECT 1 FROM first) AS first,
                      EXISTS (SELECT 1 FROM e) AS applied FROM c""",
            complaint_id, event.id, event.type, event.event_name, event.time, decision.summary,
            event.data, *values)
        if r is None:
            return None
        self.tx.set_claimed(r["first"])
        return EventApplied(State(r["status"]), r["hop"], r["first"], r["applied"])


def _complaint(r: asyncpg.Record | None) -> ComplaintRow | None:
    if r is None:
        return None
    return ComplaintRow(**{
        **dict(r), "status": State(r["status"]),
        "resume_state": State(r["resume_state"]) if r["resume_state"] else None,
        "duplicate_candidates": tuple(r["duplicate_candidates"])})


def _db(value: Any) -> Any:
    """A domain value as asyncpg binds it (states as their text, tuples as arrays)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_db(v) for v in value]
    return value


# A clock row is one (clock, hop, instance). Another start time for the same key is a new
# run of that clock (sla before instances: the reply window after a second response): the
# old run's outcome does not carry over. The same start time (a resumed clock's moved
# deadline) keeps it. The deadline and its versions come from the newest event that set
# them (``deadline_as_of``), so a late start does not undo a recomputation; the paused days
# and the calendar coverage, which only starts carry, from the first start or a newer one.
_NEW_RUN = "clocks.started_at <> EXCLUDED.started_at"  # NULL (not yet started): not a new run
_NEWER = "(clocks.deadline_as_of IS NULL OR EXCLUDED.deadline_as_of >= clocks.deadline_as_of)"


def _if(condition: str, *columns: str) -> str:
    return ", ".join(f"{c} = CASE WHEN {condition} THEN EXCLUDED.{c} ELSE clocks.{c} END"
                     for c in columns)


_CLOCK_KEY = "(complaint_id, clock, hop, instance)"
_DEADLINE = ("deadline", "calendar_version", "policy_version")
_CLOCK_STARTED_CONFLICT = f"""
    ON CONFLICT {_CLOCK_KEY} DO UPDATE SET
        opd_code = EXCLUDED.opd_code, started_at = EXCLUDED.started_at,
        working_days = EXCLUDED.working_days,
        {_if(f"({_NEWER} OR {_NEW_RUN})", *_DEADLINE)},
        {_if(f"({_NEWER} OR {_NEW_RUN} OR clocks.started_at IS NULL)", "paused_working_days",
             "beyond_calendar_coverage")},
        deadline_as_of = CASE WHEN {_NEW_RUN} THEN EXCLUDED.deadline_as_of
                              ELSE GREATEST(clocks.deadline_as_of, EXCLUDED.deadline_as_of) END,
        stopped_at = CASE WHEN {_NEW_RUN} THEN NULL ELSE clocks.stopped_at END,
        breached = CASE WHEN {_NEW_RUN} THEN false ELSE clocks.breached END,
        warned = CASE WHEN {_NEW_RUN} THEN false ELSE clocks.warned END,
        cancelled = CASE WHEN {_NEW_RUN} THEN false ELSE clocks.cancelled END,
        escalation_level = CASE WHEN {_NEW_RUN} THEN 0 ELSE clocks.escalation_level END,
        escalated_to = CASE WHEN {_NEW_RUN} THEN NULL ELSE clocks.escalated_to END,
        working_days_late = CASE WHEN {_NEW_RUN} THEN NULL ELSE clocks.working_days_late END"""
# Any of started/stopped/warning/breached may arrive first; each only sets its own fields.
_CLOCK_FLAG_CONFLICT = f"""
    ON CONFLICT {_CLOCK_KEY} DO UPDATE SET
        stopped_at = COALESCE(EXCLUDED.stopped_at, clocks.stopped_at),
        breached = clocks.breached OR EXCLUDED.breached,
        warned = clocks.warned OR EXCLUDED.warned,
        cancelled = clocks.cancelled OR EXCLUDED.cancelled,
        deadline = COALESCE(clocks.deadline, EXCLUDED.deadline),
        opd_code = COALESCE(clocks.opd_code, EXCLUDED.opd_code)"""
_DEADLINE_CHANGED_CONFLICT = f"""
    ON CONFLICT {_CLOCK_KEY} DO UPDATE SET
        {_if(_NEWER, *_DEADLINE)},
        deadline_as_of = GREATEST(clocks.deadline_as_of, EXCLUDED.deadline_as_of),
        opd_code = COALESCE(clocks.opd_code, EXCLUDED.opd_code)"""
# Levels may arrive in any order: the highest one stands, with its target and lateness.
_HIGHER = "EXCLUDED.escalation_level > clocks.escalation_level"
_ESCALATED_CONFLICT = f"""
    ON CONFLICT {_CLOCK_KEY} DO UPDATE SET
        breached = true,
        {_if(_HIGHER, "escalated_to", "working_days_late")},
        escalation_level = GREATEST(clocks.escalation_level, EXCLUDED.escalation_level),
        deadline = COALESCE(clocks.deadline, EXCLUDED.deadline),
        opd_code = COALESCE(clocks.opd_code, EXCLUDED.opd_code)"""


# The effects ``apply_event`` runs, as a CTE, on the first delivery only (``first`` has a
# row). Each names its arguments ``:field`` after the effect's dataclass fields; ``_bind``
# numbers them after the statement's own $1…$7 ($1 is the complaint id).
_EFFECT_SQL: dict[type, str] = {
    MarkRouted: """
        UPDATE complaints SET status = :to_state, needs_triage = false,
            opd_code = :opd_code, opd_name = :opd_name, hop = :hop, return_reason = NULL,
            last_transition_at = GREATEST(COALESCE(last_transition_at, received_at), :routed_at),
            updated_at = now()
        WHERE id = $1 AND hop < :hop AND status = ANY(:from_states::text[])
            AND EXISTS (SELECT 1 FROM first)
        RETURNING 1""",
    SetSuggestion: """
        UPDATE complaints SET suggested_opd_code = :opd_code, suggested_opd_name = :opd_name,
            suggested_rule_id = :rule_id, suggested_at = :suggested_at,
            needs_triage = (hop = 0 AND status = ANY(:triage_states::text[])),
            updated_at = now()
        WHERE id = $1 AND EXISTS (SELECT 1 FROM first)
        RETURNING 1""",
    AddDuplicateCandidates: """
        UPDATE complaints SET duplicate_candidates = ARRAY(
            SELECT DISTINCT x FROM unnest(duplicate_candidates || :candidate_ids::uuid[]) AS x
            WHERE x <> $1), updated_at = now()
        WHERE id = $1 AND EXISTS (SELECT 1 FROM first)
        RETURNING 1""",
    MarkNeedsTriage: """
        UPDATE complaints SET needs_triage = true, updated_at = now()
        WHERE id = $1 AND hop = 0 AND EXISTS (SELECT 1 FROM first)
        RETURNING 1""",
    StartClock: f"""
        INSERT INTO clocks (complaint_id, clock, hop, instance, opd_code, started_at, deadline,
            working_days, calendar_version, policy_version, paused_working_days,
            beyond_calendar_coverage, deadline_as_of)
        SELECT $1, :clock, :hop, :instance, :opd_code, :started_at, :deadline, :working_days,
            :calendar_version, :policy_version, :paused_working_days, :beyond_calendar_coverage,
            :as_of FROM first
        {_CLOCK_STARTED_CONFLICT}
        RETURNING 1""",
    FlagClock: f"""
        INSERT INTO clocks (complaint_id, clock, hop, instance, opd_code, stopped_at, breached,
            warned, cancelled, deadline)
        SELECT $1, :clock, :hop, :instance, :opd_code, :stopped_at::timestamptz, :breached::boolean,
            :warned::boolean, :cancelled::boolean, :deadline::timestamptz
        FROM first
        {_CLOCK_FLAG_CONFLICT}
        RETURNING 1""",
    ChangeDeadline: f"""
        INSERT INTO clocks (complaint_id, clock, hop, instance, opd_code, deadline,
            calendar_version, policy_version, deadline_as_of)
        SELECT $1, :clock, :hop, :instance, :opd_code, :new_deadline, :calendar_version,
            :policy_version, :as_of FROM first
        {_DEADLINE_CHANGED_CONFLICT}
        RETURNING 1""",
    EscalateClock: f"""
        INSERT INTO clocks (complaint_id, clock, hop, instance, opd_code, deadline, breached,
            escalation_level, escalated_to, working_days_late)
        SELECT $1, :clock, :hop, :instance, :opd_code, :deadline, true, :level, :target_role,
            :working_days_late FROM first
        {_ESCALATED_CONFLICT}
        RETURNING 1""",
}
_NAMED = re.compile(r"(?<![:\w]):([a-z_]+)")


def _bind(effect: type, sql: str, first: int) -> tuple[str, tuple[str, ...]]:
    """``:name`` → ``$n`` (one number per name, from ``first``); returns the SQL and the
    field names in parameter order."""
    fields = {f.name for f in dataclasses.fields(effect)}
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in fields:
            raise KeyError(f"{effect.__name__} has no field {name!r}")
        if name not in names:
            names.append(name)
        return f"${first + names.index(name)}"

    return _NAMED.sub(number, sql), tuple(names)


_EFFECTS = {t: _bind(t, sql, first=8) for t, sql in _EFFECT_SQL.items()}

_UPDATABLE = frozenset({
    "status", "title", "original_title", "resume_state", "deferred_at", "last_transition_at",
    "archive_reason", "duplicate_of", "forwarded_to", "return_reason", "needs_triage",
    "opd_code", "opd_name", "hop", "rating", "rated_at", "last_responded_at", "last_reply_at",
    "closed_at", "closed_by", "closed_event_id", "classification", "berkadar_pengawasan",
    "category", "anonymous", "confidential", "withdrawals", "archived_by", "location_public",
})
