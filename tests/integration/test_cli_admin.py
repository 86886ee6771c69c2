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
from shared.topology import ROUTING_SUBMITTED, dead_letter_exchange
from tests.e2e.system import settings_env

pytestmark = pytest.mark.integration


def run_cli(settings, monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    for key, value in settings_env(settings).items():
        if key.startswith("SP4N_"):
            monkeypatch.setenv(key, value)
    code = sp4n_main(list(argv))
    return code, capsys.readouterr().out


async def test_dlq_replay_sends_messages_back_to_the_queue_they_failed_on(settings, monkeypatch, capsys):
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
        back = []
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
        assert sorted(back) == sorted(ids)
        dlq = await ch.declare_queue(ROUTING_SUBMITTED.dlq_name(settings.namespace), passive=True)
        assert dlq.declaration_result.message_count == 0
    finally:
        await conn.close()


async def test_calendar_override_and_subscription_commands(settings, monkeypatch, capsys):
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
        assert await db.fetchval("SELECT working FROM sla.calendar_overrides WHERE day = '2026-12-01'") is False
        # An operator's psql session (default search_path) can edit the tables too.
        await db.execute("DELETE FROM sla.calendar_overrides WHERE day = '2026-12-01'")
        await db.execute("UPDATE sla.policies SET working_days = working_days WHERE clock = 'verification'")
        await db.execute("UPDATE routing.rules SET priority = priority + 1 WHERE id = (SELECT min(id) FROM routing.rules)")
    finally:
        await db.close()
