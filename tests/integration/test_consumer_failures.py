"""Consumers and connections during outages, against real PostgreSQL and RabbitMQ: transient
failures retried through the delayed-retry queues, permanent ones dead-lettered at once,
consumers paused while the database is unreachable, 503 + Retry-After, intake ready and
accepting without the broker, notify LISTENing again. Outages are made with a TCP proxy in
front of the shared servers (``tests.faults.proxy.FaultProxy``), never by stopping them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.intake.apikeys import create_api_key
from services.intake.app import build_app as build_intake
from services.notify.app import build_app as build_notify
from services.routing.app import build_app as build_routing
from shared.broker import (
    ATTEMPT_HEADER,
    SENDER_HEADER,
    Sent,
    declare_queue,
    declare_retry_queues,
    declare_topology,
    make_broker,
    publish_event,
    subscribe,
)
from shared.db import create_pool, migrate
from shared.events import ComplaintSubmitted, Location, make_event
from shared.settings import RetrySettings, Settings
from shared.topology import INTAKE_SUBMISSIONS, ROUTING_SUBMITTED, QueueSpec, events_exchange
from shared.uow import PgUnitOfWork
from tests.faults.proxy import FaultProxy
from tests.infra import delete_namespace, next_message

pytestmark = pytest.mark.integration
SCHEMA = "failures_test"
EMPTY_DIR = Path(__file__).parent / "no-migrations"
# Short retry steps and probes, so outages of a second or two are waited out quickly.
FAST = RetrySettings(delays_s=(0.2, 0.5), probe_initial_s=0.1, probe_max_s=0.5)
WAIT_S = 30.0
# More submissions than a consumer's prefetch (settings.prefetch_count, 32).
COUNT = 50


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def fast(settings):
    """The run's settings on a namespace of this module's own, with short retry steps."""
    ns = f"{settings.namespace}-fail"
    yield settings.model_copy(update={"namespace": ns, "retry": FAST})
    await delete_namespace(settings.amqp_url, ns, FAST.delays_s)


@pytest.fixture(scope="module")
async def amqp(fast):
    conn = await aio_pika.connect_robust(fast.amqp_url)
    async with conn.channel() as ch:
        await declare_topology(ch, fast.namespace, fast.delivery_limit)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def pool(fast):
    await migrate(fast.database_url, SCHEMA, EMPTY_DIR)
    pool = await create_pool(fast.database_url, schema=SCHEMA, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def queue_counts(amqp: aio_pika.abc.AbstractRobustConnection, name: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue."""
    async with amqp.channel() as ch:
        q = await ch.declare_queue(name, passive=True)
        result = q.declaration_result
        return result.message_count or 0, result.consumer_count or 0


def submission(received_at: datetime | None = None, desa: str | None = None):
    now = datetime.now(UTC)
    return make_event("sp4n/intake", ComplaintSubmitted(
        complaint_id=uuid.uuid4(), tracking_id=f"SKD-{uuid.uuid4().hex[:8]}", source="portal-test",
        received_at=received_at or now, accepted_at=now, classification="pengaduan",
        category="pendidikan", location=Location(kecamatan="Belitang", desa=desa),
        anonymous=False, confidential=False, reporter_ref="ref-test"))


# --- the retry queues ----------------------------------------------------------------------------

async def test_transient_failures_are_retried_via_the_retry_queues_and_applied_once(fast, amqp, pool):
    """More transient failures than the delivery limit allows redeliveries: each goes through
    a retry queue (attempt header counting up), none burns the limit, the effect is applied
    once, and nothing reaches the DLQ."""
    ns = fast.namespace
    spec = QueueSpec("test", f"r{uuid.uuid4().hex[:8]}", ("test.retried",))
    limit = 5  # a small delivery limit (what older releases declared) makes the point
    failures = limit + 2
    async with amqp.channel() as ch:
        await declare_queue(ch, ns, spec, limit)
        await declare_retry_queues(ch, ns, spec, FAST.delays_s)
    uow = PgUnitOfWork(lambda: pool, lambda tx: None)
    attempts: list[int] = []
    effects: list[str] = []

    def parse(body: bytes):
        return json.loads(body)

    async def handle(event: dict) -> None:
        attempts.append(len(attempts))
        if len(attempts) <= failures:
            raise ConnectionRefusedError(111, "Connection refused")
        async with uow(make_event("test", ComplaintSubmitted.model_validate(event["data"]))
                       .model_copy(update={"id": event["id"]})) as tx:
            if await tx.claim():
                effects.append(event["id"])

    broker = make_broker(fast, CollectorRegistry(), "test")
    subscriber = subscribe(broker, fast, spec, handle, parse)
    await broker.start()
    try:
        event = submission()
        await broker.publish(event.model_dump_json().encode(), exchange=events_exchange(ns),
                             routing_key="test.retried", persist=True, message_id=event.id)
        await until(lambda: _true(bool(effects)), "the effect applied after the failures")
        assert len(attempts) == failures + 1
        assert effects == [event.id]
        # Every queue of the spec is empty: nothing waiting, nothing dead-lettered.
        for name in (spec.name(ns), spec.dlq_name(ns), *(spec.retry_name(ns, d) for d in FAST.delays_s)):
            assert (await queue_counts(amqp, name))[0] == 0, name
        assert subscriber.running
    finally:
        await broker.stop()
        async with amqp.channel() as ch:
            for name in (spec.name(ns), spec.dlq_name(ns), *(spec.retry_name(ns, d) for d in FAST.delays_s)):
                await ch.queue_delete(name, if_unused=False, if_empty=False)


async def _true(value: bool) -> bool:
    return value


async def test_a_retry_copy_carries_its_attempt_count_and_reason(fast, amqp):
    """What the retry queue holds: the original body and id, the attempt count and the reason."""
    ns = fast.namespace
    spec = QueueSpec("test", f"h{uuid.uuid4().hex[:8]}", ("test.headers",))
    slow = FAST.model_copy(update={"delays_s": (30.0,)})  # long enough to look at the copy
    settings = fast.model_copy(update={"retry": slow})
    async with amqp.channel() as ch:
        await declare_queue(ch, ns, spec, fast.delivery_limit)
        await declare_retry_queues(ch, ns, spec, slow.delays_s)

    async def handle(_event: object) -> None:
        raise TimeoutError

    broker = make_broker(settings, CollectorRegistry(), "test")
    subscribe(broker, settings, spec, handle, lambda b: b)
    await broker.start()
    try:
        event = submission()
        await broker.publish(event.model_dump_json().encode(), exchange=events_exchange(ns),
                             routing_key="test.headers", persist=True, message_id=event.id,
                             headers={"ce-id": event.id})
        async with amqp.channel() as ch:
            retry_q = await ch.declare_queue(spec.retry_name(ns, 30.0), passive=True)
            msg = await next_message(retry_q, timeout=10)
            assert msg is not None, "no retry copy"
            await msg.ack()
            assert json.loads(msg.body)["id"] == event.id and msg.message_id == event.id
            assert msg.headers[ATTEMPT_HEADER] == 1
            assert msg.headers["x-sp4n-error"] == "TimeoutError"
            assert msg.headers["ce-id"] == event.id
            assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    finally:
        await broker.stop()
        async with amqp.channel() as ch:
            for name in (spec.name(ns), spec.dlq_name(ns), spec.retry_name(ns, 30.0)):
                await ch.queue_delete(name, if_unused=False, if_empty=False)


async def test_a_retried_message_keeps_its_validated_sender_and_never_a_claimed_one(fast, amqp):
    """RabbitMQ refuses a user_id that is not the publisher's, so a retry copy (published by
    the consumer) records the sender in a header instead: back from its retry step the
    message still names its sender. A sender a publisher claims in that header is dropped."""
    ns = fast.namespace
    spec = QueueSpec("test", f"s{uuid.uuid4().hex[:8]}", ("test.sender",))
    async with amqp.channel() as ch:
        await declare_queue(ch, ns, spec, fast.delivery_limit)
        await declare_retry_queues(ch, ns, spec, FAST.delays_s)
    seen: dict[str, list[Sent]] = {"validated": [], "claimed": []}

    async def handle(sent: Sent) -> None:
        tries = seen[json.loads(sent.body)["kind"]]
        tries.append(sent)
        if len(tries) == 1:
            raise TimeoutError

    broker = make_broker(fast, CollectorRegistry(), "test")
    subscribe(broker, fast, spec, handle, parse_sent=lambda sent: sent)
    await broker.start()
    user = urlsplit(fast.amqp_url).username
    try:
        await broker.publish(b'{"kind": "validated"}', exchange=events_exchange(ns),
                             routing_key="test.sender", persist=True, user_id=user)
        await broker.publish(b'{"kind": "claimed"}', exchange=events_exchange(ns),
                             routing_key="test.sender", persist=True,
                             headers={SENDER_HEADER: "sp4n-portal-someone-else"})
        await until(lambda: _true(all(len(v) == 2 for v in seen.values())), "both retried once")
        first, back = seen["validated"]
        assert (first.user_id, first.exchange) == (user, events_exchange(ns).name)
        assert (back.user_id, back.exchange, back.internal) == (user, "", True)
        assert [(s.user_id, s.exchange) for s in seen["claimed"]] == [
            (None, events_exchange(ns).name), (None, "")]
    finally:
        await broker.stop()
        async with amqp.channel() as ch:
            for name in (spec.name(ns), spec.dlq_name(ns), *(spec.retry_name(ns, d) for d in FAST.delays_s)):
                await ch.queue_delete(name, if_unused=False, if_empty=False)


async def test_transient_failures_are_dead_lettered_after_max_attempts_when_configured(fast, amqp):
    ns = fast.namespace
    spec = QueueSpec("test", f"m{uuid.uuid4().hex[:8]}", ("test.max",))
    settings = fast.model_copy(update={"retry": FAST.model_copy(update={"max_attempts": 3})})
    async with amqp.channel() as ch:
        await declare_queue(ch, ns, spec, fast.delivery_limit)
        await declare_retry_queues(ch, ns, spec, FAST.delays_s)
    attempts = []

    async def handle(_event: object) -> None:
        attempts.append(1)
        raise asyncpg.exceptions.SerializationError("could not serialize access")

    broker = make_broker(settings, CollectorRegistry(), "test")
    subscribe(broker, settings, spec, handle, lambda b: b)
    await broker.start()
    try:
        await broker.publish(b'{"x": 1}', exchange=events_exchange(ns), routing_key="test.max", persist=True)
        async with amqp.channel() as ch:
            dlq = await ch.declare_queue(spec.dlq_name(ns), passive=True)
            msg = await next_message(dlq, timeout=WAIT_S)
            assert msg is not None, "never dead-lettered"
            await msg.ack()
            assert msg.headers["x-sp4n-error"] == (
                "still failing after 3 transient failures: SerializationError: could not serialize access")
            assert len(attempts) == 3
    finally:
        await broker.stop()
        async with amqp.channel() as ch:
            for name in (spec.name(ns), spec.dlq_name(ns), *(spec.retry_name(ns, d) for d in FAST.delays_s)):
                await ch.queue_delete(name, if_unused=False, if_empty=False)


# --- routing with its database behind a proxy ----------------------------------------------------

class Probe:
    """complaint.* events seen on the events exchange, by complaint id."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = {}

    async def on_message(self, msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with msg.process():
            event = json.loads(msg.body)
            self.seen.setdefault(event["subject"], []).append(event["type"])

    def decisions(self, complaint_id: str) -> list[str]:
        """routing's decisions about a complaint (routed or triage required)."""
        return [t for t in self.seen.get(complaint_id, [])
                if ".routed." in t or ".triage_required." in t]


@pytest.fixture(scope="module")
async def routing(fast, amqp):
    async with FaultProxy.to(fast.database_url) as db_proxy, FaultProxy.to(fast.amqp_url) as mq_proxy:
        settings = fast.model_copy(update={"database_url": db_proxy.url(fast.database_url),
                                           "amqp_url": mq_proxy.url(fast.amqp_url)})
        app = build_routing(settings)
        probe = Probe()
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://routing") as client:
            ch = await amqp.channel()
            q = await ch.declare_queue(exclusive=True)
            await q.bind(events_exchange(fast.namespace).name, routing_key="complaint.*")
            await q.consume(probe.on_message)
            try:
                yield app.state.runtime, client, db_proxy, probe, mq_proxy
            finally:
                await db_proxy.restore()
                await mq_proxy.restore()
                await ch.close()


async def test_a_deterministic_failure_goes_to_the_dlq_at_once_with_its_reason(fast, amqp, routing):
    """A year-1 received_at overflows routing's duplicate window: no retry can help."""
    runtime, _client, _proxy, _probe, _mq = routing
    ns = fast.namespace
    event = submission(received_at=datetime(1, 1, 1, tzinfo=UTC), desa="Sungai Ayak")
    dead_lettered = runtime.consumer_failures.labels("routing", "submitted", "permanent", "dead_lettered")
    before = dead_lettered._value.get()
    await publish_event(runtime.broker, ns, event)
    async with amqp.channel() as ch:
        dlq = await ch.declare_queue(ROUTING_SUBMITTED.dlq_name(ns), passive=True)
        msg = await next_message(dlq, timeout=WAIT_S)
        assert msg is not None, "not dead-lettered"
        await msg.ack()
    assert json.loads(msg.body)["id"] == event.id
    assert msg.headers["x-sp4n-error"].startswith("OverflowError: ")
    assert msg.headers["x-sp4n-original-queue"] == ROUTING_SUBMITTED.name(ns)
    assert ATTEMPT_HEADER not in msg.headers  # never retried
    assert dead_lettered._value.get() == before + 1


async def test_consumers_pause_while_the_database_is_unreachable_and_resume(fast, amqp, routing):
    """With routing's database link cut: more submissions than the prefetch fail once each
    (or not at all) and all wait in routing's queue (no consumer attached, none held
    unacknowledged), /readyz names the database and the pause, an HTTP request gets 503 with
    Retry-After; when the link returns the consumers resume by themselves and every complaint
    is routed once, with nothing dead-lettered."""
    runtime, client, db_proxy, probe, _mq = routing
    ns = fast.namespace
    queue = ROUTING_SUBMITTED.name(ns)
    await until(lambda: _consumers(amqp, queue, 1), "routing consuming")
    await db_proxy.cut()
    try:
        events = [submission() for _ in range(COUNT)]
        for event in events:
            await publish_event(runtime.broker, ns, event)
        await until(lambda: _true(runtime.pause.paused), "consumers paused")
        await until(lambda: _consumers(amqp, queue, 0), "routing's consumer cancelled")
        # Those that failed came back from their retry step; all wait in the queue, none held.
        await until(lambda: _ready(amqp, queue, COUNT), "every submission waiting in routing's queue")

        ready = await client.get("/readyz")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["database"].startswith("error: ")
        assert checks["consumer:submitted"] == "error: paused while the database is unreachable"
        assert checks["broker"] == "ok"

        answer = await client.get("/v1/rules")
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == str(fast.db.retry_after_s)
        assert answer.headers["content-type"] == "application/problem+json"
        problem = answer.json()
        assert problem["type"] == "urn:sp4n:problem:unavailable" and problem["status"] == 503
        assert problem["instance"] == "/v1/rules" and "Basis data" in problem["detail"]
        metrics = (await client.get("/metrics")).text
        assert 'sp4n_consumers_paused{service="routing"} 1.0' in metrics
    finally:
        await db_proxy.restore()
    await until(lambda: _true(all(probe.decisions(e.subject) for e in events)),
                "every complaint routed after the outage")
    await until(lambda: _true(not runtime.pause.paused), "consumers resumed")
    await until(lambda: _consumers(amqp, queue, 1), "routing consuming again")
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert (await client.get("/v1/rules")).status_code == 200
    for event in events:
        assert len(probe.decisions(event.subject)) == 1, event.subject
    assert await _ready(amqp, queue, 0)
    assert (await queue_counts(amqp, ROUTING_SUBMITTED.dlq_name(ns)))[0] == 0
    metrics = (await client.get("/metrics")).text
    assert 'sp4n_consumers_paused{service="routing"} 0.0' in metrics
    assert ('sp4n_consumer_failures_total{kind="transient",outcome="retried",queue="submitted",'
            'service="routing"}') in metrics


async def test_routing_consumes_again_after_its_broker_link_returns(fast, amqp, routing):
    """FastStream/aio-pika reconnect by themselves: with routing's broker link cut, /readyz
    names the broker (routing needs it); a submission published meanwhile waits in the queue
    and is routed once the link returns — consumed on the restored channel, its decision
    published through the restored publisher — with no restart and nothing dead-lettered."""
    runtime, client, _db, probe, mq_proxy = routing
    ns = fast.namespace
    queue = ROUTING_SUBMITTED.name(ns)
    await until(lambda: _consumers(amqp, queue, 1), "routing consuming")
    await mq_proxy.cut()
    try:
        event = submission()
        async with amqp.channel() as ch:  # the test's own link, not routing's
            exchange = await ch.get_exchange(events_exchange(ns).name)
            await exchange.publish(aio_pika.Message(event.model_dump_json().encode(), message_id=event.id,
                                                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                   routing_key="complaint.submitted")
        await until(lambda: _consumers(amqp, queue, 0), "the broker dropping routing's consumer")
        await until(lambda: _ready(amqp, queue, 1), "the submission waiting in routing's queue")
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] == "error: no connection"
    finally:
        await mq_proxy.restore()
    await until(lambda: _true(bool(probe.decisions(event.subject))), "the complaint routed after reconnect")
    await until(lambda: _all_ok(client), "every readiness check ok again")
    assert len(probe.decisions(event.subject)) == 1
    assert (await queue_counts(amqp, ROUTING_SUBMITTED.dlq_name(ns)))[0] == 0


async def _consumers(amqp, queue: str, n: int) -> bool:
    return (await queue_counts(amqp, queue))[1] == n


async def _ready(amqp, queue: str, n: int) -> bool:
    return (await queue_counts(amqp, queue))[0] == n


# --- intake without its broker -------------------------------------------------------------------

def complaint_body() -> dict:
    return {
        "source": "portal-sekadau", "external_id": f"ext-{uuid.uuid4().hex[:8]}",
        "received_at": "2026-03-17T09:00:00+07:00", "classification": "pengaduan",
        "category": "infrastruktur_jalan", "title": "Jalan rusak di Sungai Ayak",
        "description": "Jalan desa berlubang besar di depan sekolah dasar.",
        "location": {"kecamatan": "Belitang Hilir", "desa": "Sungai Ayak"},
        "reporter": {"name": "Budi Santoso", "phone": "+6281234567890", "nik": "6109011234567890"},
    }


async def test_intake_stays_ready_and_accepting_without_the_broker(fast, amqp):
    """intake's broker link cut: /readyz stays 200 (the broker reported, not required) and a
    complaint is accepted (202); when the link returns FastStream/aio-pika reconnect by
    themselves, the outbox publishes the complaint.submitted and the consumers re-attach.
    Its database link cut: a submission answers 503 with Retry-After, not a 500."""
    ns = fast.namespace
    async with FaultProxy.to(fast.amqp_url) as mq_proxy, FaultProxy.to(fast.database_url) as db_proxy:
        settings: Settings = fast.model_copy(update={"amqp_url": mq_proxy.url(fast.amqp_url),
                                                     "database_url": db_proxy.url(fast.database_url)})
        app = build_intake(settings)
        ch = await amqp.channel()
        submitted = await ch.declare_queue(exclusive=True)
        await submitted.bind(events_exchange(ns).name, routing_key="complaint.submitted")
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
            conn = await asyncpg.connect(fast.database_url, server_settings={"search_path": "intake"})
            try:
                _, key = await create_api_key(conn, f"portal-{uuid.uuid4().hex[:6]}", "portal",
                                              "portal-sekadau")
            finally:
                await conn.close()
            headers = {"Authorization": f"Bearer {key}"}
            assert (await client.get("/readyz")).status_code == 200

            await mq_proxy.cut()
            try:
                answers: list[httpx.Response] = []

                async def broker_seen_down() -> bool:
                    answers.append(await client.get("/readyz"))
                    return answers[-1].json()["checks"]["broker"] != "ok"

                await until(broker_seen_down, "readiness reporting the broker down")
                assert [a.status_code for a in answers] == [200] * len(answers)
                body = answers[-1].json()
                assert body["checks"]["broker"] == "error: no connection"
                assert body["checks"]["database"] == "ok"
                assert "broker" in body["optional"]
                accepted = await client.post("/v1/complaints", json=complaint_body(), headers=headers)
                assert accepted.status_code == 202, accepted.text
                complaint_id = accepted.json()["complaint_id"]
                assert await next_message(submitted, timeout=1) is None  # not published yet
            finally:
                await mq_proxy.restore()
            found = None
            deadline = asyncio.get_running_loop().time() + WAIT_S
            while found is None and asyncio.get_running_loop().time() < deadline:
                msg = await next_message(submitted, timeout=1)
                if msg is not None:
                    await msg.ack()
                    if json.loads(msg.body)["subject"] == complaint_id:
                        found = msg
            assert found is not None, "complaint.submitted never published after the link returned"
            await until(lambda: _consumers(amqp, INTAKE_SUBMISSIONS.name(ns), 1),
                        "intake's consumers re-attached")
            await until(lambda: _all_ok(client), "every readiness check ok again")

            await db_proxy.cut()
            try:
                refused = await client.post("/v1/complaints", json=complaint_body(), headers=headers)
                assert refused.status_code == 503, refused.text
                assert refused.headers["retry-after"] == str(fast.db.retry_after_s)
                assert refused.headers["content-type"] == "application/problem+json"
                assert refused.json()["type"] == "urn:sp4n:problem:unavailable"
                # A key not in the cache is looked up by the request guard before any route:
                # a 503 as well, never a plain 500.
                unknown = {"authorization": "Bearer sp4n_0badc0de_" + "x" * 43}
                guarded = await client.post("/v1/complaints", json=complaint_body(), headers=unknown)
                assert guarded.status_code == 503, guarded.text
                assert guarded.headers["content-type"] == "application/problem+json"
                ready = await client.get("/readyz")
                assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error")
            finally:
                await db_proxy.restore()
            await until(lambda: _all_ok(client), "ready again after the database returned")
        await ch.close()


async def _all_ok(client: httpx.AsyncClient) -> bool:
    answer = await client.get("/readyz")
    return answer.status_code == 200 and all(v == "ok" for v in answer.json()["checks"].values())


# --- notify's LISTEN -----------------------------------------------------------------------------

async def test_notify_listens_again_after_its_connection_is_terminated(fast, amqp):
    """pg_terminate_backend on the LISTEN connection (what a PostgreSQL restart does to it):
    readiness reports the loss and the dispatcher LISTENs again on a new backend."""
    app = build_notify(fast)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://notify") as client:
        dispatcher = app.state.dispatcher
        await until(lambda: _true(dispatcher.listener_pid is not None), "notify listening")
        first = dispatcher.listener_pid
        admin = await asyncpg.connect(fast.database_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
            await until(lambda: _true(dispatcher.listener_pid not in (None, first)), "a new LISTEN")
            second = dispatcher.listener_pid
            query = await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", second)
            assert query.startswith("LISTEN ")
            await until(lambda: _listen_ok(client), "readiness: listen ok")
        finally:
            await admin.close()


async def _listen_ok(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).json()["checks"].get("listen") == "ok"
