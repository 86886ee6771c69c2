"""intake's native HTTP routes: thin — authenticate, parse, call a use case or a query,
record metrics, shape the answer. Module-level routers: what a route needs comes through
``Depends`` from ``app.state.intake`` (an ``IntakeContext`` set by ``build_app``).

No ``from __future__ import annotations``: FastAPI reads the action routes' body
annotations, which name a model chosen per action, at definition time."""

import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse

from services.intake import lifecycle, queries, scopes
from services.intake.apikeys import ApiKey
from services.intake.audit import Origin
from services.intake.auth import require, security_schemes
from services.intake.context import IntakeContext
from services.intake.domain.complaint import Actor, ComplaintNotFound, InvalidField, OutOfScope
from services.intake.errors import ApiError
from services.intake.history import HistoryNotAllowed
from services.intake.lifecycle import SOURCE_BOUND_ROLES, State
from services.intake.metrics import IntakeMetrics
from services.intake.schemas import (
    ACTION_BODIES,
    NUL_REASON,
    ActionDone,
    ActionIn,
    AuditEntryOut,
    AuditPage,
    ComplaintAccepted,
    ComplaintDetail,
    ComplaintIn,
    ComplaintPage,
    nul_parameter,
)
from services.intake.usecases import SubmissionConflict, perform_action, submit_complaint
from shared.requestid import current_request_id


def intake_context(request: Request) -> IntakeContext:
    ctx: IntakeContext = request.app.state.intake
    return ctx


Context = Annotated[IntakeContext, Depends(intake_context)]


async def api_key(request: Request, ctx: Context,
                  _schemes: Annotated[None, Depends(security_schemes)]) -> ApiKey:
    return await ctx.authenticator.authenticate(ctx.pool(), request)


Key = Annotated[ApiKey, Depends(api_key)]


def actor_of(key: ApiKey) -> Actor:
    """The key as the domain sees it: role, scopes, and the OPD or source it is bound to."""
    return Actor(key.role, opd_code=key.opd_code if key.role == "opd" else None,
                 source=key.source if key.role in SOURCE_BOUND_ROLES else None,
                 name=key.name, key_id=key.id, scopes=key.scopes)


def origin_of(request: Request) -> Origin:
    """The request as the audit trail records it: its X-Request-ID and the client address."""
    return Origin(request_id=current_request_id(),
                  client_addr=request.client.host if request.client else None)


def _not_found(key: str) -> ApiError:
    return ApiError(404, "not_found", f"no complaint with id or tracking id '{key}'", field="key")


def no_nul_parameters(request: Request) -> None:
    """A router dependency: a NUL character in any path or query parameter is a 422 naming
    it (PostgreSQL cannot compare text with one; nothing could match it anyway)."""
    name = nul_parameter(request.path_params, request.query_params.multi_items())
    if name is not None:
        raise ApiError(422, "validation_failed", "Parameter permintaan tidak valid.",
                       errors=[{"field": name, "reason": NUL_REASON}])


router = APIRouter(prefix="/v1", tags=["complaints"], dependencies=[Depends(no_nul_parameters)])


@router.post(
    "/complaints", status_code=status.HTTP_202_ACCEPTED, response_model=ComplaintAccepted,
    responses={200: {"description": "a retry of an accepted complaint: the same ids",
                     "model": ComplaintAccepted},
               401: {"description": "no or invalid API key"},
               403: {"description": "the key may not submit for this source"},
               409: {"description": "source + external_id already used for different content"},
               422: {"description": "invalid fields, each named with its reason"}})
async def submit(sub: ComplaintIn, key: Key, ctx: Context, request: Request,
                 response: Response) -> ComplaintAccepted:
    """Submit a complaint. Idempotent on (source, external_id)."""
    require(key, scopes.SUBMIT)
    if (key.source is not None or key.role in SOURCE_BOUND_ROLES) and key.source != sub.source:
        ctx.metrics.rejected.labels("forbidden_source").inc()
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail={
            "error": "forbidden", "field": "source",
            "message": f"this API key may only submit for source '{key.source}'"})
    try:
        accepted = await submit_complaint(
            ctx.uow, sub, ctx.cfg, datetime.now(UTC),
            history_allowed=key.may(scopes.HISTORY), actor=actor_of(key),
            origin=origin_of(request))
    except HistoryNotAllowed as exc:
        ctx.metrics.rejected.labels("forbidden_history").inc()
        raise ApiError(403, "forbidden", str(exc), field="history") from exc
    except InvalidField as exc:
        ctx.metrics.rejected.labels("validation").inc()
        raise ApiError(422, "validation_failed", "Data laporan tidak valid; perbaiki kolom berikut.",
                       errors=[{"field": exc.field, "reason": exc.reason, "type": "value_error"}]
                       ) from exc
    except SubmissionConflict as exc:
        ctx.metrics.rejected.labels("conflict").inc()
        raise HTTPException(status.HTTP_409_CONFLICT, detail={
            "error": "conflict",
            "message": (f"external_id '{sub.external_id}' of source '{sub.source}' was already "
                        f"accepted with different content"),
            "conflicting_fields": exc.fields,
            "complaint_id": str(exc.complaint_id), "tracking_id": exc.tracking_id}) from exc
    ctx.metrics.count_accepted(accepted.created, sub.source, sub.classification)
    if not accepted.created:
        response.status_code = status.HTTP_200_OK
    status_url = f"{request.base_url}v1/complaints/{accepted.tracking_id}"
    response.headers["Location"] = status_url
    return ComplaintAccepted(complaint_id=accepted.complaint_id, tracking_id=accepted.tracking_id,
                             status=accepted.status, status_url=status_url)


@router.get("/complaints", response_model=ComplaintPage, name="list_complaints",
            responses={403: {"description": "an OPD key asking for another OPD's list"},
                       422: {"description": "invalid filter"}})
async def list_complaints(
    api: Key,
    ctx: Context,
    status_: Annotated[State | None, Query(alias="status")] = None,
    needs_triage: bool | None = None,
    opd: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    """Complaints the key may see: all (admin koordinator), those currently disposed to
    the key's OPD (opd), or the key's portal source (portal). Newest first."""
    require(api, scopes.READ)
    try:
        page = await queries.complaint_page(ctx.uow, actor_of(api), status=status_,
                                            needs_triage=needs_triage, opd=opd, limit=limit,
                                            offset=offset)
    except OutOfScope as exc:
        raise ApiError(403, "forbidden", str(exc), field=exc.field) from exc
    return JSONResponse(page.model_dump(mode="json"))


@router.get("/complaints/{key}", response_model=ComplaintDetail, name="complaint_status",
            responses={403: {"description": "an OPD key on a complaint not disposed to it"},
                       404: {"description": "no such complaint (for this key)"}})
async def complaint_status(key: str, api: Key, ctx: Context, request: Request) -> JSONResponse:
    """Current status, deadlines, timeline, responses and the actions the caller may take
    next, by complaint id or tracking id. An answer that includes the reporter's identity
    is recorded in the audit trail (``read_identity``)."""
    require(api, scopes.READ)
    try:
        detail = await queries.complaint_detail(ctx.uow, key, actor_of(api), hop_cap=ctx.cfg.hop_cap,
                                                tz=ctx.cfg.tz, keyring=ctx.cfg.keyring,
                                                opd_contact_days=ctx.cfg.opd_contact_days,
                                                origin=origin_of(request))
    except ComplaintNotFound as exc:
        raise _not_found(key) from exc
    except OutOfScope as exc:
        raise ApiError(403, "forbidden", str(exc)) from exc
    out = detail.model_dump(mode="json")
    for absent in ("reporter", "reporter_withheld"):
        if out[absent] is None:
            del out[absent]
    return JSONResponse(out)


@router.get("/audit", response_model=AuditPage, name="audit_trail", tags=["audit"],
            responses={403: {"description": "the key lacks the scope audit:read (admin only)"},
                       404: {"description": "no such complaint"},
                       422: {"description": "invalid filter"}})
async def audit_trail(
    api: Key,
    ctx: Context,
    complaint: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9-]+$",
                                           description="complaint id or tracking id")] = None,
    key_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with offset")] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="the previous page's next_after")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """The audit trail, oldest first: every lifecycle action and every answer that carried
    a reporter's identity (``read_identity``), with the key, the request id and the client
    address. Filters combine; pages follow ``next_after``."""
    require(api, scopes.AUDIT)
    if since is not None and since.tzinfo is None:
        raise ApiError(422, "validation_failed", "Filter tidak valid; perbaiki kolom berikut.",
                       errors=[{"field": "since", "reason": "must include a UTC offset",
                                "type": "value_error"}])
    async with ctx.uow.read() as repo:
        complaint_id = None
        if complaint is not None:
            found = await repo.find(complaint)
            if found is None:
                raise _not_found(complaint)
            complaint_id = found.id
        rows = await repo.audit_rows(complaint_id=complaint_id, key_id=key_id, since=since,
                                     after=after, limit=limit)
    return AuditPage(items=[AuditEntryOut.model_validate(r, from_attributes=True) for r in rows],
                     next_after=rows[-1].id if len(rows) == limit else None)


async def act(ctx: IntakeContext, key: str, api: ApiKey, action: str, body: ActionIn,
              origin: Origin) -> ActionDone:
    """One lifecycle action, its refusals as answers a portal can act on."""
    metrics = ctx.metrics
    try:
        done = await perform_action(ctx.uow, key, action, body, actor_of(api), ctx.cfg,
                                    now=datetime.now(UTC), origin=origin)
    except ComplaintNotFound as exc:
        raise _not_found(key) from exc
    except OutOfScope as exc:
        metrics.actions_refused.labels(action, "forbidden").inc()
        extra: dict[str, Any] = {"field": exc.field} if exc.field else {}
        raise ApiError(403, "forbidden", str(exc), **extra) from exc
    except lifecycle.RoleMayNot as exc:
        metrics.actions_refused.labels(action, "forbidden").inc()
        raise ApiError(403, "forbidden", str(exc)) from exc
    except lifecycle.InvalidTransition as exc:
        metrics.actions_refused.labels(action, "invalid_transition").inc()
        raise ApiError(409, "hop_cap_reached" if isinstance(exc, lifecycle.HopCapReached)
                       else "invalid_transition", str(exc),
                       current_state=exc.state.value, allowed_actions=exc.allowed) from exc
    except InvalidField as exc:
        metrics.rejected.labels("validation").inc()
        raise ApiError(422, "validation_failed", "Data aksi tidak valid; perbaiki kolom berikut.",
                       errors=[{"field": exc.field, "reason": exc.reason, "type": "value_error"}]
                       ) from exc
    metrics.actions.labels(action, done.status).inc()
    return ActionDone(**done.__dict__)


ACTION_DOCS = {
    "verify": "Verify (admin koordinator). Optionally corrects the title (the original is kept) "
              "and, with a reason, classification, berkadar_pengawasan, category, anonymous "
              "and confidential (then also complaint.reclassified).",
    "defer": "Defer — tunda (admin koordinator): waiting for information from the reporter; "
             "the clocks that wait on the reporter pause.",
    "resume": "Resume a deferred complaint (admin koordinator): back to the state it was in.",
    "archive": "Archive with a reason (admin koordinator); 'duplikat' needs duplicate_of.",
    "dispose": "Dispose to an OPD (admin koordinator): the next hop, up to the hop cap.",
    "forward": "Forward — dilimpahkan (admin koordinator) to an instansi outside the regency.",
    "close": "Close (admin koordinator) after the OPD's response.",
    "reopen": "Reopen — banding (admin koordinator or the portal): back to the last OPD.",
    "respond": "Respond — tindak lanjut (the OPD the complaint is disposed to). 'final' true "
               "(default): the final tindak lanjut, DITINDAKLANJUTI; false: a progress update, "
               "the status stays and no clock stops.",
    "return": "Return — bukan wewenang (the OPD the complaint is disposed to), with a reason.",
    "reply": "Reply (the portal): the reporter answers the response, or supplies the "
             "information a deferral asked for.",
    "rate": "Rate the handling 1–5 (the portal).",
    "reclassify": "Reclassify (admin koordinator). Corrects classification, berkadar_pengawasan, "
                  "category, anonymous or confidential, with a reason, in any state before "
                  "SELESAI, DIARSIPKAN or DILIMPAHKAN; the status stays; sla recomputes the "
                  "deadlines that depend on it. 422 when nothing would change.",
    "withdraw": "Withdraw (admin koordinator). Pulls a TERDISPOSISI complaint back from its OPD, "
                "with a reason: that hop's OPD clock is cancelled, the complaint is TERVERIFIKASI "
                "again and the next dispose is the next hop (a withdrawn disposition does not "
                "count toward the hop cap).",
}


def _action_route(action: str, model: type[ActionIn]) -> Callable[..., Awaitable[ActionDone]]:
    """``POST /v1/complaints/{key}/{action}`` with ``model`` as its body."""
    if any(f.is_required() for f in model.model_fields.values()):
        async def route(key: str, api: Key, ctx: Context, request: Request,
                        body: Annotated[model, Body()]) -> ActionDone:  # type: ignore[valid-type]  # a body model chosen per action
            return await act(ctx, key, api, action, body, origin_of(request))
    else:  # every field optional: the body may be left out
        async def route(key: str, api: Key, ctx: Context, request: Request,  # type: ignore[misc]  # see above
                        body: Annotated[model | None, Body()] = None  # type: ignore[valid-type]  # see above
                        ) -> ActionDone:
            return await act(ctx, key, api, action, body or model(), origin_of(request))
    route.__name__ = f"complaint_{action}"
    route.__doc__ = ACTION_DOCS[action]
    return route


for _action, _model in ACTION_BODIES.items():
    router.add_api_route(
        f"/complaints/{{key}}/{_action}", _action_route(_action, _model), methods=["POST"],
        response_model=ActionDone, name=f"complaint_{_action}",
        summary=ACTION_DOCS[_action].split(".")[0],
        responses={403: {"description": "the key's role or scope does not allow it"},
                   404: {"description": "no such complaint"},
                   409: {"description": "not allowed in the complaint's current state; "
                                        "the answer names the state and the allowed actions"},
                   422: {"description": "invalid fields, each named with its reason"}})


def install_api(app: FastAPI, metrics: IntakeMetrics) -> None:
    app.add_middleware(TimingMiddleware, metrics=metrics)
    app.include_router(router)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class TimingMiddleware:
    """Request latency by route template (plain ASGI: no extra task per request)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 metrics: IntakeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_latency.labels(scope["method"], route, str(status_code)).observe(
                time.perf_counter() - started)


__all__ = ["install_api", "router"]
