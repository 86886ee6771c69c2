"""``GET /v1/reports/kinerja``: the report as JSON, CSV or XLSX. Thin: authenticate, parse the
query, call the use case, shape the answer. The format is the ``format`` parameter when
given, else the ``Accept`` header (``text/csv``, the XLSX media type), else JSON.

No ``from __future__ import annotations``: FastAPI reads the annotations at definition time."""

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from services.intake.api import Key, actor_of, no_nul_parameters
from services.intake.auth import require
from services.intake.domain.complaint import OutOfScope
from services.intake.errors import ApiError
from services.intake.reports.context import ReportsContext
from services.intake.reports.domain import month_range
from services.intake.reports.export import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE, to_csv, to_json, to_xlsx
from services.intake.reports.model import Attribution, GroupBy, ReportQuery
from services.intake.reports.usecases import kinerja_report

router = APIRouter(prefix="/v1/reports", tags=["reports"], dependencies=[Depends(no_nul_parameters)])
Format = Literal["json", "csv", "xlsx"]
MAX_DAYS = 3660


def reports_context(request: Request) -> ReportsContext:
    ctx: ReportsContext = request.app.state.reports
    return ctx


Reports = Annotated[ReportsContext, Depends(reports_context)]


def negotiate(fmt: str | None, accept: str) -> str:
    if fmt:
        return fmt
    accept = accept.lower()
    if XLSX_MEDIA_TYPE in accept:
        return "xlsx"
    if CSV_MEDIA_TYPE in accept:
        return "csv"
    return "json"


def period(date_from: date | None, date_to: date | None, month: str | None) -> tuple[date, date]:
    if month is not None:
        try:
            return month_range(month)
        except ValueError as exc:
            raise ApiError(422, "validation_failed", "Data permintaan tidak valid.",
                           errors=[{"field": "month", "reason": "format YYYY-MM"}]) from exc
    missing = [n for n, v in (("from", date_from), ("to", date_to)) if v is None]
    if missing:
        raise ApiError(422, "validation_failed", "Sebutkan periode: from dan to, atau month.",
                       errors=[{"field": n, "reason": "Field required"} for n in missing])
    assert date_from is not None and date_to is not None
    if date_to < date_from or (date_to - date_from).days > MAX_DAYS:
        raise ApiError(422, "validation_failed", "Periode tidak valid.",
                       errors=[{"field": "to", "reason": "to must be on or after from, "
                                                         f"at most {MAX_DAYS} days later"}])
    return date_from, date_to


@router.get("/kinerja", name="kinerja_report",
            responses={200: {"description": "the report (JSON; CSV or XLSX by `format` or `Accept`)",
                             "content": {CSV_MEDIA_TYPE: {}, XLSX_MEDIA_TYPE: {}}},
                       403: {"description": "a portal key, or an OPD key asking for another OPD"},
                       422: {"description": "invalid period or parameter"}})
async def kinerja(
    request: Request,
    api: Key,
    ctx: Reports,
    date_from: Annotated[date | None, Query(alias="from")] = None,
    date_to: Annotated[date | None, Query(alias="to")] = None,
    month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
    opd: Annotated[str | None, Query(max_length=40)] = None,
    group_by: GroupBy = "opd",
    attribution: Attribution = "event",
    format: Format | None = None,  # noqa: A002 - the documented parameter name
) -> Response:
    """Tingkat tindak lanjut, tingkat penyelesaian and ketepatan waktu per OPD (or category,
    kecamatan, source, classification) for a period of local dates, both ends included."""
    require(api, "complaints:read")
    start, end = period(date_from, date_to, month)
    q = ReportQuery(date_from=start, date_to=end, opd=opd, group_by=group_by, attribution=attribution)
    try:
        report = await kinerja_report(
            ctx.uow, q, actor_of(api), calendar=ctx.calendar, now=datetime.now(UTC),
            target_on_time_rate=ctx.cfg.target_on_time_rate)
    except OutOfScope as exc:
        extra: dict[str, Any] = {"field": exc.field} if exc.field else {}
        raise ApiError(403, "forbidden", str(exc), **extra) from exc
    chosen = negotiate(format, request.headers.get("accept", ""))
    name = f"kinerja-{start:%Y%m%d}-{end:%Y%m%d}"
    if chosen == "csv":
        return Response(to_csv(report), media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    if chosen == "xlsx":
        return Response(to_xlsx(report, ctx.cfg.region_name), media_type=XLSX_MEDIA_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    return JSONResponse(to_json(report))


__all__ = ["router"]
