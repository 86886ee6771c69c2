"""Properties of the firing log (issue 10 item 1): what the scanner (or a message, at once)
fired is history kept beside the facts, so ``domain.derive`` over the facts and the log knows
what fired and fires nothing itself.

Through the real path (use case, aggregate, mapper into the in-memory repository, whose
``log_firing`` stands for migration 0009's triggers): random timelines delivered in any order,
some events twice, each processed at a time after it happened, interleaved with scanner runs at
random times; after a last scan, every stored clock column and live timer row equals ``derive``
over the stored facts and firing log, and every warning, breach, escalation, elapse and expiry
was emitted once."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.sla import clocks, domain, usecases
from services.sla.calendars import CalendarSource
from services.sla.policy import default_policies
from shared.events import CloudEvent, make_event
from tests.unit.test_sla_order import clock_rows, deliveries, live_timers
from tests.unit.test_sla_scenarios import CID, reclassified, routed, submitted
from tests.unit.test_sla_usecases import CALENDAR, T0, Sla

LADDER = json.dumps([
    {"level": 1, "after_working_days": 0, "target": "pejabat_penghubung"},
    {"level": 2, "after_working_days": 2, "target": "kepala_opd"},
    {"level": 3, "after_working_days": 5, "target": "admin_koordinator"},
])
ALERTS = ("sla.warning", "sla.breached", "sla.escalated", "sla.reply_window_elapsed",
          "sla.deferral_expired")


def _happened(event: CloudEvent) -> datetime:
    fact = clocks.fact_of(event.parse_data())
    return T0 if fact is None else fact.at


def _alert_key(e: CloudEvent) -> tuple[object, ...]:
    d = e.data
    return (e.event_name, d.get("clock"), d.get("hop"), d.get("instance"), d.get("point"),
            d.get("level"), d.get("due_at") or d.get("deadline"))


def _derived(sla: Sla, now: datetime) -> tuple[object, object]:
    calendars = CalendarSource(CALENDAR.tz)
    ladders = calendars.ladders(sla.repo.ladder_rows)
    state = domain.derive(CID, sla.repo.facts[CID], CALENDAR, default_policies(), now,
                          ladders=ladders, firings=sla.repo.firings.get(CID, []))
    by_id = {c.id: c for c in state.all_clocks()}
    return clock_rows(state.all_clocks()), live_timers(by_id, state.changes().timer_inserts)


@settings(max_examples=int(os.environ.get("SP4N_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(order=deliveries(), data=st.data(), with_ladder=st.booleans())
def test_stored_rows_equal_derive_over_facts_and_firing_log_with_scans_in_between(
        order: list[CloudEvent], data: st.DataObject, with_ladder: bool) -> None:
    async def go() -> None:
        sla = Sla()
        if with_ladder:
            sla.repo.ladder_rows = (("opd_response", None, None, LADDER, 1),
                                    ("completion", None, None, LADDER, 1))
        emitted: list[CloudEvent] = []
        now = T0
        for event in order:
            # Processed after it happened, after whatever was processed before it.
            now = max(now, _happened(event)) + timedelta(
                hours=data.draw(st.integers(0, 72), label="delay"))
            for _ in range(data.draw(st.integers(0, 2), label="scans")):  # scans meanwhile
                sla.repo.now = now - timedelta(hours=data.draw(st.integers(0, 24), label="at"))
                emitted += (await usecases.fire_due_timers(100, uow=sla.uow)).events
            emitted += (await usecases.on_complaint_event(
                event, uow=sla.uow, calendars=sla.calendars, now=now)).events
        now += timedelta(days=data.draw(st.integers(0, 60), label="last scan"))
        sla.repo.now = now
        while fired := (await usecases.fire_due_timers(100, uow=sla.uow)).events:
            emitted += fired
        stored_clocks = {c.id: c for c in sla.repo.clocks.values()}
        stored = (clock_rows(list(stored_clocks.values())),
                  live_timers(stored_clocks, list(sla.repo.timers.values())))
        derived_clocks, derived_timers = _derived(sla, now)
        facts = [(f.kind, f.at.isoformat(), f.hop) for f in sla.repo.facts[CID]]
        print("ORDER", [(e.event_name, _happened(e).isoformat()) for e in order])
        print("FACTS", facts)
        print("LOG", sla.repo.firings.get(CID))
        print("STORED-DERIVED", stored[1] - derived_timers)  # type: ignore[operator]
        print("DERIVED-STORED", derived_timers - stored[1])  # type: ignore[operator]
        assert stored[1] == derived_timers
        assert stored[0] == derived_clocks
        alerts = Counter(_alert_key(e) for e in emitted if e.event_name in ALERTS)
        assert [k for k, n in alerts.items() if n > 1] == []  # each fired once
        assert sum(alerts.values()) == len(sla.repo.firings.get(CID, []))  # each one logged

    asyncio.run(go())


def test_derive_with_the_log_fires_nothing_due_by_now() -> None:
    """derive at a later ``now`` leaves what came due to the scanner: without the log's say,
    the breach of a clock whose deadline passed is still to fire; with it, fired."""
    facts = domain.facts_of([submitted(), routed(T0 + timedelta(hours=2))])
    late = T0 + timedelta(days=60)
    state = domain.derive(CID, facts, CALENDAR, default_policies(), late, firings=[])
    breaches = [t for t in state.changes().timer_inserts if t.kind == "breach"]
    assert breaches and all(t.fired_at is None for t in breaches)
    assert not any(t.kind == "warning" and t.cancelled_at is None
                   for t in state.changes().timer_inserts)  # past their deadline: noise
    opd = next(c for c in state.all_clocks() if c.clock == "opd_response")
    log = [domain.Firing("opd_response", opd.hop, 0, "breach", "", opd.deadline, late)]
    state = domain.derive(CID, facts, CALENDAR, default_policies(), late, firings=log)
    assert [t.fired_at for t in state.changes().timer_inserts
            if t.kind == "breach" and t.clock_id == opd.id] == [late]
    # The legacy replay (no log) fires by ``now``.
    legacy = domain.derive(CID, facts, CALENDAR, default_policies(), late)
    assert all(t.fired_at is not None for t in legacy.changes().timer_inserts
               if t.kind == "breach")



def test_a_breach_fired_for_a_deadline_the_facts_moved_on_is_logged_and_superseded() -> None:
    """A submission processed after its (aspirasi) deadline, and after a reclassification made
    before that deadline: the message fires the breach at once before it applies the
    correction (its event is out), while derive has the deadline moved from the start. The
    firing is kept (a fired timer, cancelled at once: the log has it), counted as
    superseded, and the live breach is the new deadline's, still to fire."""
    async def go() -> None:
        sla = Sla()
        now = T0 + timedelta(days=16)  # past the aspirasi completion deadline (31 Mar)
        await usecases.on_complaint_event(
            make_event("test", reclassified(T0 + timedelta(minutes=30), pengawasan=False)),
            uow=sla.uow, calendars=sla.calendars, now=now)
        out = await usecases.on_complaint_event(make_event("test", submitted("aspirasi")),
                                                uow=sla.uow, calendars=sla.calendars, now=now)
        [breach] = [e for e in out.events if e.event_name == "sla.breached"
                    and e.data["clock"] == "completion"]
        assert out.superseded == ["completion"] and out.drift == []
        [logged] = [f for f in sla.repo.firings[CID] if f.clock == "completion"]
        assert logged.due_at == datetime.fromisoformat(breach.data["due_at"])
        completion = next(c for c in sla.repo.clocks.values() if c.clock == "completion")
        assert completion.deadline > logged.due_at
        live = [t for t in sla.repo.timers.values() if t.clock_id == completion.id
                and t.kind == "breach" and t.cancelled_at is None]
        assert [(t.due_at, t.fired_at) for t in live] == [(completion.deadline, None)]

    asyncio.run(go())
