"""Thin broker handlers: parse, open a transaction, call the use case, count after commit."""

from __future__ import annotations

from datetime import datetime, timezone

from services.sla import usecases
from services.sla.metrics import SlaMetrics
from services.sla.repository import CalendarSource
from shared.events import CloudEvent

from shared.topology import SLA_COMPLAINTS

# Every event the sla queue binds goes through the one lifecycle use case.
_USE_CASES = {name: usecases.on_complaint_event for name in SLA_COMPLAINTS.routing_keys}


def make_complaint_handler(runtime, calendars: CalendarSource, metrics: SlaMetrics):
    async def handle_complaint_event(event: CloudEvent) -> None:
        use_case = _USE_CASES.get(event.event_name)
        if use_case is None:
            return  # bound by mistake or a newer family member: not ours
        async with runtime.pool.acquire() as conn:
            async with conn.transaction():
                outcome = await use_case(conn, event, calendars, datetime.now(timezone.utc))
        metrics.record(outcome)

    return handle_complaint_event
