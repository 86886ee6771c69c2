"""Calendar versions are recomputable: any version a clock names is rebuilt from its stored
content (``CalendarSource.at_version``), and drift and ``sp4n calendar verify`` compare each
clock with a derivation under its own version — in memory, no database."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

import pytest
from holidays.version import __version__ as HOLIDAYS_VERSION
from hypothesis import given, settings
from hypothesis import strategies as st

from services.sla import domain, usecases
from services.sla.calendar import WorkingCalendar, calendar_version, rebuildable_revision
from services.sla.calendars import CalendarSnapshot, CalendarSource
from services.sla.policy import default_policies
from services.sla.verification import verify_deadlines
from shared.events import CloudEvent, ComplaintDeferred, ComplaintResumed, EventData, make_event
from tests.unit.test_sla_order import deliveries
from tests.unit.test_sla_scenarios import (
    CID,
    reclassified,
    replied,
    responded,
    routed,
    submitted,
)
from tests.unit.test_sla_usecases import (
    CALENDAR,
    T0,
    VERIFICATION_DEADLINE,
    WIB,
    FakeSlaRepository,
    Sla,
)
from tests.unit.test_sla_usecases import submitted as submitted_event

# Version A closes Wed 25 March (verification moves from Fri 27 to Mon 30 March); version B
# removes that override again.
CLOSED = date(2026, 3, 25)
A = CalendarSnapshot(1, {CLOSED: False})
B = CalendarSnapshot(2, {})
CAL_A = WorkingCalendar(WIB, A.overrides, override_revision=A.revision)
CAL_B = WorkingCalendar(WIB, B.overrides, override_revision=B.revision)
DEADLINE_A = datetime(2026, 3, 30, 23, 59, 59, 999999, tzinfo=WIB)


class VersionedRepository(FakeSlaRepository):
    """The fake (which keeps every revision's content, migration 0011) with what
    verification reads."""

    def change_calendar(self, snapshot: CalendarSnapshot) -> None:
        self.calendar = snapshot

    async def complaints_with_clocks(self, *, open_only: bool, after: uuid.UUID | None,
                                     limit: int) -> list[uuid.UUID]:
        ids = sorted({c.complaint_id for c in self.clocks.values()
                      if not open_only or c.stopped_at is None})
        return [i for i in ids if after is None or i > after][:limit]


def test_only_versions_of_the_installed_holidays_release_are_rebuildable() -> None:
    assert rebuildable_revision(calendar_version(7)) == 7
    assert rebuildable_revision(calendar_version(0)) == 0
    assert rebuildable_revision("holidays-0.0.1+ovr-7") is None  # another release's data
    assert rebuildable_revision(f"holidays-{HOLIDAYS_VERSION}+ovr-") is None
    assert rebuildable_revision("bench") is None


async def test_a_version_is_rebuilt_from_its_content_once_and_kept() -> None:
    repo = VersionedRepository()
    repo.change_calendar(A)
    repo.change_calendar(B)
    calendars = CalendarSource(WIB)
    current = await calendars.current(repo)
    assert current.version == CAL_B.version
    old = await calendars.at_version(repo, CAL_A.version)
    assert old is not None and old.version == CAL_A.version
    assert old.deadline(T0, 3) == DEADLINE_A and current.deadline(T0, 3) == VERIFICATION_DEADLINE
    assert await calendars.at_version(repo, CAL_A.version) is old  # versions never change
    assert await calendars.at_version(repo, CAL_B.version) is current  # no read for the current
    assert await calendars.at_version(repo, calendar_version(99)) is None  # never recorded
    assert await calendars.at_version(repo, calendar_version(99)) is None
    assert await calendars.at_version(repo, "holidays-0.0.1+ovr-1") is None
    assert repo.version_reads == [1, 99]


def test_drift_compares_a_clock_kept_under_an_older_version_with_that_version() -> None:
    facts = domain.facts_of([submitted()])
    policies = default_policies()
    state = domain.derive(CID, facts, CAL_A, policies, T0)
    under_a = domain.derive(CID, facts, CAL_A, policies, T0)
    under_b = domain.derive(CID, facts, CAL_B, policies, T0)
    v = next(c for c in state.all_clocks() if c.clock == "verification")
    assert (v.calendar_version, v.deadline) == (CAL_A.version, DEADLINE_A)
    # Against the current calendar alone, the kept deadline would look wrong: it is not.
    assert domain.drift(state, under_b, CAL_B, older={CAL_A.version: under_a}) == []
    state.set_recomputed_deadline(v.id, replace(v.deadline_record(),
                                                deadline=v.deadline + timedelta(days=1)), 0, None)
    # Tampered under version A: only a comparison under A can see it.
    assert domain.drift(state, under_b, CAL_B) == []
    assert domain.drift(state, under_b, CAL_B, older={CAL_A.version: under_a}) == ["verification"]
    [(have, want)] = domain.drifted(state, {CAL_A.version: under_a, CAL_B.version: under_b},
                                    CAL_B.version)
    assert have is not None and want is not None
    assert (have.deadline, want.deadline) == (DEADLINE_A + timedelta(days=1), DEADLINE_A)


async def test_verify_recomputes_kept_deadlines_under_their_version_and_names_a_tampered_one(
) -> None:
    sla = Sla()
    repo = VersionedRepository()
    sla.repo = repo
    sla.uow.repo = repo
    repo.change_calendar(A)
    cid = uuid.uuid4()
    await sla(submitted_event(cid), T0)
    v = repo.clocks_of(cid)[("verification", 0)]
    assert (v.calendar_version, v.deadline) == (CAL_A.version, DEADLINE_A)
    repo.change_calendar(B)  # "keep deadlines": the stored clocks stay under A
    out = await verify_deadlines(uow=sla.uow, calendars=sla.calendars, now=T0)
    assert (out.complaints, out.compared, out.mismatches) == (1, 2, [])
    repo.clocks[v.id] = replace(v, deadline=v.deadline + timedelta(days=1))
    out = await verify_deadlines(uow=sla.uow, calendars=sla.calendars, now=T0, page=1)
    [m] = out.mismatches
    assert (m.complaint_id, m.clock, m.calendar_version, m.stored, m.recomputed) == (
        cid, "verification", CAL_A.version, DEADLINE_A + timedelta(days=1), DEADLINE_A)
    # A clock under a version whose calendar cannot be rebuilt is counted, not compared.
    repo.clocks[v.id] = replace(v, calendar_version="holidays-0.0.1+ovr-1")
    out = await verify_deadlines(uow=sla.uow, calendars=sla.calendars, now=T0,
                                 complaint_ids=[cid])
    assert (out.compared, out.mismatches) == (1, [])
    assert out.not_rebuildable == {"holidays-0.0.1+ovr-1": 1}


# -- the rows written are derive's under the version each clock names -------------------------
async def assert_rows_are_derives(repo: FakeSlaRepository, cid: uuid.UUID,
                                  calendars: dict[str, WorkingCalendar], now: datetime) -> None:
    """Every stored clock, its live timers and its pauses equal ``derive`` over the stored
    facts, policies and firing log under the calendar version the clock names (the use
    cases' inputs: the pinned policies), and the facts call for no clock that is not
    stored."""
    state, stamp = await repo.load(cid, None, "")
    policies = CalendarSource(WIB).policies(stamp.policy_rows)
    derived = {version: domain.derive(cid, state.facts, cal, policies, now,
                                      pinned=state.pinned_policies(policies),
                                      firings=state.firings)
               for version, cal in calendars.items()}

    def timers(rows: list[domain.Timer], clock_id: int) -> set[tuple[object, ...]]:
        return {(t.kind, t.point, t.due_at, t.fire_at or t.due_at, t.fired_at) for t in rows
                if t.clock_id == clock_id and t.cancelled_at is None}

    def pauses(rows: list[domain.PauseRow], clock_id: int) -> set[tuple[object, ...]]:
        return {(p.deferred_at, p.resumed_at, p.working_days, p.deadline_before,
                 p.deadline_after) for p in rows if p.clock_id == clock_id}

    stored = {(c.clock, c.hop, c.instance): c for c in repo.clocks.values()
              if c.complaint_id == cid}
    for key, c in stored.items():
        under = derived[c.calendar_version]
        [d] = [x for x in under.all_clocks() if (x.clock, x.hop, x.instance) == key]
        assert replace(c, id=0) == replace(d, id=0), key
        assert timers(list(repo.timers.values()), c.id) == timers(
            under.changes().timer_inserts, d.id), key
        assert pauses(repo.pauses, c.id) == pauses(under.changes().new_pauses, d.id), key
    current = derived[max(calendars, key=lambda v: calendars[v].override_revision)]
    assert {(x.clock, x.hop, x.instance) for x in current.all_clocks()} == set(stored)


def at(day_: date, hour: int = 10) -> datetime:
    return datetime.combine(day_, time(hour), tzinfo=WIB)


@dataclass
class KeptRow:
    name: str
    messages: list[tuple[EventData, datetime]]
    # The clocks (clock, hop, instance) under A afterwards; B's deadline columns differ.
    under_a: tuple[tuple[str, int, int], ...] = (("verification", 0, 0), ("completion", 0, 0))


# Under A (25 March closed) verification ends Mon 30 March, completion Wed 15 April; under B
# (open again) a working day earlier. Each row is a message (or two) after the change to B.
KEPT_ROWS = [
    KeptRow("a DITUNDA period after the changed day (3 HK paused under both)", [
        (ComplaintDeferred(complaint_id=CID, deferred_at=at(date(2026, 3, 26))),
         at(date(2026, 3, 26))),
        (ComplaintResumed(complaint_id=CID, deferred_at=at(date(2026, 3, 26)),
                          resumed_at=at(date(2026, 3, 31))), at(date(2026, 3, 31)))]),
    KeptRow("a DITUNDA period over the changed day (2 HK paused under A, 3 under B)", [
        (ComplaintDeferred(complaint_id=CID, deferred_at=at(date(2026, 3, 24))),
         at(date(2026, 3, 24))),
        (ComplaintResumed(complaint_id=CID, deferred_at=at(date(2026, 3, 24)),
                          resumed_at=at(date(2026, 3, 27))), at(date(2026, 3, 27)))]),
    KeptRow("a resume processed before its deferral", [
        (ComplaintResumed(complaint_id=CID, deferred_at=at(date(2026, 3, 24)),
                          resumed_at=at(date(2026, 3, 27))), at(date(2026, 3, 27))),
        (ComplaintDeferred(complaint_id=CID, deferred_at=at(date(2026, 3, 24))),
         at(date(2026, 3, 27), 11))]),
    KeptRow("a reclassification (completion recomputed from its start, 60 HK)", [
        (reclassified(at(date(2026, 3, 26), 11)), at(date(2026, 3, 26), 11))]),
    KeptRow("a routing (verification met)", [
        (routed(at(date(2026, 3, 26), 11)), at(date(2026, 3, 26), 11))]),
    # The instance a reply resumes inherits A's deadline (+ the reply window): under A too.
    KeptRow("a reporter's reply resuming the completion clock met by the final answer", [
        (routed(at(date(2026, 3, 26), 11)), at(date(2026, 3, 26), 11)),
        (responded(at(date(2026, 3, 27), 15)), at(date(2026, 3, 27), 15)),
        (replied(at(date(2026, 3, 30), 9)), at(date(2026, 3, 30), 9))],
        (("verification", 0, 0), ("completion", 0, 0), ("completion", 0, 1))),
]


@pytest.mark.parametrize("row", KEPT_ROWS, ids=lambda r: r.name)
async def test_a_clock_kept_under_version_a_is_decided_and_derived_under_a(row: KeptRow) -> None:
    """A clock computed under calendar version A, the calendar changed to B with
    keep_deadlines: a later message decides it under A and writes derive's rows under A (its
    deadline, timers and pauses as A gives them, never B's or a mix), with no drift; a clock
    the message starts is derive's under B."""
    sla = Sla()
    a = await usecases.change_calendar(CLOSED, False, "Banjir: kantor tutup", "operator-1",
                                       keep_deadlines=True, uow=sla.uow,
                                       calendars=sla.calendars, now=T0)
    await sla(make_event("test", submitted()), T0)
    kept = {c.clock: c for c in sla.repo.clocks.values()}
    assert kept["verification"].deadline == DEADLINE_A
    b = await usecases.change_calendar(CLOSED, None, "Banjir surut", "operator-1",
                                       keep_deadlines=True, uow=sla.uow,
                                       calendars=sla.calendars, now=T0)
    assert (b.moved, b.complaints, b.events) == (0, 0, [])
    assert {c.clock: c for c in sla.repo.clocks.values()} == kept  # keep: nothing rewritten
    cal_a, cal_b = (WorkingCalendar(WIB, s.overrides, override_revision=s.revision)
                    for s in (sla.repo.versions[a.revision], sla.repo.versions[b.revision]))
    assert cal_a.version == kept["verification"].calendar_version != cal_b.version
    for data, now in row.messages:
        out = await sla(make_event("test", data), now)
        assert (out.drift, out.superseded) == ([], [])
    after = {(c.clock, c.hop, c.instance): c for c in sla.repo.clocks.values()}
    for key in row.under_a:
        assert after[key].calendar_version == cal_a.version, key
    await assert_rows_are_derives(sla.repo, CID, {cal_a.version: cal_a, cal_b.version: cal_b},
                                  row.messages[-1][1])
    # Under B the same facts give other deadline columns (a DITUNDA over the changed day
    # evens the deadline out, not the initial deadline and the days paused): A's are kept.
    state, _ = await sla.repo.load(CID, None, "")

    def columns(c: domain.ClockRow) -> tuple[object, ...]:
        return c.initial_deadline, c.deadline, c.paused_working_days

    under_b = {(c.clock, c.hop, c.instance): columns(c) for c in domain.derive(
        CID, state.facts, cal_b, default_policies(), row.messages[-1][1],
        firings=state.firings).all_clocks()}
    for key in row.under_a:
        if after[key].stopped_at is None:  # (a stopped one may have been met before the day)
            assert under_b[key] != columns(after[key]), key
    out_v = await verify_deadlines(uow=sla.uow, calendars=CalendarSource(WIB), now=T0,
                                   complaint_ids=[CID])
    assert out_v.mismatches == []


@dataclass
class ChangeRow:
    name: str
    now: datetime  # when the operator's change is processed
    opd_points: tuple[str, ...] = ()  # opd_response's warning points


CHANGE_ROWS = [
    ChangeRow("processed at once", T0 + timedelta(hours=2)),
    # The closure moves the OPD deadline to Wed 1 April and its "1hk" point to the end of Tue
    # 31 March, already past when the change runs: planned all the same (the scanner fires
    # it), as derive plans it — what is planned does not depend on when the change runs.
    ChangeRow("processed after the moved warning point", at(date(2026, 4, 1), 8), ("1hk",)),
]


@pytest.mark.parametrize("row", CHANGE_ROWS, ids=lambda r: r.name)
async def test_a_calendar_change_writes_derives_rows_under_the_new_version(
        row: ChangeRow) -> None:
    """An operator's change (not kept): a closure inside the open windows moves each running
    deadline by one working day with ``sla.deadline_changed``; the rows written are derive's
    under the new version for the clocks it moved, and under the version that computed it
    for a stopped one (judged by its deadline: it stays), with no drift."""
    sla = Sla()
    sla.repo.policy_rows = tuple(
        (k, n, w, v, row.opd_points if k == "opd_response" else points)
        for k, n, w, v, points in sla.repo.policy_rows)
    await sla(make_event("test", submitted()), T0)
    routed_at = T0 + timedelta(hours=1)
    await sla(make_event("test", routed(routed_at)), routed_at)
    before = {c.clock: c for c in sla.repo.clocks.values()}
    closure = CALENDAR.nth_working_day_after(T0.date(), 2)  # Thu 26 March: inside every window
    out = await usecases.change_calendar(closure, False, "Banjir: kantor tutup", "operator-1",
                                         keep_deadlines=False, uow=sla.uow,
                                         calendars=sla.calendars, now=row.now)
    assert (out.complaints, out.moved, out.drift, out.superseded) == (1, 2, [], [])
    new = WorkingCalendar(WIB, {closure: False}, override_revision=out.revision)
    after = {c.clock: c for c in sla.repo.clocks.values()}
    for clock in ("opd_response", "completion"):
        assert after[clock].deadline == CALENDAR.move_deadline(before[clock].deadline, 1)
        assert after[clock].calendar_version == new.version
        pending = {(t.kind, t.point): t.due_at for t in sla.repo.timers.values()
                   if t.clock_id == after[clock].id and t.pending}
        assert pending[("breach", "")] == after[clock].deadline
    if row.opd_points:
        pending = {(t.kind, t.point): t.due_at for t in sla.repo.timers.values()
                   if t.clock_id == after["opd_response"].id and t.pending}
        assert pending[("warning", "1hk")] == new.end_of_day(date(2026, 3, 31)) < row.now
    assert after["verification"] == before["verification"]  # stopped: judged, kept
    assert sorted(e.data["clock"] for e in out.events
                  if e.event_name == "sla.deadline_changed") == ["completion", "opd_response"]
    assert sla.uow.committed_events[-len(out.events):] == out.events
    await assert_rows_are_derives(sla.repo, CID, {CALENDAR.version: CALENDAR,
                                                  new.version: new}, row.now)


async def test_a_version_that_cannot_be_rebuilt_keeps_the_deadline_a_message_would_move(
) -> None:
    """Only when the version a clock names cannot be rebuilt (here: a revision made before
    its content was stored) does a message keep ``apply``'s row of it (the current calendar
    would move its deadline): the deadline, version and timers it had."""
    sla = Sla()
    await usecases.change_calendar(CLOSED, False, "Banjir: kantor tutup", "operator-1",
                                   keep_deadlines=True, uow=sla.uow, calendars=sla.calendars,
                                   now=T0)
    await sla(make_event("test", submitted()), T0)
    before = {c.clock: c for c in sla.repo.clocks.values()}
    timers = {(t.clock_id, t.kind, t.due_at, t.pending) for t in sla.repo.timers.values()}
    b = await usecases.change_calendar(CLOSED, None, "Banjir surut", "operator-1",
                                       keep_deadlines=True, uow=sla.uow,
                                       calendars=sla.calendars, now=T0)
    del sla.repo.versions[b.revision - 1]
    calendars = CalendarSource(WIB)  # another process: nothing cached
    routed_at = at(date(2026, 3, 26), 11)
    out = await usecases.on_complaint_event(make_event("test", routed(routed_at)), uow=sla.uow,
                                            calendars=calendars, now=routed_at)
    assert out.drift == []
    after = {c.clock: c for c in sla.repo.clocks.values()}
    for clock in ("verification", "completion"):
        assert (after[clock].deadline, after[clock].calendar_version) == (
            before[clock].deadline, before[clock].calendar_version)
    assert after["verification"].stopped_at == routed_at
    assert {(t.clock_id, t.kind, t.due_at, t.pending) for t in sla.repo.timers.values()
            if t.clock_id == after["completion"].id} == {
        t for t in timers if t[0] == after["completion"].id}


def versions_of(repo: FakeSlaRepository) -> dict[str, WorkingCalendar]:
    return {cal.version: cal for cal in (
        WorkingCalendar(WIB, s.overrides, override_revision=s.revision,
                        confirmed_years=s.confirmed_years) for s in repo.versions.values())}


@settings(max_examples=int(os.environ.get("SP4N_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(order=deliveries(), closed_day=st.integers(0, 25))
def test_after_a_calendar_change_every_row_is_derives_under_the_version_it_names(
        order: list[CloudEvent], closed_day: int) -> None:
    """Whatever the deliveries, an operator's closure (not kept) leaves every stored clock,
    live timer and pause equal to derive under the calendar version the clock names (the new
    one for those it moved), with no drift."""
    async def go() -> None:
        sla = Sla()
        for event in order:
            await sla(event, T0)
        closure = CALENDAR.nth_working_day_after(T0.date(), closed_day)
        out = await usecases.change_calendar(closure, False, "Banjir", "op", keep_deadlines=False,
                                             uow=sla.uow, calendars=sla.calendars, now=T0)
        assert (out.drift, out.superseded) == ([], [])
        await assert_rows_are_derives(sla.repo, CID, versions_of(sla.repo), T0)

    asyncio.run(go())


@settings(max_examples=int(os.environ.get("SP4N_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(order=deliveries(), closed_day=st.integers(0, 25), data=st.data())
def test_clocks_kept_under_an_older_version_stay_derives_under_it(
        order: list[CloudEvent], closed_day: int, data: st.DataObject) -> None:
    """Some deliveries under version A (a closure), the closure removed with keep_deadlines
    (version B), the rest delivered: every stored row is derive's under the version its clock
    names, whichever clocks the later messages stop, pause, resume or reclassify (a
    completion instance a reply resumes runs under the version of the one it follows), and
    no message's events disagree with them: no drift, and no breach fired at once for a
    deadline the facts had moved on before it came due (``superseded``)."""
    split = data.draw(st.integers(1, len(order)))

    async def go() -> None:
        sla = Sla()
        closure = CALENDAR.nth_working_day_after(T0.date(), closed_day)
        await usecases.change_calendar(closure, False, "Banjir", "op", keep_deadlines=True,
                                       uow=sla.uow, calendars=sla.calendars, now=T0)
        for event in order[:split]:
            out = await sla(event, T0)
            assert (out.drift, out.superseded) == ([], [])
        await usecases.change_calendar(closure, None, "Surut", "op", keep_deadlines=True,
                                       uow=sla.uow, calendars=sla.calendars, now=T0)
        for event in order[split:]:
            out = await sla(event, T0)
            assert (out.drift, out.superseded) == ([], [])
        await assert_rows_are_derives(sla.repo, CID, versions_of(sla.repo), T0)

    asyncio.run(go())
