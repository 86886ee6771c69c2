"""Use cases of the sla service. Collaborators (unit of work, calendar source, clock) come in as
arguments; nothing here knows about the broker, a pool or a transaction. Each use case runs one
unit of work and returns an ``Outcome`` whose events committed with it; the caller records
metrics from it.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Protocol, get_args

import asyncpg

from services.sla import clocks, repository
from services.sla.calendar import WorkingCalendar
from services.sla.calendars import CalendarSource, CalendarStamp, CalendarVersionStore
from services.sla.clocks import (
    CompletionMetBy,
    Fact,
    Ladder,
    LadderStep,
    OfficeHours,
    StopReason,
    validate_points,
)
from services.sla.domain import (
    Alert,
    ClockChanges,
    ComplaintClocks,
    DueTimer,
    derive,
    diff,
    drift,
    fire_timers,
    sources,
    unfounded,
    unlogged,
)
from services.sla.policy import Policy
from shared.events import ClockKind, CloudEvent, EscalationTarget
from shared.uow import Tx

log = logging.getLogger(__name__)

class SlaRepository(CalendarVersionStore, Protocol):
    """What the use cases need of the repository (``repository.PgSlaRepository``)."""

    async def claim(self, complaint_id: uuid.UUID) -> bool: ...

    async def load(self, complaint_id: uuid.UUID, fact: Fact | None,
                   event_id: str) -> tuple[ComplaintClocks, CalendarStamp]: ...

    async def save(self, state: ComplaintClocks,
                   changes: ClockChanges | None = None) -> None: ...

    async def claim_due_timers(self, limit: int) -> list[DueTimer]: ...

    async def mark_stopped(self, clock_id: int, at: datetime, reason: StopReason) -> None: ...

    async def open_clock_counts(self) -> dict[str, int]: ...

    async def clocks_beyond(self, boundary: datetime) -> int: ...

    async def lock(self, complaint_id: uuid.UUID) -> None: ...

    async def change_override(self, day: date, working: bool | None, reason: str,
                              changed_by: str, keep_deadlines: bool) -> int: ...

    async def confirm_year(self, year: int, changed_by: str) -> int: ...

    async def complaints_with_open_clocks(self, since: datetime) -> list[uuid.UUID]: ...


# ``PgUnitOfWork[PgSlaRepository]`` or an in-memory fake: ``async with uow(event) as tx``.
UnitOfWork = Callable[..., contextlib.AbstractAsyncContextManager[Tx[SlaRepository]]]


@dataclass
class Outcome:
    events: list[CloudEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    duplicate: bool = False
    # Clocks ``apply`` decided the events of from a view unlike the rows written (derive's),
    # ``domain.drift``; and clocks of firings it made that the facts say never came due (an
    # alert for a deadline the facts had moved on already), ``domain.unfounded``. Both are
    # sanity checks on the events: empty.
    drift: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)


# -- inbound events ------------------------------------------------------------------------
async def on_complaint_event(event: CloudEvent, *, uow: UnitOfWork, calendars: CalendarSource,
                             now: datetime,
                             completion_met_by: CompletionMetBy = "final_response",
                             office_hours: OfficeHours | None = None) -> Outcome:
    """Apply one lifecycle event to the complaint's clocks: record it as a fact (with the time
    sla recorded it, ``now``), decide its events (``domain.ComplaintClocks.apply``: which
    clocks stop or are cancelled, pause, resume and start, which timers fire at once), then
    write the rows ``domain.derive`` gives from the facts, the calendar, the policies and the
    firing log with this message's firings: the stored clocks, timers and pauses are a cache
    of that function, rewritten where they differ (``domain.diff``), never patched.

    A clock computed under an older calendar version (an operator's change with
    ``keep_deadlines``) is decided and derived under that version, rebuilt from its stored
    content (``CalendarSource.at_version``): its rows are derive's under it. Only a version
    that cannot be rebuilt (another holidays release, no stored content) keeps ``apply``'s
    row where the current calendar would move its deadline (``diff``'s exception).

    Round trips: the inbox record with the complaint lock, one read of the complaint's rows
    (with the fact, the firing log, the calendar revision and the policies), one read per
    older calendar version the clocks name the first time this process sees it (versions
    never change: cached), the decisions and the derivations in memory, one write of the
    difference and the events (staged before ``save``, which writes them in its
    statement)."""
    data = event.parse_data()
    complaint_id = data.complaint_id
    fact = clocks.fact_of(data)
    if fact is not None:
        fact = replace(fact, recorded_at=now)
    async with uow(event) as tx:
        if not await tx.repo.claim(complaint_id):
            return Outcome(duplicate=True)
        state, stamp = await tx.repo.load(complaint_id, fact, event.id)
        calendar, policies = await calendars.resolve(tx.repo, stamp)
        ladders = calendars.ladders(stamp.ladder_rows)
        versions = await _older_calendars(tx.repo, calendars, state, calendar)
        state.apply(fact, calendar, policies, now, completion_met_by, ladders=ladders,
                    office_hours=office_hours, versions=versions)
        drifted, superseded = await _write_derived(
            tx, state, calendar, versions, policies, now, completion_met_by, ladders,
            office_hours)
    return Outcome(state.events, state.alerts, drift=drifted, superseded=superseded)


async def _older_calendars(repo: SlaRepository, calendars: CalendarSource,
                           state: ComplaintClocks,
                           calendar: WorkingCalendar) -> dict[str, WorkingCalendar]:
    """The older calendar versions the complaint's stored clocks name, rebuilt (those that
    cannot be are left out: ``diff`` keeps ``apply``'s rows of their clocks)."""
    out: dict[str, WorkingCalendar] = {}
    for version in sorted(state.older_versions(calendar.version)):
        older = await calendars.at_version(repo, version)
        if older is not None:
            out[version] = older
    return out


async def _write_derived(tx: Tx[SlaRepository], state: ComplaintClocks,
                         calendar: WorkingCalendar, versions: dict[str, WorkingCalendar],
                         policies: dict[str, Policy], now: datetime, met_by: CompletionMetBy,
                         ladders: tuple[Ladder, ...],
                         office_hours: OfficeHours | None) -> tuple[list[str], list[str]]:
    """After a decision (``apply``, ``recompute_deadlines``) has made the events: stage
    them and save the rows ``derive`` gives — under ``calendar`` (the current version),
    and under each rebuilt older version (``versions``) for the clocks the decision leaves
    under it — from the facts, the pinned policies and the firing log with the firings
    the decision made (``domain.diff``; one that gave way to a later deadline at once is kept
    as a fired timer cancelled at once, ``domain.unlogged``). Returns (drift, superseded)
    clock kinds: what the decision decided from a view unlike the rows written
    (``domain.drift``, each clock compared under its own version), and the clocks of its
    firings that the facts say never came due (``domain.unfounded``); both logged."""
    fired = state.firings_made()
    pinned = state.pinned_policies(policies)

    def under(cal: WorkingCalendar) -> ComplaintClocks:
        return derive(state.complaint_id, state.facts, cal, policies, now, met_by,
                      ladders=ladders, office_hours=office_hours, pinned=pinned,
                      firings=state.firings + fired)

    derived = under(calendar)
    older = {version: under(cal) for version, cal in versions.items()}
    # The rows written are derive's by construction; what can still differ is what the
    # decision made (the events, and the firings derive's rows log) from derive's rows:
    # a sanity check on the events, counted by the metric.
    drifted = drift(state, derived, calendar, older=older)
    src = sources(state, derived, calendar, older)
    superseded = [f.clock for f in unfounded(fired, derived, sources=src)]
    if drifted or superseded:
        log.warning("events of %s disagree with the derived clocks: %s", state.complaint_id,
                    ", ".join(sorted(set(drifted + superseded))))
    tx.stage(*state.events)
    await tx.repo.save(state, diff(state, derived, calendar, now,
                                   unlogged(fired, derived, sources=src), older=older))
    return drifted, superseded


# -- timers --------------------------------------------------------------------------------
async def fire_due_timers(batch_size: int, *, uow: UnitOfWork) -> Outcome:
    """Claim due timers, mark them fired and stage their events, in one unit of work."""
    async with uow() as tx:
        firings = fire_timers(await tx.repo.claim_due_timers(batch_size))
        for clock_id, stop in firings.stops:
            await tx.repo.mark_stopped(clock_id, stop.at, stop.reason)
        tx.stage(*firings.events)
    return Outcome(firings.events, firings.alerts)


async def open_clock_counts(*, uow: UnitOfWork) -> dict[str, int]:
    """Running clocks per kind (one statement, no transaction)."""
    async with uow(single_statement=True) as tx:
        return await tx.repo.open_clock_counts()


async def clocks_beyond_coverage(*, uow: UnitOfWork, calendars: CalendarSource) -> int:
    """Running clocks whose deadline lies past the calendar's coverage (the metric)."""
    async with uow() as tx:
        calendar = await calendars.current(tx.repo)
        boundary = datetime.combine(date(calendar.covered_through + 1, 1, 1), time(0),
                                    tzinfo=calendar.tz)
        return await tx.repo.clocks_beyond(boundary)


@dataclass
class CalendarChange:
    revision: int
    moved: int = 0  # deadlines that moved
    complaints: int = 0  # complaints whose clocks were recomputed
    events: list[CloudEvent] = field(default_factory=list)
    # As ``Outcome``'s, over the complaints recomputed (a sanity check on the events).
    drift: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)


async def change_calendar(day: date, working: bool | None, reason: str, changed_by: str, *,
                          keep_deadlines: bool, uow: UnitOfWork, calendars: CalendarSource,
                          now: datetime, completion_met_by: CompletionMetBy = "final_response",
                          office_hours: OfficeHours | None = None) -> CalendarChange:
    """An operator's calendar change (set ``working`` True/False, or None to remove the
    override): a new calendar version recording who and why. By default every running clock
    that the day can move is recomputed against it, one complaint per unit of work (under its
    lock, as a message would): ``ComplaintClocks.recompute_deadlines`` decides the events —
    each moved deadline with ``sla.deadline_changed`` — and the rows written are
    ``derive``'s, as for a message (``domain.diff``): under the new version for the clocks
    it moves (their escalation ladder and quiet hours planned again), under the version each
    other clock names for the rest (a stopped clock keeps the deadline it was judged by).
    ``keep_deadlines`` leaves existing deadlines as computed (they keep their version, and
    the messages that come derive them under it)."""
    if not reason.strip():
        raise ValueError("reason: a calendar change needs a reason (e.g. the decree)")
    if not changed_by.strip():
        raise ValueError("changed_by: say who makes the change")
    async with uow() as tx:
        revision = await tx.repo.change_override(day, working, reason.strip(),
                                                 changed_by.strip(), keep_deadlines)
        calendar = await calendars.current(tx.repo)
        ids = [] if keep_deadlines else await tx.repo.complaints_with_open_clocks(
            datetime.combine(day, time(0), tzinfo=calendar.tz))
    out = CalendarChange(revision)
    for complaint_id in ids:
        async with uow() as tx:
            await tx.repo.lock(complaint_id)
            state, stamp = await tx.repo.load(complaint_id, None, "")
            calendar, policies = await calendars.resolve(tx.repo, stamp)
            ladders = calendars.ladders(stamp.ladder_rows)
            versions = await _older_calendars(tx.repo, calendars, state, calendar)
            moved = state.recompute_deadlines(
                calendar, policies, now, note=reason.strip(), changed_by=changed_by.strip(),
                met_by=completion_met_by, ladders=ladders, office_hours=office_hours)
            drifted, superseded = await _write_derived(
                tx, state, calendar, versions, policies, now, completion_met_by, ladders,
                office_hours)
        out.moved += moved
        out.complaints += 1
        out.events += state.events
        out.drift += drifted
        out.superseded += superseded
    return out


async def confirm_calendar_year(year: int, changed_by: str, *, uow: UnitOfWork) -> int:
    """The operator entered the SKB's cuti bersama of ``year`` as overrides: the calendar
    covers it from now on (a new version). Returns the revision."""
    if not changed_by.strip():
        raise ValueError("changed_by: say who confirms the year")
    async with uow() as tx:
        return await tx.repo.confirm_year(year, changed_by.strip())


# -- operator actions (the CLI calls these) --------------------------------------------------
async def set_calendar_override(conn: asyncpg.Connection, day: date, working: bool,
                                reason: str) -> int:
    """Make ``day`` a working day (``working=True``) or close it; returns the new revision.
    Clocks started afterwards use the new calendar version; existing deadlines stay as they
    were computed (they record the version that produced them)."""
    if not reason.strip():
        raise ValueError("reason: an override needs a reason (e.g. the decree that moved it)")
    return await repository.set_calendar_override(conn, day, working, reason.strip())


async def remove_calendar_override(conn: asyncpg.Connection, day: date) -> int:
    return await repository.delete_calendar_override(conn, day)


def parse_ladder_steps(text: str) -> tuple[LadderStep, ...]:
    """``"0:pejabat_penghubung,2:kepala_opd,5:admin_koordinator"`` → steps, level 1, 2, … in
    order; offsets in working days after the breach, not decreasing."""
    steps = []
    for level, part in enumerate((p.strip() for p in text.split(",") if p.strip()), 1):
        after, _, target = part.partition(":")
        if target not in get_args(EscalationTarget):
            raise ValueError(f"steps: {target!r} is not one of {', '.join(get_args(EscalationTarget))}")
        if not after.isdigit():
            raise ValueError(f"steps: {after!r} is not a number of working days")
        steps.append(LadderStep(level, int(after), target))  # type: ignore[arg-type]  # checked above
    if not steps:
        raise ValueError("steps: give at least one step, e.g. 0:pejabat_penghubung")
    if any(b.after_working_days < a.after_working_days for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError("steps: offsets must not decrease")
    return tuple(steps)


async def set_escalation_ladder(conn: asyncpg.Connection, clock: str, steps: str, *,
                                opd_code: str | None, category: str | None, updated_by: str,
                                reason: str) -> int:
    if clock not in get_args(ClockKind) or clock in ("auto_close", "deferral"):
        raise ValueError(f"clock: {clock!r} has no ladder (one of verification, opd_response,"
                         " completion, redisposition)")
    if not reason.strip():
        raise ValueError("reason: a ladder change needs a reason (e.g. the Perbup)")
    return await repository.set_ladder(conn, clock, opd_code, category, parse_ladder_steps(steps),
                                       updated_by, reason.strip())


async def set_warning_points(conn: asyncpg.Connection, key: str, points: str) -> None:
    parsed = validate_points(tuple(p.strip() for p in points.split(",") if p.strip()))
    await repository.set_policy_points(conn, key, parsed)


__all__ = [
    "Alert", "CalendarChange", "Outcome", "change_calendar", "clocks_beyond_coverage",
    "confirm_calendar_year", "SlaRepository", "UnitOfWork", "fire_due_timers", "on_complaint_event",
    "open_clock_counts", "remove_calendar_override", "set_calendar_override",
]
