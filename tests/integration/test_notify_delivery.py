"""The notify service end to end in process: real RabbitMQ, real PostgreSQL, a real local
HTTP receiver. Each test filters its subscriptions on its own OPD code, so events other
tests publish in the shared namespace never reach its receivers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import pytest
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook

from services.notify import admin, signing, usecases
from services.notify.app import MIGRATIONS, build_app
from services.notify.dispatcher import Dispatcher, httpx_post
from services.notify.metrics import NotifyMetrics
from services.notify.repository import NotifyRepository
from services.notify.targets import target_policy
from shared.db import create_pool, migrate
from shared.events import SlaBreached, make_event
from shared.topology import events_exchange
from shared.uow import PgUnitOfWork

pytestmark = pytest.mark.integration


class Receiver:
    """A raw HTTP/1.1 server on 127.0.0.1: records each request, answers ``respond(n)``
    for the n-th request (1-based)."""

    def __init__(self, respond: Callable[[int], int], delay_s: float = 0.0) -> None:
        self.respond = respond
        self.delay_s = delay_s
        self.requests: list[dict] = []
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hooks/sp4n"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.split("\r\n")
                headers = {k.strip().lower(): v.strip()
                           for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append({"line": lines[0], "headers": headers, "body": body,
                                      "at": time.monotonic()})
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                status = self.respond(len(self.requests))
                writer.write(f"HTTP/1.1 {status} Whatever\r\ncontent-type: text/plain\r\n"
                             f"content-length: 6\r\n\r\nanswer".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _subscription(name: str, url: str, opd: str, event_types=("sla.breached",)) -> dict:
    return {"name": name, "url": url, "secret": signing.generate_secret(),
            "event_types": list(event_types), "opd_codes": [opd]}


def _breach(opd: str) -> object:
    now = datetime.now(UTC)
    return make_event("sp4n/sla", SlaBreached(
        complaint_id=uuid.uuid4(), clock="opd_response", hop=1, opd_code=opd,
        deadline=now - timedelta(minutes=1), due_at=now - timedelta(minutes=1),
        calendar_version="ID-2026.1", policy_version=1))


async def _publish(settings, event, times: int = 1) -> None:
    conn = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(events_exchange(settings.namespace).name)
        for _ in range(times):
            await exchange.publish(
                aio_pika.Message(event.model_dump_json().encode(), message_id=event.id,
                                 content_type="application/json",
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="sla.breached")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def notify_service(settings, tmp_path, subscriptions: list[dict], **overrides):
    path = tmp_path / f"subscriptions-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(subscriptions))
    app = build_app(settings.model_copy(update={"notify_subscriptions_file": str(path), **overrides}))
    async with app.router.lifespan_context(app):
        try:
            await asyncio.wait_for(app.state.dispatcher.subscriptions_synced.wait(), 10)
            yield app
        finally:
            for sub in subscriptions:
                await admin.remove_subscription(app.state.runtime.pool, sub["name"])


async def _wait_for(probe, timeout_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _delivery(pool, event_id: str, subscription: str):
    return await pool.fetchrow(
        "SELECT * FROM deliveries WHERE event_id = $1 AND subscription = $2", event_id, subscription)


async def _finished(pool, event_id: str, subscription: str, status: str):
    async def probe():
        row = await _delivery(pool, event_id, subscription)
        return row if row is not None and row["status"] == status else None
    return await _wait_for(probe, what=f"delivery to {subscription} to become {status}")


async def _outbox_events(pool, routing_key: str, event_id: str, subscription: str) -> list[dict]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE routing_key = $1"
        " AND payload->'data'->>'notified_event_id' = $2"
        " AND payload->'data'->>'subscription' = $3", routing_key, event_id, subscription)
    return [r["payload"] for r in rows]


def _opd() -> str:
    return f"OPD-{uuid.uuid4().hex[:8]}"


async def test_failing_receiver_is_retried_until_delivered_with_stable_signed_id(settings, tmp_path):
    opd = _opd()
    async with Receiver(lambda n: 500 if n <= 2 else 200) as receiver:
        sub = _subscription(f"retry-{opd.lower()}", receiver.url, opd)
        async with notify_service(settings, tmp_path, [sub]) as app:
            pool = app.state.runtime.pool
            event = _breach(opd)
            await _publish(settings, event)
            row = await _finished(pool, event.id, sub["name"], "delivered")
            await asyncio.sleep(0.5)  # nothing further may arrive

            assert len(receiver.requests) == 3
            assert row["attempts"] == 3
            attempts = await pool.fetch(
                "SELECT attempt, status_code, error, duration_ms FROM delivery_attempts"
                " WHERE delivery_id = $1 ORDER BY attempt", row["id"])
            assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
            assert attempts[0]["error"].startswith("HTTP 500") and attempts[2]["error"] is None

            ids = {r["headers"]["webhook-id"] for r in receiver.requests}
            assert ids == {signing.webhook_id(event.id, sub["name"])}
            verifier = Webhook(sub["secret"])
            for request in receiver.requests:
                assert request["line"].startswith("POST /hooks/sp4n ")
                assert request["headers"]["content-type"] == "application/cloudevents+json"
                received = verifier.verify(request["body"], request["headers"])
                assert received == json.loads(event.model_dump_json())
            # backoff base 0.2 s: waits of at least 0.2 s, then 0.4 s
            at = [r["at"] for r in receiver.requests]
            assert at[1] - at[0] >= 0.19 and at[2] - at[1] >= 0.39

            delivered = await _wait_for(
                lambda: _outbox_events(pool, "notification.delivered", event.id, sub["name"]),
                what="notification.delivered in the outbox")
            assert len(delivered) == 1
            assert delivered[0]["source"] == "sp4n/notify"
            assert delivered[0]["subject"] == event.subject
            assert delivered[0]["data"]["attempts"] == 3

            registry = app.state.runtime.registry
            labels = {"subscription": sub["name"]}
            assert registry.get_sample_value(
                "sp4n_notify_deliveries_total", {**labels, "outcome": "delivered"}) == 1
            assert registry.get_sample_value(
                "sp4n_notify_deliveries_total", {**labels, "outcome": "retry_scheduled"}) == 2
            assert registry.get_sample_value("sp4n_notify_attempts_total", labels) == 3
            assert registry.get_sample_value(
                "sp4n_notify_delivery_latency_seconds_count", labels) == 1
            await app.state.dispatcher.refresh_pending_gauge(force=True)
            assert registry.get_sample_value("sp4n_notify_pending_deliveries") == \
                await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'")


async def test_receiver_failing_every_time_is_dead_lettered_then_replayed(settings, tmp_path):
    opd = _opd()
    healthy = False
    async with Receiver(lambda n: 200 if healthy else 503) as receiver:
        sub = _subscription(f"dead-{opd.lower()}", receiver.url, opd)
        async with notify_service(settings, tmp_path, [sub], notify_max_attempts=3) as app:
            pool = app.state.runtime.pool
            event = _breach(opd)
            await _publish(settings, event)
            row = await _finished(pool, event.id, sub["name"], "dead_lettered")
            await asyncio.sleep(0.6)

            assert len(receiver.requests) == 3
            assert row["attempts"] == 3
            assert row["last_status_code"] == 503
            assert row["last_error"].startswith("HTTP 503")
            assert json.loads(row["body"]) == json.loads(event.model_dump_json())
            dead = await _wait_for(
                lambda: _outbox_events(pool, "notification.dead_lettered", event.id, sub["name"]),
                what="notification.dead_lettered in the outbox")
            assert len(dead) == 1 and dead[0]["data"]["last_error"].startswith("HTTP 503")
            registry = app.state.runtime.registry
            assert registry.get_sample_value(
                "sp4n_notify_dead_lettered_total", {"subscription": sub["name"]}) == 1

            listed = await admin.list_dead_lettered(pool, subscription=sub["name"])
            assert [d.id for d in listed] == [row["id"]]
            assert listed[0].last_error.startswith("HTTP 503")

            healthy = True
            assert await admin.replay_dead_lettered(pool, row["id"]) is True
            assert await admin.replay_dead_lettered(pool, row["id"]) is False  # no longer dead
            replayed = await _finished(pool, event.id, sub["name"], "delivered")
            assert replayed["round"] == 2 and replayed["attempts"] == 1
            assert len(receiver.requests) == 4
            assert {r["headers"]["webhook-id"] for r in receiver.requests} == {row["webhook_id"]}
            Webhook(sub["secret"]).verify(receiver.requests[-1]["body"], receiver.requests[-1]["headers"])
            assert await admin.list_dead_lettered(pool, subscription=sub["name"]) == []


async def test_same_event_twice_gives_one_delivery_per_subscription(settings, tmp_path):
    opd = _opd()
    async with Receiver(lambda n: 200) as first, Receiver(lambda n: 204) as second, \
            Receiver(lambda n: 200) as bystander:
        subs = [
            _subscription(f"a-{opd.lower()}", first.url, opd),
            _subscription(f"b-{opd.lower()}", second.url, opd, event_types=("sla.*",)),
            _subscription(f"c-{opd.lower()}", bystander.url, opd, event_types=("sla.warning",)),
            _subscription(f"d-{opd.lower()}", bystander.url, "OTHER-" + opd),
        ]
        async with notify_service(settings, tmp_path, subs) as app:
            pool = app.state.runtime.pool
            event = _breach(opd)
            await _publish(settings, event, times=2)
            await _finished(pool, event.id, subs[0]["name"], "delivered")
            await _finished(pool, event.id, subs[1]["name"], "delivered")
            await _publish(settings, event)  # a late redelivery, after the webhooks went out
            await asyncio.sleep(1.0)

            # (subscriptions other test modules left in the shared schema may match too)
            rows = await pool.fetch(
                "SELECT subscription FROM deliveries WHERE event_id = $1 AND subscription = ANY($2)",
                event.id, [s["name"] for s in subs])
            assert sorted(r["subscription"] for r in rows) == sorted([subs[0]["name"], subs[1]["name"]])
            assert len(first.requests) == 1 and len(second.requests) == 1
            assert bystander.requests == []
            assert json.loads(first.requests[0]["body"])["id"] == event.id
            assert await pool.fetchval(
                "SELECT count(*) FROM deliveries WHERE payload->>'subject' = $1 AND subscription = ANY($2)",
                event.subject, [s["name"] for s in subs]) == 2


async def test_concurrent_dispatchers_never_double_send_and_respect_leases(settings):
    await migrate(settings.database_url, "notify", MIGRATIONS)
    pool = await create_pool(settings.database_url, schema="notify", min_size=1, max_size=8)
    opd = _opd()
    try:
        async with Receiver(lambda n: 200, delay_s=0.02) as receiver:
            sub = await admin.add_subscription(
                pool, name=f"race-{opd.lower()}", url=receiver.url,
                event_types=["sla.breached"], opd_codes=[opd], policy=target_policy(settings))
            try:
                uow = PgUnitOfWork(lambda: pool, lambda tx: NotifyRepository(tx, admin.box_of(settings)))
                events = [_breach(opd) for _ in range(40)]
                for event in events:
                    assert sub.name in await usecases.accept_event(uow, event)
                    assert await usecases.accept_event(uow, event) == []

                # a delivery leased by a replica that is still sending is not touched
                leased = await pool.fetchval(
                    "UPDATE deliveries SET locked_until = now() + interval '1 hour',"
                    " lease_token = gen_random_uuid() WHERE event_id = $1 RETURNING id", events[0].id)

                dispatchers = [Dispatcher(settings, NotifyMetrics(CollectorRegistry()), uow, batch_size=5)
                               for _ in range(3)]
                async with httpx.AsyncClient() as client:
                    post = httpx_post(client, max_answer_bytes=settings.notify.max_answer_bytes)

                    async def drain(d: Dispatcher, leased_id: int):
                        # (deliveries of other modules' subscriptions may be claimed too)
                        for _ in range(400):
                            claimed = await d.dispatch_once(post)
                            remaining = await pool.fetchval(
                                "SELECT count(*) FROM deliveries WHERE subscription = $1"
                                " AND status = 'pending' AND id <> $2", sub.name, leased_id)
                            if remaining == 0:
                                return
                            if not claimed:
                                await asyncio.sleep(0.05)
                        raise AssertionError("deliveries left pending")

                    await asyncio.gather(*(drain(d, leased) for d in dispatchers))
                    ids = [r["headers"]["webhook-id"] for r in receiver.requests]
                    assert len(ids) == len(set(ids)) == 39
                    assert signing.webhook_id(events[0].id, sub.name) not in ids

                    # the lease expires (its replica died): the delivery is taken over once
                    await pool.execute("UPDATE deliveries SET locked_until = now() WHERE id = $1", leased)
                    await asyncio.gather(*(drain(d, -1) for d in dispatchers))
                    await _finished(pool, events[0].id, sub.name, "delivered")
                    statuses = await pool.fetch(
                        "SELECT status, count(*) AS n FROM deliveries WHERE subscription = $1"
                        " GROUP BY status", sub.name)
                    assert {r["status"]: r["n"] for r in statuses} == {"delivered": 40}
                    ids = [r["headers"]["webhook-id"] for r in receiver.requests]
                    assert len(ids) == len(set(ids)) == 40
            finally:
                await admin.remove_subscription(pool, sub.name)
    finally:
        await pool.close()


async def test_receiver_slower_than_the_timeout_counts_as_a_failed_attempt(settings, tmp_path):
    opd = _opd()
    async with Receiver(lambda n: 200, delay_s=1.5) as receiver:
        sub = _subscription(f"slow-{opd.lower()}", receiver.url, opd)
        async with notify_service(settings, tmp_path, [sub], notify_max_attempts=1,
                                  notify_timeout_s=0.3) as app:
            pool = app.state.runtime.pool
            event = _breach(opd)
            await _publish(settings, event)
            row = await _finished(pool, event.id, sub["name"], "dead_lettered")
            assert row["attempts"] == 1 and row["last_status_code"] is None
            assert "Timeout" in row["last_error"]
            duration = await pool.fetchval(
                "SELECT duration_ms FROM delivery_attempts WHERE delivery_id = $1", row["id"])
            assert 250 <= duration < 1400
