"""The report use case: who may see which OPD's numbers, then the definitions (``domain``)
over the facts the repository reads (``uow.read()``: no transaction)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import Protocol

from services.intake.domain.complaint import Actor, OutOfScope
from services.intake.reports.domain import build_rows
from services.intake.reports.model import KinerjaReport, ReportQuery
from services.intake.reports.repository import ReportRepository
from services.intake.reports.workdays import WorkCalendar

DEFAULT_TARGET_ON_TIME_RATE = 90.0


class ReportUnitOfWork(Protocol):
    def read(self) -> AbstractAsyncContextManager[ReportRepository]: ...


def scoped_query(actor: Actor, q: ReportQuery) -> ReportQuery:
    """The admin koordinator sees every OPD; an OPD key only its own (another OPD's → 403);
    portal keys see no report."""
    if actor.role == "admin_koordinator":
        return q
    if actor.role == "opd":
        if q.opd is not None and q.opd != actor.opd_code:
            raise OutOfScope(f"kunci API ini hanya untuk OPD '{actor.opd_code}'", field="opd")
        return replace(q, opd=actor.opd_code)
    raise OutOfScope("laporan kinerja hanya untuk admin koordinator dan OPD")


async def kinerja_report(uow: ReportUnitOfWork, query: ReportQuery, actor: Actor, *,
                         calendar: WorkCalendar, now: datetime,
                         target_on_time_rate: float = DEFAULT_TARGET_ON_TIME_RATE) -> KinerjaReport:
    """The per-group rows, totals and overdue list of ``query`` as ``actor`` may see them.
    Raises ``OutOfScope`` (403)."""
    q = scoped_query(actor, query)
    start = datetime.combine(q.date_from, time(), calendar.tz)
    end = datetime.combine(q.date_to + timedelta(days=1), time(), calendar.tz)
    async with uow.read() as repo:
        facts = await repo.complaint_facts(start, end, opd=q.opd)
    rows, totals, overdue = build_rows(facts, q, calendar, now)
    return KinerjaReport(query=q, generated_at=now, rows=rows, totals=totals, overdue=overdue,
                         target_on_time_rate=target_on_time_rate)
