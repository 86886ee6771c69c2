"""The sla use cases with an in-memory repository and unit of work: no database, no broker.

``FakeSlaRepository`` keeps the committed rows (clocks, timers, facts, pauses) and loads and
saves ``domain.ComplaintClocks`` as the PostgreSQL mapper does; the unit of work is
``tests.unit.fakes.FakeUnitOfWork`` (its inbox answers the repository's claim)."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.sla import usecases
from services.sla.calendar import WorkingCalendar
from services.sla.calendars import CalendarSnapshot, CalendarSource, CalendarStamp
from services.sla.clocks import Fact, StopReason
from services.sla.domain import (
    ClockChanges,
    ClockRow,
    ComplaintClocks,
    DueTimer,
    Firing,
    PauseRow,
    Timer,
)
from services.sla.policy import default_policies
from shared.events import (
    CloudEvent,
    ComplaintDeferred,
    ComplaintResumed,
    ComplaintRouted,
    ComplaintSubmitted,
    Location,
    make_event,
)
from tests.unit.fakes import FakeTx, FakeUnitOfWork

WIB = ZoneInfo("Asia/Pontianak")
T0 = datetime(2026, 3, 17, 9, 0, tzinfo=WIB)  # verification deadline: Fri 27 Mar 23:59:59.999999
VERIFICATION_DEADLINE = datetime(2026, 3, 27, 23, 59, 59, 999999, tzinfo=WIB)
CALENDAR = WorkingCalendar(WIB)


class FakeSlaRepository:
    """Committed sla rows in memory; ``load``/``save`` behave as ``PgSlaRepository``'s."""

    def __init__(self) -> None:
        self.tx: FakeTx[FakeSlaRepository] | None = None  # bound by ``SlaFakeUnitOfWork``
        self.clocks: dict[int, ClockRow] = {}
        self.timers: dict[int, Timer] = {}
        self.facts: dict[uuid.UUID, list[Fact]] = {}
        self.pauses: list[PauseRow] = []
        self.firings: dict[uuid.UUID, list[Firing]] = {}  # the firing log (migration 0009)
        # Every revision's content, recorded when it is made (migration 0011's trigger).
        self.versions: dict[int, CalendarSnapshot] = {}
        self.version_reads: list[int] = []
        self.calendar = CalendarSnapshot(0, {})
        self.policy_rows = tuple(sorted((p.key, p.working_days, p.warn_before_working_days, p.version,
                                         p.warn_points) for p in default_policies().values()))
        self.ladder_rows: tuple[tuple[str, str | None, str | None, str, int], ...] = ()
        self.calendar_reads = 0
        self.saves = 0
        self.now = datetime.now(UTC)  # the database's now() for the scanner
        self._ids = itertools.count(1)

    # -- the complaint's clocks ----------------------------------------------------------------
    async def claim(self, complaint_id: uuid.UUID) -> bool:
        assert self.tx is not None
        return await self.tx.claim()  # the inbox half of the merged statement

    async def load(self, complaint_id: uuid.UUID, fact: Fact | None,
                   event_id: str) -> tuple[ComplaintClocks, CalendarStamp]:
        mine = [c for c in self.clocks.values() if c.complaint_id == complaint_id]
        ids = {c.id for c in mine}
        timers = [replace(t, changed=False) for t in self.timers.values()
                  if t.clock_id in ids and t.cancelled_at is None]
        pauses = [p for p in self.pauses if p.clock_id in ids]
        facts = self.facts.setdefault(complaint_id, [])
        state = ComplaintClocks(complaint_id, sorted(mine, key=lambda c: c.id), timers,
                                sorted(facts, key=lambda f: f.at), pauses,
                                list(self.firings.get(complaint_id, [])))
        if fact is not None:
            if not any((f.kind, f.at, f.hop) == (fact.kind, fact.at, fact.hop) for f in facts):
                facts.append(fact)
            state.record_fact(fact)
        return state, CalendarStamp(self.calendar.revision, self.policy_rows, self.ladder_rows)

    async def save(self, state: ComplaintClocks, changes: ClockChanges | None = None) -> None:
        c = state.changes() if changes is None else changes
        if not c:
            return
        self.saves += 1
        ids: dict[int, int] = {}
        for row in c.new_clocks:
            ids[row.id] = next(self._ids)
            self.clocks[ids[row.id]] = replace(row, id=ids[row.id])
        for row in c.changed_clocks:
            self.clocks[row.id] = row
        for t in c.timer_updates:
            assert t.id is not None
            if self.timers[t.id].fired_at is None:
                self.log_firing(replace(self.timers[t.id], fired_at=t.fired_at))
            self.timers[t.id] = replace(self.timers[t.id], fired_at=t.fired_at,
                                        cancelled_at=t.cancelled_at)
        for t in c.timer_inserts:
            timer_id = next(self._ids)
            self.timers[timer_id] = replace(t, id=timer_id, clock_id=ids.get(t.clock_id, t.clock_id),
                                            changed=False)
            self.log_firing(self.timers[timer_id])
        written = [replace(p, clock_id=ids.get(p.clock_id, p.clock_id)) for p in c.new_pauses]
        gone_pauses = set(c.deleted_pauses) | {(p.clock_id, p.deferred_at) for p in written}
        self.pauses = [p for p in self.pauses
                       if (p.clock_id, p.deferred_at) not in gone_pauses] + written
        gone = set(c.deleted_clocks)
        for clock_id in gone:
            del self.clocks[clock_id]
        self.timers = {i: t for i, t in self.timers.items() if t.clock_id not in gone}
        self.pauses = [p for p in self.pauses if p.clock_id not in gone]

    def log_firing(self, t: Timer) -> None:
        """The triggers of migration 0009: a timer marked fired goes into the firing log."""
        if t.fired_at is None or t.due_at is None:
            return
        c = self.clocks[t.clock_id]
        log = self.firings.setdefault(c.complaint_id, [])
        firing = Firing(c.clock, c.hop, c.instance, t.kind, t.point, t.due_at, t.fired_at,
                        t.fire_at or t.due_at)
        if all(f.key != firing.key for f in log):
            log.append(firing)

    # -- the calendar -----------------------------------------------------------------------
    @property
    def calendar(self) -> CalendarSnapshot:
        return self._calendar

    @calendar.setter
    def calendar(self, snapshot: CalendarSnapshot) -> None:
        self._calendar = snapshot
        self.versions[snapshot.revision] = snapshot

    async def read_calendar(self) -> CalendarSnapshot:
        self.calendar_reads += 1
        return self.calendar

    async def read_calendar_version(self, revision: int) -> CalendarSnapshot | None:
        self.version_reads.append(revision)
        return self.versions.get(revision)

    async def change_override(self, day: date, working: bool | None, reason: str,
                              changed_by: str, keep_deadlines: bool) -> int:
        overrides = dict(self.calendar.overrides)
        if working is None:
            overrides.pop(day, None)
        else:
            overrides[day] = working
        self.calendar = CalendarSnapshot(self.calendar.revision + 1, overrides,
                                         self.calendar.confirmed_years)
        return self.calendar.revision

    async def complaints_with_open_clocks(self, since: datetime) -> list[uuid.UUID]:
        return sorted({c.complaint_id for c in self.clocks.values()
                       if c.stopped_at is None and c.deadline >= since})

    async def lock(self, complaint_id: uuid.UUID) -> None:
        pass  # one task: nothing runs concurrently

    # -- the scanner -------------------------------------------------------------------------
    async def claim_due_timers(self, limit: int) -> list[DueTimer]:
        due = sorted((t for t in self.timers.values()
                      if t.pending and t.due_at is not None and (t.fire_at or t.due_at) <= self.now),
                     key=lambda t: t.fire_at or t.due_at or self.now)[:limit]
        out = []
        for t in due:
            assert t.id is not None and t.due_at is not None
            c = self.clocks[t.clock_id]
            if t.kind == "warning" and c.deadline <= self.now:
                t.cancelled_at = self.now
                continue
            t.fired_at = self.now
            self.log_firing(t)
            out.append(DueTimer(t.id, t.kind, t.due_at, 0.0, c.complaint_id, c.clock, c.hop,
                                c.opd_code, c.deadline, c.calendar_version, c.policy_version,
                                c.id, c.started_at, t.point, c.instance))
        return out

    async def mark_stopped(self, clock_id: int, at: datetime, reason: StopReason) -> None:
        if self.clocks[clock_id].stopped_at is None:
            self.clocks[clock_id] = replace(self.clocks[clock_id], stopped_at=at, stop_reason=reason)

    async def open_clock_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self.clocks.values():
            if c.stopped_at is None:
                counts[c.clock] = counts.get(c.clock, 0) + 1
        return counts

    # -- what the tests read -----------------------------------------------------------------
    def clocks_of(self, cid: uuid.UUID) -> dict[tuple[str, int], ClockRow]:
        return {(c.clock, c.hop): c for c in self.clocks.values() if c.complaint_id == cid}

    def timers_of(self, cid: uuid.UUID) -> list[tuple[str, int, Timer]]:
        return [(self.clocks[t.clock_id].clock, self.clocks[t.clock_id].hop, t)
                for t in self.timers.values() if self.clocks[t.clock_id].complaint_id == cid]


class SlaFakeUnitOfWork(FakeUnitOfWork[FakeSlaRepository]):
    """``FakeUnitOfWork`` that hands the open transaction to the repository, as
    ``PgUnitOfWork`` builds ``PgSlaRepository`` on its ``PgTx`` (the claim needs the inbox)."""

    @contextlib.asynccontextmanager
    async def __call__(self, event: CloudEvent | None = None, *,
                       single_statement: bool = False) -> AsyncIterator[FakeTx[FakeSlaRepository]]:
        async with super().__call__(event, single_statement=single_statement) as tx:
            self.repo.tx = tx
            try:
                yield tx
            finally:
                self.repo.tx = None


def submitted(cid: uuid.UUID, received_at: datetime = T0, classification: str = "pengaduan") -> CloudEvent:
    return make_event("test", ComplaintSubmitted(
        complaint_id=cid, tracking_id="SKD-T", source="portal", received_at=received_at,
        accepted_at=received_at, classification=classification,  # type: ignore[arg-type]
        category="jalan", location=Location(kecamatan="Nanga Mahap"), anonymous=False,
        confidential=False, reporter_ref="ref"))


def routed(cid: uuid.UUID, routed_at: datetime, hop: int = 1, opd: str = "PUPR") -> CloudEvent:
    return make_event("test", ComplaintRouted(complaint_id=cid, opd_code=opd, opd_name=opd, hop=hop,
                                              routed_at=routed_at))


def names(events: list[CloudEvent]) -> list[tuple[str, str, int]]:
    return [(e.event_name, e.data["clock"], e.data["hop"]) for e in events]


class Sla:
    def __init__(self) -> None:
        self.repo = FakeSlaRepository()
        self.uow = SlaFakeUnitOfWork(self.repo)
        self.calendars = CalendarSource(WIB)

    async def __call__(self, event: CloudEvent, now: datetime) -> usecases.Outcome:
        return await usecases.on_complaint_event(event, uow=self.uow, calendars=self.calendars,
                                                 now=now)


async def test_submitted_starts_verification_and_completion_with_timers_and_events() -> None:
    sla, cid = Sla(), uuid.uuid4()
    out = await sla(submitted(cid, classification="aspirasi"), T0)
    clocks = sla.repo.clocks_of(cid)
    assert set(clocks) == {("verification", 0), ("completion", 0)}
    v = clocks[("verification", 0)]
    assert v.deadline == VERIFICATION_DEADLINE and v.initial_deadline == VERIFICATION_DEADLINE
    assert v.calendar_version == CALENDAR.version and v.stopped_at is None
    assert clocks[("completion", 0)].policy_key == "completion_aspirasi"
    assert sorted((c, t.kind) for c, _, t in sla.repo.timers_of(cid) if t.pending) == [
        ("completion", "breach"), ("completion", "warning"),
        ("verification", "breach"), ("verification", "warning")]
    assert names(out.events) == [("sla.clock_started", "verification", 0),
                                 ("sla.clock_started", "completion", 0)]
    assert sla.uow.committed_events == out.events and out.alerts == [] and not out.duplicate
    assert (sla.uow.commits, sla.repo.saves) == (1, 1)


async def test_routed_stops_verification_on_time_and_starts_the_opd_clock() -> None:
    sla, cid = Sla(), uuid.uuid4()
    await sla(submitted(cid), T0)
    routed_at = T0 + timedelta(days=2)
    out = await sla(routed(cid, routed_at, opd="DINKES"), routed_at)
    clocks = sla.repo.clocks_of(cid)
    v = clocks[("verification", 0)]
    assert (v.stopped_at, v.stop_reason) == (routed_at, "stopped")
    hop = clocks[("opd_response", 1)]
    assert (hop.opd_code, hop.started_at, hop.stopped_at) == ("DINKES", routed_at, None)
    verification_timers = [t for c, _, t in sla.repo.timers_of(cid) if c == "verification"]
    assert len(verification_timers) == 2 and all(t.cancelled_at == routed_at for t in verification_timers)
    assert {t.kind for c, _, t in sla.repo.timers_of(cid) if c == "opd_response" and t.pending} == {
        "warning", "breach"}
    assert names(out.events) == [("sla.clock_stopped", "verification", 0),
                                 ("sla.clock_started", "opd_response", 1)]
    assert out.events[0].data["on_time"] is True and out.alerts == []


async def test_redelivery_has_no_effect() -> None:
    sla, cid = Sla(), uuid.uuid4()
    event = submitted(cid)
    await sla(event, T0)
    rows = (dict(sla.repo.clocks), dict(sla.repo.timers))
    committed = list(sla.uow.committed_events)
    again = await sla(event, T0)
    assert again.duplicate and again.events == [] and again.alerts == []
    assert (sla.repo.clocks, sla.repo.timers) == rows and sla.uow.committed_events == committed
    assert sla.repo.saves == 1
    # The same complaint re-published under a new event id: the clocks exist, nothing is added.
    out = await sla(submitted(cid), T0)
    assert not out.duplicate and out.events == [] and len(sla.repo.clocks_of(cid)) == 2


async def test_deferred_then_resumed_moves_the_deadlines_by_the_paused_working_days() -> None:
    sla, cid = Sla(), uuid.uuid4()
    await sla(submitted(cid), T0)
    initial = {k: c.deadline for k, c in sla.repo.clocks_of(cid).items()}
    deferred_at, resumed_at = T0 + timedelta(days=1), T0 + timedelta(days=8)

    out = await sla(make_event("test", ComplaintDeferred(complaint_id=cid, deferred_at=deferred_at)),
                    deferred_at)
    # Only DITUNDA's own clock starts (issue 10: it expires by itself); the others pause.
    assert names(out.events) == [("sla.clock_started", "deferral", 0)]
    clocks = sla.repo.clocks_of(cid)
    assert clocks.pop(("deferral", 0)).started_at == deferred_at
    assert all(c.paused_at == deferred_at for c in clocks.values())
    assert [(c, t.kind) for c, _, t in sla.repo.timers_of(cid) if t.pending] == [
        ("deferral", "breach")]

    out = await sla(make_event("test", ComplaintResumed(complaint_id=cid, resumed_at=resumed_at,
                                                        deferred_at=deferred_at)), resumed_at)
    n = CALENDAR.paused_working_days(deferred_at, resumed_at)
    assert n > 0
    clocks = sla.repo.clocks_of(cid)
    for key in (("verification", 0), ("completion", 0)):
        c = clocks[key]
        moved = CALENDAR.move_deadline(initial[key], n)
        assert (c.deadline, c.paused_working_days, c.paused_at) == (moved, n, None)
        pending = sorted((t.kind, t.due_at) for k, _, t in sla.repo.timers_of(cid)
                         if k == key[0] and t.pending)
        assert [k for k, _ in pending] == ["breach", "warning"] and pending[0][1] == moved
    assert names(out.events) == [("sla.clock_stopped", "deferral", 0),
                                 ("sla.clock_started", "verification", 0),
                                 ("sla.clock_started", "completion", 0)]
    assert [datetime.fromisoformat(e.data["deadline"]) for e in out.events[1:]] == [
        CALENDAR.move_deadline(initial[("verification", 0)], n),
        CALENDAR.move_deadline(initial[("completion", 0)], n)]
    assert [(p.deferred_at, p.resumed_at, p.working_days) for p in sla.repo.pauses] == [
        (deferred_at, resumed_at, n)] * 2


async def test_routed_before_submitted_creates_verification_already_stopped() -> None:
    sla, cid = Sla(), uuid.uuid4()
    routed_at = T0 + timedelta(days=1)
    await sla(routed(cid, routed_at), routed_at)
    assert set(sla.repo.clocks_of(cid)) == {("opd_response", 1)}
    out = await sla(submitted(cid), routed_at)
    v = sla.repo.clocks_of(cid)[("verification", 0)]
    assert (v.stopped_at, v.stop_reason) == (routed_at, "stopped")
    assert not [t for c, _, t in sla.repo.timers_of(cid) if c == "verification"]
    assert names(out.events) == [("sla.clock_started", "verification", 0),
                                 ("sla.clock_stopped", "verification", 0),
                                 ("sla.clock_started", "completion", 0)]
    assert out.alerts == []


async def test_late_routed_before_submitted_still_breaches() -> None:
    sla, cid = Sla(), uuid.uuid4()
    routed_at = VERIFICATION_DEADLINE + timedelta(hours=1)
    await sla(routed(cid, routed_at), routed_at)
    out = await sla(submitted(cid), routed_at)
    assert [(a.kind, a.clock) for a in out.alerts] == [("breach", "verification")]
    stopped = [e.data for e in out.events if e.event_name == "sla.clock_stopped"]
    assert [(d["clock"], d["on_time"]) for d in stopped] == [("verification", False)]


async def test_a_failing_save_commits_nothing_and_the_redelivery_is_processed() -> None:
    sla, cid = Sla(), uuid.uuid4()
    event = submitted(cid)
    save = sla.repo.save

    async def failing(state: ComplaintClocks, changes: ClockChanges | None = None) -> None:
        raise RuntimeError("connection lost")

    sla.repo.save = failing  # type: ignore[method-assign]
    with contextlib.suppress(RuntimeError):
        await sla(event, T0)
    assert (sla.uow.rollbacks, sla.uow.committed_events) == (1, [])
    sla.repo.save = save  # type: ignore[method-assign]
    out = await sla(event, T0)
    assert not out.duplicate and len(out.events) == 2


async def test_the_calendar_is_reread_only_when_its_revision_moved() -> None:
    sla = Sla()
    await sla(submitted(uuid.uuid4()), T0)
    await sla(submitted(uuid.uuid4()), T0)
    assert sla.repo.calendar_reads == 1
    closed = CALENDAR.nth_working_day_after(T0.date(), 3)
    sla.repo.calendar = CalendarSnapshot(1, {closed: False})
    cid = uuid.uuid4()
    await sla(submitted(cid), T0)
    assert sla.repo.calendar_reads == 2
    v = sla.repo.clocks_of(cid)[("verification", 0)]
    assert v.calendar_version.endswith("+ovr-1") and v.deadline > VERIFICATION_DEADLINE


async def test_scanner_fires_due_timers_once_and_skips_a_warning_past_its_deadline() -> None:
    sla, cid = Sla(), uuid.uuid4()
    received = datetime.now(UTC) - timedelta(days=31)
    await sla(submitted(cid, received_at=received, classification="aspirasi"), received)
    out = await usecases.fire_due_timers(100, uow=sla.uow)
    assert sorted((a.kind, a.clock) for a in out.alerts) == [("breach", "completion"),
                                                             ("breach", "verification")]
    assert sorted(e.event_name for e in out.events) == ["sla.breached", "sla.breached"]
    warnings = [t for _, _, t in sla.repo.timers_of(cid) if t.kind == "warning"]
    assert all(t.cancelled_at is not None and t.fired_at is None for t in warnings)
    again = await usecases.fire_due_timers(100, uow=sla.uow)
    assert again.events == [] and again.alerts == []
    assert await usecases.open_clock_counts(uow=sla.uow) == {"verification": 1, "completion": 1}


async def test_a_message_after_a_kept_calendar_change_keeps_the_deadlines_it_would_move() -> None:
    """A clock computed under an older calendar version whose deadline the current calendar
    would move (an operator's change with keep_deadlines) keeps its deadline, version and
    timers: its rows are derive's under the version it names, rebuilt from its stored
    content (``test_sla_calendar_versions`` has the rows compared, and the version that
    cannot be rebuilt). A clock started now is derive's under the current version."""
    sla, cid = Sla(), uuid.uuid4()
    await sla(submitted(cid), T0)
    before = sla.repo.clocks_of(cid)
    timers = {(c, t.kind): (t.due_at, t.pending) for c, _, t in sla.repo.timers_of(cid)}
    closed = CALENDAR.nth_working_day_after(T0.date(), 3)
    sla.repo.calendar = CalendarSnapshot(1, {closed: False})
    routed_at = T0 + timedelta(hours=3)
    out = await sla(routed(cid, routed_at), routed_at)
    assert out.drift == []
    after = sla.repo.clocks_of(cid)
    for key in (("verification", 0), ("completion", 0)):  # the closure would move both
        assert (after[key].deadline, after[key].calendar_version) == (
            before[key].deadline, before[key].calendar_version)
    assert after[("verification", 0)].stopped_at == routed_at  # met, as the routing says
    assert {(c, t.kind): (t.due_at, t.pending) for c, _, t in sla.repo.timers_of(cid)
            if c == "completion"} == {k: v for k, v in timers.items() if k[0] == "completion"}
    opd = after[("opd_response", 1)]
    assert opd.calendar_version.endswith("+ovr-1")
    assert opd.deadline == WorkingCalendar(WIB, {closed: False}).deadline(routed_at, 5)
