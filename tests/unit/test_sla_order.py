"""Properties (issue 10 item 1): the clocks a complaint ends with do not depend on the order
sla processes its events in (competing consumers reorder them). For random timelines,
processing the events in a random permutation gives the same clocks — which exist, when they
started, when and how they ended — as in time order; and the same as ``domain.derive``, which
recomputes them from scratch from the whole timeline at once (with an admin's reclassification
anywhere in it, also its deadlines, working days and policy).

And the same through the real path with duplicates (redelivered and re-published events): every
stored clock column and live timer row equals ``derive`` over the facts as stored (a routing
after the close processed before the close is deleted, as derive never creates it). The
counterexamples found before are kept below as plain tests."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from services.sla import domain, usecases
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import Fact, Ladder
from services.sla.metrics import SlaMetrics
from services.sla.policy import Policy, default_policies
from shared.events import (
    CloudEvent,
    ComplaintArchived,
    ComplaintClosed,
    ComplaintDeferred,
    ComplaintReporterReplied,
    ComplaintResumed,
    ComplaintReturned,
    EventData,
    make_event,
)
from tests.unit.test_sla_scenarios import CID, day, reclassified, responded, routed, submitted
from tests.unit.test_sla_usecases import CALENDAR, T0, Sla


@st.composite
def timelines(draw: st.DrawFn) -> list[EventData]:
    events: list[EventData] = [submitted(draw(st.sampled_from(["pengaduan", "aspirasi"])))]
    t = 0
    deferred_once = draw(st.booleans())
    if deferred_once:  # DITUNDA before the disposition
        t += draw(st.integers(0, 2))
        d = day(t)
        t += draw(st.integers(1, 4))
        events += [ComplaintDeferred(complaint_id=CID, deferred_at=d),
                   ComplaintResumed(complaint_id=CID, deferred_at=d, resumed_at=day(t))]
    if draw(st.booleans()):
        t += 1
        events.append(ComplaintArchived(complaint_id=CID, archived_at=day(t), reason="lainnya"))
        return events
    hops = draw(st.integers(1, 3))
    for hop in range(1, hops + 1):
        t += draw(st.integers(0, 3))
        events.append(routed(day(t, 14 if hop > 1 else 11), hop=hop, opd=f"opd{hop}"))
        t += draw(st.integers(1, 7))
        if hop < hops:
            events.append(ComplaintReturned(complaint_id=CID, opd_code=f"opd{hop}", hop=hop,
                                            returned_at=day(t, 12)))
    if draw(st.booleans()):
        events.append(responded(day(t, 15), hop=hops, opd=f"opd{hops}"))
        if draw(st.booleans()):  # the reporter replies: the OPD's turn again
            t += draw(st.integers(1, 5))
            events.append(ComplaintReporterReplied(complaint_id=CID, replied_at=day(t, 9),
                                                   opd_code=f"opd{hops}", hop=hops))
            if draw(st.booleans()):
                t += draw(st.integers(0, 4))
                events.append(responded(day(t, 16), hop=hops, no=2, opd=f"opd{hops}"))
        if draw(st.booleans()):
            # Inside the reply window: a close after it would tell sla the window elapsed,
            # which a reply processed later cannot undo (intake closed the complaint).
            t += draw(st.integers(1, 5))
            events.append(ComplaintClosed(complaint_id=CID, closed_at=day(t, 17),
                                          closed_by="admin_koordinator", hop=hops))
            if draw(st.booleans()):  # a routing after the close: intake ignored it
                events.append(routed(day(t + 1, 11), hop=hops + 1, opd="late"))
    return events


@st.composite
def corrected_timelines(draw: st.DrawFn) -> list[EventData]:
    """``timelines`` with an admin's reclassification at any working day (also before the
    submission is processed, and after clocks it would have moved have stopped)."""
    events = draw(timelines())
    # Half past: never at the same instant as another admin action (whose order is undefined).
    at = day(draw(st.integers(0, 12)), draw(st.integers(9, 16))) + timedelta(minutes=30)
    return [*events, reclassified(at, pengawasan=draw(st.booleans()))]


def _key(c: domain.ClockRow) -> tuple[object, ...]:
    return (c.clock, c.hop, c.instance, c.opd_code, c.started_at, c.deadline, c.stopped_at,
            c.stop_reason, c.final_response_at, c.closed_at, c.working_days, c.policy_key)


def derived_clocks(timeline: list[EventData]) -> set[tuple[object, ...]]:
    state = domain.derive(CID, domain.facts_of(timeline), CALENDAR, default_policies(), T0)
    return {_key(c) for c in state.all_clocks()}


def delivered_clocks(order: list[EventData]) -> set[tuple[object, ...]]:
    async def go() -> set[tuple[object, ...]]:
        sla = Sla()
        for data in order:
            await usecases.on_complaint_event(make_event("test", data), uow=sla.uow,
                                              calendars=sla.calendars, now=T0)
        return {_key(c) for c in sla.repo.clocks.values()}

    return asyncio.run(go())


def final_clocks(order: list[EventData]) -> set[tuple[object, ...]]:
    async def go() -> set[tuple[object, ...]]:
        sla = Sla()
        # Processed before anything came due: what sla cannot know yet (a resume still on its
        # way when DITUNDA's days ran out) is not what this property is about.
        now = T0
        for data in order:
            await usecases.on_complaint_event(make_event("test", data), uow=sla.uow,
                                              calendars=sla.calendars, now=now)
        return {(c.clock, c.hop, c.instance, c.opd_code, c.started_at, c.deadline, c.stopped_at,
                 c.stop_reason, c.final_response_at, c.closed_at)
                for c in sla.repo.clocks.values()}

    return asyncio.run(go())


@settings(max_examples=int(os.environ.get("SP4N_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(timeline=timelines(), data=st.data())
def test_any_processing_order_ends_with_the_same_clocks(timeline: list[EventData],
                                                          data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(timeline))
    assert final_clocks(list(shuffled)) == final_clocks(timeline)


@settings(max_examples=int(os.environ.get("SP4N_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(timeline=corrected_timelines(), data=st.data())
def test_recomputing_from_scratch_equals_the_clocks_delivered_one_by_one(
        timeline: list[EventData], data: st.DataObject) -> None:
    """Issue 10 item 1: ``domain.derive`` over the whole timeline at once equals what sla
    maintains after the same events are delivered one by one, in any order."""
    shuffled = data.draw(st.permutations(timeline))
    assert delivered_clocks(list(shuffled)) == derived_clocks(timeline)


def test_a_resume_processed_after_the_archive_moves_the_stopped_deadlines_too() -> None:
    d, r = day(0, 10), day(6)
    timeline: list[EventData] = [
        submitted(), ComplaintDeferred(complaint_id=CID, deferred_at=d),
        ComplaintResumed(complaint_id=CID, deferred_at=d, resumed_at=r),
        ComplaintArchived(complaint_id=CID, archived_at=day(7), reason="lainnya")]
    reordered = [timeline[0], timeline[1], timeline[3], timeline[2]]
    assert d > T0 and timedelta(0) == timedelta() and isinstance(CID, uuid.UUID)
    assert final_clocks(reordered) == final_clocks(timeline)


def test_a_resume_processed_after_the_archive_still_meets_the_deferral_clock() -> None:
    d, r = day(0, 10), day(6)
    timeline: list[EventData] = [
        submitted(), ComplaintDeferred(complaint_id=CID, deferred_at=d),
        ComplaintResumed(complaint_id=CID, deferred_at=d, resumed_at=r),
        ComplaintArchived(complaint_id=CID, archived_at=day(7), reason="lainnya")]
    reordered = [timeline[0], timeline[1], timeline[3], timeline[2]]
    assert final_clocks(reordered) == final_clocks(timeline)


def test_a_return_processed_after_the_reroute_still_stops_the_hop() -> None:
    timeline: list[EventData] = [
        submitted(), routed(day(0, 11)),
        ComplaintReturned(complaint_id=CID, opd_code="opd1", hop=1, returned_at=day(6, 12)),
        routed(day(6, 14), hop=2, opd="opd2")]
    reordered = [timeline[0], timeline[1], timeline[3], timeline[2]]
    assert final_clocks(reordered) == final_clocks(timeline)


# -- the stored rows are what derive computes from the stored facts ---------------------------
@st.composite
def deliveries(draw: st.DrawFn) -> list[CloudEvent]:
    """A corrected timeline delivered in any order, some events twice: redelivered (the same
    event id, the inbox drops it) or re-published (a new id, the fact is already kept)."""
    timeline = draw(corrected_timelines())
    events = [make_event("test", data) for data in timeline]
    again = draw(st.lists(st.tuples(st.sampled_from(events), st.booleans()), max_size=3))
    events += [e if same_id else make_event("test", e.parse_data()) for e, same_id in again]
    return list(draw(st.permutations(events)))


def clock_rows(clocks: list[domain.ClockRow]) -> dict[tuple[object, ...], domain.ClockRow]:
    """Every stored column of each clock but its id, by (clock, hop, instance)."""
    return {(c.clock, c.hop, c.instance): replace(c, id=0) for c in clocks}


def live_timers(clocks: dict[int, domain.ClockRow],
                timers: list[domain.Timer]) -> set[tuple[object, ...]]:
    """The live timer rows (not cancelled) of the running clocks: what the scanner claims."""
    return {((c := clocks[t.clock_id]).clock, c.hop, c.instance, t.kind, t.point, t.due_at,
             t.fire_at or t.due_at, t.fired_at is not None)
            for t in timers if t.cancelled_at is None and clocks[t.clock_id].stopped_at is None}


def derived_rows(facts: list[Fact], calendar: WorkingCalendar = CALENDAR,
                 policies: dict[str, Policy] | None = None, ladders: tuple[Ladder, ...] = (),
                 ) -> tuple[dict[tuple[object, ...], domain.ClockRow], set[tuple[object, ...]]]:
    state = domain.derive(CID, facts, calendar, policies or default_policies(), T0,
                          ladders=ladders)
    by_id = {c.id: c for c in state.all_clocks()}
    return clock_rows(state.all_clocks()), live_timers(by_id, state.changes().timer_inserts)


@settings(max_examples=int(os.environ.get("SP4N_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(order=deliveries())
def test_the_stored_clocks_and_timers_equal_derive_from_the_stored_facts(
        order: list[CloudEvent]) -> None:
    """Issue 10 item 1, through the real path (use case, aggregate, mapper into the in-memory
    repository): whatever the delivery order and duplicates, every stored clock column and
    every live timer row equals ``domain.derive`` over the facts as stored."""
    async def go() -> None:
        sla = Sla()
        for event in order:
            out = await usecases.on_complaint_event(event, uow=sla.uow,
                                                    calendars=sla.calendars, now=T0)
            # Checked on every message too: no drift, no firing the facts say never came due.
            assert (out.drift, out.superseded) == ([], [])
        clocks = {c.id: c for c in sla.repo.clocks.values()}
        stored = (clock_rows(list(clocks.values())),
                  live_timers(clocks, list(sla.repo.timers.values())))
        assert stored == derived_rows(sla.repo.facts[CID])

    asyncio.run(go())


@settings(max_examples=int(os.environ.get("SP4N_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(order=deliveries(), closed_day=st.integers(0, 25))
def test_a_calendar_change_recomputes_the_running_clocks_as_derive_does(
        order: list[CloudEvent], closed_day: int) -> None:
    """Issue 10 items 1 and 7: after a closure is added, every running clock and its live
    timers equal ``derive`` over the stored facts under the new calendar (clocks already
    stopped keep the deadline they were judged by; a deadline the closure does not move keeps
    the calendar version that computed it)."""
    async def go() -> None:
        sla = Sla()
        for event in order:
            await usecases.on_complaint_event(event, uow=sla.uow, calendars=sla.calendars,
                                              now=T0)
        closure = CALENDAR.nth_working_day_after(T0.date(), closed_day)
        changed = WorkingCalendar(CALENDAR.tz, {closure: False}, override_revision=1)
        state, _ = await sla.repo.load(CID, None, "")
        state.recompute_deadlines(changed, default_policies(), T0, note="Banjir",
                                  changed_by="op")
        await sla.repo.save(state)
        clocks = {c.id: c for c in sla.repo.clocks.values()}
        running = {k: replace(c, calendar_version="")
                   for k, c in clock_rows(list(clocks.values())).items() if c.stopped_at is None}
        derived, derived_timers = derived_rows(sla.repo.facts[CID], changed)
        assert running == {k: replace(c, calendar_version="") for k, c in derived.items()
                           if k in running}
        assert live_timers(clocks, list(sla.repo.timers.values())) == derived_timers

    asyncio.run(go())


def test_a_routing_voided_by_a_later_deferral_does_not_meet_verification() -> None:
    """An automatic routing that intake ignored (the admin deferred first), processed by sla
    before the deferral: derive never lets it meet the verification clock (met by the archive
    after the DITUNDA). Processed one by one, the aggregate alone cannot undo that stop for a
    later one; the rows written are derive's (``domain.diff``), so the clock is re-derived."""
    d = day(0)
    timeline: list[EventData] = [
        submitted(), routed(d - timedelta(minutes=5), opd="ignored"),
        ComplaintDeferred(complaint_id=CID, deferred_at=d),
        ComplaintResumed(complaint_id=CID, deferred_at=d, resumed_at=day(5)),
        ComplaintArchived(complaint_id=CID, archived_at=day(6), reason="lainnya")]
    assert delivered_clocks(timeline) == derived_clocks(timeline)


def test_drift_names_a_clock_patched_away_from_its_derivation() -> None:
    """The per-message check can fail: a stored deadline that is not what the facts give, and
    a clock the facts do not call for, are both named (and counted by the metric)."""
    timeline: list[EventData] = [submitted(), routed(day(0, 11))]
    state = domain.derive(CID, domain.facts_of(timeline), CALENDAR, default_policies(), T0)
    derived = domain.derive(CID, domain.facts_of(timeline), CALENDAR, default_policies(), T0)
    assert domain.drift(state, derived, CALENDAR) == []
    opd = next(c for c in state.all_clocks() if c.clock == "opd_response")
    state.set_recomputed_deadline(opd.id, replace(opd.deadline_record(),
                                                  deadline=opd.deadline + timedelta(days=1)),
                                  0, None)
    assert domain.drift(state, derived, CALENDAR) == ["opd_response"]
    assert domain.drift(derived, domain.derive(CID, domain.facts_of(timeline[:1]), CALENDAR,
                                               default_policies(), T0), CALENDAR) \
        == ["opd_response"]
    registry = CollectorRegistry()
    metrics = SlaMetrics(registry)
    metrics.record(usecases.Outcome(drift=["opd_response"]))
    assert registry.get_sample_value("sp4n_sla_derive_drift_total",
                                     {"clock": "opd_response"}) == 1
