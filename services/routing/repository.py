"""All of routing's SQL. Tables live in the ``routing`` schema (search_path set by the pool)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from shared.events import CloudEvent
from shared.inbox import first_delivery
from shared.outbox import add_to_outbox
from services.routing.duplicates import MAX_CANDIDATES, SubmissionKey, window
from services.routing.model import DecisionRecord, Rulebook
from services.routing.rules import Rule

_RULE_COLUMNS = "id, category, kecamatan, opd_code, priority, version, enabled, auto_dispose"


async def load_rulebook(conn: asyncpg.Connection | asyncpg.Pool) -> Rulebook:
    rules = await conn.fetch(f"SELECT {_RULE_COLUMNS} FROM rules WHERE enabled ORDER BY id")
    opds = await conn.fetch("SELECT code, name FROM opds")
    return Rulebook(tuple(Rule(**dict(r)) for r in rules), {r["code"]: r["name"] for r in opds})


class RoutingRepository:
    """Operations of one transaction; the use case sees only these methods."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def first_delivery(self, event: CloudEvent) -> bool:
        return await first_delivery(self._conn, event)

    async def add_decision(self, d: DecisionRecord) -> bool:
        """False when a decision for (complaint, hop) already exists (it is kept)."""
        inserted = await self._conn.fetchval(
            "INSERT INTO decisions (complaint_id, hop, outcome, opd_code, rule_id, rule_version,"
            " reason, category, kecamatan, source_event_id, event_id, decided_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            " ON CONFLICT (complaint_id, hop) DO NOTHING RETURNING 1",
            d.complaint_id, d.hop, d.outcome, d.opd_code, d.rule_id, d.rule_version,
            d.reason, d.category, d.kecamatan, d.source_event_id, d.event_id, d.decided_at)
        return inserted is not None

    async def suspect_duplicates(self, key: SubmissionKey, window_days: int) -> list[uuid.UUID]:
        """Remember this submission and return the other complaints of the same category and
        desa received within the window: the MAX_CANDIDATES nearest, by received_at (see
        ``duplicates``).

        A transaction-scoped advisory lock on (category, desa) serialises two submissions of
        the same key handled at once (two consumers or replicas): the second waits for the
        first to commit, and its SELECT (a new snapshot under READ COMMITTED) then sees it.
        Without the lock both could miss each other and neither would be flagged.
        """
        if not key.has_desa:
            return []
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('routing.dup:' || $1 || '|' || $2, 0))",
            key.category, key.desa)
        await self._conn.execute(
            "INSERT INTO recent_submissions (complaint_id, category, desa, received_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (complaint_id) DO NOTHING",
            key.complaint_id, key.category, key.desa, key.received_at)
        low, high = window(key.received_at, window_days)
        rows = await self._conn.fetch(
            "SELECT complaint_id, received_at FROM recent_submissions"
            " WHERE category = $1 AND desa = $2 AND received_at BETWEEN $3 AND $4"
            " AND complaint_id <> $5"
            " ORDER BY abs(extract(epoch FROM received_at - $6::timestamptz)), complaint_id::text"
            " LIMIT $7",
            key.category, key.desa, low, high, key.complaint_id, key.received_at, MAX_CANDIDATES)
        rows = sorted(rows, key=lambda r: (r["received_at"], str(r["complaint_id"])))
        return [r["complaint_id"] for r in rows]

    async def add_to_outbox(self, *events: CloudEvent) -> None:
        await add_to_outbox(self._conn, *events)


@contextlib.asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool) -> AsyncIterator[RoutingRepository]:
    """One transaction: commits when the block ends normally, rolls back on an exception."""
    async with pool.acquire() as conn, conn.transaction():
        yield RoutingRepository(conn)


# Read side (HTTP API).

async def list_opds(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT code, name, kind FROM opds ORDER BY kind, code")
    return [dict(r) for r in rows]


async def list_kecamatan(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT code, name, opd_code FROM kecamatan ORDER BY name")
    return [dict(r) for r in rows]


async def list_categories(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT code, name, category_group AS \"group\", keywords, description"
        " FROM categories ORDER BY category_group, code")
    return [dict(r) for r in rows]


async def list_rules(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT {_RULE_COLUMNS}, note, updated_at FROM rules"
        " ORDER BY category, kecamatan, priority DESC, id")
    return [dict(r) for r in rows]


async def get_decisions(pool: asyncpg.Pool, complaint_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT complaint_id, hop, outcome, opd_code, rule_id, rule_version, reason, category,"
        " kecamatan, source_event_id, event_id, decided_at"
        " FROM decisions WHERE complaint_id = $1 ORDER BY hop", complaint_id)
    return [dict(r) for r in rows]
