"""``/kinerja`` routes: thin — read the session, call the report use case, render. Module-level
router; what a route needs comes through ``Depends`` from ``app.state`` (``intake``,
``reports``, ``web``).

Security: the key is typed into a POST form once (never in a URL) and becomes a signed,
expiring session cookie (HttpOnly, SameSite=Strict, Secure over https); every form carries a
signed token bound to its purpose (and to the session), so no other site can sign someone in
or out; portal keys are refused; an OPD key sees only its OPD; the page shows no reporter
identity (the report model has none).

No ``from __future__ import annotations``: FastAPI reads the annotations at definition time."""

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from services.intake.api import no_nul_parameters
from services.intake.apikeys import verify_api_key
from services.intake.context import IntakeContext
from services.intake.domain.complaint import Actor, OutOfScope
from services.intake.reports.api import MAX_DAYS
from services.intake.reports.context import ReportsContext
from services.intake.reports.export import percent_text
from services.intake.reports.model import NO_GROUP, ReportQuery
from services.intake.reports.usecases import kinerja_report
from services.intake.schemas import has_nul
from services.intake.web import view
from services.intake.web.chart import rates_svg
from services.intake.web.repository import active_key
from services.intake.web.session import COOKIE, Session, Signer

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
PAGE, SIGN_IN, SIGN_OUT = "/kinerja", "/kinerja/masuk", "/kinerja/keluar"


@dataclass(frozen=True)
class WebContext:
    signer: Signer
    session_ttl_s: float
    tz: ZoneInfo
    region_name: str


def _ctx(request: Request) -> tuple[IntakeContext, ReportsContext, WebContext]:
    state = request.app.state
    return state.intake, state.reports, state.web


Contexts = Annotated[tuple[IntakeContext, ReportsContext, WebContext], Depends(_ctx)]
router = APIRouter(tags=["kinerja (halaman web)"], include_in_schema=False,
                   dependencies=[Depends(no_nul_parameters)])


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(HEADERS)
    return response


def _redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


async def _session(request: Request, ctx: IntakeContext, web: WebContext) -> Session | None:
    """The signed-in session whose key is still active (a revoked key signs its sessions out)."""
    s = web.signer.session(request.cookies.get(COOKIE), time.time())
    if s is None:
        return None
    key = await active_key(ctx.pool(), s.key_id)
    if key is None or key.role != s.role or key.opd_code != s.opd_code or key.role == "portal":
        return None
    return s


def _sign_in_page(request: Request, web: WebContext, error: str | None = None,
                  status_code: int = 200) -> HTMLResponse:
    return _render(request, "masuk.html", {
        "region_name": web.region_name, "error": error,
        "csrf": web.signer.form_token("sign_in", time.time())}, status_code)


@router.get(SIGN_IN, response_class=HTMLResponse)
async def sign_in_form(request: Request, contexts: Contexts) -> Response:
    ctx, _, web = contexts
    if await _session(request, ctx, web) is not None:
        return _redirect(PAGE)
    return _sign_in_page(request, web)


@router.post(SIGN_IN, response_class=HTMLResponse)
async def sign_in(request: Request, contexts: Contexts,
                  kunci: Annotated[str, Form(max_length=200)] = "",
                  csrf: Annotated[str, Form(max_length=1000)] = "") -> Response:
    ctx, _, web = contexts
    now = time.time()
    if not web.signer.form_token_ok(csrf, "sign_in", now):
        return _sign_in_page(request, web, "Formulir kedaluwarsa; silakan coba lagi.", 400)
    # A NUL character is never in a key (and PostgreSQL cannot compare text with one).
    key = await verify_api_key(ctx.pool(), kunci.strip()) if kunci.strip() and not has_nul(kunci) else None
    if key is None:
        return _sign_in_page(request, web, "Kunci API salah, sudah dicabut, atau kedaluwarsa.", 401)
    if key.role not in ("admin_koordinator", "opd"):
        return _sign_in_page(request, web, "Kunci portal tidak dapat membuka halaman kinerja; "
                                           "gunakan kunci admin koordinator atau kunci OPD.", 403)
    ctx.authenticator.usage.seen(key.id)  # last_used_at, with the next batched flush
    token = web.signer.session_token(key.id, key.role, key.opd_code, now, web.session_ttl_s)
    response = _redirect(PAGE)
    response.set_cookie(COOKIE, token, max_age=int(web.session_ttl_s), path="/kinerja", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post(SIGN_OUT)
async def sign_out(request: Request, contexts: Contexts,
                   csrf: Annotated[str, Form(max_length=1000)] = "") -> Response:
    _, _, web = contexts
    if not web.signer.form_token_ok(csrf, "sign_out", time.time(), request.cookies.get(COOKIE)):
        return _redirect(PAGE)  # not this session's form: nothing happens
    response = _redirect(SIGN_IN)
    response.delete_cookie(COOKIE, path="/kinerja", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


@router.get(PAGE, response_class=HTMLResponse)
async def page(
    request: Request,
    contexts: Contexts,
    date_from: Annotated[date | None, Query(alias="from")] = None,
    date_to: Annotated[date | None, Query(alias="to")] = None,
    opd: Annotated[str | None, Query(max_length=40)] = None,
    sort: Annotated[str | None, Query(max_length=40)] = None,
    dir: Annotated[str | None, Query(pattern="^(asc|desc)$")] = None,  # noqa: A002 - query name
) -> Response:
    ctx, reports, web = contexts
    session = await _session(request, ctx, web)
    if session is None:
        return _redirect(SIGN_IN)
    now = datetime.now(UTC)
    period = view.period_of(date_from, date_to, now.astimezone(web.tz).date(), MAX_DAYS)
    actor = Actor("opd", opd_code=session.opd_code) if session.role == "opd" else Actor(session.role)
    chosen = session.opd_code if session.role == "opd" else (opd or None)
    q = ReportQuery(date_from=period.date_from, date_to=period.date_to, opd=chosen)
    try:
        report = await kinerja_report(reports.uow, q, actor, calendar=reports.calendar, now=now,
                                      target_on_time_rate=reports.cfg.target_on_time_rate)
    except OutOfScope:  # pragma: no cover - the OPD is forced to the session's own above
        return _redirect(SIGN_IN)
    descending = (dir or "desc") == "desc"
    rows = view.sort_rows(report.rows, sort or view.DEFAULT_SORT, descending)
    opds = [(o.code, o.name) for o in ctx.cfg.catalog.opds]
    names = dict(opds)
    return _render(request, "kinerja.html", {
        "region_name": web.region_name, "report": report, "totals": report.totals, "rows": rows,
        "columns": view.COLUMNS, "cell": view.cell, "pct": percent_text,
        "sort": sort or view.DEFAULT_SORT, "descending": descending, "period": period,
        "chosen_opd": chosen, "opd_name": names.get(chosen or "", chosen),
        "opds": opds, "opd_scoped": session.role == "opd",
        "role_label": ("OPD " + names.get(session.opd_code or "", session.opd_code or "")
                       if session.role == "opd" else "Admin koordinator"),
        # trusted markup: rates_svg escapes every text it writes
        "chart": Markup(rates_svg([r for r in rows if r.key != NO_GROUP], report.target_on_time_rate)),
        "overdue": report.overdue, "tz": web.tz,
        "csrf": web.signer.form_token("sign_out", time.time(), request.cookies.get(COOKIE)),
        "generated": report.generated_at.astimezone(web.tz),
    })


__all__ = ["WebContext", "router"]
