"""Operator commands against real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import asyncpg
import pytest

from services.cli import main as sp4n_main
from shared.broker import declare_topology
from shared.settings import Settings
from shared.topology import ROUTING_SUBMITTED, dead_letter_exchange
from tests.e2e.system import settings_env
from tests.infra import message_count

pytestmark = pytest.mark.integration


def run_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *argv: str) -> tuple[int, str]:
    for key, value in settings_env(settings).items():
        if key.startswith("SP4N_"):
            monkeypatch.setenv(key, value)
    code = sp4n_main(list(argv))
    return code, capsys.readouterr().out


async def test_dlq_replay_sends_messages_back_to_the_queue_they_failed_on(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    conn = await aio_pika.connect(settings.amqp_url)
    try:
        ch = await conn.channel()
        await declare_topology(ch, settings.namespace, settings.delivery_limit)
        queue = await ch.declare_queue(ROUTING_SUBMITTED.name(settings.namespace), passive=True)
        await queue.purge()
        ids = [str(uuid.uuid4()) for _ in range(3)]
        dlx = await ch.get_exchange(dead_letter_exchange(settings.namespace).name)
        for i in ids:
            await dlx.publish(aio_pika.Message(json.dumps({"id": i}).encode(), message_id=i,
                                               headers={"x-sp4n-error": "database was down"}),
                              routing_key=ROUTING_SUBMITTED.name(settings.namespace))
        await asyncio.sleep(0.3)
        code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                            "dlq", "show", "routing.submitted.v1", "--limit", "1")
        assert code == 0 and "database was down" in out
        code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                            "dlq", "replay", "routing.submitted.v1")
        assert code == 0 and "replayed 3 messages" in out
        back: list[str | None] = []
        for _ in range(30):
            msg = await queue.get(fail=False)
            if msg is None:
                if len(back) == 3:
                    break
                await asyncio.sleep(0.1)
                continue
            back.append(msg.message_id)
            assert msg.headers["x-sp4n-replayed"] == 1
            assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            await msg.ack()
        assert sorted(map(str, back)) == sorted(ids)
        dlq = await ch.declare_queue(ROUTING_SUBMITTED.dlq_name(settings.namespace), passive=True)
        assert dlq.declaration_result.message_count == 0
    finally:
        await conn.close()


async def _dead_letter(ch: aio_pika.abc.AbstractChannel, ns: str, ids: list[str]) -> None:
    dlx = await ch.get_exchange(dead_letter_exchange(ns).name)
    for n, i in enumerate(ids):
        await dlx.publish(aio_pika.Message(json.dumps({"id": i}).encode(), message_id=i,
                                           headers={"x-sp4n-error": f"gagal nomor {n}"}),
                          routing_key=ROUTING_SUBMITTED.name(ns))


async def test_dlq_show_browses_each_message_once_and_leaves_the_queue_as_it_was(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ns = settings.namespace
    conn = await aio_pika.connect(settings.amqp_url)
    try:
        ch = await conn.channel()
        await declare_topology(ch, ns, settings.delivery_limit)
        dlq = await ch.declare_queue(ROUTING_SUBMITTED.dlq_name(ns), passive=True)
        await dlq.purge()
        ids = [str(uuid.uuid4()) for _ in range(2)]
        await _dead_letter(ch, ns, ids)
        assert await message_count(ch, dlq.name, 2) == 2

        # the name `dlq list` prints is accepted by `dlq show`
        code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "dlq", "list")
        assert code == 0
        listed = next(ln.split()[0] for ln in out.splitlines() if "routing.submitted" in ln)
        assert listed == ROUTING_SUBMITTED.dlq_name(ns) and "2 messages" in out

        for name in (listed, "routing.submitted.v1", ROUTING_SUBMITTED.name(ns)):
            code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "dlq", "show", name)
            assert code == 0
            shown = [json.loads(ln) for ln in out.splitlines()]
            assert [m["message_id"] for m in shown] == ids  # each once, oldest first
            assert [m["error"] for m in shown] == ["gagal nomor 0", "gagal nomor 1"]
            assert json.loads(shown[1]["body"]) == {"id": ids[1]}
            assert await message_count(ch, dlq.name, 2) == 2  # browsing took nothing away

        # pages: --limit per page, --skip to the next; past the end, nothing
        pages = []
        for skip in ("0", "1", "2"):
            code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "dlq", "show",
                                                listed, "--limit", "1", "--skip", skip)
            assert code == 0
            pages.append([json.loads(ln)["message_id"] for ln in out.splitlines()])
        assert pages == [[ids[0]], [ids[1]], []]
        assert await message_count(ch, dlq.name, 2) == 2

        code, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                          "dlq", "show", "no.such.queue.v1")
        assert code == 2
    finally:
        await dlq.purge()
        await conn.close()


async def test_calendar_override_and_subscription_commands(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "migrate")
    assert code == 0
    code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "calendar", "set",
                                        "2026-12-01", "--closed", "--reason", "Hari jadi kabupaten")
    assert code == 0 and "calendar revision" in out
    code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                        "calendar", "list", "--year", "2026")
    assert "01-12-2026  libur  Hari jadi kabupaten" in out
    code, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                      "calendar", "set", "2026-12-02", "--closed")
    assert code == 2  # an override needs a reason

    name = f"cli-{uuid.uuid4().hex[:6]}"
    code, secret = await asyncio.to_thread(
        run_cli, settings, monkeypatch, capsys, "subscription", "add", name,
        "--url", "http://127.0.0.1:9/hook", "--events", "sla.breached", "--opd", "dinkes")
    assert code == 0 and secret.strip().startswith("whsec_")
    code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "subscription", "list")
    assert name in out and secret.strip() not in out  # listed masked
    code, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "subscription", "remove", name)
    assert code == 0
    db = await asyncpg.connect(settings.database_url)
    try:
        assert await db.fetchval("SELECT count(*) FROM notify.subscriptions WHERE name = $1", name) == 0
        assert await db.fetchval(
            "SELECT working FROM sla.calendar_overrides WHERE day = '2026-12-01'") is False
        # An operator's psql session (default search_path) can edit the tables too.
        await db.execute("DELETE FROM sla.calendar_overrides WHERE day = '2026-12-01'")
        await db.execute("UPDATE sla.policies SET working_days = working_days WHERE clock = 'verification'")
        await db.execute("UPDATE routing.rules SET priority = priority + 1"
                         " WHERE id = (SELECT min(id) FROM routing.rules)")
    finally:
        await db.close()


async def test_api_key_commands_create_list_and_revoke(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"cli-key-{uuid.uuid4().hex[:6]}"
    code, plaintext = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "create-api-key",
                                              "--name", name, "--source", "portal-uji")
    assert code == 0 and plaintext.strip().startswith("sp4n_")
    code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "list-api-keys")
    [line] = [ln for ln in out.splitlines() if name in ln]
    assert "portal" in line and "source=portal-uji" in line and line.endswith("active")
    assert plaintext.strip() not in out  # never the secret
    key_id = line.split()[0].lstrip("#")
    code, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "revoke-api-key", key_id)
    assert code == 0
    code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "list-api-keys")
    [line] = [ln for ln in out.splitlines() if name in ln]
    assert "revoked" in line


async def test_outbox_list_and_retry_release_set_aside_rows(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "migrate")
    assert code == 0
    event_id = f"aside-{uuid.uuid4().hex[:8]}"
    db = await asyncpg.connect(settings.database_url)
    try:
        row_id = await db.fetchval(
            "INSERT INTO sla.outbox (event_id, routing_key, payload, attempts, last_error, set_aside_at)"
            " VALUES ($1, 'sla.breached', '{}', 10, 'invalid CloudEvent: id: Field required', now())"
            " RETURNING id", event_id)
        code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "outbox", "list")
        assert code == 0
        [line] = [line for line in out.splitlines() if event_id in line]
        assert line.split()[:2] == ["sla", str(row_id)]
        assert "attempts=10" in line and "invalid CloudEvent: id: Field required" in line
        code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                            "outbox", "retry", "--service", "sla", str(row_id))
        assert code == 0 and out.strip() == "released 1 row(s)"
        released = await db.fetchrow("SELECT attempts, set_aside_at FROM sla.outbox WHERE id = $1", row_id)
        assert (released["attempts"], released["set_aside_at"]) == (0, None)
        code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "outbox", "list")
        assert event_id not in out
    finally:
        await db.execute("DELETE FROM sla.outbox WHERE event_id = $1", event_id)
        await db.close()
