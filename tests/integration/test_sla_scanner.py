"""The sla timer scanner against real PostgreSQL, and the whole service against RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.sla.app import MIGRATIONS, build_app
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import ClockStart, Deadline
from services.sla.metrics import SlaMetrics
from services.sla.repository import PgSlaRepository
from services.sla.scanner import scan_once
from shared.db import create_pool, migrate
from shared.events import ComplaintRouted, ComplaintSubmitted, Location, make_event
from shared.topology import events_exchange
from shared.uow import PgUnitOfWork

pytestmark = pytest.mark.integration
SCHEMA = "sla_scanner_test"


@pytest.fixture(scope="module")
async def pool(settings):
    await migrate(settings.database_url, SCHEMA, MIGRATIONS)
    pool = await create_pool(settings.database_url, schema=SCHEMA, min_size=2, max_size=8)
    yield pool
    await pool.close()


def _uow(pool):
    return PgUnitOfWork(lambda: pool, PgSlaRepository)


async def _due_clock(pool, *, kind: str, due_at: datetime, deadline: datetime) -> uuid.UUID:
    """A complaint with one opd_response clock and one timer of ``kind`` due at ``due_at``,
    written through the repository's load/save of the clocks aggregate."""
    cid = uuid.uuid4()
    start = ClockStart("opd_response", 1, "opd_response", due_at - timedelta(days=10), opd_code="PUPR")
    async with _uow(pool)() as tx:
        state, _ = await tx.repo.load(cid, None, "")
        clock_id = state.insert_clock(start, Deadline(5, deadline, None, "test-cal", 1))
        assert clock_id is not None
        state.insert_timer(clock_id, kind, due_at)  # type: ignore[arg-type]
        await tx.repo.save(state)
    return cid


async def test_two_scanners_fire_each_due_timer_exactly_once(pool):
    now = datetime.now(UTC)
    breaches = [await _due_clock(pool, kind="breach", due_at=now - timedelta(seconds=1 + i % 5),
                                 deadline=now - timedelta(seconds=1)) for i in range(200)]
    warnings = [await _due_clock(pool, kind="warning", due_at=now - timedelta(seconds=1),
                                 deadline=now + timedelta(days=1)) for _ in range(40)]
    # Not due yet: must not fire.
    future = await _due_clock(pool, kind="breach", due_at=now + timedelta(hours=1),
                              deadline=now + timedelta(hours=1))
    metrics = [SlaMetrics(CollectorRegistry()) for _ in range(2)]
    uow = _uow(pool)
    claimed = [0, 0]

    async def drain(i):
        while n := await scan_once(uow, 7, metrics[i]):
            claimed[i] += n
            await asyncio.sleep(0)  # interleave with the other scanner

    await asyncio.gather(drain(0), drain(1))
    assert sum(claimed) >= 240 and all(claimed), claimed  # both scanners did work

    ours = {str(c) for c in breaches + warnings + [future]}
    rows = await pool.fetch("SELECT routing_key, payload->>'subject' AS cid FROM outbox"
                            " WHERE routing_key IN ('sla.breached', 'sla.warning')")
    per_timer = Counter((r["cid"], r["routing_key"]) for r in rows if r["cid"] in ours)
    assert per_timer == Counter({**{(str(c), "sla.breached"): 1 for c in breaches},
                                 **{(str(c), "sla.warning"): 1 for c in warnings}})
    pending = await pool.fetchval(
        "SELECT count(*) FROM timers t JOIN clocks c ON c.id = t.clock_id"
        " WHERE c.complaint_id = ANY($1::uuid[]) AND t.fired_at IS NULL", breaches + warnings)
    assert pending == 0
    assert await pool.fetchval(
        "SELECT t.fired_at FROM timers t JOIN clocks c ON c.id = t.clock_id"
        " WHERE c.complaint_id = $1", future) is None
    lag_counts = [m.detection_lag.collect()[0] for m in metrics]
    observed = sum(next(x.value for x in fam.samples if x.name.endswith("_count")) for fam in lag_counts)
    assert observed == 200  # breaches only; warnings are not detection-lag samples
    assert sum(m.breaches.labels("PUPR", "opd_response")._value.get() for m in metrics) >= 200


# -- the service, end to end in-process ------------------------------------------------------
def _submitted(cid, received_at, classification="pengaduan"):
    return make_event("test-portal", ComplaintSubmitted(
        complaint_id=cid, tracking_id=f"SKD-{cid.hex[:6]}", source="portal",
        received_at=received_at, accepted_at=datetime.now(UTC),
        classification=classification, category="jalan",
        location=Location(kecamatan="Sekadau Hilir"), anonymous=True, confidential=False,
        reporter_ref="ref-1"))


def _routed(cid, routed_at, hop=1, opd="PUPR"):
    return make_event("test-routing", ComplaintRouted(
        complaint_id=cid, opd_code=opd, opd_name="Dinas PUPR", hop=hop, routed_at=routed_at))


def _working_days_ago(settings, now, n):
    calendar = WorkingCalendar(settings.tz)
    start = now
    while calendar.working_days_between(start, now) < n:
        start -= timedelta(days=1)
    return start


class Probe:
    """An exclusive queue bound to ``sla.*`` on the events exchange."""

    def __init__(self, settings):
        self.settings = settings

    async def __aenter__(self):
        self.conn = await aio_pika.connect(self.settings.amqp_url)
        self.channel = await self.conn.channel()
        self.queue = await self.channel.declare_queue(exclusive=True)
        await self.queue.bind(events_exchange(self.settings.namespace).name, routing_key="sla.*")
        self.exchange = await self.channel.get_exchange(events_exchange(self.settings.namespace).name)
        self.seen: list[dict] = []
        return self

    async def __aexit__(self, *exc):
        await self.conn.close()

    async def publish(self, event):
        await self.exchange.publish(
            aio_pika.Message(event.model_dump_json().encode(), message_id=event.id,
                             content_type="application/cloudevents+json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=event.event_name)

    async def collect(self, until, timeout_s: float) -> list[dict]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            msg = await self.queue.get(fail=False)
            if msg is None:
                if until(self.seen):
                    break
                await asyncio.sleep(0.05)
                continue
            await msg.ack()
            self.seen.append(json.loads(msg.body))
        return self.seen

    def of(self, cid) -> list[tuple[str, str, int]]:
        return [(e["type"].removeprefix("id.go.sp4n.").removesuffix(".v1"), e["data"]["clock"],
                 e["data"]["hop"]) for e in self.seen if e["subject"] == str(cid)]


async def test_overdue_submission_breaches_once_and_routing_stops_verification(settings):
    # Quiet hours off: which escalation steps are already due must not depend on the hour.
    app = build_app(settings.model_copy(update={
        "sla": settings.sla.model_copy(update={"quiet_hours": False})}))
    async with app.router.lifespan_context(app):
        async with Probe(settings) as probe:
            now = datetime.now(UTC)
            overdue = uuid.uuid4()
            event = _submitted(overdue, _working_days_ago(settings, now, 20))
            started = asyncio.get_running_loop().time()
            await probe.publish(event)
            await probe.publish(event)  # a redelivery must change nothing

            def both_breached(_seen):
                return sorted(c for k, c, _ in probe.of(overdue) if k == "sla.breached") == [
                    "completion", "verification"]

            await probe.collect(both_breached, timeout_s=5)
            assert both_breached(probe.seen), probe.of(overdue)
            assert asyncio.get_running_loop().time() - started < 5
            breached = [e for e in probe.seen if e["subject"] == str(overdue)
                        and e["type"].endswith("sla.breached.v1")]
            assert all(e["source"] == "sp4n/sla" and e["data"]["calendar_version"].startswith("holidays-")
                       for e in breached)

            # A fresh complaint, routed in time: verification stops on time, the OPD clock starts.
            fresh = uuid.uuid4()
            await probe.publish(_submitted(fresh, now))
            await probe.publish(_routed(fresh, now + timedelta(minutes=5)))

            def routed_seen(_seen):
                got = probe.of(fresh)
                return ("sla.clock_stopped", "verification", 0) in got and \
                    ("sla.clock_started", "opd_response", 1) in got

            await probe.collect(routed_seen, timeout_s=5)
            assert routed_seen(probe.seen), probe.of(fresh)
            # Wait for stragglers: duplicates would show up now.
            await probe.collect(lambda _s: False, timeout_s=1.0)

            counts = Counter(probe.of(overdue))
            # Issue 10's seeded ladders: verification (+0, +3 HK) is 17 HK late, completion
            # (+0, +5, +10 HK) 6 HK late: two steps each, once.
            assert counts == Counter({("sla.clock_started", "verification", 0): 1,
                                      ("sla.clock_started", "completion", 0): 1,
                                      ("sla.breached", "verification", 0): 1,
                                      ("sla.breached", "completion", 0): 1,
                                      ("sla.escalated", "verification", 0): 2,
                                      ("sla.escalated", "completion", 0): 2})
            stop = [e["data"] for e in probe.seen if e["subject"] == str(fresh)
                    and e["type"].endswith("sla.clock_stopped.v1")]
            assert len(stop) == 1 and stop[0]["on_time"] is True and stop[0]["clock"] == "verification"
            assert not [k for k, _, _ in probe.of(fresh) if k in ("sla.breached", "sla.warning")]

            # A timer coming due while the service runs is detected by the scanner in < 1 s.
            pool = app.state.runtime.pool
            due_at = datetime.now(UTC) + timedelta(seconds=0.5)
            timed = await _due_clock(pool, kind="breach", due_at=due_at, deadline=due_at)
            await probe.collect(lambda _s: ("sla.breached", "opd_response", 1) in probe.of(timed),
                                timeout_s=5)
            assert probe.of(timed) == [("sla.breached", "opd_response", 1)]
            lag = await pool.fetchval(
                "SELECT extract(epoch FROM t.fired_at - t.due_at)::float8 FROM timers t"
                " JOIN clocks c ON c.id = t.clock_id WHERE c.complaint_id = $1", timed)
            assert 0 <= lag < 1.0, lag

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://sla") as client:
            text = (await client.get("/metrics")).text
            assert 'sp4n_sla_breaches_total{clock="verification",opd="none"}' in text
            assert "sp4n_sla_breach_detection_lag_seconds_bucket" in text
            assert 'sp4n_sla_open_clocks{clock="completion"}' in text
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
