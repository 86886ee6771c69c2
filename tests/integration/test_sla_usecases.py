"""sla use cases against real PostgreSQL: clocks, timers, reordering, late stops, overrides."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.sla import usecases
from services.sla.app import MIGRATIONS
from services.sla.calendars import CalendarSource
from services.sla.repository import PgSlaRepository, set_policy
from shared.db import create_pool, migrate
from shared.events import (
    ComplaintDeferred,
    ComplaintResumed,
    ComplaintRouted,
    ComplaintSubmitted,
    Location,
    make_event,
)
from shared.uow import PgUnitOfWork

pytestmark = pytest.mark.integration
SCHEMA = "sla_usecases_test"
WIB = ZoneInfo("Asia/Pontianak")
T0 = datetime(2026, 3, 17, 9, 0, tzinfo=WIB)  # verification deadline: Fri 27 Mar 23:59:59.999999
VERIFICATION_DEADLINE = datetime(2026, 3, 27, 23, 59, 59, 999999, tzinfo=WIB)


@pytest.fixture(scope="module")
async def pool(settings):
    await migrate(settings.database_url, SCHEMA, MIGRATIONS)
    pool = await create_pool(settings.database_url, schema=SCHEMA, min_size=1, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture
def calendars():
    return CalendarSource("Asia/Pontianak")


def submitted_event(cid, received_at=T0, classification="pengaduan", berkadar=False):
    return make_event("test", ComplaintSubmitted(
        complaint_id=cid, tracking_id="SKD-T", source="portal", received_at=received_at,
        accepted_at=received_at, classification=classification, berkadar_pengawasan=berkadar,
        category="jalan", location=Location(kecamatan="Nanga Mahap"), anonymous=False,
        confidential=False, reporter_ref="ref"))


def routed_event(cid, routed_at, hop=1, opd="PUPR"):
    return make_event("test", ComplaintRouted(
        complaint_id=cid, opd_code=opd, opd_name=opd, hop=hop, routed_at=routed_at))


def uow_of(pool):
    return PgUnitOfWork(lambda: pool, PgSlaRepository)


async def apply(pool, event, calendars, now):
    return await usecases.on_complaint_event(event, uow=uow_of(pool), calendars=calendars, now=now)


async def fire_due_timers(pool):
    return await usecases.fire_due_timers(10_000, uow=uow_of(pool))


async def current_calendar(pool, calendars):
    async with uow_of(pool)() as tx:
        return await calendars.current(tx.repo)


async def submit(pool, calendars, cid, now=T0, **kw):
    return await apply(pool, submitted_event(cid, **kw), calendars, now)


async def route(pool, calendars, cid, routed_at, now=None, **kw):
    return await apply(pool, routed_event(cid, routed_at, **kw), calendars, now or routed_at)


async def clocks_of(pool, cid):
    rows = await pool.fetch("SELECT * FROM clocks WHERE complaint_id = $1 ORDER BY clock, hop", cid)
    return {(r["clock"], r["hop"]): r for r in rows}


async def timers_of(pool, cid):
    rows = await pool.fetch(
        "SELECT c.clock, c.hop, t.kind, t.due_at, t.fired_at, t.cancelled_at FROM timers t"
        " JOIN clocks c ON c.id = t.clock_id WHERE c.complaint_id = $1", cid)
    return {(r["clock"], r["hop"], r["kind"]): r for r in rows}


async def outbox_of(pool, cid):
    rows = await pool.fetch(
        "SELECT routing_key, payload FROM outbox WHERE payload->>'subject' = $1 ORDER BY id", str(cid))
    return [(r["routing_key"], r["payload"]["data"]) for r in rows]


def names(events):
    return [(k, d["clock"], d["hop"]) for k, d in events]


async def test_submission_starts_clocks_with_timers_and_events(pool, calendars):
    cid = uuid.uuid4()
    out = await submit(pool, calendars, cid, classification="aspirasi")
    clocks = await clocks_of(pool, cid)
    assert set(clocks) == {("verification", 0), ("completion", 0)}
    v = clocks[("verification", 0)]
    assert v["deadline"] == VERIFICATION_DEADLINE
    assert v["calendar_version"].startswith("holidays-") and v["policy_version"] >= 1
    assert clocks[("completion", 0)]["policy_key"] == "completion_aspirasi"
    timers = await timers_of(pool, cid)
    # (issue 10: and the seeded escalation ladders' steps, 2 for verification, 3 for completion)
    assert set(timers) == {(c, 0, k) for c in ("verification", "completion")
                           for k in ("warning", "breach", "escalate")}
    assert all(t["fired_at"] is None and t["cancelled_at"] is None for t in timers.values())
    assert await pool.fetchval(
        "SELECT count(*) FROM timers t JOIN clocks c ON c.id = t.clock_id"
        " WHERE c.complaint_id = $1 AND t.kind = 'escalate'", cid) == 5
    assert names(await outbox_of(pool, cid)) == [
        ("sla.clock_started", "verification", 0), ("sla.clock_started", "completion", 0)]
    assert out.alerts == []


async def test_redelivered_submission_has_no_effect(pool, calendars):
    cid = uuid.uuid4()
    event = submitted_event(cid)
    await apply(pool, event, calendars, T0)
    again = await apply(pool, event, calendars, T0)
    assert again.duplicate
    # Same complaint re-published under a new event id: the unique clock key holds.
    await submit(pool, calendars, cid)
    assert len(await clocks_of(pool, cid)) == 2
    assert len(await outbox_of(pool, cid)) == 2


async def test_routing_stops_verification_on_time_and_starts_hop_clock(pool, calendars):
    cid = uuid.uuid4()
    await submit(pool, calendars, cid)
    routed_at = T0 + timedelta(days=2)
    await route(pool, calendars, cid, routed_at, opd="DINKES")
    clocks = await clocks_of(pool, cid)
    assert clocks[("verification", 0)]["stopped_at"] == routed_at
    assert clocks[("verification", 0)]["stop_reason"] == "stopped"
    hop = clocks[("opd_response", 1)]
    assert hop["opd_code"] == "DINKES" and hop["started_at"] == routed_at and hop["stopped_at"] is None
    timers = await timers_of(pool, cid)
    assert timers[("verification", 0, "breach")]["cancelled_at"] is not None
    assert timers[("verification", 0, "warning")]["cancelled_at"] is not None
    assert timers[("opd_response", 1, "breach")]["cancelled_at"] is None
    events = await outbox_of(pool, cid)
    stopped = [d for k, d in events if k == "sla.clock_stopped"]
    assert len(stopped) == 1 and stopped[0]["clock"] == "verification" and stopped[0]["on_time"]
    assert ("sla.clock_started", "opd_response", 1) in names(events)
    assert not [k for k, _ in events if k == "sla.breached"]


async def test_routed_before_submitted_creates_verification_already_stopped(pool, calendars):
    cid = uuid.uuid4()
    routed_at = T0 + timedelta(days=1)
    await route(pool, calendars, cid, routed_at)
    assert set(await clocks_of(pool, cid)) == {("opd_response", 1)}
    await submit(pool, calendars, cid, now=routed_at)
    v = (await clocks_of(pool, cid))[("verification", 0)]
    assert v["stopped_at"] == routed_at
    assert not [t for (c, _, _), t in (await timers_of(pool, cid)).items() if c == "verification"]
    events = await outbox_of(pool, cid)
    assert ("sla.clock_stopped", "verification", 0) in names(events)
    assert not [k for k, _ in events if k == "sla.breached"]


async def test_late_routed_before_submitted_still_breaches(pool, calendars):
    cid = uuid.uuid4()
    routed_at = VERIFICATION_DEADLINE + timedelta(hours=1)
    await route(pool, calendars, cid, routed_at)
    out = await submit(pool, calendars, cid, now=routed_at)
    events = await outbox_of(pool, cid)
    breached = [d for k, d in events if k == "sla.breached"]
    assert [d["clock"] for d in breached] == ["verification"]
    assert [a.kind for a in out.alerts] == ["breach"]
    stopped = [d for k, d in events if k == "sla.clock_stopped"]
    assert stopped[0]["on_time"] is False


async def test_late_stop_before_breach_fired_emits_breach_once(pool, calendars):
    cid = uuid.uuid4()
    await submit(pool, calendars, cid)
    late = VERIFICATION_DEADLINE + timedelta(minutes=10)
    out = await route(pool, calendars, cid, late)
    assert [(a.kind, a.clock) for a in out.alerts] == [("breach", "verification")]
    timers = await timers_of(pool, cid)
    assert timers[("verification", 0, "breach")]["fired_at"] is not None
    assert timers[("verification", 0, "warning")]["cancelled_at"] is not None
    # The scanner has nothing left to fire for this clock.
    await fire_due_timers(pool)
    events = await outbox_of(pool, cid)
    breaches = [d for k, d in events if k == "sla.breached" and d["clock"] == "verification"]
    assert len(breaches) == 1
    assert datetime.fromisoformat(breaches[0]["deadline"]) == VERIFICATION_DEADLINE


async def test_late_import_breaches_at_once_and_skips_warnings(pool, calendars):
    cid = uuid.uuid4()
    now = datetime.now(UTC)
    out = await submit(pool, calendars, cid, now=now, received_at=now - timedelta(days=40),
                       classification="permintaan_informasi")
    assert sorted(a.clock for a in out.alerts) == ["completion", "verification"]
    timers = await timers_of(pool, cid)
    assert set(timers) == {("verification", 0, "breach"), ("completion", 0, "breach"),
                           ("verification", 0, "escalate"), ("completion", 0, "escalate")}
    # The breaches fire in the message; the ladders' steps are the scanner's (issue 10).
    assert all(t["fired_at"] is not None for (_, _, k), t in timers.items() if k == "breach")


async def test_reroute_cancels_previous_hop(pool, calendars):
    cid = uuid.uuid4()
    await submit(pool, calendars, cid)
    hop1_at, hop2_at = T0 + timedelta(days=1), T0 + timedelta(days=9)
    await route(pool, calendars, cid, hop1_at, hop=1, opd="PUPR")
    await route(pool, calendars, cid, hop2_at, hop=2, opd="DISHUB")
    clocks = await clocks_of(pool, cid)
    assert clocks[("opd_response", 1)]["stop_reason"] == "cancelled"
    assert clocks[("opd_response", 1)]["stopped_at"] == hop2_at
    assert clocks[("opd_response", 2)]["stopped_at"] is None
    timers = await timers_of(pool, cid)
    assert all(timers[("opd_response", 1, k)]["cancelled_at"] is not None for k in ("warning", "breach"))
    stops = [d for k, d in await outbox_of(pool, cid)
             if k == "sla.clock_stopped" and d["clock"] == "opd_response"]
    assert [(d["hop"], d["reason"], d["opd_code"]) for d in stops] == [(1, "cancelled", "PUPR")]


async def test_reroute_arriving_before_first_hop_creates_first_hop_cancelled(pool, calendars):
    cid = uuid.uuid4()
    hop1_at, hop2_at = T0 + timedelta(days=1), T0 + timedelta(days=2)
    await route(pool, calendars, cid, hop2_at, hop=2, opd="DISHUB")
    await route(pool, calendars, cid, hop1_at, now=hop2_at, hop=1, opd="PUPR")
    clocks = await clocks_of(pool, cid)
    assert clocks[("opd_response", 1)]["stop_reason"] == "cancelled"
    assert clocks[("opd_response", 1)]["stopped_at"] == hop2_at
    assert clocks[("opd_response", 2)]["stopped_at"] is None


async def test_overrides_and_policy_edits_version_new_deadlines(pool, calendars):
    async with pool.acquire() as conn, conn.transaction():
        rev = await usecases.set_calendar_override(conn, date(2026, 3, 25), False, "Penutupan kantor")
    cid = uuid.uuid4()
    await submit(pool, calendars, cid)
    v = (await clocks_of(pool, cid))[("verification", 0)]
    assert v["calendar_version"].endswith(f"+ovr-{rev}")
    assert v["deadline"] == datetime(2026, 3, 30, 23, 59, 59, 999999, tzinfo=WIB)
    async with pool.acquire() as conn, conn.transaction():
        rev2 = await usecases.remove_calendar_override(conn, date(2026, 3, 25))
        before = (await conn.fetchval("SELECT version FROM policies WHERE clock = 'verification'"))
        policy = await set_policy(conn, "verification", 4)
        await set_policy(conn, "verification", 3)
    assert rev2 > rev and policy.version == before + 1
    with pytest.raises(ValueError):
        async with pool.acquire() as conn:
            await usecases.set_calendar_override(conn, date(2026, 3, 26), False, "  ")


async def test_policy_and_calendar_edits_apply_to_the_next_message(pool, calendars):
    """The calendar and policies are cached in process, checked against the override revision
    and the policy rows read with each message's clocks: an operator's edit applies to the very
    next clock started through the same (warm) cache, with no restart and no TTL to wait for."""
    first = uuid.uuid4()
    await submit(pool, calendars, first)  # fills the cache
    assert (await clocks_of(pool, first))[("verification", 0)]["deadline"] == VERIFICATION_DEADLINE
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchval("SELECT version FROM policies WHERE clock = 'verification'")
        await set_policy(conn, "verification", 4)
    rev = None
    try:
        second = uuid.uuid4()
        await submit(pool, calendars, second)
        v = (await clocks_of(pool, second))[("verification", 0)]
        assert (v["working_days"], v["policy_version"]) == (4, before + 1)
        assert v["deadline"] == datetime(2026, 3, 30, 23, 59, 59, 999999, tzinfo=WIB)
        async with pool.acquire() as conn, conn.transaction():
            rev = await usecases.set_calendar_override(conn, date(2026, 3, 30), False, "Penutupan")
        third = uuid.uuid4()
        await submit(pool, calendars, third)
        v = (await clocks_of(pool, third))[("verification", 0)]
        assert v["calendar_version"].endswith(f"+ovr-{rev}")
        fresh = await current_calendar(pool, CalendarSource("Asia/Pontianak"))
        assert fresh.override_revision == rev
        assert v["deadline"] == fresh.deadline(T0, 4) > datetime(2026, 3, 30, 23, 59, 59, 999999, tzinfo=WIB)
    finally:
        async with pool.acquire() as conn, conn.transaction():
            await set_policy(conn, "verification", 3)
            if rev is not None:
                await usecases.remove_calendar_override(conn, date(2026, 3, 30))
    fourth = uuid.uuid4()
    await submit(pool, calendars, fourth)
    v = (await clocks_of(pool, fourth))[("verification", 0)]
    assert (v["working_days"], v["deadline"]) == (3, VERIFICATION_DEADLINE)


async def test_resume_before_its_deferral_replaces_the_timers_once(pool, calendars):
    """A resume processed before its deferral (reordered) cancels the pending timers and makes
    new ones for the moved deadline in the same message; the deferral then changes nothing."""
    cid = uuid.uuid4()
    await submit(pool, calendars, cid)
    initial = {k: r["deadline"] for k, r in (await clocks_of(pool, cid)).items()}
    deferred_at, resumed_at = T0 + timedelta(days=1), T0 + timedelta(days=22)
    resumed = make_event("test", ComplaintResumed(complaint_id=cid, resumed_at=resumed_at,
                                                  deferred_at=deferred_at))
    deferred = make_event("test", ComplaintDeferred(complaint_id=cid, deferred_at=deferred_at))
    await apply(pool, resumed, calendars, resumed_at)
    out = await apply(pool, deferred, calendars, resumed_at)
    # Only DITUNDA's own clock (issue 10), created already met by the resume.
    assert [(e.event_name, e.data["clock"]) for e in out.events] == [
        ("sla.clock_started", "deferral"), ("sla.clock_stopped", "deferral")]
    assert not out.duplicate
    calendar = await current_calendar(pool, calendars)
    n = calendar.paused_working_days(deferred_at, resumed_at)
    assert n > 0
    clocks = await clocks_of(pool, cid)
    rows = await pool.fetch(
        "SELECT c.clock, t.kind, t.due_at, t.cancelled_at FROM timers t"
        " JOIN clocks c ON c.id = t.clock_id WHERE c.complaint_id = $1", cid)
    for key in (("verification", 0), ("completion", 0)):
        c = clocks[key]
        moved = calendar.move_deadline(initial[key], n)
        assert (c["deadline"], c["paused_working_days"], c["paused_at"]) == (moved, n, None)
        live = sorted((r["kind"], r["due_at"]) for r in rows
                      if r["clock"] == key[0] and r["cancelled_at"] is None
                      and r["kind"] != "escalate")  # (issue 10's ladder steps)
        assert [k for k, _ in live] == ["breach", "warning"] and live[0][1] == moved
        assert sum(1 for r in rows if r["clock"] == key[0] and r["cancelled_at"] is not None
                   and r["kind"] != "escalate") == 2
    assert await pool.fetchval(
        "SELECT count(*) FROM clock_pauses p JOIN clocks c ON c.id = p.clock_id"
        " WHERE c.complaint_id = $1", cid) == 2
    started = [d for k, d in await outbox_of(pool, cid)
               if k == "sla.clock_started" and d["clock"] != "deferral"]
    assert len(started) == 4  # the two starts, then the two moved deadlines


async def test_scanner_skips_warning_whose_deadline_passed(pool, calendars):
    cid = uuid.uuid4()
    past = datetime.now(UTC) - timedelta(days=1)
    await submit(pool, calendars, cid, now=past - timedelta(days=30),
                 received_at=past - timedelta(days=30), classification="aspirasi")
    await fire_due_timers(pool)
    timers = await timers_of(pool, cid)
    assert timers[("verification", 0, "warning")]["cancelled_at"] is not None
    assert timers[("verification", 0, "breach")]["fired_at"] is not None
    kinds = [k for k, _ in await outbox_of(pool, cid)]
    assert "sla.warning" not in kinds and kinds.count("sla.breached") == 2
