"""The Open311 GeoReport v2 facade over intake (XML and JSON), under ``/open311/v2``.

Thin like intake's own API: authenticate, parse (``mapping``), call the same use case
(``submit_complaint``) or read (``repository``), shape the spec's answer. Every error is
the spec's ``[{"code", "description"}]`` array — also a request FastAPI itself refuses
(``Open311Route``), so the native API's Problem Details never appear here. Every resource,
errors included, is served as ``.xml`` (the spec's required format, ``xml``) and ``.json``.

The routes are module-level; what they need comes through ``Depends``: the facade's
``Open311Context`` (installed on the app by ``install_routes``) and the database pool of
the app's runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from services.intake.apikeys import ApiKey
from services.intake.auth import CACHE_TTL_S, KeyCache, UsageRecorder
from services.intake.catalog import Catalog, load_catalog
from services.intake.errors import error_responses, field_errors, prune_unused_schemas
from services.intake.metrics import IntakeMetrics
from services.intake.open311 import xml
from services.intake.open311.forms import FilePartRefused, read_form
from services.intake.open311.mapping import (
    DEFAULT_SOURCE,
    SPEC,
    Form,
    Open311Error,
    StoredRequest,
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
    API_KEY_PARAMETER,
    REQUEST_FORM_SCHEMA,
    REQUEST_QUERY_PARAMETERS,
    DiscoveryOut,
    Format,
    Open311ErrorOut,
    RequestCreatedOut,
    RequestOut,
    ServiceDefinitionOut,
    ServiceOut,
)
from services.intake.schemas import NUL_REASON, nul_parameter
from services.intake.usecases import IntakeConfig, SubmissionConflict, submit_complaint
from shared.service import PoolDep

PREFIX = "/open311/v2"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_DESCRIPTIONS = {
    400: "invalid request (also a format other than .xml or .json); each description names the field",
    403: "missing or invalid api_key",
    404: "no such resource",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The spec's error array, documented for each status a route may answer."""
    return error_responses(list[Open311ErrorOut], *codes, descriptions=_DESCRIPTIONS)


class KeyVerifier:
    """GeoReport sends the key as the ``api_key`` parameter, not a header."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, usage: UsageRecorder | None = None) -> None:
        self._keys = KeyCache(ttl_s, usage)

    async def verify(self, pool: asyncpg.Pool, raw: str | None) -> ApiKey:
        if not raw:
            raise Open311Error(403, "api_key: required to create a service request")
        key = await self._keys.verify(pool, raw)
        if key is None:
            raise Open311Error(403, "api_key: invalid, revoked or expired")
        return key

    async def optional(self, pool: asyncpg.Pool, request: Request) -> ApiKey | None:
        """Reads are public (spec: "Requires API Key: No"); a key sent must still be valid."""
        raw = request.query_params.get("api_key")
        return await self.verify(pool, raw) if raw else None


@dataclass(frozen=True)
class Open311Context:
    """What the facade's routes share, one per app (``app.state.open311``)."""

    cfg: IntakeConfig
    metrics: IntakeMetrics
    catalog: Catalog
    keys: KeyVerifier
    region_name: str
    # A form's largest part (the whole body is bounded before, by intake's guard).
    max_body_bytes: int = 64 * 1024
    # An anonim complaint's public location: lat/long rounded to this many decimals
    # (3 ≈ 110 m), street address withheld (``mapping.request_out``).
    location_decimals: int = 3

    def public(self, r: StoredRequest) -> dict[str, Any]:
        return request_out(r, self.catalog, self.cfg.tz, self.region_name,
                           location_decimals=self.location_decimals)


def context(request: Request) -> Open311Context:
    ctx: Open311Context = request.app.state.open311
    return ctx


Ctx = Annotated[Open311Context, Depends(context)]


class Open311Route(APIRoute):
    """A request FastAPI refuses (so far only a ``{fmt}`` other than ``json``) answered in the
    spec's shape: HTTP 400 with ``[{"code", "description"}]``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise bad_request(*spec_descriptions(exc.errors())) from exc

        return route


def spec_descriptions(errors: Sequence[Any]) -> list[str]:
    out = []
    for e, fe in zip(errors, field_errors(errors), strict=True):
        if tuple(e.get("loc", ())) == ("path", "fmt"):
            out.append(f"format: '.{e.get('input')}' is not served here; use .xml or .json")
        else:
            out.append(f"{fe['field']}: {fe['reason']}")
    return out


def answer(fmt: Format, data: Any, root: str, item: str | None = None) -> Any:
    """The route's document in the asked format: JSON as FastAPI renders the response model,
    XML per the spec (``xml.document``: ``root`` element, ``item`` per list entry)."""
    if fmt is Format.xml:
        return Response(xml.document(root, data, item), media_type=xml.MEDIA_TYPE)
    return data


def _xml_asked(request: Request) -> bool:
    return request.url.path.endswith(".xml")


def no_nul_parameters(request: Request) -> None:
    """A router dependency: a NUL character in a path or query parameter (the filters, the
    service_request_id, api_key) is the spec's 400 naming it."""
    name = nul_parameter(request.path_params, request.query_params.multi_items())
    if name is not None:
        raise bad_request(f"{name}: {NUL_REASON}")


router = APIRouter(prefix=PREFIX, tags=["open311"], route_class=Open311Route,
                   dependencies=[Depends(no_nul_parameters)])
_READ_KEY = {"parameters": [API_KEY_PARAMETER]}


@router.get("/discovery.{fmt}", response_model=DiscoveryOut, responses=errors(400))
async def discovery(fmt: Format, request: Request, ctx: Ctx) -> Any:
    """Open311 Service Discovery for this endpoint."""
    return answer(fmt, {
        "changeset": ctx.catalog.changeset,
        "contact": f"Admin koordinator SP4N-LAPOR! {ctx.region_name}",
        "key_service": ("Kunci API (api_key) untuk mengirim laporan diterbitkan oleh admin "
                        f"koordinator {ctx.region_name}."),
        "endpoints": [{"specification": SPEC, "url": f"{str(request.base_url).rstrip('/')}{PREFIX}",
                       "changeset": ctx.catalog.changeset, "type": "production",
                       "formats": ["text/xml", "application/json"]}],
    }, "discovery")


@router.get("/services.{fmt}", response_model=list[ServiceOut], responses=errors(400, 403),
            openapi_extra=_READ_KEY)
async def services(fmt: Format, request: Request, ctx: Ctx, db: PoolDep) -> Any:
    """GET Service List: the complaint categories."""
    await ctx.keys.optional(db, request)
    return answer(fmt, [service_out(s) for s in ctx.catalog.services], "services", "service")


@router.get("/services/{service_code}.{fmt}", response_model=ServiceDefinitionOut,
            responses=errors(400, 403, 404), openapi_extra=_READ_KEY)
async def definition(service_code: str, fmt: Format, request: Request, ctx: Ctx,
                     db: PoolDep) -> Any:
    """GET Service Definition: the attributes to send as ``attribute[code]=value``."""
    await ctx.keys.optional(db, request)
    service = ctx.catalog.service(service_code)
    if service is None:
        raise Open311Error(404, f"service_code: no service '{service_code}'")
    return answer(fmt, service_definition(service, ctx.catalog), "service_definition")


@router.post("/requests.{fmt}", response_model=list[RequestCreatedOut],
             responses=errors(400, 403, 404), openapi_extra={"requestBody": {
                 "required": True,
                 "content": {t: {"schema": REQUEST_FORM_SCHEMA} for t in _FORM_TYPES}}})
async def create(fmt: Format, request: Request, ctx: Ctx, db: PoolDep) -> Any:
    """POST Service Request (``application/x-www-form-urlencoded``).

    Idempotent only for clients that send ``attribute[external_id]``: a retry with the
    same value gets the same ``service_request_id``. Without it every POST is new.
    404 when the service_code is unknown.
    """
    metrics = ctx.metrics
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in _FORM_TYPES:
        metrics.rejected.labels("validation").inc()
        raise bad_request("Content-Type: must be application/x-www-form-urlencoded")
    try:
        form_data = await read_form(request, ctx.max_body_bytes)
    except FilePartRefused as exc:
        metrics.rejected.labels("validation").inc()
        raise bad_request(exc.message) from exc
    except Exception as exc:  # noqa: BLE001 - any malformed body is the client's to fix
        metrics.rejected.labels("validation").inc()
        raise bad_request(f"body: not a readable form ({type(exc).__name__})") from exc
    items = form_data.multi_items()
    if (name := nul_parameter({}, ((k, v) for k, v in items if isinstance(v, str)))) is not None:
        metrics.rejected.labels("validation").inc()
        raise bad_request(f"{name}: {NUL_REASON}")
    form = Form.parse(items)
    try:
        key = await ctx.keys.verify(db, form.get("api_key") or request.query_params.get("api_key"))
    except Open311Error:
        metrics.rejected.labels("unauthorized").inc()
        raise
    if not key.may("complaints:submit"):
        metrics.rejected.labels("forbidden").inc()
        raise Open311Error(403, "api_key: this key may not create service requests")
    source = key.source or DEFAULT_SOURCE
    now = datetime.now(UTC)
    try:
        sub, extras = to_complaint(form, source=source, catalog=ctx.catalog, now=now)
    except Open311Error:
        metrics.rejected.labels("validation").inc()
        raise
    try:
        accepted = await submit_complaint(request.app.state.intake.uow, sub, ctx.cfg, now)
    except SubmissionConflict as exc:
        if extras.received_at_defaulted and exc.fields == ["received_at"]:
            # A retry: it differs only in the arrival time this facade filled in.
            metrics.duplicates.labels(source).inc()
            return answer(fmt, _created(exc.tracking_id, sub.confidential, extras.account_id),
                          "service_requests", "request")
        metrics.rejected.labels("conflict").inc()
        # HTTP 400 (the spec's status for "any other error"); the body's code says conflict.
        raise Open311Error(400, (
            f"attribute[external_id]: '{sub.external_id}' was already used for a different "
            f"report ({exc.tracking_id}); differing: {', '.join(exc.fields)}"), code=409) from exc
    metrics.count_accepted(accepted.created, source, sub.classification)
    return answer(fmt, _created(accepted.tracking_id, sub.confidential, extras.account_id),
                  "service_requests", "request")


@router.get("/requests.{fmt}", response_model=list[RequestOut], responses=errors(400, 403),
            openapi_extra={"parameters": REQUEST_QUERY_PARAMETERS})
async def list_requests(fmt: Format, request: Request, ctx: Ctx, db: PoolDep) -> Any:
    """GET Service Requests; by default the most recent 90 days, at most 1000.

    Public: only verified complaints (TERVERIFIKASI or later, not archived), never rahasia;
    no request carries reporter data, and an anonim one shows only a coarsened location
    unless the admin koordinator made its location public.
    """
    await ctx.keys.optional(db, request)
    q = request_query(request.query_params, datetime.now(UTC), ctx.cfg.tz)
    found = await Open311Repository(db).requests(q)
    return answer(fmt, [ctx.public(r) for r in found], "service_requests", "request")


@router.get("/requests/{service_request_id}.{fmt}", response_model=list[RequestOut],
            responses=errors(400, 403, 404), openapi_extra=_READ_KEY)
async def get_request(service_request_id: str, fmt: Format, request: Request, ctx: Ctx,
                      db: PoolDep) -> Any:
    """GET Service Request: an array of one. A complaint that is not public (rahasia, not
    yet verified, archived) is not found."""
    await ctx.keys.optional(db, request)
    found = await Open311Repository(db).request(service_request_id)
    if found is None:
        raise Open311Error(404, f"service_request_id: no request '{service_request_id}'")
    return answer(fmt, [ctx.public(found)], "service_requests", "request")


@router.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
async def unknown(rest: str) -> None:
    raise Open311Error(404, f"path: no GeoReport v2 resource '{rest}'")


def _created(tracking_id: str, confidential: bool, account_id: str | None) -> list[dict[str, Any]]:
    return [{"service_request_id": tracking_id,
             "service_notice": accepted_notice(tracking_id, confidential),
             "account_id": account_id}]


async def _open311_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Open311Error)
    if _xml_asked(request):
        return Response(xml.document("errors", list(exc.errors), "error"), status_code=exc.status,
                        media_type=xml.MEDIA_TYPE)
    return JSONResponse(exc.errors, status_code=exc.status)


def install_routes(app: FastAPI, cfg: IntakeConfig, metrics: IntakeMetrics, *, region_name: str,
                   key_cache_ttl_s: float = CACHE_TTL_S, catalog: Catalog | None = None,
                   location_decimals: int = 3, usage: UsageRecorder | None = None,
                   max_body_bytes: int = 64 * 1024) -> None:
    app.state.open311 = Open311Context(cfg=cfg, metrics=metrics, catalog=catalog or load_catalog(),
                                       keys=KeyVerifier(key_cache_ttl_s, usage),
                                       region_name=region_name, location_decimals=location_decimals,
                                       max_body_bytes=max_body_bytes)
    app.add_exception_handler(Open311Error, _open311_error)
    app.include_router(router)
    _document_spec_errors(app)


def _document_spec_errors(app: FastAPI) -> None:
    """FastAPI documents a 422 for every route with parameters; here a refused request is a
    400 in the spec's shape (``Open311Route``), so the 422 is taken out of the document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = generate()
        if fresh:
            for path, item in schema.get("paths", {}).items():
                if path.startswith(PREFIX):
                    for op in item.values():
                        if isinstance(op, dict):
                            op.get("responses", {}).pop("422", None)
            prune_unused_schemas(schema, "HTTPValidationError", "ValidationError")
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented customisation
