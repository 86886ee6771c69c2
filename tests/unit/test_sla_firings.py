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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.sla import clocks, domain, usecases
from services.sla.calendars import CalendarSource
from services.sla.policy import default_policies
from shared.events import CloudEvent, EventData, make_event
from tests.unit.test_sla_order import clock_rows, deliveries, live_timers
from tests.unit.test_sla_scenarios import CID, reclassified, responded, routed, submitted
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
            out = await usecases.on_complaint_event(
                event, uow=sla.uow, calendars=sla.calendars, now=now)
            assert (out.drift, out.superseded) == ([], [])  # its events agree with the facts
            emitted += out.events
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



# The completion deadlines of a complaint received at T0: aspirasi (5 HK), pengaduan (14 HK),
# pengaduan berkadar pengawasan (60 HK).
D_ASPIRASI, D_PENGADUAN, D_PENGAWASAN = (CALENDAR.deadline(T0, n) for n in (5, 14, 60))
LATE = T0 + timedelta(days=40)  # past D_PENGADUAN, before D_PENGAWASAN


@dataclass(frozen=True)
class AtOnce:
    """A complaint whose correction sla processes before the fact that creates (or stops) its
    completion clock, that one processed after the deadline it was submitted under."""

    name: str
    steps: list[tuple[EventData, datetime]]  # (event, processed at), in processing order
    breaches: list[datetime]  # the due times of the completion breaches emitted, each once
    policy_key: str  # the completion clock's policy in the end
    deadline: datetime
    stopped_at: datetime | None = None
    on_time: list[bool] = field(default_factory=list)  # its sla.clock_stopped, judged


AT_ONCE = [
    AtOnce("reclassified (before the deadline) processed before a late submission: no breach",
           [(reclassified(T0 + timedelta(minutes=30)), LATE), (submitted(), LATE)],
           [], "completion_pengaduan_pengawasan", D_PENGAWASAN),
    AtOnce("reclassified after the deadline, processed before a late submission: the breach "
           "is real, emitted once, and gives way to the new deadline",
           [(reclassified(D_PENGADUAN + timedelta(days=1)), LATE), (submitted(), LATE)],
           [D_PENGADUAN], "completion_pengaduan_pengawasan", D_PENGAWASAN),
    AtOnce("a stop after the deadline, judged with a correction recorded earlier that moves "
           "the deadline past the stop: on time, no breach",
           [(reclassified(T0 + timedelta(minutes=30)), LATE),
            (responded(D_PENGADUAN + timedelta(days=3)), LATE), (submitted(), LATE)],
           [], "completion_pengaduan_pengawasan", D_PENGAWASAN,
           stopped_at=D_PENGADUAN + timedelta(days=3), on_time=[True]),
    AtOnce("a stop after the new deadline too: the breach is the new deadline's",
           [(reclassified(T0 + timedelta(minutes=30), pengawasan=False), LATE),
            (responded(D_PENGADUAN + timedelta(days=3)), LATE), (submitted("aspirasi"), LATE)],
           [D_PENGADUAN], "completion_pengaduan", D_PENGADUAN,
           stopped_at=D_PENGADUAN + timedelta(days=3), on_time=[False]),
    AtOnce("a correction back to the submitted policy moves nothing: the breach stands",
           [(reclassified(T0 + timedelta(minutes=30)), LATE),
            (reclassified(T0 + timedelta(hours=1), pengawasan=False), LATE),
            (submitted(), LATE)],
           [D_PENGADUAN], "completion_pengaduan", D_PENGADUAN),
]


@pytest.mark.parametrize("row", AT_ONCE, ids=[r.name for r in AT_ONCE])
async def test_a_breach_fired_at_once_is_one_the_facts_say_happened(row: AtOnce) -> None:
    """``apply`` decides a breach it fires at once only once all of the message's facts are
    applied: one whose deadline a correction made before it came due has moved on never
    fires (no event, no firing), one that came due before the correction stays fired; each
    message's events agree with derive (no drift, nothing ``superseded``), and the stored rows
    equal derive over the facts and the firing log."""
    sla = Sla()
    emitted: list[CloudEvent] = []
    for data, now in row.steps:
        out = await sla(make_event("test", data), now)
        assert (out.drift, out.superseded) == ([], [])
        emitted += out.events
    breached = [datetime.fromisoformat(e.data["due_at"]) for e in emitted
                if e.event_name == "sla.breached" and e.data["clock"] == "completion"]
    assert breached == row.breaches
    assert [(e.data["on_time"], datetime.fromisoformat(e.data["deadline"])) for e in emitted
            if e.event_name == "sla.clock_stopped" and e.data["clock"] == "completion"] \
        == [(on_time, row.deadline) for on_time in row.on_time]
    logged = [f.due_at for f in sla.repo.firings.get(CID, []) if f.clock == "completion"]
    assert logged == row.breaches
    completion = next(c for c in sla.repo.clocks.values()
                      if (c.clock, c.hop, c.instance) == ("completion", 0, 0))
    assert (completion.policy_key, completion.deadline, completion.stopped_at) \
        == (row.policy_key, row.deadline, row.stopped_at)
    if row.stopped_at is None:  # still running: its breach is its deadline's (to fire, or
        # the one fired)
        live = [(t.due_at, t.fired_at is not None) for t in sla.repo.timers.values()
                if t.clock_id == completion.id and t.kind == "breach" and t.cancelled_at is None]
        assert live == [(row.deadline, row.deadline in row.breaches)]
    stored_clocks = {c.id: c for c in sla.repo.clocks.values()}
    assert (clock_rows(list(stored_clocks.values())),
            live_timers(stored_clocks, list(sla.repo.timers.values()))) == _derived(sla, LATE)


def test_derive_finds_a_firing_for_a_deadline_moved_before_it_came_due_unfounded() -> None:
    """The sanity check on a message's firings (``domain.unfounded``): given a firing log
    with a breach of the submitted deadline, derive over the facts calls it unfounded when the
    correction that moved the deadline was made before it came due, and not when after."""
    for made_at, expect in ((T0 + timedelta(minutes=30), True),
                            (D_PENGADUAN + timedelta(days=1), False)):
        facts = domain.facts_of([submitted(), reclassified(made_at)])
        breach = domain.Firing("completion", 0, 0, "breach", "", D_PENGADUAN, LATE)
        state = domain.derive(CID, facts, CALENDAR, default_policies(), LATE, firings=[breach])
        assert domain.unfounded([breach], state) == ([breach] if expect else [])
        assert domain.unlogged([breach], state) == [breach]  # given way, either way
