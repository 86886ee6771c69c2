"""Which clocks start and stop on which event, and the timers they get. Pure logic."""

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.sla import clocks
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import ClockStop, TimerPlan
from services.sla.policy import Policy, default_policies
from shared.events import ComplaintRouted, ComplaintSubmitted, Location

WIB = ZoneInfo("Asia/Pontianak")
CAL = WorkingCalendar("Asia/Pontianak", override_revision=4)
POLICIES = default_policies()
RECEIVED = datetime(2026, 3, 17, 9, 0, tzinfo=WIB)


def submitted(classification="pengaduan", berkadar=False, received_at=RECEIVED):
    return ComplaintSubmitted(
        complaint_id=uuid.uuid4(), tracking_id="SKD-1", source="portal", received_at=received_at,
        accepted_at=received_at, classification=classification, berkadar_pengawasan=berkadar,
        category="jalan", location=Location(kecamatan="Belitang"), anonymous=False,
        confidential=False, reporter_ref="r")


def routed(hop=1, opd="PUPR", at=datetime(2026, 3, 26, 10, tzinfo=WIB)):
    return ComplaintRouted(complaint_id=uuid.uuid4(), opd_code=opd, opd_name=opd, hop=hop,
                           routed_at=at)


@pytest.mark.parametrize("classification, berkadar, key, days", [
    ("aspirasi", False, "completion_aspirasi", 5),
    ("permintaan_informasi", False, "completion_permintaan_informasi", 5),
    ("pengaduan", False, "completion_pengaduan", 14),
    ("pengaduan", True, "completion_pengaduan_pengawasan", 60),
    # berkadar pengawasan only qualifies a pengaduan
    ("aspirasi", True, "completion_aspirasi", 5),
])
def test_submission_starts_verification_and_completion(classification, berkadar, key, days):
    starts = clocks.starts_on_submission(submitted(classification, berkadar))
    assert [(s.clock, s.hop, s.policy_key) for s in starts] == [
        ("verification", 0, "verification"), ("completion", 0, key)]
    assert all(s.started_at == RECEIVED and s.opd_code is None for s in starts)
    assert POLICIES[key].working_days == days


def test_routing_stops_verification_and_starts_the_hop_clock():
    event = routed(hop=1, opd="DINKES")
    [start] = clocks.starts_on(event)
    assert clocks.stop_for("verification", 0, RECEIVED, [clocks.fact_of(event)]) == ClockStop(
        "verification", 0, event.routed_at, "stopped")
    assert (start.clock, start.hop, start.opd_code, start.policy_key) == (
        "opd_response", 1, "DINKES", "opd_response")
    assert start.started_at == event.routed_at


def test_reroute_cancels_previous_hops_at_routing_time():
    event = routed(hop=2, opd="DISHUB")
    [start] = clocks.starts_on(event)
    facts = [clocks.fact_of(event)]
    assert clocks.stop_for("opd_response", 1, RECEIVED, facts) == ClockStop(
        "opd_response", 1, event.routed_at, "cancelled")
    assert clocks.stop_for("opd_response", 2, event.routed_at, facts) is None
    assert start.hop == 2 and start.opd_code == "DISHUB"


def test_deadline_records_calendar_and_policy_version():
    policy = Policy("verification", 3, 1, version=7)
    d = clocks.compute_deadline(RECEIVED, policy, CAL)
    assert d.deadline == datetime(2026, 3, 27, 23, 59, 59, 999999, tzinfo=WIB)
    assert d.warn_at == datetime(2026, 3, 26, 23, 59, 59, 999999, tzinfo=WIB)
    assert (d.calendar_version, d.policy_version, d.working_days) == (CAL.version, 7, 3)


def test_no_warning_when_warning_would_not_be_after_the_start():
    assert clocks.compute_deadline(RECEIVED, Policy("x", 1, 1, 1), CAL).warn_at is None
    assert clocks.compute_deadline(RECEIVED, Policy("x", 3, 0, 1), CAL).warn_at is None


def test_new_clock_gets_warning_and_breach_timers():
    d = clocks.compute_deadline(RECEIVED, POLICIES["verification"], CAL)
    assert clocks.initial_timers(d, RECEIVED, None) == [
        TimerPlan("warning", d.warn_at), TimerPlan("breach", d.deadline)]


def test_clock_created_past_its_deadline_breaches_at_once_without_warning():
    d = clocks.compute_deadline(RECEIVED, POLICIES["verification"], CAL)
    now = d.deadline + timedelta(seconds=1)
    assert clocks.initial_timers(d, now, None) == [TimerPlan("breach", d.deadline, fire_now=True)]


def test_clock_created_already_stopped():
    d = clocks.compute_deadline(RECEIVED, POLICIES["verification"], CAL)
    now = d.deadline + timedelta(days=3)
    on_time = ClockStop("verification", 0, d.deadline - timedelta(hours=1))
    late = ClockStop("verification", 0, d.deadline + timedelta(microseconds=1))
    assert clocks.initial_timers(d, now, on_time) == []
    assert clocks.initial_timers(d, now, late) == [TimerPlan("breach", d.deadline, fire_now=True)]


def test_late_stop_is_a_breach():
    deadline = datetime(2026, 3, 27, 23, 59, 59, 999999, tzinfo=WIB)
    late = deadline + timedelta(minutes=5)
    decision = clocks.stop_decision(deadline, late, breach_pending=True)
    assert decision.fire_breach and not decision.on_time
    # Already fired by the scanner: not fired twice.
    assert not clocks.stop_decision(deadline, late, breach_pending=False).fire_breach
    on_time = clocks.stop_decision(deadline, deadline, breach_pending=True)
    assert on_time.on_time and not on_time.fire_breach


def test_earliest_stop_wins():
    a = ClockStop("opd_response", 1, RECEIVED, "cancelled")
    b = ClockStop("opd_response", 1, RECEIVED + timedelta(hours=1), "stopped")
    assert clocks.earliest_stop(None, b, a) == a
    assert clocks.earliest_stop(None) is None


def test_utc_received_at_is_counted_in_local_time():
    s = submitted(received_at=datetime(2026, 3, 16, 20, 0, tzinfo=UTC))
    start = clocks.starts_on_submission(s)[0]
    d = clocks.compute_deadline(start.started_at, POLICIES["verification"], CAL)
    assert d.deadline == datetime(2026, 3, 27, 23, 59, 59, 999999, tzinfo=WIB)
