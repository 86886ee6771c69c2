"""The outbox relay's lease, publish timeout, set-aside and drain, against real PostgreSQL
(and RabbitMQ for the drain at shutdown)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aio_pika
import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from shared.events import ComplaintTriageRequired, make_event
from shared.outbox import (
    OutboxGauges,
    OutboxRelay,
    PublishFailed,
    add_to_outbox,
    list_set_aside,
    release_set_aside,
)
from shared.service import ServiceRuntime
from shared.topology import events_exchange

pytestmark = pytest.mark.integration
EMPTY_DIR = Path(__file__).parent / "no-migrations"


@pytest.fixture
async def schema(settings):
    """A fresh schema of this test alone (the shared migrations applied)."""
    from shared.db import migrate

    name = f"relay_{uuid.uuid4().hex[:10]}"
    await migrate(settings.database_url, name, EMPTY_DIR)
    yield name
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def pool(settings, schema):
    from shared.db import create_pool

    pool = await create_pool(settings.database_url, schema=schema, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def other(settings, schema):
    """Another session on the schema: what a second replica or an operator would see."""
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": schema})
    yield conn
    await conn.close()


def _event():
    return make_event("test", ComplaintTriageRequired(
        complaint_id=uuid.uuid4(), reason="no rule", category="jalan"))


async def _stage(pool, n: int):
    events = [_event() for _ in range(n)]
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, *events)
    return events


async def _rows(conn):
    return {r["event_id"]: r for r in await conn.fetch(
        "SELECT event_id, sent_at, lease_until > now() AS leased, attempts, last_error,"
        " set_aside_at FROM outbox")}


async def test_publish_holds_no_transaction_and_no_row_lock(pool, other, schema):
    events = await _stage(pool, 3)
    entered, release = asyncio.Event(), asyncio.Event()
    published: list[str] = []

    async def publish(event):
        entered.set()
        await release.wait()
        published.append(event.id)

    task = asyncio.create_task(OutboxRelay(pool, publish).relay_once())
    await asyncio.wait_for(entered.wait(), 10)
    # While the broker has not confirmed: no session of the relay's pool is in a transaction…
    states = await other.fetch(
        "SELECT state FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
        f"sp4n-{schema}")
    assert states and not [s for s in states if s["state"].startswith("idle in transaction")]
    # …and another session can lock and change the leased rows at once.
    async with other.transaction():
        locked = await other.fetch("SELECT id FROM outbox FOR UPDATE NOWAIT")
        await other.execute("UPDATE outbox SET last_error = 'touched'")
    assert len(locked) == 3
    rows = await _rows(other)
    assert all(r["leased"] and r["attempts"] == 1 and r["sent_at"] is None for r in rows.values())
    release.set()
    assert await task == 3
    rows = await _rows(other)
    assert sorted(published) == sorted(e.id for e in events)
    assert all(r["sent_at"] is not None and not r["leased"] for r in rows.values())


async def test_publish_timeout_fails_that_row_and_the_others_are_sent(pool, other):
    slow, *fast = await _stage(pool, 4)

    async def publish(event):
        if event.id == slow.id:
            await asyncio.Event().wait()  # the broker never confirms this one

    relay = OutboxRelay(pool, publish, publish_timeout_s=0.2, backoff_s=30)
    assert await relay.relay_once() == 4
    rows = await _rows(other)
    assert all(rows[e.id]["sent_at"] is not None for e in fast)
    failed = rows[slow.id]
    assert failed["sent_at"] is None and failed["set_aside_at"] is None
    assert failed["last_error"] == "publish not confirmed within the publish timeout"
    assert failed["attempts"] == 1 and failed["leased"]  # retried after its backoff
    # In backoff it is not claimed again; it counts as unsent.
    assert await relay.relay_once() == 0
    await other.execute("UPDATE outbox SET created_at = now() - interval '1 hour'")
    registry = CollectorRegistry()
    await OutboxGauges(registry, "test").refresh(pool)
    assert registry.get_sample_value("sp4n_outbox_unsent", {"service": "test"}) == 1
    assert registry.get_sample_value("sp4n_outbox_oldest_unsent_age_seconds",
                                     {"service": "test"}) >= 3600


async def test_poison_row_is_set_aside_after_max_attempts_and_the_batch_is_sent(pool, other):
    await other.execute(
        "INSERT INTO outbox (event_id, routing_key, payload) VALUES ('poison', 'complaint.x', $1)",
        json.dumps({"id": "poison", "data": {"nik": "3201234567890001"}}))
    good = await _stage(pool, 5)
    published: list[str] = []
    set_aside: list[int] = []

    async def publish(event):
        published.append(event.id)

    relay = OutboxRelay(pool, publish, max_attempts=3, backoff_s=0, on_set_aside=set_aside.append)
    assert await relay.relay_once() == 6
    assert sorted(published) == sorted(e.id for e in good)  # not blocked by the poison row
    rows = await _rows(other)
    assert rows["poison"]["attempts"] == 1 and rows["poison"]["set_aside_at"] is None
    assert "invalid CloudEvent" in rows["poison"]["last_error"]
    assert "3201234567890001" not in rows["poison"]["last_error"]  # field names, never values
    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 1
    assert set_aside == [1]
    assert await relay.relay_once() == 0  # set aside: never claimed again
    rows = await _rows(other)
    assert rows["poison"]["attempts"] == 3 and rows["poison"]["set_aside_at"] is not None
    assert rows["poison"]["sent_at"] is None

    registry = CollectorRegistry()
    await OutboxGauges(registry, "test").refresh(pool)
    assert [registry.get_sample_value(f"sp4n_outbox_{g}", {"service": "test"})
            for g in ("unsent", "set_aside", "oldest_unsent_age_seconds")] == [0, 1, 0]

    [listed] = await list_set_aside(pool)
    assert (listed.event_id, listed.attempts) == ("poison", 3)
    assert await release_set_aside(pool, [listed.id]) == 1
    assert await list_set_aside(pool) == []
    assert await relay.relay_once() == 1  # the relay takes it again, with fresh attempts
    assert (await _rows(other))["poison"]["attempts"] == 1


async def test_broker_outage_sets_nothing_aside(pool, other):
    await _stage(pool, 3)

    async def down(_event):
        raise ConnectionError("broker down")

    relay = OutboxRelay(pool, down, max_attempts=1)
    for _ in range(3):
        with pytest.raises(PublishFailed):
            await relay.relay_once()
    rows = await _rows(other)
    assert all(r["set_aside_at"] is None and r["attempts"] == 0 and not r["leased"]
               for r in rows.values())


async def test_crashed_relays_rows_are_republished_after_the_lease(pool, other):
    events = await _stage(pool, 4)
    entered = asyncio.Event()

    async def hang(_event):
        entered.set()
        await asyncio.Event().wait()

    crashed = asyncio.create_task(OutboxRelay(pool, hang, lease_s=1.0).relay_once())
    await asyncio.wait_for(entered.wait(), 10)
    crashed.cancel()  # the process dies mid-publish: nothing marks the rows
    with pytest.raises(asyncio.CancelledError):
        await crashed
    published: list[str] = []

    async def publish(event):
        published.append(event.id)

    survivor = OutboxRelay(pool, publish)
    assert await survivor.relay_once() == 0  # still leased by the dead relay
    for _ in range(100):
        if await survivor.relay_once():
            break
        await asyncio.sleep(0.1)
    assert sorted(published) == sorted(e.id for e in events)
    rows = await _rows(other)
    assert all(r["sent_at"] is not None and r["attempts"] == 2 for r in rows.values())


async def test_connection_lost_mid_batch_republishes_after_the_lease(pool, other, schema):
    published: list[str] = []
    cut = False

    async def publish(event):
        nonlocal cut
        published.append(event.id)
        if cut:  # the database link drops between the claim and the mark
            cut = False
            await other.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE application_name = $1", f"sp4n-{schema}")
            # pg_terminate_backend only signals: wait until the backends are gone.
            for _ in range(100):
                if not await other.fetchval("SELECT count(*) FROM pg_stat_activity"
                                            " WHERE application_name = $1", f"sp4n-{schema}"):
                    break
                await asyncio.sleep(0.05)

    relay = OutboxRelay(pool, publish, lease_s=1.0)
    # The pool may replace a dead connection before the mark runs (then the batch is simply
    # sent); try until the cut lands between the claim and the mark, as it will in practice.
    for _ in range(10):
        events = await _stage(pool, 3)
        published.clear()
        cut = True
        try:
            await relay.relay_once()
        except Exception:  # noqa: BLE001 - whichever error the dead connection gives
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the cut never landed between the claim and the mark")
    ids = {e.id for e in events}
    rows = {k: r for k, r in (await _rows(other)).items() if k in ids}
    assert len(rows) == 3 and all(r["sent_at"] is None for r in rows.values())
    for _ in range(100):
        try:
            if await relay.relay_once():
                break
        except Exception:  # noqa: BLE001, S110 - the pool replaces its dead connections
            pass
        await asyncio.sleep(0.1)
    rows = {k: r for k, r in (await _rows(other)).items() if k in ids}
    assert all(r["sent_at"] is not None for r in rows.values())
    # At least once: the batch went out twice; consumers deduplicate on the event id.
    assert sorted(published) == sorted([e.id for e in events] * 2)


async def test_run_stop_drains_what_is_left(pool, other):
    events = await _stage(pool, 450)
    published: list[str] = []

    async def publish(event):
        published.append(event.id)

    relay = OutboxRelay(pool, publish, batch_size=100, poll_interval_s=3600)
    relay.stop()  # asked to stop before it ran: it still publishes everything claimable
    await asyncio.wait_for(relay.run(), 30)
    assert sorted(published) == sorted(e.id for e in events)
    assert await other.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0


async def test_service_shutdown_drains_the_outbox_to_the_broker(settings, schema):
    s = settings.model_copy(update={"outbox_poll_interval_s": 3600.0})
    runtime = ServiceRuntime(schema, s, EMPTY_DIR, title="drain test")
    conn = await aio_pika.connect_robust(settings.amqp_url)
    events = [_event() for _ in range(300)]
    try:
        async with runtime.app.router.lifespan_context(runtime.app):
            ch = await conn.channel()
            probe = await ch.declare_queue(f"{settings.namespace}.drain-probe-{schema}", exclusive=True)
            await probe.bind(events_exchange(settings.namespace).name,
                             routing_key="complaint.triage_required")
            # Rows committed on a session outside the pool: nothing wakes the relay, and its
            # poll is an hour away; only the drain at shutdown can publish them.
            db = await asyncpg.connect(settings.database_url, server_settings={"search_path": schema})
            try:
                await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                                        schema="pg_catalog")
                await add_to_outbox(db, *events)
            finally:
                await db.close()
        unsent = await _unsent(settings, schema)
        seen: set[str] = set()
        while (msg := await probe.get(fail=False, no_ack=True)) is not None:
            seen.add(json.loads(msg.body)["id"])
    finally:
        await conn.close()
    assert unsent == 0
    assert seen >= {e.id for e in events}


async def _unsent(settings, schema) -> int:
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": schema})
    try:
        n: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        return n
    finally:
        await conn.close()
