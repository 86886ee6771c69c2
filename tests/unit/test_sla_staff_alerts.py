"""Warning points, escalation ladders and quiet hours (issue 10 items 4–5), through the use
cases with the in-memory unit of work; one row of the scenario table each where it fits."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, time, timedelta

from services.sla import usecases
from services.sla.clocks import OfficeHours, warning_instants
from services.sla.domain import derive, facts_of
from services.sla.policy import default_policies
from shared.events import CloudEvent, ComplaintResponded, EventData, make_event
from tests.unit.test_sla_scenarios import routed
from tests.unit.test_sla_usecases import CALENDAR, WIB, Sla

OFFICE = OfficeHours(time(7, 30), time(16, 0))
LADDER = json.dumps([
    {"level": 1, "after_working_days": 0, "target": "pejabat_penghubung"},
    {"level": 2, "after_working_days": 2, "target": "kepala_opd"},
    {"level": 3, "after_working_days": 5, "target": "admin_koordinator"},
    {"level": 4, "after_working_days": 10, "target": "sekda"},
])
CID = uuid.UUID(int=10)


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=WIB)


async def process(sla: Sla, data: EventData, now: datetime,
                  office: OfficeHours | None = None) -> None:
    await usecases.on_complaint_event(make_event("test", data), uow=sla.uow,
                                      calendars=sla.calendars, now=now, office_hours=office)


async def scan(sla: Sla, now: datetime) -> list[CloudEvent]:
    sla.repo.now = now
    return (await usecases.fire_due_timers(100, uow=sla.uow)).events


def escalations(events: list[CloudEvent]) -> list[tuple[int, str, int, int]]:
    return [(e.data["level"], e.data["target_role"], e.data["working_days_late"],
             e.data["ladder_version"]) for e in events if e.event_name == "sla.escalated"]


def test_next_opening_inside_before_after_and_over_a_holiday_weekend() -> None:
    assert OFFICE.next_opening(at(2026, 12, 22, 9), CALENDAR) == at(2026, 12, 22, 9)
    assert OFFICE.next_opening(at(2026, 12, 22, 6), CALENDAR) == at(2026, 12, 22, 7, 30)
    assert OFFICE.next_opening(at(2026, 12, 22, 16), CALENDAR) == at(2026, 12, 23, 7, 30)
    # Wed 23 Dec evening → Thu 24 (cuti bersama), Fri 25 (Natal), weekend → Mon 28 Dec.
    assert OFFICE.next_opening(at(2026, 12, 23, 23, 59), CALENDAR) == at(2026, 12, 28, 7, 30)
    # A Friday evening → Monday.
    assert OFFICE.next_opening(at(2026, 11, 6, 20), CALENDAR) == at(2026, 11, 9, 7, 30)


def test_warning_points_in_working_days_and_percent() -> None:
    start = at(2026, 3, 2, 10)  # Mon
    deadline = CALENDAR.deadline(start, 5)  # Mon 9 Mar 23:59:59.999999
    points = dict(warning_instants(start, deadline, ("2hk", "50%", "9hk"), CALENDAR))
    assert points["2hk"] == CALENDAR.end_of_day(at(2026, 3, 5).date())  # Thu 5 Mar
    assert points["50%"] == start + (deadline - start) / 2
    assert "9hk" not in points  # before the start


async def test_each_warning_point_fires_once_with_its_name() -> None:
    sla = Sla()
    sla.repo.policy_rows = tuple((k, n, w, v, ("2hk", "1hk") if k == "opd_response" else p)
                                 for k, n, w, v, p in sla.repo.policy_rows)
    start = at(2026, 3, 2, 10)
    await process(sla, routed(start), start)
    warnings = sorted(t.point for _, _, t in sla.repo.timers_of(CID) if t.kind == "warning")
    assert warnings == ["1hk", "2hk"]  # the points replace the single default warning
    events = await scan(sla, at(2026, 3, 9, 12))
    assert sorted(e.data["point"] for e in events if e.event_name == "sla.warning") == ["1hk", "2hk"]
    assert [e for e in await scan(sla, at(2026, 3, 9, 13)) if e.event_name == "sla.warning"] == []


async def test_ladder_levels_fire_once_each_and_a_response_between_levels_stops_it() -> None:
    sla = Sla()
    sla.repo.ladder_rows = (("opd_response", None, None, LADDER, 3),)
    start = at(2026, 3, 2, 10)  # deadline Mon 9 Mar (5 HK)
    await process(sla, routed(start), start)
    deadline = CALENDAR.deadline(start, 5)
    first = await scan(sla, deadline + timedelta(seconds=1))
    assert [e.event_name for e in first].count("sla.breached") == 1
    assert escalations(first) == [(1, "pejabat_penghubung", 0, 3)]
    second = await scan(sla, CALENDAR.move_deadline(deadline, 2) + timedelta(seconds=1))
    assert escalations(second) == [(2, "kepala_opd", 2, 3)]
    [level2] = [e for e in second if e.event_name == "sla.escalated"]
    assert (level2.data["opd_code"], level2.data["clock"]) == ("pupr", "opd_response")
    # The OPD responds between level 2 and level 3: the ladder stops.
    responded_at = CALENDAR.move_deadline(deadline, 3)
    await process(sla, ComplaintResponded(complaint_id=CID, opd_code="pupr", hop=1,
                                          response_no=1, responded_at=responded_at), responded_at)
    assert escalations(await scan(sla, CALENDAR.move_deadline(deadline, 30))) == []
    assert [t.point for _, _, t in sla.repo.timers_of(CID)
            if t.kind == "escalate" and t.fired_at is not None] == ["1:pejabat_penghubung:0:3",
                                                                   "2:kepala_opd:2:3"]


async def test_the_most_specific_ladder_wins() -> None:
    sla = Sla()
    own = json.dumps([{"level": 1, "after_working_days": 1, "target": "kepala_opd"}])
    sla.repo.ladder_rows = (("opd_response", None, None, LADDER, 1),
                            ("opd_response", "pupr", None, own, 7),
                            ("opd_response", "dinkes", None, LADDER, 2))
    start = at(2026, 3, 2, 10)
    await process(sla, routed(start), start)
    assert [t.point for _, _, t in sla.repo.timers_of(CID) if t.kind == "escalate"] == [
        "1:kepala_opd:1:7"]


async def test_quiet_hours_hold_staff_alerts_to_the_next_opening_but_not_the_breach() -> None:
    sla = Sla()
    sla.repo.ladder_rows = (("opd_response", None, None, LADDER, 1),)
    start = at(2026, 12, 16, 10)  # Wed; 5 HK → Wed 23 Dec 23:59, warning Tue 22 Dec 23:59
    await process(sla, routed(start), start, OFFICE)
    deadline = CALENDAR.deadline(start, 5)
    assert deadline == CALENDAR.end_of_day(at(2026, 12, 23).date())
    timers = {(t.kind, t.point): t for _, _, t in sla.repo.timers_of(CID)}
    assert timers[("breach", "")].fire_at is None  # exact instant
    assert timers[("warning", "")].fire_at == at(2026, 12, 23, 7, 30)
    level1 = timers[("escalate", "1:pejabat_penghubung:0:1")]
    assert (level1.due_at, level1.fire_at) == (deadline, at(2026, 12, 28, 7, 30))
    # The breach at the instant; level 1 not before Monday's opening, then with its due time.
    night = await scan(sla, deadline + timedelta(seconds=1))
    assert [e.event_name for e in night] == ["sla.breached"]
    assert escalations(await scan(sla, at(2026, 12, 28, 7, 29))) == []
    monday = await scan(sla, at(2026, 12, 28, 7, 30))
    [escalated] = [e for e in monday if e.event_name == "sla.escalated"]
    assert datetime.fromisoformat(escalated.data["due_at"]) == deadline


def test_derive_at_two_nows_gives_the_same_warning_points() -> None:
    """Which warning points a clock skips (already past when sla learnt of it) is judged by
    when sla recorded the fact that created it (``Fact.recorded_at``), not by when the
    derivation runs: derive from scratch an hour after the creation and two days later plans
    the same timers, and a point already past at the recording is skipped in both."""
    policies = {k: replace(p, warn_points=("2hk", "1hk", "20%")) if k == "opd_response" else p
                for k, p in default_policies().items()}
    start = at(2026, 3, 2, 10)  # Mon; 5 HK → Mon 9 Mar 23:59; 20 % → Tue 3 Mar ~17:40
    recorded = at(2026, 3, 4, 9)  # processed Wed: the 20 % point had passed
    facts = [replace(f, recorded_at=recorded) for f in facts_of([routed(start)])]

    def timers(now: datetime) -> set[tuple[str, str, datetime | None, bool]]:
        state = derive(CID, facts, CALENDAR, policies, now, firings=[])
        return {(t.kind, t.point, t.due_at, t.fired_at is not None)
                for t in state.changes().timer_inserts if t.cancelled_at is None}

    soon, later = timers(recorded + timedelta(hours=1)), timers(at(2026, 3, 6, 12))
    assert soon == later
    assert sorted(p for k, p, _, _ in soon if k == "warning") == ["1hk", "2hk"]
    # Before, the derivation's ``now`` decided: two days later it skipped the 2hk point too.
    assert at(2026, 3, 6, 12) > dict(warning_instants(
        start, CALENDAR.deadline(start, 5), ("2hk",), CALENDAR))["2hk"]
