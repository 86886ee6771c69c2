"""Composition root of the sla service."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from fastapi import FastAPI

from services.sla.api import router
from services.sla.calendars import CalendarSource
from services.sla.clocks import OfficeHours
from services.sla.handlers import make_complaint_handler
from services.sla.metrics import SlaMetrics
from services.sla.repository import PgSlaRepository
from services.sla.scanner import make_timer_loop
from shared.service import ServiceRuntime
from shared.settings import Settings
from shared.topology import SLA_COMPLAINTS
from shared.uow import PgUnitOfWork

MIGRATIONS = Path(__file__).parent / "migrations"


def office_hours(settings: Settings) -> OfficeHours | None:
    """Quiet hours as configured (None: off). The handler and the CLI's calendar change use
    the same, so a calendar change plans staff alerts as a message would."""
    sla = settings.sla
    return (OfficeHours(time.fromisoformat(sla.office_opens), time.fromisoformat(sla.office_closes))
            if sla.quiet_hours else None)


def build_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime("sla", settings, MIGRATIONS,
                             title="sp4n sla — working-day deadlines, warnings and breaches")
    metrics = SlaMetrics(runtime.registry)
    calendars = CalendarSource(settings.tz)
    uow = PgUnitOfWork(lambda: runtime.pool, PgSlaRepository)
    runtime.consume(SLA_COMPLAINTS, make_complaint_handler(
        uow, calendars, metrics, settings.sla.completion_met_by, office_hours(settings)))
    runtime.add_loop(make_timer_loop(uow, metrics, settings, calendars))
    runtime.app.include_router(router)
    runtime.app.state.runtime = runtime
    runtime.app.state.calendars = calendars
    return runtime.app
