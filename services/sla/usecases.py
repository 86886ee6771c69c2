"""Use cases of the sla service. Collaborators (connection, calendar source, clock) come in as
arguments; nothing here knows about the broker. Each use case runs inside the caller's
transaction and returns an ``Outcome`` whose events are already in the outbox; the caller
records metrics from it after commit.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime

import asyncpg

from services.sla import clocks, repository as repo
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import ClockStart, ClockStop, Deadline, TimerKind
from services.sla.policy import Policy
from services.sla.repository import CalendarSource, ClockRow, ComplaintClocks, DueTimer
from shared.events import (
    CloudEvent,
    ComplaintReopened,
    ComplaintSubmitted,
    SlaBreached,
    SlaClockStarted,
    SlaClockStopped,
    SlaReplyWindowElapsed,
    SlaWarning,
    make_event,
)
from shared.outbox import add_to_outbox

log = logging.getLogger(__name__)
SOURCE = "sp4n/sla"


@dataclass(frozen=True)
class Alert:
    kind: str  # "warning" | "breach" | "elapsed" (the reply window; not an SLA alert)
    clock: str
    opd_code: str | None
    lag_s: float | None = None  # set only for scanner-detected timers


@dataclass
class Outcome:
    events: list[CloudEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    duplicate: bool = False


# -- inbound events ------------------------------------------------------------------------
async def on_complaint_event(conn: asyncpg.Connection, event: CloudEvent,
                             calendars: CalendarSource, now: datetime) -> Outcome:
    """Apply one lifecycle event to the complaint's clocks: record it as a fact, stop or cancel
    the running clocks it ends, pause or resume, then start the clocks it starts (each created
    already stopped/paused/moved if later facts arrived first).

    Round trips: the inbox record with the complaint lock, one read of the complaint's clocks
    (with the fact, the calendar revision and the policies), the decisions in memory, one write
    of every change and event (see ``repository.ComplaintClocks``)."""
    data = event.parse_data()
    complaint_id = data.complaint_id
    if not await repo.claim_event(conn, event.id, event.type, complaint_id):
        return Outcome(duplicate=True)
    fact = clocks.fact_of(data)
    state = await repo.load_clocks(conn, complaint_id, fact, event.id,
                                   with_pauses=fact is not None
                                   and fact.kind in ("deferred", "resumed"))
    calendar = await calendars.at_revision(conn, state.calendar_revision)
    policies = calendars.policies(state.policy_rows)
    out = Outcome()
    if fact is not None:
        for row in state.open_clocks():
            stop = clocks.stop_for(row.clock, row.hop, row.started_at, [fact])
            if stop is not None:
                _stop_clock(state, row, stop, calendar, now, out)
        if fact.kind == "deferred":
            _pause(state, fact.at, now)
        elif fact.kind == "resumed" and fact.deferred_at is not None:
            _resume(state, fact.deferred_at, fact.at, calendar, now, out)
    for start in clocks.starts_on(data):
        _start_clock(state, policies, start, calendar, now, out)
    if isinstance(data, (ComplaintSubmitted, ComplaintReopened)):
        _start_reopened_completions(state, policies, calendar, now, out)
    await state.save(conn, out.events)
    return out


# The former per-event entry points (tests and tools call them).
on_complaint_submitted = on_complaint_event
on_complaint_routed = on_complaint_event


def _start_clock(state: ComplaintClocks, policies: dict[str, Policy], start: ClockStart,
                 calendar: WorkingCalendar, now: datetime, out: Outcome) -> None:
    complaint_id = state.complaint_id
    policy = policies[start.policy_key]
    if start.clock == "auto_close":
        initial = clocks.auto_close_deadline(start.started_at, policy, calendar)
    else:
        initial = clocks.compute_deadline(start.started_at, policy, calendar)
    clock_id = state.insert_clock(start, initial)
    if clock_id is None:
        log.info("clock %s/%s/%s already exists for %s", start.clock, start.hop, start.instance,
                 complaint_id)
        return

    # Facts that arrived first (reordered events): a stop, DITUNDA periods.
    facts = state.facts
    stop = clocks.stop_for(start.clock, start.hop, start.started_at, facts)
    deadline, paused_at = initial, None
    total_paused = 0
    for pause in clocks.pauses_for(start.clock, start.started_at, stop, facts):
        if pause.resumed_at is None:
            paused_at = pause.deferred_at
            continue
        n = calendar.paused_working_days(pause.deferred_at, pause.resumed_at)
        total_paused += n
        moved = clocks.resumed_deadline(initial, total_paused, calendar)
        state.record_pause(clock_id, pause.deferred_at, pause.resumed_at, n, deadline.deadline,
                           moved)
        deadline = moved
    if paused_at is not None and any(p.resumed_at is not None and p.deferred_at > paused_at
                                     for p in clocks.pauses_for(start.clock, start.started_at,
                                                                stop, facts)):
        paused_at = None  # an unmatched deferral older than a completed one: stale, ignore
    if deadline is not initial or paused_at is not None:
        state.set_recomputed_deadline(clock_id, deadline, total_paused, paused_at)
    _started_event(out, complaint_id, start.clock, start.hop, start.opd_code, start.started_at,
                   deadline)

    judged = deadline.deadline
    if stop is not None:
        judged = clocks.deadline_at(deadline.deadline, paused_at, stop.at, calendar)
    if start.clock == "auto_close":
        plans = clocks.auto_close_timers(deadline, now, stop)
    elif stop is not None:
        plans = clocks.initial_timers(replace(deadline, deadline=judged), now, stop)
    elif paused_at is not None:
        plans = []  # DITUNDA: timers come with the resume
    else:
        plans = clocks.initial_timers(deadline, now, None)
    for plan in plans:
        state.insert_timer(clock_id, plan.kind, plan.due_at,
                           fired_at=now if plan.fire_now else None)
        if plan.fire_now and plan.kind == "elapse":
            _elapsed(out, complaint_id, start.hop, start.opd_code, start.started_at, deadline)
            stop = ClockStop(start.clock, start.hop, deadline.deadline, "stopped")
        elif plan.fire_now:
            _alert(out, SlaBreached, complaint_id, start.clock, start.hop, start.opd_code,
                   replace(deadline, deadline=judged), plan.due_at)
    if stop is not None:
        state.mark_stopped(clock_id, stop.at, stop.reason)
        _stopped_event(out, complaint_id, start.clock, start.hop, start.opd_code, stop, judged)


def _start_reopened_completions(state: ComplaintClocks, policies: dict[str, Policy],
                                calendar: WorkingCalendar, now: datetime, out: Outcome) -> None:
    """One completion instance per reopen (banding), numbered 1, 2, … in the order sla learns of
    them; a reopen re-published under a new event id (same ``reopened_at``) adds nothing.
    Needs the first instance for the classification's policy: a reopen that arrives before
    ``complaint.submitted`` is started when the submission arrives."""
    existing = state.clocks_of_kind("completion")
    first = next((c for c in existing if c.hop == 0), None)
    if first is None:
        return
    started = {c.started_at for c in existing}
    next_instance = max(c.hop for c in existing) + 1
    for fact in state.facts:
        if fact.kind != "reopened" or fact.at in started:
            continue
        _start_clock(state, policies,
                     clocks.reopened_completion(first.policy_key, fact.at, next_instance),
                     calendar, now, out)
        started.add(fact.at)
        next_instance += 1


def _stop_clock(state: ComplaintClocks, row: ClockRow, stop: ClockStop,
                calendar: WorkingCalendar, now: datetime, out: Outcome) -> None:
    """Stop or cancel a running clock (locked by the caller). A late stop fires the breach if it
    has not fired; a reply window that elapsed before the stop fires its elapse instead."""
    if row.stopped_at is not None:
        return
    pending, fired = state.live_timer_kinds(row.id)
    judged = clocks.deadline_at(row.deadline, row.paused_at, stop.at, calendar)
    if row.clock == "auto_close":
        if stop.at > row.deadline:
            if "elapse" not in fired:
                _fire(state, row.id, "elapse", row.deadline, pending, now)
                _elapsed(out, row.complaint_id, row.hop, row.opd_code, row.started_at,
                         row.deadline_record())
            stop = ClockStop(stop.clock, stop.hop, row.deadline, "stopped")
    else:
        decision = clocks.stop_decision(judged, stop.at, breach_pending="breach" not in fired)
        if decision.fire_breach:
            _fire(state, row.id, "breach", judged, pending, now)
            _alert(out, SlaBreached, row.complaint_id, row.clock, row.hop, row.opd_code,
                   replace(row.deadline_record(), deadline=judged), judged)
    state.cancel_pending_timers(row.id, now)
    state.mark_stopped(row.id, stop.at, stop.reason)
    _stopped_event(out, row.complaint_id, row.clock, row.hop, row.opd_code, stop, judged)


def _fire(state: ComplaintClocks, clock_id: int, kind: TimerKind, due_at: datetime,
          pending: set[str], now: datetime) -> None:
    if kind in pending:
        state.fire_timer(clock_id, kind, now)
    else:  # paused (timers cancelled) or never had one: record the firing
        state.insert_timer(clock_id, kind, due_at, fired_at=now)


def _pause(state: ComplaintClocks, deferred_at: datetime, now: datetime) -> None:
    """DITUNDA: the clocks waiting on the reporter that run at ``deferred_at`` pause; their
    pending timers are cancelled (the resume makes new ones)."""
    for row in state.open_clocks():
        if row.clock not in clocks.PAUSABLE or row.started_at > deferred_at \
                or row.paused_at is not None:
            continue
        if state.pause_applied(row.id, deferred_at):
            continue  # its resume arrived first and has been applied
        state.cancel_pending_timers(row.id, now)
        state.set_paused(row.id, deferred_at)


def _resume(state: ComplaintClocks, deferred_at: datetime, resumed_at: datetime,
            calendar: WorkingCalendar, now: datetime, out: Outcome) -> None:
    """The paused clocks run again: deadline = initial deadline moved later by all working days
    paused so far; new timers; a new ``sla.clock_started`` carries the moved deadline."""
    complaint_id = state.complaint_id
    facts = state.facts
    for row in state.open_clocks():
        if row.clock not in clocks.PAUSABLE or row.started_at > deferred_at:
            continue
        if state.pause_applied(row.id, deferred_at):
            continue
        n = calendar.paused_working_days(deferred_at, resumed_at)
        total = row.paused_working_days + n
        moved = clocks.resumed_deadline(row.initial_deadline_record(), total, calendar)
        state.cancel_pending_timers(row.id, now)  # the deferral may not be seen yet
        state.record_pause(row.id, deferred_at, resumed_at, n, row.deadline, moved)
        # A later deferral processed before this resume keeps the clock paused.
        later = [p for p in clocks.pauses_for(row.clock, resumed_at, None, facts)
                 if p.resumed_at is None]
        paused_at = later[-1].deferred_at if later else None
        state.set_recomputed_deadline(row.id, moved, total, paused_at)
        _started_event(out, complaint_id, row.clock, row.hop, row.opd_code, row.started_at, moved)
        if paused_at is not None:
            continue
        _, fired = state.live_timer_kinds(row.id)
        for plan in clocks.resumed_timers(moved, now, fired):
            state.insert_timer(row.id, plan.kind, plan.due_at,
                               fired_at=now if plan.fire_now else None)
            if plan.fire_now:
                _alert(out, SlaBreached, complaint_id, row.clock, row.hop, row.opd_code, moved,
                       plan.due_at)


def _started_event(out: Outcome, complaint_id: uuid.UUID, clock: str, hop: int,
                   opd_code: str | None, started_at: datetime, deadline: Deadline) -> None:
    out.events.append(make_event(SOURCE, SlaClockStarted(
        complaint_id=complaint_id, clock=clock, hop=hop, opd_code=opd_code,  # type: ignore[arg-type]
        started_at=started_at, working_days=deadline.working_days,
        deadline=deadline.deadline, warn_at=deadline.warn_at,
        calendar_version=deadline.calendar_version, policy_version=deadline.policy_version)))


def _elapsed(out: Outcome, complaint_id: uuid.UUID, hop: int, opd_code: str | None,
             responded_at: datetime, deadline: Deadline, lag_s: float | None = None) -> None:
    out.events.append(make_event(SOURCE, SlaReplyWindowElapsed(
        complaint_id=complaint_id, responded_at=responded_at, deadline=deadline.deadline,
        opd_code=opd_code, hop=hop, calendar_version=deadline.calendar_version,
        policy_version=deadline.policy_version)))
    out.alerts.append(Alert("elapsed", "auto_close", opd_code, lag_s))


def _stopped_event(out: Outcome, complaint_id: uuid.UUID, clock: str, hop: int,
                   opd_code: str | None, stop: ClockStop, deadline: datetime) -> None:
    out.events.append(make_event(SOURCE, SlaClockStopped(
        complaint_id=complaint_id, clock=clock, hop=hop, opd_code=opd_code,  # type: ignore[arg-type]
        stopped_at=stop.at, deadline=deadline, on_time=stop.at <= deadline, reason=stop.reason)))


def _alert(out: Outcome, model: type[SlaWarning] | type[SlaBreached], complaint_id: uuid.UUID,
           clock: str, hop: int, opd_code: str | None, deadline: Deadline, due_at: datetime,
           lag_s: float | None = None) -> None:
    out.events.append(make_event(SOURCE, model(
        complaint_id=complaint_id, clock=clock, hop=hop, opd_code=opd_code,  # type: ignore[arg-type]
        deadline=deadline.deadline, due_at=due_at, calendar_version=deadline.calendar_version,
        policy_version=deadline.policy_version)))
    out.alerts.append(Alert("breach" if model is SlaBreached else "warning", clock, opd_code, lag_s))


# -- timers --------------------------------------------------------------------------------
async def fire_due_timers(conn: asyncpg.Connection, batch_size: int) -> Outcome:
    """Claim due timers, mark them fired and stage their events, in the caller's transaction."""
    out = Outcome()
    due: list[DueTimer] = await repo.claim_due_timers(conn, batch_size)
    for t in due:
        deadline = Deadline(0, t.deadline, None, t.calendar_version, t.policy_version)
        if t.kind == "elapse":
            # The reply window is over: intake closes (closed_by system); the clock is done.
            assert t.started_at is not None
            _elapsed(out, t.complaint_id, t.hop, t.opd_code, t.started_at, deadline, t.lag_s)
            stop = ClockStop("auto_close", t.hop, t.deadline, "stopped")
            await repo.mark_stopped(conn, t.clock_id, stop.at, stop.reason)
            _stopped_event(out, t.complaint_id, t.clock, t.hop, t.opd_code, stop, t.deadline)
            continue
        _alert(out, SlaBreached if t.kind == "breach" else SlaWarning, t.complaint_id, t.clock,
               t.hop, t.opd_code,
               Deadline(0, t.deadline, None, t.calendar_version, t.policy_version), t.due_at,
               lag_s=t.lag_s)
    await add_to_outbox(conn, *out.events)
    return out


# -- operator actions (the CLI calls these) --------------------------------------------------
async def set_calendar_override(conn: asyncpg.Connection, day: date, working: bool,
                                reason: str) -> int:
    """Make ``day`` a working day (``working=True``) or close it; returns the new revision.
    Clocks started afterwards use the new calendar version; existing deadlines stay as they
    were computed (they record the version that produced them)."""
    if not reason.strip():
        raise ValueError("reason: an override needs a reason (e.g. the decree that moved it)")
    return await repo.set_calendar_override(conn, day, working, reason.strip())


async def remove_calendar_override(conn: asyncpg.Connection, day: date) -> int:
    return await repo.delete_calendar_override(conn, day)


__all__ = [
    "Alert", "ClockRow", "Outcome", "fire_due_timers", "on_complaint_event", "on_complaint_routed",
    "on_complaint_submitted", "remove_calendar_override", "set_calendar_override",
]
