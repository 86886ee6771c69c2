"""intake's HTTP routes: thin — authenticate, parse, call a use case, shape the answer."""


import time
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.intake.apikeys import ApiKey
from services.intake.auth import Authenticator, require
from services.intake.errors import validation_problem
from services.intake.metrics import IntakeMetrics
from services.intake.repository import IntakeRepository
from services.intake.schemas import ClockOut, ComplaintAccepted, ComplaintIn, ComplaintStatus, TimelineEntry
from services.intake.usecases import IntakeConfig, SubmissionConflict, submit_complaint
from shared.service import ServiceRuntime


def install_api(runtime: ServiceRuntime, cfg: IntakeConfig, metrics: IntakeMetrics) -> None:
    app = runtime.app
    authenticator = Authenticator()

    async def api_key(request: Request) -> ApiKey:
        return await authenticator.authenticate(runtime.pool, request)

    Key = Annotated[ApiKey, Depends(api_key)]
    router = APIRouter(prefix="/v1", tags=["complaints"])

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.rejected.labels("validation").inc()
        return JSONResponse(validation_problem(list(exc.errors())), status_code=422)

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
            async with runtime.pool.acquire() as conn, conn.transaction():
                accepted = await submit_complaint(IntakeRepository(conn), sub, cfg,
                                                  datetime.now(timezone.utc))
        except SubmissionConflict as exc:
            metrics.rejected.labels("conflict").inc()
            raise HTTPException(status.HTTP_409_CONFLICT, detail={
                "error": "conflict",
                "message": (f"external_id '{sub.external_id}' of source '{sub.source}' was already "
                            f"accepted with different content"),
                "conflicting_fields": exc.fields,
                "complaint_id": str(exc.complaint_id), "tracking_id": exc.tracking_id}) from exc
        if accepted.created:
            metrics.received.labels(sub.source, sub.classification).inc()
        else:
            metrics.duplicates.labels(sub.source).inc()
            response.status_code = status.HTTP_200_OK
        status_url = f"{request.base_url}v1/complaints/{accepted.tracking_id}"
        response.headers["Location"] = status_url
        return ComplaintAccepted(complaint_id=accepted.complaint_id, tracking_id=accepted.tracking_id,
                                 status=accepted.status, status_url=status_url)

    @router.get("/complaints/{key}", response_model=ComplaintStatus, name="complaint_status",
                responses={404: {"description": "no such complaint (for this key)"}})
    async def complaint_status(key: str, api: Key) -> ComplaintStatus:
        """Current status, deadlines and timeline, by complaint id or tracking id."""
        require(api, "complaints:read")
        async with runtime.pool.acquire() as conn:
            repo = IntakeRepository(conn)
            row = await repo.find(key)
            if row is None or (api.source and api.source != row["source"]):
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail={
                    "error": "not_found", "field": "key",
                    "message": f"no complaint with id or tracking id '{key}'"})
            clocks = await repo.clocks_of(row["id"])
            timeline = await repo.timeline_of(row["id"])
        return ComplaintStatus(
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
        )

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
