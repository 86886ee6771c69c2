"""The sla service over the whole lifecycle: the real app in process, real RabbitMQ/PostgreSQL.

Events are published on the events exchange as intake would; assertions are on the sla.* events
the service publishes and on its tables."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from services.sla.app import build_app
from services.sla.calendar import WorkingCalendar
from shared.events import (
    ComplaintArchived,
    ComplaintClosed,
    ComplaintDeferred,
    ComplaintReopened,
    ComplaintReporterReplied,
    ComplaintResponded,
    ComplaintResumed,
    make_event,
)
from tests.integration.test_sla_scanner import Probe, _routed, _submitted, _working_days_ago

pytestmark = pytest.mark.integration


def ev(data):
    return make_event("test-intake", data)


def sla_events(probe, cid, name=None):
    out = []
    for e in probe.seen:
        if e["subject"] != str(cid):
            continue
        kind = e["type"].removeprefix("id.go.sp4n.").removesuffix(".v1")
        if name is None or kind == name:
            out.append((kind, e["data"]))
    return out


def has(probe, cid, name, **match):
    return any(all(d.get(k) == v for k, v in match.items()) for _, d in sla_events(probe, cid, name))


@pytest.fixture
async def service(settings):
    app = build_app(settings)
    async with app.router.lifespan_context(app), Probe(settings) as probe:
        yield app, probe


async def test_backdated_response_elapses_the_reply_window_exactly_once(service, settings):
    app, probe = service
    now = datetime.now(UTC)
    cid = uuid.uuid4()
    received = _working_days_ago(settings, now, 30)
    responded_at = _working_days_ago(settings, now, 20)
    responded = ev(ComplaintResponded(complaint_id=cid, opd_code="PUPR", hop=1, response_no=1,
                                      responded_at=responded_at))
    await probe.publish(_submitted(cid, received))
    await probe.publish(_routed(cid, received + timedelta(hours=1)))
    # Let the service drain what earlier tests left on its queue before timing it.
    await probe.collect(lambda _s: has(probe, cid, "sla.clock_started", clock="opd_response"),
                        timeout_s=30)
    started = asyncio.get_running_loop().time()
    await probe.publish(responded)
    await probe.publish(responded)  # redelivered: no second elapse

    await probe.collect(lambda _s: has(probe, cid, "sla.reply_window_elapsed"), timeout_s=5)
    assert asyncio.get_running_loop().time() - started < 2.0
    await probe.collect(lambda _s: False, timeout_s=1.0)  # stragglers would show up now
    elapsed = sla_events(probe, cid, "sla.reply_window_elapsed")
    assert len(elapsed) == 1, elapsed
    d = elapsed[0][1]
    assert (d["opd_code"], d["hop"]) == ("PUPR", 1)
    assert datetime.fromisoformat(d["responded_at"]) == responded_at
    calendar = WorkingCalendar(settings.tz)
    assert datetime.fromisoformat(d["deadline"]) == calendar.deadline(responded_at, 10)
    assert d["calendar_version"].startswith("holidays-") and d["policy_version"] >= 1
    # Not a breach, never warned; the reply-window clock is over.
    assert not [d for _, d in sla_events(probe, cid, "sla.breached") if d["clock"] == "auto_close"]
    assert not [d for _, d in sla_events(probe, cid, "sla.warning") if d["clock"] == "auto_close"]
    assert has(probe, cid, "sla.clock_stopped", clock="auto_close", hop=1)
    # The OPD's late response (routed 30 HK ago) stopped its clock: a breach, once.
    assert Counter(d["clock"] for _, d in sla_events(probe, cid, "sla.breached"))["opd_response"] == 1


async def test_reporter_reply_before_the_window_elapses_means_no_elapse(service, settings):
    app, probe = service
    now = datetime.now(UTC)
    backdated, fresh = uuid.uuid4(), uuid.uuid4()
    responded_at = _working_days_ago(settings, now, 20)
    # Reordered: the reply (a day after the response) is processed before the response.
    await probe.publish(ev(ComplaintReporterReplied(complaint_id=backdated, opd_code="PUPR", hop=1,
                                                    replied_at=responded_at + timedelta(days=1))))
    await probe.publish(ev(ComplaintResponded(complaint_id=backdated, opd_code="PUPR", hop=1,
                                              response_no=1, responded_at=responded_at)))
    # In order, live: response now, reply a minute later.
    await probe.publish(ev(ComplaintResponded(complaint_id=fresh, opd_code="DINKES", hop=1,
                                              response_no=1, responded_at=now)))
    await probe.publish(ev(ComplaintReporterReplied(complaint_id=fresh,
                                                    replied_at=now + timedelta(minutes=1))))

    def both_cancelled(_s):
        return all(has(probe, c, "sla.clock_stopped", clock="auto_close", reason="cancelled")
                   for c in (backdated, fresh))

    await probe.collect(both_cancelled, timeout_s=5)
    assert both_cancelled(probe.seen)
    await probe.collect(lambda _s: False, timeout_s=1.0)
    for c in (backdated, fresh):
        assert not sla_events(probe, c, "sla.reply_window_elapsed"), c
    pending = await app.state.runtime.pool.fetchval(
        "SELECT count(*) FROM timers t JOIN clocks c ON c.id = t.clock_id WHERE c.complaint_id ="
        " ANY($1::uuid[]) AND t.fired_at IS NULL AND t.cancelled_at IS NULL", [backdated, fresh])
    assert pending == 0


async def test_defer_and_resume_move_the_deadlines_by_the_paused_working_days(service, settings):
    app, probe = service
    calendar = WorkingCalendar(settings.tz)
    cid = uuid.uuid4()
    received = datetime.now(UTC)
    deferred_at = received + timedelta(hours=1)
    resumed_at = received + timedelta(days=8)
    await probe.publish(_submitted(cid, received, classification="aspirasi"))
    await probe.collect(lambda _s: len(sla_events(probe, cid, "sla.clock_started")) == 2, timeout_s=5)
    initial = {d["clock"]: datetime.fromisoformat(d["deadline"])
               for _, d in sla_events(probe, cid, "sla.clock_started")}

    await probe.publish(ev(ComplaintDeferred(complaint_id=cid, deferred_at=deferred_at)))
    # While DITUNDA, neither clock has a live timer.
    pool = app.state.runtime.pool
    for _ in range(50):
        if await pool.fetchval("SELECT count(*) FROM clocks WHERE complaint_id = $1"
                               " AND paused_at IS NOT NULL", cid) == 2:
            break
        await asyncio.sleep(0.05)
    # (DITUNDA's own clock, issue 10, has its expiry timer.)
    assert await pool.fetchval(
        "SELECT count(*) FROM timers t JOIN clocks c ON c.id = t.clock_id WHERE c.complaint_id = $1"
        " AND c.clock <> 'deferral' AND t.fired_at IS NULL AND t.cancelled_at IS NULL", cid) == 0

    await probe.publish(ev(ComplaintResumed(complaint_id=cid, deferred_at=deferred_at,
                                            resumed_at=resumed_at)))
    def started(_s=None):
        return [e for e in sla_events(probe, cid, "sla.clock_started") if e[1]["clock"] != "deferral"]

    await probe.collect(lambda _s: len(started()) == 4, timeout_s=5)
    restarted = started()[2:]
    n = calendar.paused_working_days(deferred_at, resumed_at)
    assert n >= 4  # 8 calendar days hold at least 4 working days (no 5-day closure then)
    assert sorted(d["clock"] for _, d in restarted) == ["completion", "verification"]
    for _, d in restarted:
        moved = datetime.fromisoformat(d["deadline"])
        assert moved == calendar.move_deadline(initial[d["clock"]], n)
        assert calendar.working_days_between(initial[d["clock"]], moved) == n
        assert datetime.fromisoformat(d["started_at"]) == received
    assert await pool.fetchval(
        "SELECT count(*) FROM timers t JOIN clocks c ON c.id = t.clock_id WHERE c.complaint_id = $1"
        " AND t.kind = 'breach' AND t.fired_at IS NULL AND t.cancelled_at IS NULL", cid) == 2
    # Only DITUNDA's own clock stopped (met by the resume).
    assert [(d["clock"], d["reason"]) for _, d in sla_events(probe, cid, "sla.clock_stopped")] == [
        ("deferral", "stopped")]


async def test_close_stops_completion_on_time_and_reopen_starts_a_new_completion_clock(service):
    app, probe = service
    cid = uuid.uuid4()
    now = datetime.now(UTC)
    closed = ev(ComplaintClosed(complaint_id=cid, closed_at=now + timedelta(minutes=2),
                                closed_by="admin_koordinator", opd_code="PUPR", hop=1))
    await probe.publish(_submitted(cid, now))
    await probe.publish(_routed(cid, now + timedelta(minutes=1)))
    await probe.publish(closed)

    def completion_stopped(_s):
        return has(probe, cid, "sla.clock_stopped", clock="completion", hop=0)

    await probe.collect(completion_stopped, timeout_s=5)
    [(_, stop)] = [e for e in sla_events(probe, cid, "sla.clock_stopped") if e[1]["clock"] == "completion"]
    assert stop["on_time"] is True and stop["reason"] == "stopped"
    pool = app.state.runtime.pool
    # Nothing can fire later: every clock of the complaint is stopped, no live timer remains.
    for _ in range(50):
        if not await pool.fetchval("SELECT count(*) FROM clocks WHERE complaint_id = $1"
                                   " AND stopped_at IS NULL", cid):
            break
        await asyncio.sleep(0.05)
    assert await pool.fetchval("SELECT count(*) FROM clocks WHERE complaint_id = $1"
                               " AND stopped_at IS NULL", cid) == 0
    assert await pool.fetchval(
        "SELECT count(*) FROM timers t JOIN clocks c ON c.id = t.clock_id WHERE c.complaint_id = $1"
        " AND t.fired_at IS NULL AND t.cancelled_at IS NULL", cid) == 0

    reopened_at = now + timedelta(minutes=3)
    await probe.publish(ev(ComplaintReopened(complaint_id=cid, reopened_at=reopened_at,
                                             closed_event_id=closed.id, opd_code="PUPR", hop=1)))
    await probe.collect(lambda _s: has(probe, cid, "sla.clock_started", clock="completion", hop=1),
                        timeout_s=5)
    await probe.collect(lambda _s: False, timeout_s=0.5)
    [(_, again)] = [e for e in sla_events(probe, cid, "sla.clock_started")
                    if e[1]["clock"] == "completion" and e[1]["hop"] == 1]
    assert datetime.fromisoformat(again["started_at"]) == reopened_at
    assert again["working_days"] == 14
    assert not sla_events(probe, cid, "sla.breached")
    # The reopened completion clock and (issue 10) the hop's OPD clock, instance 1, again.
    open_clocks = await pool.fetch("SELECT clock, hop, instance FROM clocks WHERE complaint_id = $1"
                                   " AND stopped_at IS NULL ORDER BY clock", cid)
    assert [tuple(r) for r in open_clocks] == [("completion", 1, 0), ("opd_response", 1, 1)]


async def test_archived_complaint_never_breaches(service, settings):
    app, probe = service
    now = datetime.now(UTC)
    live, backdated = uuid.uuid4(), uuid.uuid4()
    await probe.publish(_submitted(live, now))
    await probe.publish(ev(ComplaintArchived(complaint_id=live, archived_at=now + timedelta(minutes=1),
                                             reason="terlalu_umum")))
    # Reordered and long ago: the archive (an hour after receipt) is processed before the
    # submission, so the clocks are created already ended. (Processed the other way round,
    # the overdue submission would breach at once: sla cannot know of a later-arriving archive.)
    received = _working_days_ago(settings, now, 40)
    await probe.publish(ev(ComplaintArchived(complaint_id=backdated,
                                             archived_at=received + timedelta(hours=1),
                                             reason="duplikat", duplicate_of=live)))
    pool = app.state.runtime.pool
    for _ in range(100):
        if await pool.fetchval("SELECT count(*) FROM facts WHERE complaint_id = $1", backdated):
            break
        await asyncio.sleep(0.05)
    await probe.publish(_submitted(backdated, received))

    def all_stopped(_s):
        return all(len(sla_events(probe, c, "sla.clock_stopped")) == 2 for c in (live, backdated))

    await probe.collect(all_stopped, timeout_s=5)
    assert all_stopped(probe.seen)
    await probe.collect(lambda _s: False, timeout_s=1.0)
    for c in (live, backdated):
        stops = {d["clock"]: d for _, d in sla_events(probe, c, "sla.clock_stopped")}
        assert (stops["verification"]["reason"], stops["verification"]["on_time"]) == ("stopped", True)
        assert stops["completion"]["reason"] == "cancelled"
        assert not sla_events(probe, c, "sla.breached") and not sla_events(probe, c, "sla.warning")
    assert await app.state.runtime.pool.fetchval(
        "SELECT count(*) FROM timers t JOIN clocks c ON c.id = t.clock_id WHERE c.complaint_id ="
        " ANY($1::uuid[]) AND t.fired_at IS NULL AND t.cancelled_at IS NULL", [live, backdated]) == 0
