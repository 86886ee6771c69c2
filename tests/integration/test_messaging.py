"""Outbox, inbox and dead-lettering against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest
from prometheus_client import CollectorRegistry

from services.notify.bindings import BindingKeeper
from services.notify.signing import generate_secret
from services.notify.subscriptions import Subscription
from shared.broker import (
    declare_queue,
    declare_retry_queues,
    declare_topology,
    make_broker,
    publish_event,
    subscribe,
)
from shared.db import create_pool, migrate
from shared.events import EVENT_MODELS, ComplaintSubmitted, ComplaintTriageRequired, Location, make_event
from shared.outbox import OutboxRelay, PublishFailed, add_to_outbox
from shared.topology import NOTIFY_ALERTS, NOTIFY_ON_DEMAND, QueueSpec, events_exchange
from shared.uow import PgUnitOfWork
from tests.infra import next_message

pytestmark = pytest.mark.integration
SCHEMA = "messaging_test"
EMPTY_DIR = Path(__file__).parent / "no-migrations"


@pytest.fixture(scope="module")
async def pool(settings):
    await migrate(settings.database_url, SCHEMA, EMPTY_DIR)
    pool = await create_pool(settings.database_url, schema=SCHEMA, min_size=1, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def topology(settings):
    conn = await aio_pika.connect_robust(settings.amqp_url)
    async with conn.channel() as ch:
        await declare_topology(ch, settings.namespace, settings.delivery_limit)
    yield conn
    await conn.close()


@pytest.fixture
async def own_queue(settings, topology):
    """A queue of this test alone, declared like the product's (quorum, limit, DLQ)."""
    spec = QueueSpec("test", f"q{uuid.uuid4().hex[:8]}", ("test.submitted",))
    async with topology.channel() as ch:
        await declare_queue(ch, settings.namespace, spec, settings.delivery_limit)
    yield spec
    async with topology.channel() as ch:
        for name in (spec.name(settings.namespace), spec.dlq_name(settings.namespace)):
            await ch.queue_delete(name, if_unused=False, if_empty=False)


def _event():
    return make_event("test", ComplaintTriageRequired(
        complaint_id=uuid.uuid4(), reason="no rule", category="jalan"))


async def test_migrations_rerun_is_noop(settings, pool):
    again = await migrate(settings.database_url, SCHEMA, EMPTY_DIR)
    assert again == []


async def test_two_relays_publish_each_event_exactly_once(settings, pool):
    published: list[str] = []
    lock = asyncio.Lock()

    async def publish(event):
        await asyncio.sleep(0.001)  # let the other relay interleave
        async with lock:
            published.append(event.id)

    events = [_event() for _ in range(300)]
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, *events)
    relays = [OutboxRelay(pool, publish, batch_size=25) for _ in range(2)]

    async def drain(relay):
        while await relay.relay_once():
            pass

    await asyncio.gather(*(drain(r) for r in relays))
    assert sorted(published) == sorted(e.id for e in events)
    assert len(published) == len(set(published)) == 300
    unsent = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    assert unsent == 0


async def test_relay_leaves_rows_unsent_when_publish_fails(pool):
    async def broken(_event):
        raise ConnectionError("broker down")

    event = _event()
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, event)
    with pytest.raises(PublishFailed):
        await OutboxRelay(pool, broken).relay_once()
    row = await pool.fetchrow("SELECT sent_at, lease_until, attempts, last_error, set_aside_at"
                              " FROM outbox WHERE event_id = $1", event.id)
    # The broker refused everything: the attempt is not held against the row, which stays
    # claimable at once with the error kept.
    assert row["sent_at"] is None and row["lease_until"] is None and row["set_aside_at"] is None
    assert row["attempts"] == 0 and row["last_error"] == "ConnectionError: broker down"


async def test_relay_publishes_to_real_broker(settings, pool, topology):
    broker = make_broker(settings, CollectorRegistry(), "test")
    await broker.start()
    try:
        ch = await topology.channel()
        queue = await ch.declare_queue(f"{settings.namespace}.probe", exclusive=True)
        await queue.bind(events_exchange(settings.namespace).name, routing_key="complaint.triage_required")
        event = _event()
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, event)
        relay = OutboxRelay(pool, lambda e: publish_event(broker, settings.namespace, e))
        while await relay.relay_once():
            pass
        # Earlier tests may have left unsent rows; they are published too. Find ours.
        seen = {}
        for _ in range(50):
            msg = await queue.get(fail=False)
            if msg is None:
                if event.id in seen:
                    break
                await asyncio.sleep(0.1)
                continue
            seen[json.loads(msg.body)["id"]] = msg
        assert event.id in seen
        msg = seen[event.id]
        assert json.loads(msg.body)["type"].endswith("complaint.triage_required.v1")
        assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        await ch.close()
    finally:
        await broker.stop()


async def test_inbox_ignores_redelivered_event(pool):
    event = _event()
    effects = []

    uow = PgUnitOfWork(lambda: pool, lambda tx: None)

    async def apply(ev):
        async with uow(ev) as tx:
            if await tx.claim():
                effects.append(ev.id)

    await apply(event)
    await apply(event)
    await apply(event.model_copy())
    assert effects == [event.id]


async def test_notify_binds_the_alerting_events_always_and_the_on_demand_ones_while_wanted(
        settings, topology):
    """A queue declared with notify's bindings gets the alerting events and none of notify's
    own notification.* events; the on-demand ones (complaint.submitted, clock starts/stops)
    only while an enabled subscription asks for them (published to the real topic exchange)."""
    ns = settings.namespace
    spec = QueueSpec("test", f"n{uuid.uuid4().hex[:8]}", NOTIFY_ALERTS.routing_keys)
    subscriptions: list[Subscription] = []

    async def load() -> list[Subscription]:
        return subscriptions

    async with topology.channel() as ch:
        await declare_queue(ch, ns, spec, settings.delivery_limit)
        keeper = BindingKeeper(spec.name(ns), events_exchange(ns).name, load, topology.channel)
        try:
            exchange = await ch.get_exchange(events_exchange(ns).name)
            queue = await ch.get_queue(spec.name(ns))

            async def routed() -> set[str]:
                for name in EVENT_MODELS:
                    await exchange.publish(aio_pika.Message(name.encode()), routing_key=name)
                got = set()
                while (msg := await next_message(queue, timeout=1)) is not None:
                    await msg.ack()
                    got.add(msg.body.decode())
                return got

            every = {n for n in EVENT_MODELS if n.startswith(("complaint.", "sla."))}
            assert await keeper.refresh() is True
            assert await routed() == every - set(NOTIFY_ON_DEMAND)

            subscriptions.append(Subscription(name="all", url="http://127.0.0.1:9/", secret=generate_secret(),
                                              event_types=("*",)))
            assert await keeper.refresh() is True and await keeper.refresh() is False
            assert await routed() == every

            subscriptions[0] = Subscription(name="all", url="http://127.0.0.1:9/", secret=generate_secret(),
                                            event_types=("*",), enabled=False)
            assert await keeper.refresh() is True
            assert await routed() == every - set(NOTIFY_ON_DEMAND)
        finally:
            for name in (spec.name(ns), spec.dlq_name(ns)):
                await ch.queue_delete(name, if_unused=False, if_empty=False)


async def test_poison_message_ends_in_dlq_with_reason(settings, topology, own_queue):
    broker = make_broker(settings, CollectorRegistry(), "test")
    handled = []

    async def handle(event):
        handled.append(event.id)

    subscribe(broker, settings, own_queue, handle)
    await broker.start()
    try:
        await broker.publish(b'{"hello": "world"}', exchange=events_exchange(settings.namespace),
                             routing_key="test.submitted", persist=True)
        ch = await topology.channel()
        dlq = await ch.declare_queue(own_queue.dlq_name(settings.namespace), durable=True)
        msg = await next_message(dlq, timeout=5)
        assert msg is not None, "poison message did not reach the DLQ"
        await msg.ack()
        assert msg.body == b'{"hello": "world"}'
        assert "source" in msg.headers["x-sp4n-error"]
        assert handled == []
        await ch.close()
    finally:
        await broker.stop()


async def test_handler_failing_permanently_is_dead_lettered_at_once_with_the_reason(settings, topology,
                                                                                    own_queue):
    """A failure that is not transient (here a bug: RuntimeError) is not retried: one attempt,
    then the DLQ with the reason (transient ones: tests/integration/test_consumer_failures.py)."""
    broker = make_broker(settings, CollectorRegistry(), "test")
    attempts = []

    async def handle(event):
        attempts.append(event.id)
        raise RuntimeError("a bug that fails every time")

    subscribe(broker, settings, own_queue, handle)
    await broker.start()
    try:
        now = datetime.now(UTC)
        event = make_event("test", ComplaintSubmitted(
            complaint_id=uuid.uuid4(), tracking_id="SKD-X", source="t", received_at=now,
            accepted_at=now, classification="aspirasi", category="jalan",
            location=Location(kecamatan="Belitang"), anonymous=False, confidential=False,
            reporter_ref="r"))
        await broker.publish(event.model_dump_json().encode(), exchange=events_exchange(settings.namespace),
                             routing_key="test.submitted", persist=True)
        ch = await topology.channel()
        dlq = await ch.declare_queue(own_queue.dlq_name(settings.namespace), durable=True)
        msg = await next_message(dlq, timeout=10)
        assert msg is not None, "message failing permanently was never dead-lettered"
        await msg.ack()
        assert json.loads(msg.body)["id"] == event.id
        assert msg.headers["x-sp4n-error"] == "RuntimeError: a bug that fails every time"
        assert msg.headers["x-sp4n-original-queue"] == own_queue.name(settings.namespace)
        assert len(attempts) == 1
        await ch.close()
    finally:
        await broker.stop()


async def _return(conn: aio_pika.abc.AbstractConnection, queue_name: str, times: int) -> None:
    """Take the queue's message and give it back unacknowledged, ``times`` times, the way a
    consumer that loses its link (or is paused or killed) while holding it does: each time
    the quorum queue counts one more return in ``x-delivery-count``."""
    for _ in range(times):
        consumer_ch = await conn.channel()
        q = await consumer_ch.declare_queue(queue_name, passive=True)
        msg = await next_message(q, timeout=10)
        assert msg is not None, "the message was not in its queue"
        await consumer_ch.close()  # unacknowledged: returned to the queue


async def _until_in(ch: aio_pika.abc.AbstractChannel, queue_name: str) -> None:
    for _ in range(200):
        # robust=False: a robust channel hands back its cached queue, with its old count.
        q = await ch.declare_queue(queue_name, passive=True, robust=False)
        if q.declaration_result.message_count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no message arrived in {queue_name}")


async def _publish_to_own_queue(settings, own_queue, headers=None):
    event = _event()
    conn = await aio_pika.connect(settings.amqp_url)
    async with conn, conn.channel() as ch:
        ex = await ch.get_exchange(events_exchange(settings.namespace).name)
        await ex.publish(aio_pika.Message(event.model_dump_json().encode(), headers=headers or {},
                                          delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                         routing_key="test.submitted")
    return event


OLD_DELIVERY_LIMIT = 5  # what queues declared by an older release have


@pytest.fixture
async def old_queue(settings, topology):
    """A queue of this test alone as an older release declared it: delivery limit 5."""
    spec = QueueSpec("test", f"o{uuid.uuid4().hex[:8]}", ("test.submitted",))
    async with topology.channel() as ch:
        await declare_queue(ch, settings.namespace, spec, OLD_DELIVERY_LIMIT)
    yield spec
    async with topology.channel() as ch:
        for name in (spec.name(settings.namespace), spec.dlq_name(settings.namespace)):
            await ch.queue_delete(name, if_unused=False, if_empty=False)


async def test_a_queue_of_an_older_release_is_used_as_it_is(settings, topology, old_queue):
    """Declaring the topology again with another delivery limit is no error: RabbitMQ cannot
    change a queue's arguments, so the queue is kept as it is, with a warning."""
    async with topology.channel() as ch:
        await declare_queue(ch, settings.namespace, old_queue, settings.delivery_limit)
        q = await ch.declare_queue(old_queue.name(settings.namespace), passive=True, robust=False)
    assert q.declaration_result is not None


@pytest.mark.parametrize("refresh", [True, False])
async def test_a_message_returned_more_often_than_the_delivery_limit_is_not_dead_lettered(
        settings, topology, old_queue, refresh):
    """Returned unacknowledged again and again (link faults, pauses, kills while a consumer
    holds it), a message that never failed is still handled, once, and never reaches the
    DLQ: each consumer that receives it with returns counted hands it back as a fresh copy
    (``shared.broker.refresh_returned``). Without the refresh (the control case), the same
    returns make the quorum queue dead-letter it: the test's premise."""
    ns = settings.namespace
    s = settings.model_copy(update={"retry": settings.retry.model_copy(update={
        "delays_s": (3.0,), "refresh_after_returns": 2})})
    if not refresh:  # bypass the validator: what the product looked like before the refresh
        object.__setattr__(s.retry, "refresh_after_returns", 10_000)
    async with topology.channel() as ch:
        await declare_retry_queues(ch, ns, old_queue, s.retry.delays_s)
    handled: list[str] = []

    async def handle(event):
        handled.append(event.id)

    event = await _publish_to_own_queue(settings, old_queue)
    ch = await topology.channel()
    broker = make_broker(s, CollectorRegistry(), "test")
    subscribe(broker, s, old_queue, handle)
    try:
        # Three rounds of "returned twice, then a consumer of the product gets it" would take
        # the message past the delivery limit (5) unless each consumer refreshes it.
        for _ in range(3):
            await _return(topology, old_queue.name(ns), 2)
            if not refresh:
                continue
            await broker.start()
            # The consumer hands it back as a fresh copy: it waits in the retry step, where
            # no consumer is; once it is there the consumer stops, and the copy comes back.
            await _until_in(ch, old_queue.retry_name(ns, 3.0))
            await broker.stop()
            await _until_in(ch, old_queue.name(ns))
            broker = make_broker(s, CollectorRegistry(), "test")
            subscribe(broker, s, old_queue, handle)
        dlq = await ch.declare_queue(old_queue.dlq_name(ns), durable=True)
        if not refresh:
            msg = await next_message(dlq, timeout=10)
            assert msg is not None and msg.headers["x-first-death-reason"] == "delivery_limit"
            await msg.ack()
            return
        await broker.start()
        for _ in range(100):
            if handled:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert handled == [event.id]
        assert await next_message(dlq, timeout=1) is None
    finally:
        await broker.stop()
        await ch.queue_delete(old_queue.retry_name(ns, 3.0))
        await ch.close()


async def test_a_message_returned_past_max_returns_goes_to_the_dlq_with_the_reason(
        settings, topology, own_queue):
    """One that keeps coming back (it kills every consumer that takes it) is not refreshed
    for ever: once its returns add up to ``retry.max_returns``, the DLQ, with that reason."""
    ns = settings.namespace
    s = settings.model_copy(update={"retry": settings.retry.model_copy(update={
        "delays_s": (0.2,), "max_returns": 50})})
    async with topology.channel() as ch:
        await declare_retry_queues(ch, ns, own_queue, s.retry.delays_s)
    handled: list[str] = []

    async def handle(event):
        handled.append(event.id)

    event = await _publish_to_own_queue(settings, own_queue, {"x-sp4n-returns": 48})
    ch = await topology.channel()
    await _return(topology, own_queue.name(ns), 2)
    broker = make_broker(s, CollectorRegistry(), "test")
    subscribe(broker, s, own_queue, handle)
    await broker.start()
    try:
        dlq = await ch.declare_queue(own_queue.dlq_name(ns), durable=True)
        msg = await next_message(dlq, timeout=10)
        assert msg is not None, "a message past max_returns was not dead-lettered"
        await msg.ack()
        assert json.loads(msg.body)["id"] == event.id
        assert msg.headers["x-sp4n-error"].startswith("returned unacknowledged 50 times")
        assert handled == []
    finally:
        await broker.stop()
        await ch.queue_delete(own_queue.retry_name(ns, 0.2))
        await ch.close()
