"""The Open311 GeoReport v2 facade over intake (JSON), under ``/open311/v2``.

Thin like intake's own API: authenticate, parse (``mapping``), call the same use case
(``submit_complaint``) or read (``repository``), shape the spec's answer. Every error is
the spec's ``[{"code", "description"}]`` array.
"""

from __future__ import annotations

from datetime import datetime, timezone

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from services.intake.apikeys import ApiKey
from services.intake.auth import KeyCache
from services.intake.metrics import IntakeMetrics
from services.intake.catalog import Catalog, load_catalog
from services.intake.open311.mapping import (
    DEFAULT_SOURCE,
    SPEC,
    Form,
    Open311Error,
    accepted_notice,
    bad_request,
    request_out,
    request_query,
    service_definition,
    service_out,
    to_complaint,
)
from services.intake.open311.repository import Open311Repository
from services.intake.open311.schemas import (
    DiscoveryOut,
    Open311ErrorOut,
    RequestCreatedOut,
    RequestOut,
    ServiceDefinitionOut,
    ServiceOut,
)
from services.intake.usecases import IntakeConfig, SubmissionConflict, submit_complaint
from shared.service import ServiceRuntime

PREFIX = "/open311/v2"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_ERRORS = {code: {"model": list[Open311ErrorOut], "description": text} for code, text in (
    (400, "invalid request; each description names the field"),
    (403, "missing or invalid api_key"),
    (404, "no such resource"),
)}


class KeyVerifier:
    """GeoReport sends the key as the ``api_key`` parameter, not a header."""

    def __init__(self) -> None:
        self._keys = KeyCache()

    async def verify(self, pool: asyncpg.Pool, raw: str | None) -> ApiKey:
        if not raw:
            raise Open311Error(403, "api_key: required to create a service request")
        key = await self._keys.verify(pool, raw)
        if key is None:
            raise Open311Error(403, "api_key: invalid or revoked")
        return key


def _created(tracking_id: str, confidential: bool, account_id: str | None) -> list[dict]:
    return [{"service_request_id": tracking_id,
             "service_notice": accepted_notice(tracking_id, confidential),
             "account_id": account_id}]


def _json_only(fmt: str) -> None:
    if fmt != "json":
        raise bad_request(f"format: '.{fmt}' is not served here; use .json")


def install_routes(runtime: ServiceRuntime, cfg: IntakeConfig, metrics: IntakeMetrics,
                   catalog: Catalog | None = None) -> None:
    app: FastAPI = runtime.app
    catalog = catalog or load_catalog()
    keys = KeyVerifier()
    region_name = runtime.settings.region_name
    router = APIRouter(prefix=PREFIX, tags=["open311"], responses=_ERRORS)

    @app.exception_handler(Open311Error)
    async def _open311_error(_request: Request, exc: Open311Error) -> JSONResponse:
        return JSONResponse(exc.errors, status_code=exc.status)

    async def optional_key(request: Request) -> ApiKey | None:
        """Reads are public (spec: "Requires API Key: No"); a key sent must still be valid."""
        raw = request.query_params.get("api_key")
        return await keys.verify(runtime.pool, raw) if raw else None

    @router.get("/discovery.{fmt}", response_model=DiscoveryOut)
    async def discovery(fmt: str, request: Request) -> dict:
        """Open311 Service Discovery for this endpoint."""
        _json_only(fmt)
        return {
            "changeset": catalog.changeset,
            "contact": f"Admin koordinator SP4N-LAPOR! {region_name}",
            "key_service": ("Kunci API (api_key) untuk mengirim laporan diterbitkan oleh admin "
                            f"koordinator {region_name}."),
            "endpoints": [{"specification": SPEC, "url": f"{str(request.base_url).rstrip('/')}{PREFIX}",
                           "changeset": catalog.changeset, "type": "production",
                           "formats": ["application/json"]}],
        }

    @router.get("/services.{fmt}", response_model=list[ServiceOut])
    async def services(fmt: str, request: Request) -> list[dict]:
        """GET Service List: the complaint categories."""
        _json_only(fmt)
        await optional_key(request)
        return [service_out(s) for s in catalog.services]

    @router.get("/services/{service_code}.{fmt}", response_model=ServiceDefinitionOut)
    async def definition(service_code: str, fmt: str, request: Request) -> dict:
        """GET Service Definition: the attributes to send as ``attribute[code]=value``."""
        _json_only(fmt)
        await optional_key(request)
        service = catalog.service(service_code)
        if service is None:
            raise Open311Error(404, f"service_code: no service '{service_code}'")
        return service_definition(service, catalog)

    @router.post("/requests.{fmt}", response_model=list[RequestCreatedOut])
    async def create(fmt: str, request: Request) -> list[dict]:
        """POST Service Request (``application/x-www-form-urlencoded``).

        Idempotent only for clients that send ``attribute[external_id]``: a retry with the
        same value gets the same ``service_request_id``. Without it every POST is new.
        """
        _json_only(fmt)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in _FORM_TYPES:
            metrics.rejected.labels("validation").inc()
            raise bad_request("Content-Type: must be application/x-www-form-urlencoded")
        try:
            form_data = await request.form()
        except Exception as exc:  # noqa: BLE001 - any malformed body is the client's to fix
            metrics.rejected.labels("validation").inc()
            raise bad_request(f"body: not a readable form ({type(exc).__name__})") from exc
        form = Form.parse(form_data.multi_items())
        try:
            key = await keys.verify(runtime.pool, form.get("api_key") or request.query_params.get("api_key"))
        except Open311Error:
            metrics.rejected.labels("unauthorized").inc()
            raise
        if not key.may("complaints:submit"):
            metrics.rejected.labels("forbidden").inc()
            raise Open311Error(403, "api_key: this key may not create service requests")
        source = key.source or DEFAULT_SOURCE
        now = datetime.now(timezone.utc)
        try:
            sub, extras = to_complaint(form, source=source, catalog=catalog, now=now)
        except Open311Error:
            metrics.rejected.labels("validation").inc()
            raise
        try:
            accepted = await submit_complaint(request.app.state.intake.uow, sub, cfg, now)
        except SubmissionConflict as exc:
            if extras.received_at_defaulted and exc.fields == ["received_at"]:
                # A retry: it differs only in the arrival time this facade filled in.
                metrics.duplicates.labels(source).inc()
                return _created(exc.tracking_id, sub.confidential, extras.account_id)
            metrics.rejected.labels("conflict").inc()
            # HTTP 400 (the spec's status for "any other error"); the body's code says conflict.
            raise Open311Error(400, (
                f"attribute[external_id]: '{sub.external_id}' was already used for a different "
                f"report ({exc.tracking_id}); differing: {', '.join(exc.fields)}"), code=409) from exc
        metrics.count_accepted(accepted.created, source, sub.classification)
        return _created(accepted.tracking_id, sub.confidential, extras.account_id)

    @router.get("/requests.{fmt}", response_model=list[RequestOut])
    async def list_requests(fmt: str, request: Request) -> list[dict]:
        """GET Service Requests; by default the most recent 90 days, at most 1000.

        Rahasia complaints are never listed; no request carries reporter data.
        """
        _json_only(fmt)
        await optional_key(request)
        q = request_query(request.query_params, datetime.now(timezone.utc), cfg.tz)
        rows = await Open311Repository(runtime.pool).requests(q)
        return [request_out(r, catalog, cfg.tz, region_name) for r in rows]

    @router.get("/requests/{service_request_id}.{fmt}", response_model=list[RequestOut])
    async def get_request(service_request_id: str, fmt: str, request: Request) -> list[dict]:
        """GET Service Request: an array of one (a rahasia complaint is not found)."""
        _json_only(fmt)
        await optional_key(request)
        row = await Open311Repository(runtime.pool).request(service_request_id)
        if row is None:
            raise Open311Error(404, f"service_request_id: no request '{service_request_id}'")
        return [request_out(row, catalog, cfg.tz, region_name)]

    @router.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    async def unknown(rest: str) -> None:
        raise Open311Error(404, f"path: no GeoReport v2 resource '{rest}'")

    app.include_router(router)
