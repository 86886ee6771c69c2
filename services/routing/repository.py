"""All of routing's SQL. Tables live in the ``routing`` schema (search_path set by the pool).
Callers get the typed models of ``model``, never asyncpg Records."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from services.routing.duplicates import SubmissionKey, window
from services.routing.model import (
    Category,
    DecisionRecord,
    DecisionStatus,
    Kecamatan,
    Opd,
    Rulebook,
    RuleListing,
)
from services.routing.rules import Rule
from shared.events import CloudEvent
from shared.outbox import outbox_row, staged_on
from shared.retention import deleted
from shared.uow import INBOX_INSERT, PgTx

_RULE_COLUMNS = "id, category, kecamatan, opd_code, priority, version, enabled, auto_dispose"


async def load_rulebook(conn: asyncpg.Connection | asyncpg.Pool) -> Rulebook:
    rules = await conn.fetch(f"SELECT {_RULE_COLUMNS} FROM rules WHERE enabled ORDER BY id")
    opds = await conn.fetch("SELECT code, name FROM opds")
    return Rulebook(tuple(Rule(**dict(r)) for r in rules), {r["code"]: r["name"] for r in opds})


class RoutingRepository:
    """The write side, on one unit of work (``PgUnitOfWork(pool, RoutingRepository)``): the
    operations of its transaction; the use case sees only these methods."""

    def __init__(self, tx: PgTx[RoutingRepository]) -> None:
        self._tx = tx
        self._conn = tx.conn

    async def record_decision(self, d: DecisionRecord, emitted: CloudEvent,
                              key: SubmissionKey) -> DecisionStatus:
        """The unit of work's inbox record (``INBOX_INSERT``, reported with ``set_claimed``)
        + the decision + ``emitted`` written to the outbox + remembering the submission for
        duplicate suspicion, in ONE statement: everything after the inbox record happens
        only on the event's first delivery, and only when no decision for (complaint, hop)
        exists yet. The inbox row commits either way.

        It also takes a transaction-scoped advisory lock on (category, desa): two
        submissions of the same key handled at once (two consumers or replicas) serialise,
        and the second one's ``duplicate_candidates`` — a new statement, so a snapshot taken
        after the lock under READ COMMITTED — sees the first. Without the lock both could
        miss each other and neither would be flagged."""
        event = self._tx.event
        if event is None:
            raise RuntimeError("record_decision needs the unit of work's event")
        event_id, routing_key, payload = outbox_row(emitted)
        r = await self._conn.fetchrow(
            f"""WITH first AS ({INBOX_INSERT}),
               d AS (
                   INSERT INTO decisions (complaint_id, hop, outcome, opd_code, rule_id,
                       rule_version, reason, category, kecamatan, source_event_id, event_id,
                       decided_at)
                   SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $1, $12, $13 FROM first
                   ON CONFLICT (complaint_id, hop) DO NOTHING RETURNING 1
               ), s AS (
                   INSERT INTO recent_submissions (complaint_id, category, desa, received_at)
                   SELECT $3, $14, $15, $16 FROM d WHERE $15 <> ''
                   ON CONFLICT (complaint_id) DO NOTHING
               ), o AS (
                   INSERT INTO outbox (event_id, routing_key, payload) SELECT $12, $17, $18 FROM d
               )
               SELECT (SELECT count(*) FROM first) AS first, (SELECT count(*) FROM d) AS decided,
                      CASE WHEN $15 <> '' AND EXISTS (SELECT 1 FROM d) THEN pg_advisory_xact_lock(
                          hashtextextended('routing.dup:' || $14 || '|' || $15, 0))::text END""",
            event.id, event.type, d.complaint_id, d.hop, d.outcome, d.opd_code, d.rule_id,
            d.rule_version, d.reason, d.category, d.kecamatan, event_id, d.decided_at,
            key.category, key.desa, key.received_at, routing_key, payload)
        self._tx.set_claimed(bool(r["first"]))
        if not r["first"]:
            return "duplicate_event"
        if not r["decided"]:
            return "already_decided"
        staged_on(self._conn)
        return "decided"

    async def duplicate_candidates(self, key: SubmissionKey, window_days: int,
                                   limit: int) -> list[uuid.UUID]:
        """The other complaints of the same category and desa received within the window: the
        ``limit`` nearest, listed by received_at (see ``duplicates``); call after
        ``record_decision`` remembered ``key`` and took its lock."""
        if not key.has_desa:
            return []
        # The duplicate-candidate rule (see ``duplicates``): equality on the normalised keys,
        # the window as an inclusive range, the ``limit`` nearest in time (ties: lower id).
        low, high = window(key.received_at, window_days)
        rows = await self._conn.fetch(
            "SELECT complaint_id, received_at FROM recent_submissions"
            " WHERE category = $1 AND desa = $2 AND received_at BETWEEN $3 AND $4"
            " AND complaint_id <> $5"
            " ORDER BY abs(extract(epoch FROM received_at - $6::timestamptz)), complaint_id::text"
            " LIMIT $7",
            key.category, key.desa, low, high, key.complaint_id, key.received_at, limit)
        rows = sorted(rows, key=lambda r: (r["received_at"], str(r["complaint_id"])))
        return [r["complaint_id"] for r in rows]


# Read side (HTTP API): plain reads on the pool, no unit of work.

async def list_opds(pool: asyncpg.Pool) -> list[Opd]:
    rows = await pool.fetch("SELECT code, name, kind FROM opds ORDER BY kind, code")
    return [Opd(**dict(r)) for r in rows]


async def list_kecamatan(pool: asyncpg.Pool) -> list[Kecamatan]:
    rows = await pool.fetch("SELECT code, name, opd_code FROM kecamatan ORDER BY name")
    return [Kecamatan(**dict(r)) for r in rows]


async def list_categories(pool: asyncpg.Pool) -> list[Category]:
    rows = await pool.fetch(
        "SELECT code, name, category_group AS \"group\", keywords, description"
        " FROM categories ORDER BY category_group, code")
    return [Category(**dict(r)) for r in rows]


async def list_rules(pool: asyncpg.Pool) -> list[RuleListing]:
    rows = await pool.fetch(
        f"SELECT {_RULE_COLUMNS}, note, updated_at FROM rules"
        " ORDER BY category, kecamatan, priority DESC, id")
    return [RuleListing(**dict(r)) for r in rows]


async def get_decisions(pool: asyncpg.Pool, complaint_id: uuid.UUID) -> list[DecisionRecord]:
    rows = await pool.fetch(
        "SELECT complaint_id, hop, outcome, opd_code, rule_id, rule_version, reason, category,"
        " kecamatan, source_event_id, event_id, decided_at"
        " FROM decisions WHERE complaint_id = $1 ORDER BY hop", complaint_id)
    return [DecisionRecord(**dict(r)) for r in rows]


# Retention (``shared.retention``): one bounded statement per call.

async def prune_recent_submissions(pool: asyncpg.Pool, *, older_than: timedelta,
                                   limit: int) -> int:
    """Forget at most ``limit`` remembered submissions that no new complaint can be compared
    with any more: both received and recorded longer than ``older_than`` ago (the duplicate
    window plus a margin for complaints that reach routing late; see ``duplicates``)."""
    status = await pool.execute(
        "DELETE FROM recent_submissions WHERE complaint_id IN (SELECT complaint_id"
        " FROM recent_submissions WHERE recorded_at < now() - $1::interval"
        " AND received_at < now() - $1::interval ORDER BY recorded_at LIMIT $2"
        " FOR UPDATE SKIP LOCKED)", older_than, limit)
    return deleted(status)
