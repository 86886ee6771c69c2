"""All of intake's SQL. A repository wraps one connection, inside the caller's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.events import CloudEvent
from shared.outbox import outbox_row
from shared.uow import PgTx


_CLOCK_STARTED_CONFLICT = """
    ON CONFLICT (complaint_id, clock, hop) DO UPDATE SET
        opd_code = EXCLUDED.opd_code, started_at = EXCLUDED.started_at,
        deadline = EXCLUDED.deadline, working_days = EXCLUDED.working_days,
        calendar_version = EXCLUDED.calendar_version,
        policy_version = EXCLUDED.policy_version,
        -- Another start time means a new instance of this clock (e.g. the reply
        -- window after a second response): the old one's outcome does not carry
        -- over. The same start time (a resumed clock's moved deadline) keeps it.
        stopped_at = CASE WHEN clocks.started_at <> EXCLUDED.started_at
                          THEN NULL ELSE clocks.stopped_at END,
        breached = CASE WHEN clocks.started_at <> EXCLUDED.started_at
                        THEN false ELSE clocks.breached END,
        warned = CASE WHEN clocks.started_at <> EXCLUDED.started_at
                      THEN false ELSE clocks.warned END"""
# Any of started/stopped/warning/breached may arrive first; each only sets its own fields.
_CLOCK_FLAG_CONFLICT = """
    ON CONFLICT (complaint_id, clock, hop) DO UPDATE SET
        stopped_at = COALESCE(EXCLUDED.stopped_at, clocks.stopped_at),
        breached = clocks.breached OR EXCLUDED.breached,
        warned = clocks.warned OR EXCLUDED.warned,
        deadline = COALESCE(clocks.deadline, EXCLUDED.deadline),
        opd_code = COALESCE(clocks.opd_code, EXCLUDED.opd_code)"""


class IntakeRepository:
    """intake's SQL on one unit of work (``PgTx``): it folds the inbox row and the staged
    events into its single-statement paths."""

    def __init__(self, tx: PgTx[IntakeRepository]) -> None:
        self.tx = tx
        self.conn: asyncpg.Connection = tx.conn

    async def accept(self, row: dict[str, Any], reporter: dict[str, Any] | None,
                     reporter_fp: str, summary: str) -> bool:
        """Insert the complaint, its reporter, its first timeline entry and its
        ``complaint.submitted`` outbox row in ONE statement (atomic on its own; one round
        trip on the hot path). Nothing is written when the (source, external_id) or the
        tracking id is taken; True when this call created the complaint. On False the caller
        looks the submission up: found means a retry; not found, a tracking-id clash.
        The staged ``complaint.submitted`` event is written here (or dropped with the rest).
        """
        [event] = self.tx.take_staged()
        r = reporter or {}
        event_id, routing_key, payload = outbox_row(event)
        created = await self.conn.fetchval(
            """WITH c AS (
                   INSERT INTO complaints (id, tracking_id, source, external_id, fingerprint,
                       submission, classification, category, title, kecamatan, desa, anonymous,
                       confidential, reporter_ref, received_at, accepted_at)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)
                   ON CONFLICT DO NOTHING RETURNING id
               ), r AS (
                   INSERT INTO reporters (complaint_id, name, phone, email, nik, fingerprint)
                   SELECT id, $17, $18, $19, $20, $21 FROM c
               ), t AS (
                   INSERT INTO timeline (complaint_id, event_id, event_type, occurred_at, summary, data)
                   SELECT id, $22, $23, $24, $25, $26 FROM c
               ), o AS (
                   INSERT INTO outbox (event_id, routing_key, payload) SELECT $22, $23, $26 FROM c
               )
               SELECT count(*) FROM c""",
            row["id"], row["tracking_id"], row["source"], row["external_id"],
            row["fingerprint"], row["submission"], row["classification"], row["category"],
            row["title"], row["kecamatan"], row["desa"], row["anonymous"],
            row["confidential"], row["reporter_ref"], row["received_at"], row["accepted_at"],
            r.get("name"), r.get("phone"), r.get("email"), r.get("nik"), reporter_fp,
            event_id, routing_key, event.time, summary, payload,
        )
        return bool(created)

    async def find_by_source(self, source: str, external_id: str) -> asyncpg.Record | None:
        return await self.conn.fetchrow(
            """SELECT c.id, c.tracking_id, c.status, c.submission, r.fingerprint AS reporter_fp
               FROM complaints c JOIN reporters r ON r.complaint_id = c.id
               WHERE c.source = $1 AND c.external_id = $2""",
            source, external_id,
        )

    async def find(self, key: str) -> asyncpg.Record | None:
        """By complaint id (uuid) or tracking id."""
        try:
            cid = uuid.UUID(key)
        except ValueError:
            return await self.conn.fetchrow("SELECT * FROM complaints WHERE tracking_id = $1", key.upper())
        return await self.conn.fetchrow("SELECT * FROM complaints WHERE id = $1", cid)

    async def find_for_update(self, key: str) -> asyncpg.Record | None:
        """Like ``find``, locking the row until the transaction ends (actions serialise on it)."""
        try:
            cid = uuid.UUID(key)
        except ValueError:
            return await self.conn.fetchrow(
                "SELECT * FROM complaints WHERE tracking_id = $1 FOR UPDATE", key.upper())
        return await self.conn.fetchrow("SELECT * FROM complaints WHERE id = $1 FOR UPDATE", cid)

    async def lock(self, complaint_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.conn.fetchrow("SELECT * FROM complaints WHERE id = $1 FOR UPDATE",
                                        complaint_id)

    async def update_complaint(self, complaint_id: uuid.UUID, **fields: Any) -> None:
        """Set the given columns (names from code, never from input) and ``updated_at``."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        cols = list(fields)
        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=2))
        await self.conn.execute(
            f"UPDATE complaints SET {assignments}, updated_at = now() WHERE id = $1",
            complaint_id, *(fields[c] for c in cols))

    async def insert_response(self, complaint_id: uuid.UUID, opd_code: str, hop: int, body: str,
                              attachments: list[str], at: datetime) -> int:
        """Store an OPD response; returns its number within the complaint (1, 2, …).
        The caller holds the complaint's row lock, so numbering cannot race."""
        return await self.conn.fetchval(
            """INSERT INTO responses (complaint_id, opd_code, hop, response_no, body, attachments, created_at)
               SELECT $1, $2, $3, COALESCE(max(response_no), 0) + 1, $4, $5, $6
               FROM responses WHERE complaint_id = $1
               RETURNING response_no""",
            complaint_id, opd_code, hop, body, attachments, at)

    async def insert_reply(self, complaint_id: uuid.UUID, hop: int, body: str,
                           attachments: list[str], at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO reporter_replies (complaint_id, hop, body, attachments, created_at)"
            " VALUES ($1, $2, $3, $4, $5)", complaint_id, hop, body, attachments, at)

    async def responses_of(self, complaint_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT response_no, opd_code, hop, body, attachments, created_at FROM responses"
            " WHERE complaint_id = $1 ORDER BY response_no", complaint_id)

    async def replies_of(self, complaint_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT hop, body, attachments, created_at FROM reporter_replies"
            " WHERE complaint_id = $1 ORDER BY created_at, id", complaint_id)

    async def reporter_of(self, complaint_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.conn.fetchrow(
            "SELECT name, phone, email, nik FROM reporters WHERE complaint_id = $1", complaint_id)

    async def briefs(self, ids: list[uuid.UUID]) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT id, tracking_id, status FROM complaints WHERE id = ANY($1::uuid[])", ids)

    async def list_complaints(self, *, status: str | None, needs_triage: bool | None,
                              opd_code: str | None, source: str | None, opd_states: list[str] | None,
                              limit: int, offset: int) -> tuple[int, list[asyncpg.Record]]:
        where, args = [], []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if status is not None:
            where.append(f"status = {arg(status)}")
        if needs_triage is not None:
            where.append(f"needs_triage = {arg(needs_triage)}")
        if opd_code is not None:
            where.append(f"opd_code = {arg(opd_code)}")
        if source is not None:
            where.append(f"source = {arg(source)}")
        if opd_states is not None:
            where.append(f"status = ANY({arg(opd_states)}::text[])")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = await self.conn.fetchval(f"SELECT count(*) FROM complaints {clause}", *args)
        rows = await self.conn.fetch(
            f"""SELECT id, tracking_id, source, status, needs_triage, classification, category,
                       title, kecamatan, desa, opd_code, opd_name, hop, received_at, updated_at,
                       suggested_opd_code
                FROM complaints {clause}
                ORDER BY received_at DESC, id LIMIT {arg(limit)} OFFSET {arg(offset)}""", *args)
        return total, rows

    async def clocks_of(self, complaint_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT * FROM clocks WHERE complaint_id = $1 ORDER BY started_at NULLS LAST, clock, hop",
            complaint_id)

    async def timeline_of(self, complaint_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT event_type, occurred_at, summary FROM timeline WHERE complaint_id = $1"
            " ORDER BY occurred_at, id", complaint_id)

    async def add_timeline(self, complaint_id: uuid.UUID, event: CloudEvent, summary: str) -> None:
        await self.conn.execute(
            "INSERT INTO timeline (complaint_id, event_id, event_type, occurred_at, summary, data)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
            complaint_id, event.id, event.event_name, event.time, summary, event.data)

    async def apply_event(self, complaint_id: uuid.UUID, event: CloudEvent, effect: str | None,
                          effect_args: tuple, summary: str | None) -> EventApplied | None:
        """``lock`` + ``first_delivery`` + the effect + ``add_timeline`` in ONE statement.

        On the event's first delivery only: the effect (a key of ``_EFFECTS``, with its
        arguments; None for none) runs, and the timeline gets ``summary`` (None: no entry) — for
        a conditional effect (``mark_routed``) only when it applied. None when the complaint is
        unknown (nothing written). ``status``/``hop`` are the complaint's before the effect.
        """
        sql, conditional = _EFFECTS[effect] if effect else ("SELECT 1 WHERE false", False)
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
            complaint_id, event.id, event.type, event.event_name, event.time, summary, event.data,
            *effect_args)
        if r is None:
            return None
        self.tx.set_claimed(r["first"])
        return EventApplied(r["status"], r["hop"], r["first"], r["applied"])


@dataclass(frozen=True)
class EventApplied:
    status: str  # the complaint's, before the effect
    hop: int
    first: bool  # False: a redelivery, nothing was done
    applied: bool  # the effect changed a row


# The effects ``apply_event`` runs (as a CTE, on the first delivery only: ``first`` has a row).
# Parameters: $1 the complaint id, $8… the effect's own (see ``usecases._effect_of``).
# ``True``: the timeline entry depends on the effect.
_EFFECTS: dict[str, tuple[str, bool]] = {
    "mark_routed": ("""
        UPDATE complaints SET status = 'TERDISPOSISI', needs_triage = false,
            opd_code = $8, opd_name = $9, hop = $10, return_reason = NULL,
            last_transition_at = GREATEST(COALESCE(last_transition_at, received_at), $11),
            updated_at = now()
        WHERE id = $1 AND hop < $10 AND status IN ('DITERIMA', 'TERVERIFIKASI')
            AND EXISTS (SELECT 1 FROM first)
        RETURNING 1""", True),
    "set_suggestion": ("""
        UPDATE complaints SET suggested_opd_code = $8, suggested_opd_name = $9,
            suggested_rule_id = $10, suggested_at = $11,
            needs_triage = (hop = 0 AND status IN ('DITERIMA', 'TERVERIFIKASI', 'DITUNDA')),
            updated_at = now()
        WHERE id = $1 AND EXISTS (SELECT 1 FROM first)
        RETURNING 1""", False),
    "add_duplicate_candidates": ("""
        UPDATE complaints SET duplicate_candidates = ARRAY(
            SELECT DISTINCT x FROM unnest(duplicate_candidates || $8::uuid[]) AS x
            WHERE x <> $1), updated_at = now()
        WHERE id = $1 AND EXISTS (SELECT 1 FROM first)
        RETURNING 1""", False),
    "mark_needs_triage": ("""
        UPDATE complaints SET needs_triage = true, updated_at = now()
        WHERE id = $1 AND hop = 0 AND EXISTS (SELECT 1 FROM first)
        RETURNING 1""", False),
    "upsert_clock_started": (f"""
        INSERT INTO clocks (complaint_id, clock, hop, opd_code, started_at, deadline,
            working_days, calendar_version, policy_version)
        SELECT $1, $8, $9, $10, $11, $12, $13, $14, $15 FROM first
        {_CLOCK_STARTED_CONFLICT}
        RETURNING 1""", False),
    "upsert_clock_flag": (f"""
        INSERT INTO clocks (complaint_id, clock, hop, opd_code, stopped_at, breached, warned, deadline)
        SELECT $1, $8, $9, $10, $11::timestamptz, $12::boolean, $13::boolean, $14::timestamptz
        FROM first
        {_CLOCK_FLAG_CONFLICT}
        RETURNING 1""", False),
}


_UPDATABLE = frozenset({
    "status", "title", "original_title", "resume_state", "deferred_at", "last_transition_at",
    "archive_reason", "duplicate_of", "forwarded_to", "return_reason", "needs_triage",
    "opd_code", "opd_name", "hop", "rating", "rated_at", "last_responded_at", "last_reply_at",
    "closed_at", "closed_by", "closed_event_id",
})
