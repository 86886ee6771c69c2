"""Use cases of the sla service. Collaborators (unit of work, calendar source, clock) come in as
arguments; nothing here knows about the broker, a pool or a transaction. Each use case runs one
unit of work and returns an ``Outcome`` whose events committed with it; the caller records
metrics from it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

import asyncpg

from services.sla import clocks, repository
from services.sla.calendars import CalendarSource, CalendarStamp, CalendarStore
from services.sla.clocks import CompletionMetBy, Fact, OfficeHours, StopReason
from services.sla.domain import Alert, ComplaintClocks, DueTimer, fire_timers
from shared.events import CloudEvent
from shared.uow import Tx


class SlaRepository(CalendarStore, Protocol):
    """What the use cases need of the repository (``repository.PgSlaRepository``)."""

    async def claim(self, complaint_id: uuid.UUID) -> bool: ...

    async def load(self, complaint_id: uuid.UUID, fact: Fact | None, event_id: str, *,
                   with_pauses: bool) -> tuple[ComplaintClocks, CalendarStamp]: ...

    async def save(self, state: ComplaintClocks) -> None: ...

    async def claim_due_timers(self, limit: int) -> list[DueTimer]: ...

    async def mark_stopped(self, clock_id: int, at: datetime, reason: StopReason) -> None: ...

    async def open_clock_counts(self) -> dict[str, int]: ...


# ``PgUnitOfWork[PgSlaRepository]`` or an in-memory fake: ``async with uow(event) as tx``.
UnitOfWork = Callable[..., contextlib.AbstractAsyncContextManager[Tx[SlaRepository]]]


@dataclass
class Outcome:
    events: list[CloudEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    duplicate: bool = False


# -- inbound events ------------------------------------------------------------------------
async def on_complaint_event(event: CloudEvent, *, uow: UnitOfWork, calendars: CalendarSource,
                             now: datetime,
                             completion_met_by: CompletionMetBy = "final_response",
                             office_hours: OfficeHours | None = None) -> Outcome:
    """Apply one lifecycle event to the complaint's clocks (``domain.ComplaintClocks.apply``):
    record it as a fact, stop or cancel the running clocks it ends, pause or resume, then start
    the clocks it starts.

    Round trips: the inbox record with the complaint lock, one read of the complaint's clocks
    (with the fact, the calendar revision and the policies), the decisions in memory, one write
    of every change and event (the events are staged before ``save``, which writes them in its
    statement)."""
    data = event.parse_data()
    complaint_id = data.complaint_id
    fact = clocks.fact_of(data)
    async with uow(event) as tx:
        if not await tx.repo.claim(complaint_id):
            return Outcome(duplicate=True)
        state, stamp = await tx.repo.load(
            complaint_id, fact, event.id,
            with_pauses=fact is not None and fact.kind in ("deferred", "resumed"))
        calendar, policies = await calendars.resolve(tx.repo, stamp)
        state.apply(data, fact, calendar, policies, now, completion_met_by,
                    ladders=calendars.ladders(stamp.ladder_rows), office_hours=office_hours)
        tx.stage(*state.events)
        await tx.repo.save(state)
    return Outcome(state.events, state.alerts)


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


__all__ = [
    "Alert", "Outcome", "SlaRepository", "UnitOfWork", "fire_due_timers", "on_complaint_event",
    "open_clock_counts", "remove_calendar_override", "set_calendar_override",
]
