"""Thin broker handlers: call the use case with its unit of work, count after commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from services.sla import usecases
from services.sla.calendars import CalendarSource
from services.sla.clocks import CompletionMetBy, OfficeHours
from services.sla.metrics import SlaMetrics
from services.sla.usecases import UnitOfWork
from shared.events import CloudEvent
from shared.topology import SLA_COMPLAINTS

# Every event the sla queue binds goes through the one lifecycle use case.
_USE_CASES = {name: usecases.on_complaint_event for name in SLA_COMPLAINTS.routing_keys}


def make_complaint_handler(uow: UnitOfWork, calendars: CalendarSource, metrics: SlaMetrics,
                           completion_met_by: CompletionMetBy = "final_response",
                           office_hours: OfficeHours | None = None,
                           ) -> Callable[[CloudEvent], Awaitable[None]]:
    async def handle_complaint_event(event: CloudEvent) -> None:
        use_case = _USE_CASES.get(event.event_name)
        if use_case is None:
            return  # bound by mistake or a newer family member: not ours
        outcome = await use_case(event, uow=uow, calendars=calendars, now=datetime.now(UTC),
                                 completion_met_by=completion_met_by,
                                 office_hours=office_hours)
        metrics.record(outcome)

    return handle_complaint_event
