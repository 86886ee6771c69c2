"""The scanner's claim (``repository.CLAIM_DUE``) against real PostgreSQL: it reads the due
timers off the pending-timers index in fire order and stops after its batch, whatever the
statistics say about how many are due — the plan that keeps its cost independent of the
backlog (bench/timers.py measures it)."""

from __future__ import annotations

import json
import uuid

import pytest

from services.sla.app import MIGRATIONS
from services.sla.repository import CLAIM_DUE, PgSlaRepository
from shared.db import create_pool, migrate
from shared.uow import PgUnitOfWork
from tests.infra import drop_schema

pytestmark = pytest.mark.integration

CLOCKS = """
INSERT INTO clocks (complaint_id, clock, hop, policy_key, opd_code, started_at, working_days,
    deadline, initial_deadline, calendar_version, policy_version)
SELECT gen_random_uuid(), 'opd_response', 1, 'opd_response', $3, now() - interval '9 days', 5,
    now() + $2 * interval '1 second' + g * interval '1 millisecond', now(), 'test', 1
FROM generate_series(1, $1) AS g
"""
TIMERS = """
INSERT INTO timers (clock_id, kind, point, due_at, fire_at)
SELECT id, k.kind, k.point, deadline + k.after, deadline + k.after FROM clocks
CROSS JOIN (VALUES ('breach', '', interval '0'), ('escalate', '1:pejabat_penghubung:0:1', interval '0'),
                   ('escalate', '2:kepala_opd:2:1', interval '2 days')) AS k(kind, point, after)
WHERE opd_code = $1
"""


def nodes(plan: dict) -> list[dict]:
    return [plan] + [n for child in plan.get("Plans", ()) for n in nodes(child)]


@pytest.fixture
async def pool(settings):
    schema = f"sla_claim_{uuid.uuid4().hex[:6]}"
    await migrate(settings.database_url, schema, MIGRATIONS)
    pool = await create_pool(settings.database_url, schema=schema, min_size=1, max_size=2)
    yield pool
    await pool.close()
    await drop_schema(settings.database_url, schema)


async def test_the_claim_reads_due_timers_in_index_order_even_when_statistics_miss_them(pool):
    async with pool.acquire() as conn:
        await conn.execute(CLOCKS, 20_000, 7 * 86_400.0, "future")  # 60k timers, none due
        await conn.execute(TIMERS, "future")
        await conn.execute("ANALYZE clocks")
        await conn.execute("ANALYZE timers")
        # A backlog the statistics know nothing of: 3 000 clocks came due after ANALYZE.
        await conn.execute(CLOCKS, 3_000, -3_600.0, "due")
        await conn.execute(TIMERS, "due")
        explained = await conn.fetchval("EXPLAIN (FORMAT JSON) " + CLAIM_DUE, 500)
    [plan] = json.loads(explained) if isinstance(explained, str) else explained
    every = nodes(plan["Plan"])
    [due] = [n for n in every if n.get("Subplan Name") == "CTE due"]
    # The batch: an ordered index scan cut by the LIMIT, nothing sorted or scanned whole.
    assert [n["Node Type"] for n in nodes(due)] == ["Limit", "Result", "LockRows", "Index Scan"]
    assert {(n.get("Relation Name"), n["Node Type"], n.get("Index Name")) for n in every
            if n.get("Relation Name")} == {("timers", "Index Scan", "timers_pending_fire"),
                                           ("clocks", "Index Scan", "clocks_pkey")}
    # Only the claimed batch is sorted (for the events' order), after the LIMIT.
    assert [n["Node Type"] for n in every].count("Sort") <= 1

    async with PgUnitOfWork(lambda: pool, PgSlaRepository)() as tx:
        claimed = await tx.repo.claim_due_timers(500)
    assert len(claimed) == 500 and all(t.opd_code == "due" for t in claimed)
    # The earliest due first, in fire order.
    due_at = [t.due_at for t in claimed]
    assert due_at == sorted(due_at)
    left = await pool.fetchrow(
        "SELECT count(*) AS n, min(fire_at) AS first FROM timers"
        " WHERE fired_at IS NULL AND fire_at <= now()")
    assert left["n"] == 2 * 3_000 - 500  # breach + first escalation step; the second is days away
    assert max(due_at) <= left["first"]
