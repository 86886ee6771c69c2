"""Webhook safety, tried as an attacker would (issue: trust). Real PostgreSQL and RabbitMQ,
a real notify service and real HTTP receivers on loopback.

- a subscription may not target loopback, link-local (cloud metadata), private or
  unresolvable addresses unless the allow-list names them;
- the check holds at every connection, on the addresses resolved then (DNS rebinding);
- only the status code and a short sanitized excerpt of a failed answer are kept;
- signing secrets are encrypted at rest, and a rotation overlaps two signatures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import pytest
from standardwebhooks import Webhook

from services.cli import migrations_of
from services.notify import admin, signing
from services.notify.targets import TargetPolicy, TargetRefused, target_policy
from shared.connect import service_pool
from shared.settings import NotifySettings, Settings
from tests.integration.test_notify_delivery import (
    Receiver,
    _breach,
    _finished,
    _publish,
    notify_service,
)

pytestmark = pytest.mark.integration


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/v1/complaints",           # intake, on the same host
    "http://localhost:15672/api/users",              # the broker's management API
    "http://169.254.169.254/latest/meta-data/iam/",  # cloud metadata
    "http://10.0.0.5/",                              # the regency's LAN
    "http://[::1]:5432/",
    "http://rabbitmq.invalid/",                      # an internal name that does not resolve here
])
async def test_subscriptions_to_internal_targets_are_refused(settings: Settings, url: str) -> None:
    async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
        with pytest.raises(TargetRefused):
            await admin.add_subscription(db, name=_name("ssrf"), url=url, event_types=["*"],
                                         policy=TargetPolicy())
        assert await db.fetchval("SELECT count(*) FROM subscriptions WHERE url = $1", url) == 0


async def test_https_only_refuses_plain_http(settings: Settings) -> None:
    async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
        with pytest.raises(TargetRefused, match="https"):
            await admin.add_subscription(db, name=_name("plain"), url="http://127.0.0.1:9/h",
                                         event_types=["*"],
                                         policy=TargetPolicy.of(["127.0.0.1/32"], https_only=True))


async def test_a_target_refused_at_connect_time_gets_no_request(settings: Settings, tmp_path) -> None:
    """Added while allowed (or while its name resolved elsewhere), refused now: notify checks
    the address on every connection, so the receiver never sees a byte."""
    opd = f"OPD-{uuid.uuid4().hex[:8]}"
    async with Receiver(lambda n: 200) as receiver:
        name = _name("rebind")
        async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
            await admin.add_subscription(db, name=name, url=receiver.url, event_types=["sla.breached"],
                                         opd_codes=[opd], policy=target_policy(settings))
        closed = settings.model_copy(update={"notify": NotifySettings()})  # empty allow-list
        async with notify_service(closed, tmp_path, []) as app:
            pool = app.state.runtime.pool
            event = _breach(opd)
            await _publish(settings, event)
            row = await _wait_attempted(pool, event.id, name)
            assert row["status"] == "pending" and row["last_status_code"] is None
            assert "target refused" in row["last_error"] and "127.0.0.1 is a loopback" in row["last_error"]
            assert receiver.requests == []
            await admin.remove_subscription(pool, name)


async def _wait_attempted(pool, event_id: str, subscription: str):
    for _ in range(400):
        row = await pool.fetchrow("SELECT * FROM deliveries WHERE event_id = $1 AND subscription = $2",
                                  event_id, subscription)
        if row is not None and row["last_error"]:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError("no attempt recorded")


@contextlib.asynccontextmanager
async def _chatty_receiver(answer: bytes):
    """Answers 500 with ``answer`` as the body: what an internal page would give back."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 500 Oops\r\ncontent-type: text/plain\r\n"
                         b"content-length: %d\r\n\r\n" % len(answer) + answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/h"
    finally:
        server.close()


async def test_only_a_short_sanitized_excerpt_of_an_answer_is_kept(settings: Settings, tmp_path) -> None:
    opd = f"OPD-{uuid.uuid4().hex[:8]}"
    page = (b"AccessKeyId\x00\x1b[31m: AKIA" + b"X" * 5000 + b"\r\nSecretAccessKey: s3cr3t-tail")
    async with _chatty_receiver(page) as url:
        sub = {"name": _name("chatty"), "url": url, "secret": signing.generate_secret(),
               "event_types": ["sla.breached"], "opd_codes": [opd]}
        async with notify_service(settings, tmp_path, [sub]) as app:
            pool = app.state.runtime.pool
            event = _breach(opd)
            await _publish(settings, event)
            row = await _wait_attempted(pool, event.id, sub["name"])
            error = row["last_error"]
            assert error.startswith("HTTP 500: AccessKeyId [31m: AKIAXXX")
            assert len(error) <= len("HTTP 500: ") + settings.notify.answer_excerpt_chars
            assert "\x00" not in error and "\x1b" not in error and "s3cr3t" not in error
            attempts = await pool.fetch("SELECT error FROM delivery_attempts WHERE delivery_id = $1",
                                        row["id"])
            assert all("s3cr3t" not in a["error"] for a in attempts)


async def test_secrets_are_encrypted_at_rest_and_rotation_overlaps_two_signatures(
        settings: Settings, tmp_path) -> None:
    opd = f"OPD-{uuid.uuid4().hex[:8]}"
    async with Receiver(lambda n: 200) as receiver:
        name = _name("rotate")
        async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
            sub = await admin.add_subscription(db, name=name, url=receiver.url,
                                               event_types=["sla.breached"], opd_codes=[opd],
                                               policy=target_policy(settings))
            stored = await db.fetchval("SELECT secret FROM subscriptions WHERE name = $1", name)
            assert stored.startswith("enc:v1:") and sub.secret not in stored
            new = await admin.rotate_secret(db, name, overlap_s=3600)
            assert new is not None and new != sub.secret
            row = await db.fetchrow("SELECT secret, previous_secret FROM subscriptions WHERE name = $1",
                                    name)
            assert new not in row["secret"] and sub.secret not in row["previous_secret"]
            assert await admin.rotate_secret(db, "no-such-subscription", overlap_s=1) is None

        async with notify_service(settings, tmp_path, []) as app:
            pool = app.state.runtime.pool
            event = _breach(opd)
            await _publish(settings, event)
            await _finished(pool, event.id, name, "delivered")
            request = receiver.requests[-1]
            assert len(request["headers"]["webhook-signature"].split(" ")) == 2
            for secret in (new, sub.secret):  # a receiver with either secret verifies it
                assert Webhook(secret).verify(request["body"], request["headers"]) == json.loads(
                    event.model_dump_json())

            # No overlap: the old secret stops signing at once.
            newest = await admin.rotate_secret(pool, name, overlap_s=0)
            event = _breach(opd)
            await _publish(settings, event)
            await _finished(pool, event.id, name, "delivered")
            request = receiver.requests[-1]
            assert len(request["headers"]["webhook-signature"].split(" ")) == 1
            Webhook(newest).verify(request["body"], request["headers"])
            with pytest.raises(Exception, match="No matching signature"):
                Webhook(new).verify(request["body"], request["headers"])
            await admin.remove_subscription(pool, name)


async def test_secrets_stored_before_encryption_are_sealed_at_start(settings: Settings, tmp_path) -> None:
    name, secret = _name("legacy"), signing.generate_secret()
    async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
        await db.execute(
            "INSERT INTO subscriptions (name, url, secret, event_types) VALUES ($1, $2, $3, $4)",
            name, "https://hooks.example.id/h", secret, ["sla.breached"])
    async with notify_service(settings, tmp_path, []) as app:
        pool = app.state.runtime.pool
        stored = await pool.fetchval("SELECT secret FROM subscriptions WHERE name = $1", name)
        assert stored.startswith("enc:v1:") and secret not in stored
        assert [s.secret for s in await admin.list_subscriptions(pool) if s.name == name] == [secret]
        await admin.remove_subscription(pool, name)
