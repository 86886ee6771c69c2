"""intake's HTTP routes: thin — authenticate, parse, call a use case, shape the answer."""


import time
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse

from services.intake import lifecycle
from services.intake.actions import (
    Actor,
    ComplaintNotFound,
    InvalidField,
    OutOfScope,
    actions_for,
    check_scope,
    perform_action,
)
from services.intake.apikeys import ApiKey
from services.intake.auth import require
from services.intake.context import IntakeContext
from services.intake.errors import ApiError
from services.intake.lifecycle import OPD_SCOPE_STATES, State
from services.intake.metrics import IntakeMetrics
from services.intake.schemas import (
    ACTION_BODIES,
    ActionDone,
    ActionIn,
    ClockOut,
    ComplaintAccepted,
    ComplaintDetail,
    ComplaintIn,
    ComplaintPage,
    ComplaintSummary,
    DuplicateCandidateOut,
    ReplyOut,
    ReporterOut,
    ResponseOut,
    SuggestionOut,
    TimelineEntry,
)
from services.intake.usecases import SubmissionConflict, submit_complaint
from shared.service import ServiceRuntime


def install_api(runtime: ServiceRuntime, ctx: IntakeContext) -> None:
    app = runtime.app
    cfg, metrics, uow, authenticator = ctx.cfg, ctx.metrics, ctx.uow, ctx.authenticator

    async def api_key(request: Request) -> ApiKey:
        return await authenticator.authenticate(runtime.pool, request)

    Key = Annotated[ApiKey, Depends(api_key)]
    router = APIRouter(prefix="/v1", tags=["complaints"])

    app.add_middleware(TimingMiddleware, metrics=metrics)

    @router.post(
        "/complaints", status_code=status.HTTP_202_ACCEPTED, response_model=ComplaintAccepted,
        responses={200: {"description": "a retry of an accepted complaint: the same ids",
                         "model": ComplaintAccepted},
                   401: {"description": "no or invalid API key"},
                   403: {"description": "the key may not submit for this source"},
                   409: {"description": "source + external_id already used for different content"},
                   422: {"description": "invalid fields, each named with its reason"}})
    async def submit(sub: ComplaintIn, key: Key, request: Request, response: Response) -> ComplaintAccepted:
        """Submit a complaint. Idempotent on (source, external_id)."""
        require(key, "complaints:submit")
        if key.source and key.source != sub.source:
            metrics.rejected.labels("forbidden_source").inc()
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail={
                "error": "forbidden", "field": "source",
                "message": f"this API key may only submit for source '{key.source}'"})
        try:
            accepted = await submit_complaint(uow, sub, cfg, datetime.now(timezone.utc))
        except SubmissionConflict as exc:
            metrics.rejected.labels("conflict").inc()
            raise HTTPException(status.HTTP_409_CONFLICT, detail={
                "error": "conflict",
                "message": (f"external_id '{sub.external_id}' of source '{sub.source}' was already "
                            f"accepted with different content"),
                "conflicting_fields": exc.fields,
                "complaint_id": str(exc.complaint_id), "tracking_id": exc.tracking_id}) from exc
        metrics.count_accepted(accepted.created, sub.source, sub.classification)
        if not accepted.created:
            response.status_code = status.HTTP_200_OK
        status_url = f"{request.base_url}v1/complaints/{accepted.tracking_id}"
        response.headers["Location"] = status_url
        return ComplaintAccepted(complaint_id=accepted.complaint_id, tracking_id=accepted.tracking_id,
                                 status=accepted.status, status_url=status_url)

    hop_cap = runtime.settings.hop_cap

    @router.get("/complaints", response_model=ComplaintPage, name="list_complaints",
                responses={403: {"description": "an OPD key asking for another OPD's list"},
                           422: {"description": "invalid filter"}})
    async def list_complaints(
        api: Key,
        status_: Annotated[State | None, Query(alias="status")] = None,
        needs_triage: bool | None = None,
        opd: Annotated[str | None, Query(max_length=40)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> JSONResponse:
        """Complaints the key may see: all (admin koordinator), those currently disposed to
        the key's OPD (opd), or the key's portal source (portal). Newest first."""
        require(api, "complaints:read")
        actor = actor_of(api)
        source, opd_states = None, None
        if actor.role == "opd":
            if opd is not None and opd != actor.opd_code:
                raise ApiError(403, "forbidden", f"kunci API ini hanya untuk OPD '{actor.opd_code}'",
                               field="opd")
            opd, opd_states = actor.opd_code, [s.value for s in OPD_SCOPE_STATES]
        elif actor.role == "portal":
            source = actor.source
        async with uow.read() as repo:
            total, rows = await repo.list_complaints(
                status=status_.value if status_ else None, needs_triage=needs_triage,
                opd_code=opd, source=source, opd_states=opd_states, limit=limit, offset=offset)
        admin = actor.role == "admin_koordinator"
        items = [ComplaintSummary(
            complaint_id=r["id"], tracking_id=r["tracking_id"], source=r["source"],
            status=r["status"], needs_triage=r["needs_triage"], classification=r["classification"],
            category=r["category"], title=r["title"], kecamatan=r["kecamatan"], desa=r["desa"],
            opd_code=r["opd_code"], opd_name=r["opd_name"], hop=r["hop"],
            received_at=r["received_at"], updated_at=r["updated_at"],
            suggested_opd_code=r["suggested_opd_code"] if admin else None) for r in rows]
        page = ComplaintPage(items=items, total=total, limit=limit, offset=offset)
        return JSONResponse(page.model_dump(mode="json"))

    @router.get("/complaints/{key}", response_model=ComplaintDetail, name="complaint_status",
                responses={403: {"description": "an OPD key on a complaint not disposed to it"},
                           404: {"description": "no such complaint (for this key)"}})
    async def complaint_status(key: str, api: Key) -> JSONResponse:
        """Current status, deadlines, timeline, responses and the actions the caller may take
        next, by complaint id or tracking id."""
        require(api, "complaints:read")
        actor = actor_of(api)
        async with uow.read() as repo:
            row = await repo.find(key)
            if row is None or (actor.role == "portal" and actor.source
                               and actor.source != row["source"]):
                raise ApiError(404, "not_found", f"no complaint with id or tracking id '{key}'",
                               field="key")
            try:
                check_scope(actor, row)
            except OutOfScope as exc:
                raise ApiError(403, "forbidden", str(exc)) from exc
            clocks = await repo.clocks_of(row["id"])
            timeline = await repo.timeline_of(row["id"])
            responses = await repo.responses_of(row["id"])
            replies = await repo.replies_of(row["id"])
            reporter = None
            # Identity only to the people who handle the complaint, never for anonim reports,
            # never the NIK to an OPD; portals already hold it.
            if actor.role in ("admin_koordinator", "opd") and not row["anonymous"]:
                r = await repo.reporter_of(row["id"])
                if r is not None and (r["name"] or r["phone"] or r["email"]):
                    reporter = ReporterOut(name=r["name"], phone=r["phone"], email=r["email"],
                                           nik=r["nik"] if actor.role == "admin_koordinator" else None)
            admin = actor.role == "admin_koordinator"
            candidates = []
            if admin and row["duplicate_candidates"]:
                known = {b["id"]: b for b in await repo.briefs(list(row["duplicate_candidates"]))}
                candidates = [DuplicateCandidateOut(
                    complaint_id=c, tracking_id=known[c]["tracking_id"] if c in known else None,
                    status=known[c]["status"] if c in known else None)
                    for c in row["duplicate_candidates"]]
        detail = ComplaintDetail(
            complaint_id=row["id"], tracking_id=row["tracking_id"], source=row["source"],
            external_id=row["external_id"], status=row["status"], needs_triage=row["needs_triage"],
            classification=row["classification"], category=row["category"], title=row["title"],
            kecamatan=row["kecamatan"], desa=row["desa"], anonymous=row["anonymous"],
            confidential=row["confidential"], received_at=row["received_at"],
            accepted_at=row["accepted_at"], opd_code=row["opd_code"], opd_name=row["opd_name"],
            hop=row["hop"],
            clocks=[_clock(c) for c in clocks],
            timeline=[TimelineEntry(event=t["event_type"], at=t["occurred_at"], summary=t["summary"])
                      for t in timeline],
            original_title=row["original_title"],
            allowed_actions=actions_for(actor, row, hop_cap),
            suggestion=SuggestionOut(
                opd_code=row["suggested_opd_code"], opd_name=row["suggested_opd_name"],
                rule_id=row["suggested_rule_id"], suggested_at=row["suggested_at"])
            if admin and row["suggested_opd_code"] else None,
            duplicate_candidates=candidates,
            responses=[ResponseOut(response_no=r["response_no"], opd_code=r["opd_code"], hop=r["hop"],
                                   body=r["body"], attachments=r["attachments"], at=r["created_at"])
                       for r in responses],
            replies=[ReplyOut(hop=r["hop"], body=r["body"], attachments=r["attachments"],
                              at=r["created_at"]) for r in replies],
            rating=row["rating"], archive_reason=row["archive_reason"],
            duplicate_of=row["duplicate_of"], forwarded_to=row["forwarded_to"],
            return_reason=row["return_reason"], closed_by=row["closed_by"],
            closed_at=row["closed_at"], reporter=reporter,
        )
        out = detail.model_dump(mode="json")
        if out["reporter"] is None:
            del out["reporter"]
        return JSONResponse(out)

    def add_action_route(action: str, model: type[ActionIn]) -> None:
        if any(f.is_required() for f in model.model_fields.values()):
            async def act(key: str, api: Key, body: Annotated[model, Body()]) -> ActionDone:
                return await run(key, api, body)
        else:  # every field optional: the body may be left out
            async def act(key: str, api: Key,
                          body: Annotated[model | None, Body()] = None) -> ActionDone:
                return await run(key, api, body or model())

        async def run(key: str, api: ApiKey, body: ActionIn) -> ActionDone:
            actor = actor_of(api)
            try:
                done = await perform_action(uow, key, action, body, actor, hop_cap=hop_cap,
                                            now=datetime.now(timezone.utc))
            except ComplaintNotFound as exc:
                raise ApiError(404, "not_found", f"no complaint with id or tracking id '{key}'",
                               field="key") from exc
            except (OutOfScope, lifecycle.RoleMayNot) as exc:
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

        act.__name__ = f"complaint_{action}"
        act.__doc__ = ACTION_DOCS[action]
        router.add_api_route(
            f"/complaints/{{key}}/{action}", act, methods=["POST"], response_model=ActionDone,
            name=f"complaint_{action}", summary=ACTION_DOCS[action].split(".")[0],
            responses={403: {"description": "the key's role or scope does not allow it"},
                       404: {"description": "no such complaint"},
                       409: {"description": "not allowed in the complaint's current state; "
                                            "the answer names the state and the allowed actions"},
                       422: {"description": "invalid fields, each named with its reason"}})

    for action_name, body_model in ACTION_BODIES.items():
        add_action_route(action_name, body_model)

    app.include_router(router)


class TimingMiddleware:
    """Request latency by route template (plain ASGI: no extra task per request)."""

    def __init__(self, app, metrics: IntakeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status_code = 500

        async def send_wrapper(message) -> None:
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


def actor_of(key: ApiKey) -> Actor:
    if key.role == "opd":
        return Actor("opd", opd_code=key.opd_code)
    if key.role == "portal":
        return Actor("portal", source=key.source)
    return Actor(key.role)


ACTION_DOCS = {
    "verify": "Verify (admin koordinator). Optionally corrects the title; the original is kept.",
    "defer": "Defer — tunda (admin koordinator): waiting for information from the reporter; "
             "the clocks that wait on the reporter pause.",
    "resume": "Resume a deferred complaint (admin koordinator): back to the state it was in.",
    "archive": "Archive with a reason (admin koordinator); 'duplikat' needs duplicate_of.",
    "dispose": "Dispose to an OPD (admin koordinator): the next hop, up to the hop cap.",
    "forward": "Forward — dilimpahkan (admin koordinator) to an instansi outside the regency.",
    "close": "Close (admin koordinator) after the OPD's response.",
    "reopen": "Reopen — banding (admin koordinator or the portal): back to the last OPD.",
    "respond": "Respond — tindak lanjut (the OPD the complaint is disposed to).",
    "return": "Return — bukan wewenang (the OPD the complaint is disposed to), with a reason.",
    "reply": "Reply (the portal): the reporter answers the response, or supplies the "
             "information a deferral asked for.",
    "rate": "Rate the handling 1–5 (the portal).",
}


def _clock(c) -> ClockOut:
    if c["breached"]:
        state = "terlambat"
    elif c["stopped_at"] is not None:
        state = "selesai"
    else:
        state = "berjalan"
    return ClockOut(clock=c["clock"], hop=c["hop"], opd_code=c["opd_code"],
                    started_at=c["started_at"], deadline=c["deadline"],
                    working_days=c["working_days"], state=state, breached=c["breached"],
                    calendar_version=c["calendar_version"], policy_version=c["policy_version"])


__all__ = ["install_api"]
