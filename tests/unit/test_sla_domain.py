"""The ComplaintClocks aggregate and the scanner's firings, directly: decisions, row changes and
events, no repository."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.sla import clocks
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import ClockStart, Deadline, Fact
from services.sla.domain import ClockRow, ComplaintClocks, DueTimer, Timer, fire_timers
from services.sla.policy import default_policies
from shared.events import ComplaintRouted, ComplaintSubmitted, EventData, Location

WIB = ZoneInfo("Asia/Pontianak")
T0 = datetime(2026, 3, 17, 9, 0, tzinfo=WIB)
VERIFICATION_DEADLINE = datetime(2026, 3, 27, 23, 59, 59, 999999, tzinfo=WIB)
CALENDAR = WorkingCalendar(WIB)
POLICIES = default_policies()
CID = uuid.uuid4()


def submitted(received_at: datetime = T0) -> ComplaintSubmitted:
    return ComplaintSubmitted(
        complaint_id=CID, tracking_id="SKD-T", source="portal", received_at=received_at,
        accepted_at=received_at, classification="pengaduan", category="jalan",
        location=Location(kecamatan="Nanga Mahap"), anonymous=False, confidential=False,
        reporter_ref="ref")


def routed(routed_at: datetime, hop: int = 1) -> ComplaintRouted:
    return ComplaintRouted(complaint_id=CID, opd_code="PUPR", opd_name="PUPR", hop=hop,
                           routed_at=routed_at)


def running_verification(**kw: object) -> ClockRow:
    values: dict[str, object] = dict(
        id=10, complaint_id=CID, clock="verification", hop=0, opd_code=None, started_at=T0,
        deadline=VERIFICATION_DEADLINE, stopped_at=None, working_days=3, warn_at=None,
        calendar_version=CALENDAR.version, policy_version=1, initial_deadline=VERIFICATION_DEADLINE,
        policy_key="verification")
    values.update(kw)
    return ClockRow(**values)  # type: ignore[arg-type]


def apply(state: ComplaintClocks, data: EventData, now: datetime) -> None:
    fact = clocks.fact_of(data)
    if fact is not None:
        state.record_fact(fact)
    state.apply(fact, CALENDAR, POLICIES, now)


def test_submission_creates_two_clocks_with_provisional_ids_and_their_timers() -> None:
    state = ComplaintClocks(CID, [], [], [], [])
    apply(state, submitted(), T0)
    c = state.changes()
    assert [(r.id, r.clock, r.deadline) for r in c.new_clocks][0] == (-1, "verification",
                                                                      VERIFICATION_DEADLINE)
    assert [r.id for r in c.new_clocks] == [-1, -2]
    assert sorted((t.clock_id, t.kind) for t in c.timer_inserts) == [
        (-2, "breach"), (-2, "warning"), (-1, "breach"), (-1, "warning")]
    assert not (c.changed_clocks or c.timer_updates or c.new_pauses)
    assert [e.event_name for e in state.events] == ["sla.clock_started"] * 2
    # The same submission again (a new event id): the clocks exist, nothing more.
    again = ComplaintClocks(CID, [replace(r, id=i) for i, r in enumerate(c.new_clocks, 1)], [], [],
                            set())
    apply(again, submitted(), T0)
    assert not again.changes() and again.events == []


def test_insert_clock_refuses_an_existing_identity() -> None:
    state = ComplaintClocks(CID, [running_verification()], [], [], [])
    start = ClockStart("verification", 0, "verification", T0)
    assert state.insert_clock(start, Deadline(3, VERIFICATION_DEADLINE, None, "v", 1)) is None
    assert state.insert_clock(ClockStart("opd_response", 1, "opd_response", T0),
                              Deadline(5, VERIFICATION_DEADLINE, None, "v", 1)) == -1


def test_record_fact_keeps_it_once_in_utc_and_in_time_order() -> None:
    earlier = Fact("routed", T0.astimezone(UTC), 1)
    state = ComplaintClocks(CID, [], [], [earlier], set())
    state.record_fact(Fact("routed", T0, 1))  # the same fact, re-published
    later = Fact("closed", T0 + timedelta(days=1), 1)
    state.record_fact(later)
    assert state.facts == [earlier, Fact("closed", later.at.astimezone(UTC), 1)]
    assert state.facts[1].at.tzinfo is UTC


def test_a_late_stop_fires_the_pending_breach_and_cancels_the_warning() -> None:
    timers = [Timer(1, 10, "warning", T0 + timedelta(days=5)), Timer(2, 10, "breach",
                                                                      VERIFICATION_DEADLINE)]
    state = ComplaintClocks(CID, [running_verification()], timers, [], [])
    late = VERIFICATION_DEADLINE + timedelta(minutes=10)
    apply(state, routed(late), late)
    c = state.changes()
    assert [(t.id, t.fired_at, t.cancelled_at) for t in c.timer_updates] == [
        (1, None, late), (2, late, None)]
    assert [(r.id, r.stopped_at, r.stop_reason) for r in c.changed_clocks] == [(10, late, "stopped")]
    assert [(a.kind, a.clock) for a in state.alerts] == [("breach", "verification")]
    assert [e.event_name for e in state.events] == ["sla.breached", "sla.clock_stopped",
                                                    "sla.clock_started"]
    assert state.events[1].data["on_time"] is False


def test_a_late_stop_after_the_scanner_fired_the_breach_does_not_repeat_it() -> None:
    fired = Timer(2, 10, "breach", VERIFICATION_DEADLINE, fired_at=VERIFICATION_DEADLINE)
    state = ComplaintClocks(CID, [running_verification()], [fired], [], [])
    late = VERIFICATION_DEADLINE + timedelta(days=1)
    apply(state, routed(late), late)
    assert state.alerts == [] and state.changes().timer_updates == []
    assert [e.event_name for e in state.events] == ["sla.clock_stopped", "sla.clock_started"]


def test_a_stop_while_paused_is_judged_without_the_paused_working_days() -> None:
    paused_at = T0 + timedelta(days=1)
    state = ComplaintClocks(CID, [running_verification(paused_at=paused_at)], [], [], [])
    stop_at = VERIFICATION_DEADLINE + timedelta(days=3)
    apply(state, routed(stop_at), stop_at)
    stopped = next(e for e in state.events if e.event_name == "sla.clock_stopped")
    judged = clocks.deadline_at(VERIFICATION_DEADLINE, paused_at, stop_at, CALENDAR)
    assert judged > stop_at and stopped.data["on_time"] is True and state.alerts == []
    assert datetime.fromisoformat(stopped.data["deadline"]) == judged


def test_scanner_firings_alert_and_an_elapsed_reply_window_stops_its_clock() -> None:
    deadline = T0 + timedelta(days=14)

    def due(kind: str, clock: str, clock_id: int) -> DueTimer:
        return DueTimer(clock_id, kind, deadline, 0.05, CID, clock, 1, "PUPR",  # type: ignore[arg-type]
                        deadline, "v", 1, clock_id, T0)

    out = fire_timers([due("warning", "opd_response", 1), due("breach", "opd_response", 1),
                       due("elapse", "auto_close", 7)])
    assert [(a.kind, a.clock, a.lag_s) for a in out.alerts] == [
        ("warning", "opd_response", 0.05), ("breach", "opd_response", 0.05),
        ("elapsed", "auto_close", 0.05)]
    assert [e.event_name for e in out.events] == ["sla.warning", "sla.breached",
                                                  "sla.reply_window_elapsed", "sla.clock_stopped"]
    assert [(clock_id, s.at, s.reason) for clock_id, s in out.stops] == [(7, deadline, "stopped")]
