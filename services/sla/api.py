"""sla's admin HTTP API, read-only: the escalation ladders, the policies, the calendar's
changes and coverage. Writes are the operator's, with the ``sp4n`` command only (``sp4n
ladder set``, ``policy set``, ``calendar set|remove|confirm``): no admin secret to guard on an
HTTP port, and every change records who made it. The data carries no personal data.
Routes are thin: the pool and the calendar source come from the app's state."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from services.sla import repository
from services.sla.calendar import library_coverage_year
from services.sla.calendars import CalendarSource
from shared.service import PoolDep

router = APIRouter(prefix="/v1", tags=["sla"])


def _calendars(request: Request) -> CalendarSource:
    calendars: CalendarSource = request.app.state.calendars
    return calendars


CalendarsDep = Annotated[CalendarSource, Depends(_calendars)]


@router.get("/ladders")
async def ladders(pool: PoolDep) -> list[dict[str, Any]]:
    """Every escalation ladder with its steps (working days after the breach) and version."""
    async with pool.acquire() as conn:
        return [asdict(x) for x in await repository.list_ladders(conn)]


@router.get("/policies")
async def policies(pool: PoolDep) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        return [asdict(p) for p in sorted((await repository.load_policies(conn)).values(),
                                          key=lambda p: p.key)]


@router.get("/calendar/changes")
async def calendar_changes(pool: PoolDep,
                           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    """Every calendar version's change, newest first: who, why, whether deadlines were kept."""
    async with pool.acquire() as conn:
        return [asdict(c) for c in await repository.list_calendar_changes(conn, limit)]


@router.get("/calendar/coverage")
async def calendar_coverage(pool: PoolDep, calendars: CalendarsDep) -> dict[str, Any]:
    """Up to which year the calendar knows the cuti bersama."""
    async with pool.acquire() as conn:
        snapshot = await repository.read_calendar(conn)

    class _Once:
        async def read_calendar(self) -> repository.CalendarSnapshot:
            return snapshot

    calendar = await calendars.current(_Once())
    return {"covered_through": calendar.covered_through,
            "holidays_package_through": library_coverage_year(),
            "confirmed_years": sorted(snapshot.confirmed_years),
            "calendar_version": calendar.version}
