"""A RabbitMQ memory alarm (every publish blocked broker-wide, as in a disk or memory alarm):
the outbox relay holds nothing against its rows — none is set aside, none loses an attempt —
while the events wait in the outbox, and everything is published by itself once the alarm
clears. Real PostgreSQL and the machine's own RabbitMQ (the alarm is raised with
``rabbitmqctl set_vm_memory_high_watermark 0`` and always put back, whatever happens)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import pytest

from shared.events import ComplaintTriageRequired, make_event
from shared.outbox import add_to_outbox
from shared.service import ServiceRuntime
from shared.topology import events_exchange
from tests.infra import drop_schema

pytestmark = pytest.mark.integration
EMPTY_DIR = Path(__file__).parent / "no-migrations"
COUNT = 40


def _ctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()


def _alarms() -> str:
    return _ctl("eval", "rabbit_alarm:get_alarms().")


class MemoryAlarm:
    """RabbitMQ's memory alarm, raised and cleared with ``rabbitmqctl``; ``clear`` puts the
    watermark back as it was."""

    def __init__(self) -> None:
        old = _ctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
        self._restore = (["set_vm_memory_high_watermark", "absolute",
                          old.split(",")[1].strip(" }")]
                         if old.startswith("{absolute") else ["set_vm_memory_high_watermark", old])

    def raise_(self) -> None:
        _ctl("set_vm_memory_high_watermark", "0")
        self._wait(lambda: "memory" in _alarms(), "no memory alarm after a watermark of 0")

    def clear(self) -> None:
        _ctl(*self._restore)
        self._wait(lambda: "memory" not in _alarms(), "the memory alarm did not clear")

    @staticmethod
    def _wait(done, what: str) -> None:
        deadline = time.monotonic() + 30
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {_alarms()}")
            time.sleep(0.2)


@pytest.fixture
def memory_alarm(settings) -> Iterator[MemoryAlarm]:
    """The alarm's switch; whatever happens, the watermark is restored at the end."""
    if shutil.which("rabbitmqctl") is None or "@127.0.0.1:" not in settings.amqp_url:
        pytest.skip("needs the machine's own RabbitMQ and rabbitmqctl")
    alarm = MemoryAlarm()
    try:
        yield alarm
    finally:
        alarm.clear()


async def _unsent(settings, schema: str) -> asyncpg.Record:
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": schema})
    try:
        return await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE sent_at IS NULL) AS unsent,"
            " count(*) FILTER (WHERE set_aside_at IS NOT NULL) AS set_aside,"
            " coalesce(max(attempts), 0) AS attempts FROM outbox")
    finally:
        await conn.close()


async def test_a_memory_alarm_holds_events_in_the_outbox_until_it_clears(settings, memory_alarm):
    schema = f"alarm_{uuid.uuid4().hex[:10]}"
    s = settings.model_copy(update={"outbox_poll_interval_s": 0.2,
                                    "outbox_publish_timeout_s": 1.0})
    runtime = ServiceRuntime(schema, s, EMPTY_DIR, title="alarm test")
    conn = await aio_pika.connect_robust(settings.amqp_url)
    events = [make_event("test", ComplaintTriageRequired(
        complaint_id=uuid.uuid4(), reason="no rule", category="jalan")) for _ in range(COUNT)]
    try:
        async with runtime.app.router.lifespan_context(runtime.app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=runtime.app), base_url="http://svc") as client:
            ch = await conn.channel()
            probe = await ch.declare_queue(f"{settings.namespace}.alarm-probe-{schema}",
                                           exclusive=True)
            await probe.bind(events_exchange(settings.namespace).name,
                             routing_key="complaint.triage_required")
            await asyncio.to_thread(memory_alarm.raise_)  # from here on, no publish is taken
            db = await asyncpg.connect(settings.database_url,
                                       server_settings={"search_path": schema})
            try:
                await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                                        schema="pg_catalog")
                await add_to_outbox(db, *events)  # committed: accepted work, whatever the broker
            finally:
                await db.close()
            await asyncio.sleep(6)  # several claims, publish timeouts and backoffs
            during = await _unsent(settings, schema)
            ready = (await client.get("/readyz")).json()
            await asyncio.to_thread(memory_alarm.clear)  # the operator freed memory
            deadline = time.monotonic() + 60
            while (after := await _unsent(settings, schema))["unsent"] and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
        seen: set[str] = set()
        while (msg := await probe.get(fail=False, no_ack=True)) is not None:
            seen.add(json.loads(msg.body)["id"])
    finally:
        await conn.close()
        await drop_schema(settings.database_url, schema)
    assert during["unsent"] == COUNT, during
    assert during["set_aside"] == 0 and during["attempts"] <= 1, (
        f"a broker-wide refusal was held against the rows: {dict(during)}")
    assert ready["checks"]["database"] == "ok", ready
    assert after["unsent"] == 0 and after["set_aside"] == 0, dict(after)
    assert seen >= {e.id for e in events}
