"""Retention pruning removes only what no rule reads any more, in bounded batches (real
PostgreSQL; each test migrates a schema of its own)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from services.notify.repository import prune_delivered, prune_delivery_attempts
from services.routing.repository import prune_recent_submissions
from shared.db import create_pool, migrate
from shared.retention import Retention, days
from shared.settings import RetentionSettings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EMPTY_DIR = Path(__file__).parent / "no-migrations"


@pytest.fixture
async def make_schema(settings):
    """Migrates a fresh schema (``migrations`` of a service, or the shared ones alone) and
    returns a pool on it; drops them all at the end."""
    made: list[tuple[str, asyncpg.Pool]] = []

    async def make(migrations: Path = EMPTY_DIR) -> asyncpg.Pool:
        name = f"ret_{uuid.uuid4().hex[:10]}"
        await migrate(settings.database_url, name, migrations)
        pool = await create_pool(settings.database_url, schema=name, min_size=1, max_size=2)
        made.append((name, pool))
        return pool

    yield make
    conn = await asyncpg.connect(settings.database_url)
    try:
        for name, pool in made:
            await pool.close()
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        await conn.close()


def _retention(registry: CollectorRegistry | None = None, **overrides) -> Retention:
    return Retention("test", RetentionSettings(**{"batch_size": 2, **overrides}),
                     registry or CollectorRegistry())


async def _insert_outbox(pool, event_id: str, *, sent_days_ago: float | None,
                         set_aside: bool = False) -> None:
    await pool.execute(
        "INSERT INTO outbox (event_id, routing_key, payload, created_at, sent_at, set_aside_at)"
        " VALUES ($1, 'complaint.x', $2, now() - interval '400 days',"
        " now() - make_interval(secs => $3), CASE WHEN $4 THEN now() END)",
        event_id, json.dumps({"id": event_id}),
        None if sent_days_ago is None else sent_days_ago * 86400.0, set_aside)


async def test_outbox_and_inbox_prune_only_past_their_retention_in_batches(make_schema):
    pool = await make_schema()
    for i in range(5):
        await _insert_outbox(pool, f"old-{i}", sent_days_ago=8)
    await _insert_outbox(pool, "recent", sent_days_ago=6)
    await _insert_outbox(pool, "unsent", sent_days_ago=None)  # 400 days old, never sent
    await _insert_outbox(pool, "aside", sent_days_ago=None, set_aside=True)
    await pool.executemany(
        "INSERT INTO inbox (event_id, event_type, consumed_at)"
        " VALUES ($1, 't', now() - make_interval(days => $2))",
        [("in-old-1", 31), ("in-old-2", 40), ("in-old-3", 90), ("in-new", 29)])

    registry = CollectorRegistry()
    retention = _retention(registry, outbox_sent_days=7, inbox_days=30)
    counts = await retention.prune_once(pool)

    assert counts == {"outbox": 5, "inbox": 3}
    left = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM outbox")}
    assert left == {"recent", "unsent", "aside"}
    assert {r["event_id"] for r in await pool.fetch("SELECT event_id FROM inbox")} == {"in-new"}
    assert await retention.prune_once(pool) == {"outbox": 0, "inbox": 0}
    for table, n in (("outbox", 5), ("inbox", 3)):
        assert registry.get_sample_value(
            "sp4n_retention_pruned_total", {"service": "test", "table": table}) == n


async def test_a_round_runs_at_most_max_batches_of_batch_size(make_schema):
    pool = await make_schema()
    for i in range(7):
        await _insert_outbox(pool, f"old-{i}", sent_days_ago=30)
    retention = _retention(outbox_sent_days=7, max_batches=2)
    assert (await retention.prune_once(pool))["outbox"] == 4  # 2 batches of 2
    assert (await retention.prune_once(pool))["outbox"] == 3  # 2 + the short last one
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_routing_forgets_submissions_past_the_window_and_margin(make_schema):
    pool = await make_schema(ROOT / "services/routing/migrations")
    rows = {  # received, recorded (days ago)
        "old": (20, 20),
        "backdated-late-arrival": (400, 1),  # an import processed yesterday: still compared
        "received-recently": (1, 20),
        "fresh": (1, 1),
    }
    ids = {name: uuid.uuid4() for name in rows}
    await pool.executemany(
        "INSERT INTO recent_submissions (complaint_id, category, desa, received_at, recorded_at)"
        " VALUES ($1, 'jalan', 'sungai ayak', now() - make_interval(days => $2),"
        " now() - make_interval(days => $3))",
        [(ids[name], rec, stored) for name, (rec, stored) in rows.items()])
    keep = timedelta(days=7 + 3)
    assert await prune_recent_submissions(pool, older_than=keep, limit=10) == 1
    left = {r["complaint_id"] for r in await pool.fetch("SELECT complaint_id FROM recent_submissions")}
    assert left == {ids[n] for n in ("backdated-late-arrival", "received-recently", "fresh")}


async def test_notify_prunes_old_delivered_and_dead_lettered_attempts_never_pending(make_schema):
    pool = await make_schema(ROOT / "services/notify/migrations")

    async def delivery(name: str, status: str, finished_days_ago: float) -> int:
        delivery_id: int = await pool.fetchval(
            "INSERT INTO deliveries (event_id, event_type, event_name, event_time, subscription,"
            " webhook_id, body, status, delivered_at, dead_lettered_at, created_at)"
            " VALUES ($1, 't', 'complaint.x', now(), 'sub', $1, '{}', $2,"
            "  CASE WHEN $2 = 'delivered' THEN now() - make_interval(days => $3) END,"
            "  CASE WHEN $2 = 'dead_lettered' THEN now() - make_interval(days => $3) END,"
            "  now() - make_interval(days => $3 + 1))"
            " RETURNING id", name, status, finished_days_ago)
        await pool.executemany(
            "INSERT INTO delivery_attempts (delivery_id, round, attempt, started_at, duration_ms)"
            " VALUES ($1, 1, $2, now() - make_interval(days => $3), 5)",
            [(delivery_id, n, finished_days_ago + 1) for n in (1, 2)])
        return delivery_id

    old_delivered = await delivery("old-delivered", "delivered", 40)
    await delivery("new-delivered", "delivered", 10)
    old_dead = await delivery("old-dead", "dead_lettered", 100)
    await delivery("new-dead", "dead_lettered", 40)
    await delivery("pending", "pending", 400)

    retention = _retention()
    retention.add("delivery_attempts", lambda p, limit: prune_delivery_attempts(
        p, delivered_older_than=days(30), dead_lettered_older_than=days(90), limit=limit))
    retention.add("deliveries", lambda p, limit: prune_delivered(p, older_than=days(30), limit=limit))
    counts = await retention.prune_once(pool)

    assert counts["delivery_attempts"] == 4 and counts["deliveries"] == 1
    left = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM deliveries")}
    assert left == {"new-delivered", "old-dead", "new-dead", "pending"}  # dead-lettered: replayable
    attempts = await pool.fetch(
        "SELECT d.event_id, count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id"
        " GROUP BY d.event_id")
    assert {r["event_id"]: r["count"] for r in attempts} == {
        "new-delivered": 2, "new-dead": 2, "pending": 2}
    assert old_delivered not in {r["id"] for r in await pool.fetch("SELECT id FROM deliveries")}
    assert old_dead in {r["id"] for r in await pool.fetch("SELECT id FROM deliveries")}
