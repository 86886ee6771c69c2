"""Use cases of the sla service. Collaborators (connection, calendar source, clock) come in as
arguments; nothing here knows about the broker. Each use case runs inside the caller's
transaction and returns an ``Outcome`` whose events are already in the outbox; the caller
records metrics from it after commit.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

import asyncpg

from services.sla import clocks, repository as repo
from services.sla.clocks import ClockStart, ClockStop, Deadline
from services.sla.repository import CalendarSource, ClockRow, DueTimer
from shared.events import (
    CloudEvent,
    ComplaintRouted,
    ComplaintSubmitted,
    SlaBreached,
    SlaClockStarted,
    SlaClockStopped,
    SlaWarning,
    make_event,
)
from shared.inbox import first_delivery
from shared.outbox import add_to_outbox

log = logging.getLogger(__name__)
SOURCE = "sp4n/sla"


@dataclass(frozen=True)
class Alert:
    kind: str  # "warning" | "breach"
    clock: str
    opd_code: str | None
    lag_s: float | None = None  # set only for scanner-detected timers


@dataclass
class Outcome:
    events: list[CloudEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    duplicate: bool = False


# -- inbound events ------------------------------------------------------------------------
async def on_complaint_submitted(conn: asyncpg.Connection, event: CloudEvent,
                                 calendars: CalendarSource, now: datetime) -> Outcome:
    if not await first_delivery(conn, event):
        return Outcome(duplicate=True)
    data = event.parse_data()
    assert isinstance(data, ComplaintSubmitted)
    await repo.lock_complaint(conn, data.complaint_id)
    out = Outcome()
    for start in clocks.starts_on_submission(data):
        await _start_clock(conn, data.complaint_id, start, calendars, now, out)
    await add_to_outbox(conn, *out.events)
    return out


async def on_complaint_routed(conn: asyncpg.Connection, event: CloudEvent,
                              calendars: CalendarSource, now: datetime) -> Outcome:
    if not await first_delivery(conn, event):
        return Outcome(duplicate=True)
    data = event.parse_data()
    assert isinstance(data, ComplaintRouted)
    await repo.lock_complaint(conn, data.complaint_id)
    plan = clocks.plan_routing(data)
    out = Outcome()
    await _stop_clock(conn, data.complaint_id, plan.stop_verification, now, out)
    for previous in await repo.open_clocks_before_hop(conn, data.complaint_id, "opd_response",
                                                      data.hop):
        await _stop_clock(conn, data.complaint_id,
                          ClockStop("opd_response", previous.hop, plan.cancel_previous_hops_at,
                                    "cancelled"), now, out)
    await _start_clock(conn, data.complaint_id, plan.start, calendars, now, out)
    await add_to_outbox(conn, *out.events)
    return out


async def _start_clock(conn: asyncpg.Connection, complaint_id: uuid.UUID, start: ClockStart,
                       calendars: CalendarSource, now: datetime, out: Outcome) -> None:
    policies = await repo.load_policies(conn)
    policy = policies[start.policy_key]
    calendar = await calendars.current(conn)
    deadline = clocks.compute_deadline(start.started_at, policy, calendar)
    clock_id = await repo.insert_clock(conn, complaint_id, start, deadline)
    if clock_id is None:
        log.info("clock %s/%s already exists for %s", start.clock, start.hop, complaint_id)
        return
    out.events.append(make_event(SOURCE, SlaClockStarted(
        complaint_id=complaint_id, clock=start.clock, hop=start.hop, opd_code=start.opd_code,
        started_at=start.started_at, working_days=deadline.working_days,
        deadline=deadline.deadline, warn_at=deadline.warn_at,
        calendar_version=deadline.calendar_version, policy_version=deadline.policy_version)))

    # A stop that arrived first (reordered events), or a later hop that supersedes this one.
    stop = await repo.early_stop(conn, complaint_id, start.clock, start.hop)
    if start.clock == "opd_response":
        superseded_at = await repo.first_start_after_hop(conn, complaint_id, start.clock, start.hop)
        if superseded_at is not None:
            stop = clocks.earliest_stop(stop, ClockStop(start.clock, start.hop, superseded_at,
                                                        "cancelled"))
    for plan in clocks.initial_timers(deadline, now, stop):
        await repo.insert_timer(conn, clock_id, plan.kind, plan.due_at,
                                fired_at=now if plan.fire_now else None)
        if plan.fire_now:
            _alert(out, SlaBreached, complaint_id, start.clock, start.hop, start.opd_code,
                   deadline, plan.due_at)
    if stop is not None:
        await repo.mark_stopped(conn, clock_id, stop.at, stop.reason)
        _stopped_event(out, complaint_id, start.clock, start.hop, start.opd_code, stop,
                       deadline.deadline)


async def _stop_clock(conn: asyncpg.Connection, complaint_id: uuid.UUID, stop: ClockStop,
                      now: datetime, out: Outcome) -> None:
    row = await repo.clock_for_update(conn, complaint_id, stop.clock, stop.hop)
    if row is None:
        await repo.record_early_stop(conn, complaint_id, stop)
        return
    if row.stopped_at is not None:
        return
    pending = await repo.pending_timer_kinds(conn, row.id)
    decision = clocks.stop_decision(row.deadline, stop.at, breach_pending="breach" in pending)
    if decision.fire_breach:
        await repo.fire_timer(conn, row.id, "breach", now)
        _alert(out, SlaBreached, complaint_id, row.clock, row.hop, row.opd_code,
               row.deadline_record(), row.deadline)
    await repo.cancel_pending_timers(conn, row.id, now)
    await repo.mark_stopped(conn, row.id, stop.at, stop.reason)
    _stopped_event(out, complaint_id, row.clock, row.hop, row.opd_code, stop, row.deadline)


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
    "Alert", "ClockRow", "Outcome", "fire_due_timers", "on_complaint_routed",
    "on_complaint_submitted", "remove_calendar_override", "set_calendar_override",
]
