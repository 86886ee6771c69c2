"""The whole lifecycle in the pure clock logic: which fact stops/cancels which clock, reopen,
the reply window (auto_close), DITUNDA pause/resume arithmetic."""

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.sla import clocks
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import ClockStop, Fact, Pause, TimerPlan
from services.sla.policy import default_policies
from shared.events import (
    ComplaintArchived,
    ComplaintClosed,
    ComplaintDeferred,
    ComplaintForwarded,
    ComplaintReopened,
    ComplaintReporterReplied,
    ComplaintResponded,
    ComplaintResumed,
    ComplaintReturned,
    ComplaintRouted,
)

WIB = ZoneInfo("Asia/Pontianak")
CAL = WorkingCalendar("Asia/Pontianak")
POLICIES = default_policies()
CID = uuid.uuid4()


def at(m, d, hh=10):
    return datetime(2026, m, d, hh, tzinfo=WIB)


def end_of(m, d):
    return datetime(2026, m, d, 23, 59, 59, 999999, tzinfo=WIB)


T0 = at(3, 2)  # Mon 2 Mar 2026


def test_events_become_facts_with_their_own_time_field():
    assert clocks.fact_of(ComplaintResponded(complaint_id=CID, opd_code="PUPR", hop=2,
                                             response_no=1, responded_at=T0)) == Fact(
        "responded", T0, 2, detail='{"opd_code": "PUPR", "response_no": 1}')
    assert clocks.fact_of(ComplaintResumed(complaint_id=CID, resumed_at=at(3, 5),
                                           deferred_at=T0)) == Fact("resumed", at(3, 5), 0, T0)
    assert clocks.fact_of(ComplaintRouted(complaint_id=CID, opd_code="X", opd_name="X", hop=1,
                                          routed_at=T0, routed_by="admin")) == Fact(
        "routed", T0, 1, detail='{"opd_code": "X"}')
    for event, kind in (
        (ComplaintArchived(complaint_id=CID, archived_at=T0, reason="duplikat"), "archived"),
        (ComplaintForwarded(complaint_id=CID, forwarded_at=T0, instansi="Pemprov"), "forwarded"),
        (ComplaintReturned(complaint_id=CID, opd_code="X", hop=1, returned_at=T0), "returned"),
        (ComplaintClosed(complaint_id=CID, closed_at=T0, closed_by="system"), "closed"),
        (ComplaintReopened(complaint_id=CID, reopened_at=T0, closed_event_id="e"), "reopened"),
        (ComplaintReporterReplied(complaint_id=CID, replied_at=T0), "reporter_replied"),
        (ComplaintDeferred(complaint_id=CID, deferred_at=T0), "deferred"),
    ):
        assert clocks.fact_of(event).kind == kind and clocks.fact_of(event).at == T0


def stop(clock, hop, kind, when, fact_hop=0, started=T0):
    return clocks.stop_for(clock, hop, started, [Fact(kind, when, fact_hop)])


def test_verification_stops_on_routed_archived_forwarded():
    later = T0 + timedelta(days=1)
    for kind in ("routed", "archived", "forwarded"):
        assert stop("verification", 0, kind, later, fact_hop=1 if kind == "routed" else 0) == \
            ClockStop("verification", 0, later, "stopped")
    assert stop("verification", 0, "closed", later).reason == "cancelled"
    for kind in ("responded", "reporter_replied", "deferred", "reopened"):
        assert stop("verification", 0, kind, later) is None


def test_opd_response_stops_on_its_hops_response_or_return_and_is_cancelled_by_endings():
    later = T0 + timedelta(days=2)
    assert stop("opd_response", 2, "responded", later, 2) == ClockStop("opd_response", 2, later, "stopped")
    assert stop("opd_response", 2, "returned", later, 2) == ClockStop("opd_response", 2, later, "stopped")
    assert stop("opd_response", 2, "responded", later, 1) is None  # another hop's response
    assert stop("opd_response", 1, "routed", later, 2).reason == "cancelled"  # re-routed
    for kind in ("archived", "forwarded", "closed"):
        assert stop("opd_response", 1, kind, later) == ClockStop("opd_response", 1, later, "cancelled")
    assert stop("opd_response", 1, "reporter_replied", later) is None


def test_completion_stops_on_close_and_is_cancelled_by_archive_or_forward():
    later = T0 + timedelta(days=5)
    assert stop("completion", 0, "closed", later) == ClockStop("completion", 0, later, "stopped")
    assert stop("completion", 0, "archived", later).reason == "cancelled"
    assert stop("completion", 0, "forwarded", later).reason == "cancelled"
    # Issue 10: by default the OPD's final tindak lanjut meets it; "close" keeps the old rule.
    assert stop("completion", 0, "responded", later) == ClockStop("completion", 0, later, "stopped")
    assert clocks.stop_for("completion", 0, T0, [Fact("responded", later, 1)], "close") is None


def test_a_reopened_completion_instance_ignores_the_close_before_it():
    closed, reopened, closed_again = at(3, 10), at(3, 12), at(3, 20)
    facts = [Fact("closed", closed), Fact("reopened", reopened), Fact("closed", closed_again)]
    assert clocks.stop_for("completion", 0, T0, facts).at == closed
    assert clocks.stop_for("completion", 1, reopened, facts) == \
        ClockStop("completion", 1, closed_again, "stopped")
    start = clocks.reopened_completion("completion_pengaduan", reopened, 1)
    assert (start.clock, start.hop, start.started_at, start.policy_key) == (
        "completion", 1, reopened, "completion_pengaduan")
    # Full working days again, counted from the reopen.
    d = clocks.compute_deadline(start.started_at, POLICIES["completion_pengaduan"], CAL)
    assert CAL.working_days_between(reopened, d.deadline) == 14


def test_response_starts_the_reply_window_keyed_by_hop_and_response_no():
    [start] = clocks.starts_on(ComplaintResponded(complaint_id=CID, opd_code="PUPR", hop=2,
                                                  response_no=3, responded_at=T0))
    assert (start.clock, start.hop, start.instance, start.opd_code, start.policy_key,
            start.started_at) == ("auto_close", 2, 3, "PUPR", "auto_close", T0)


def test_reply_window_is_cancelled_by_reply_close_reopen_newer_response_and_endings():
    later = T0 + timedelta(days=1)
    for kind in ("reporter_replied", "closed", "reopened", "archived", "forwarded", "responded"):
        assert stop("auto_close", 1, kind, later) == ClockStop("auto_close", 1, later, "cancelled"), kind
    # Its own response (same instant) does not cancel it; earlier facts do not either.
    assert stop("auto_close", 1, "responded", T0) is None
    assert stop("auto_close", 1, "reporter_replied", T0 - timedelta(hours=1)) is None


def test_reply_window_has_no_warning_and_elapses_instead_of_breaching():
    d = clocks.auto_close_deadline(T0, POLICIES["auto_close"], CAL)
    assert d.warn_at is None and d.deadline == end_of(3, 16)  # 10 HK from Mon 2 Mar
    assert clocks.auto_close_timers(d, T0, None) == [TimerPlan("elapse", d.deadline)]
    # Backdated: elapses at once.
    late = d.deadline + timedelta(days=10)
    assert clocks.auto_close_timers(d, late, None) == [TimerPlan("elapse", d.deadline, fire_now=True)]
    # A reply in time: nothing; a reply processed after the window elapsed: it still elapsed.
    assert clocks.auto_close_timers(d, late, ClockStop("auto_close", 1, at(3, 5), "cancelled")) == []
    assert clocks.auto_close_timers(d, late, ClockStop("auto_close", 1, at(3, 17), "cancelled")) == [
        TimerPlan("elapse", d.deadline, fire_now=True)]


def test_only_verification_and_completion_pause():
    deferred, resumed = at(3, 3), at(3, 6)
    facts = [Fact("deferred", deferred), Fact("resumed", resumed, deferred_at=deferred)]
    assert clocks.pauses_for("verification", T0, None, facts) == [Pause(deferred, resumed)]
    assert clocks.pauses_for("completion", T0, None, facts) == [Pause(deferred, resumed)]
    assert clocks.pauses_for("opd_response", T0, None, facts) == []
    assert clocks.pauses_for("auto_close", T0, None, facts) == []
    # A resume alone is a whole period; a deferral alone is an open one.
    assert clocks.pauses_for("completion", T0, None, facts[1:]) == [Pause(deferred, resumed)]
    assert clocks.pauses_for("completion", T0, None, facts[:1]) == [Pause(deferred, None)]
    # Not before the clock started, not after it stopped.
    assert clocks.pauses_for("completion", at(3, 4), None, facts) == []
    assert clocks.pauses_for("verification", T0, ClockStop("verification", 0, at(3, 2, 12)), facts) == []


def test_resume_moves_the_deadline_by_the_paused_working_days_across_weekend_and_holidays():
    # Received Fri 13 Mar 2026, a 14 HK pengaduan.
    received = at(3, 13, 9)
    initial = clocks.compute_deadline(received, POLICIES["completion_pengaduan"], CAL)
    # Deferred Tue 17 Mar, resumed Wed 25 Mar: 18–24 Mar are off, so N = 1 (Wed 25).
    n = CAL.paused_working_days(at(3, 17, 9), at(3, 25, 14))
    assert n == 1
    moved = clocks.resumed_deadline(initial, n, CAL)
    assert moved.deadline == CAL.move_deadline(initial.deadline, 1)
    assert CAL.working_days_between(initial.deadline, moved.deadline) == 1
    assert CAL.working_days_between(received, moved.deadline) == 15
    assert moved.warn_at == CAL.move_deadline(initial.warn_at, 1)
    assert (moved.working_days, moved.policy_version) == (initial.working_days, initial.policy_version)
    # Verification (3 HK: Mon 16, Tue 17, Wed 25). Deferred Fri 13 16:00, resumed Thu 26:
    # paused Mon 16, Tue 17, Wed 25, Thu 26 → the deadline moves 4 working days later.
    v = clocks.compute_deadline(received, POLICIES["verification"], CAL)
    assert v.deadline == end_of(3, 25)  # 16, 17, 25 Mar
    n = CAL.paused_working_days(at(3, 13, 16), at(3, 26, 8))
    assert n == 4
    assert clocks.resumed_deadline(v, n, CAL).deadline == end_of(3, 31)  # Thu 26, Fri 27, Mon 30, Tue 31


def test_two_pauses_add_up_from_the_initial_deadline():
    initial = clocks.compute_deadline(T0, POLICIES["completion_aspirasi"], CAL)  # Mon 9 Mar
    assert initial.deadline == end_of(3, 9)
    once = clocks.resumed_deadline(initial, 2, CAL)
    twice = clocks.resumed_deadline(initial, 2 + 3, CAL)
    assert once.deadline == end_of(3, 11)
    assert twice.deadline == CAL.move_deadline(once.deadline, 3) == end_of(3, 16)


def test_a_stop_while_paused_is_judged_without_the_paused_days():
    deadline = end_of(3, 9)
    paused_at = at(3, 5)  # Thu
    # Stopped Wed 11 while still paused: Fri 6, Mon 9, Tue 10, Wed 11 paused → deadline Fri 13.
    assert clocks.deadline_at(deadline, paused_at, at(3, 11), CAL) == end_of(3, 13)
    assert clocks.deadline_at(deadline, None, at(3, 11), CAL) == deadline


def test_resumed_timers_do_not_repeat_what_already_fired():
    d = clocks.compute_deadline(T0, POLICIES["completion_pengaduan"], CAL)
    assert clocks.resumed_timers(d, T0, set()) == [TimerPlan("warning", d.warn_at),
                                                   TimerPlan("breach", d.deadline)]
    assert clocks.resumed_timers(d, T0, {"warning"}) == [TimerPlan("breach", d.deadline)]
    assert clocks.resumed_timers(d, T0, {"breach"}) == []
    # Resumed so late that even the moved deadline passed: the breach fires at once.
    assert clocks.resumed_timers(d, d.deadline + timedelta(seconds=1), set()) == [
        TimerPlan("breach", d.deadline, fire_now=True)]
