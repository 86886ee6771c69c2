"""Error answers portals can act on: RFC 9457 Problem Details for the native API.

Every 4xx under ``/v1`` is ``application/problem+json``::

    {"type": "urn:sp4n:problem:validation_failed", "title": "Data tidak valid", "status": 422,
     "detail": "Data laporan tidak valid; perbaiki kolom berikut.",
     "instance": "/v1/complaints",
     "errors": [{"field": "location.lat", "reason": "Input should be less than or equal to 90"}]}

``type`` names the problem (``urn:sp4n:problem:<code>``, or ``about:blank`` for a plain HTTP
error such as an unknown path), ``detail`` is the message people read, and the extension
members carry what a portal needs to act: ``errors`` (each field at fault with its reason;
``(body)`` when the body as a whole is unreadable), ``field``, ``current_state`` and
``allowed_actions`` (a refused action), ``conflicting_fields``, ``complaint_id`` and
``tracking_id`` (a reused external id).

Raise ``ApiError``; an ``HTTPException`` whose ``detail`` is a dict ``{"error", "message", …}``
renders the same way. Open311 (``/open311/v2``) answers the array its spec requires and
installs its own handler (see ``services.intake.open311``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.intake.metrics import IntakeMetrics
from shared.settings import IntakeSettings

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:sp4n:problem:"
# The native API; everything under it answers Problem Details.
NATIVE_PREFIX = "/v1"
# The "field" of an error about the body as a whole (unreadable, not JSON, missing).
BODY = "(body)"

# Titles people read, one per problem type (the detail says what happened this time).
TITLES = {
    "unauthorized": "Kunci API tidak ada atau tidak berlaku",
    "forbidden": "Tidak berwenang",
    "not_found": "Tidak ditemukan",
    "conflict": "Bertentangan dengan laporan yang sudah diterima",
    "invalid_transition": "Aksi tidak dapat dilakukan pada status laporan saat ini",
    "hop_cap_reached": "Batas disposisi tercapai",
    "validation_failed": "Data tidak valid",
    "invalid_body": "Isi permintaan tidak dapat dibaca",
    "payload_too_large": "Isi permintaan terlalu besar",
    "rate_limited": "Terlalu banyak permintaan",
}
# What each status means on this API, for the OpenAPI document.
DESCRIPTIONS = {
    400: "the body is not readable: not UTF-8, or JSON nested too deep (errors names '(body)')",
    401: "no API key, or an invalid or revoked one",
    403: "the key's role or scope does not allow it",
    404: "no such resource (for this key)",
    409: "conflicts with the resource's current state",
    413: "the body is larger than the limit (settings.intake.max_body_bytes)",
    422: "invalid fields, each named with its reason",
    429: "too many requests (failed authentications from this address, or this key's limit); "
         "Retry-After says when to try again",
}
_STANDARD = ("type", "title", "status", "detail", "instance")
# FastAPI's answer when it cannot read a JSON body at all (the cause says why).
_UNPARSED = "There was an error parsing the body"
_DEFAULTS = IntakeSettings()


class FieldError(BaseModel):
    field: str = Field(description="the field at fault as a dotted path, e.g. 'location.lat'; "
                                   f"'{BODY}' for the body as a whole")
    reason: str = Field(description="what is wrong with it")


class Problem(BaseModel):
    """RFC 9457 Problem Details, with this API's extension members."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": f"{TYPE_PREFIX}invalid_transition", "status": 409,
        "title": TITLES["invalid_transition"], "instance": "/v1/complaints/SKD-260317-ABC123/close",
        "detail": "Aksi 'close' tidak dapat dilakukan pada laporan berstatus DITERIMA. "
                  "Aksi yang dapat dilakukan: verify, defer, archive, dispose, forward.",
        "current_state": "DITERIMA",
        "allowed_actions": ["verify", "defer", "archive", "dispose", "forward"]}]})

    type: str = Field(description=f"the problem type: '{TYPE_PREFIX}<code>' (unauthorized, forbidden, "
                                  "not_found, conflict, invalid_transition, hop_cap_reached, "
                                  "validation_failed, invalid_body, payload_too_large, rate_limited), "
                                  "or 'about:blank' for a plain "
                                  "HTTP error")
    title: str = Field(description="the problem type in words")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what happened this time")
    instance: str | None = Field(default=None, description="the path the request was made to")
    errors: list[FieldError] | None = Field(
        default=None, description="validation_failed and invalid_body: each field at fault")
    field: str | None = Field(default=None, description="the one field or parameter at fault")
    current_state: str | None = Field(
        default=None, description="invalid_transition, hop_cap_reached: the complaint's state")
    allowed_actions: list[str] | None = Field(
        default=None, description="invalid_transition, hop_cap_reached: what the key may do now")
    conflicting_fields: list[str] | None = Field(
        default=None, description="conflict: the fields that differ from the accepted complaint")
    complaint_id: str | None = Field(default=None, description="conflict: the accepted complaint")
    tracking_id: str | None = Field(default=None, description="conflict: the accepted complaint")
    retry_after: int | None = Field(default=None, description="rate_limited: seconds to wait "
                                                              "(also the Retry-After header)")


class ApiError(Exception):
    """A 4xx answered as a Problem: ``ApiError(409, "invalid_transition", message, current_state=…)``.

    ``error`` is the problem's code (its ``type`` is ``urn:sp4n:problem:<error>``), ``message``
    its ``detail``; keyword arguments become extension members.
    """

    def __init__(self, status_code: int, error: str, message: str, *,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message = message
        self.headers = dict(headers) if headers else None
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        return problem_body(self.status_code, self.error, self.message, instance, **self.extra)


def problem_type(code: str | None) -> str:
    return f"{TYPE_PREFIX}{code}" if code else "about:blank"


def problem_body(status: int, code: str | None, detail: str, instance: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    """A Problem as a JSON object; ``code=None`` is a plain HTTP error (``about:blank``)."""
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": TITLES.get(code or "") or _phrase(status),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if "errors" in extra:
        extra["errors"] = [{"field": str(e["field"]), "reason": str(e["reason"])}
                           for e in extra["errors"]]
    body.update({k: v for k, v in extra.items() if k not in _STANDARD})
    return body


def problem_response(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(dict(body), status_code=int(body["status"]), media_type=PROBLEM_JSON,
                        headers=dict(headers) if headers else None)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def instance(path: str) -> str:
    """A request path as the problem's ``instance``: a URI reference (percent-encoded)."""
    return quote(path, safe="/:@!$&'()*+,;=-._~")


def is_native(path: str) -> bool:
    return path == NATIVE_PREFIX or path.startswith(NATIVE_PREFIX + "/")


# --- handlers ------------------------------------------------------------------------------------

def install_error_handlers(app: FastAPI, metrics: IntakeMetrics, *,
                           max_json_depth: int | None = None) -> None:
    """How the native API's errors look on the wire (Open311 has its own, see ``open311``).

    ``max_json_depth`` bounds a JSON body's nesting before it is parsed; by default it is
    ``settings.intake.max_json_depth`` of the app's runtime.
    """

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        metrics.rejected.labels("validation").inc()
        return problem_response(validation_problem(list(exc.errors()), instance(request.url.path),
                                                   exc.body))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return problem_response(exc.problem(instance(request.url.path)), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        problem = http_problem(exc, request.url.path)
        if problem is None:
            return await http_exception_handler(request, exc)
        return problem_response(problem, exc.headers)

    app.add_middleware(JsonDepthGuard, max_depth=max_json_depth)
    document_problems(app)


def http_problem(exc: StarletteHTTPException, path: str) -> dict[str, Any] | None:
    """An ``HTTPException`` as a Problem, or None when it is not the native API's to shape."""
    if isinstance(exc.detail, dict):
        extra = dict(exc.detail)
        code = extra.pop("error", None)
        message = str(extra.pop("message", "") or _phrase(exc.status_code))
        return problem_body(exc.status_code, code, message, instance(path), **extra)
    if exc.status_code == 400 and exc.detail == _UNPARSED and exc.__cause__ is not None:
        reason = body_reason(exc.__cause__)
        if reason is not None or is_native(path):
            return invalid_body(reason or "not readable as JSON", instance(path))
    if not is_native(path):
        return None
    return problem_body(exc.status_code, None, str(exc.detail), instance(path))


def invalid_body(reason: str, instance: str | None = None) -> dict[str, Any]:
    return problem_body(400, "invalid_body", "Isi permintaan tidak dapat dibaca sebagai JSON.",
                        instance, errors=[{"field": BODY, "reason": reason}])


def body_reason(cause: BaseException) -> str | None:
    """Why a JSON body could not be read at all, from the error parsing raised."""
    if isinstance(cause, UnicodeDecodeError):
        where = _position(cause.object, cause.start)
        return f"not valid UTF-8: {cause.reason} ({where}, byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "JSON nested too deeply"
    return None


def _position(doc: str | bytes, pos: int) -> str:
    """Line and column (1-based) of offset ``pos``, as ``json`` counts them."""
    text = doc if isinstance(doc, str) else doc.decode("latin-1")  # one char per byte
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return f"line {line}, column {column}"


# --- validation errors ---------------------------------------------------------------------------

def field_errors(errors: Sequence[Mapping[str, Any]], body: Any = None) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as ``{"field": "location.lat", "reason": ...}``.

    A JSON syntax error is about the body as a whole: its field is ``(body)`` and its reason
    says where (line and column), instead of naming a character offset as a field.
    """
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]  # where it came from; a field may itself be called "body"
        reason = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        raw_loc = tuple(e.get("loc", ()))
        if e.get("type") == "json_invalid" and raw_loc[:1] == ("body",) and len(raw_loc) == 2:
            loc = []  # FastAPI names the offset as if it were a field
            reason = f"invalid JSON: {_ctx_error(e)}"
            if isinstance(raw_loc[1], int) and isinstance(body, str | bytes):
                reason += f" ({_position(body, raw_loc[1])})"
        out.append({"field": ".".join(loc) or BODY, "reason": reason})
    return out


def _ctx_error(e: Mapping[str, Any]) -> str:
    ctx = e.get("ctx")
    error = ctx.get("error") if isinstance(ctx, Mapping) else None
    return str(error or e.get("msg", "not JSON"))


def validation_problem(errors: Sequence[Mapping[str, Any]], instance: str | None = None,
                       body: Any = None) -> dict[str, Any]:
    return problem_body(422, "validation_failed", "Data laporan tidak valid; perbaiki kolom berikut.",
                        instance, errors=field_errors(errors, body))


def describe(exc: ValidationError) -> str:
    return "; ".join(f"{e['field']}: {e['reason']}" for e in field_errors(exc.errors()))


# --- JSON depth ----------------------------------------------------------------------------------

# A string, or an unterminated one up to the end: every quote starts a match that succeeds,
# so removing strings is linear however the quotes fall (possessive: no backtracking).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PAIR = re.compile(rb"\[\]|\{\}")


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body`` nests arrays/objects deeper than ``limit``, without parsing it.

    Strings are removed, then innermost ``[]``/``{}`` pairs are peeled off at most ``limit``
    times (each pass in C); what is left after that is deeper. Unbalanced brackets stop the
    peeling and are left to the parser, which names where the JSON is wrong.
    """
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        brackets, n = _PAIR.subn(b"", brackets)
        if n == 0:
            return False
    return bool(_PAIR.search(brackets))


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class JsonDepthGuard:
    """Refuses a native-API JSON body nested deeper than the limit before anything parses it
    (plain ASGI: reads the body once and hands it on)."""

    def __init__(self, app: ASGIApp, max_depth: int | None = None) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH")
                or not is_native(scope["path"]) or not _json_content(scope)):
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        limit = self._limit(scope)
        if json_depth_exceeds(body, limit):
            problem = invalid_body(f"JSON nested deeper than {limit} levels", instance(scope["path"]))
            return await problem_response(problem)(scope, receive, send)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _limit(self, scope: Scope) -> int:
        if self.max_depth is not None:
            return self.max_depth
        runtime = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
        settings = getattr(runtime, "settings", None)
        limit: int = settings.intake.max_json_depth if settings is not None else _DEFAULTS.max_json_depth
        return limit


def _json_content(scope: Scope) -> bool:
    """Whether FastAPI will parse the body as JSON: a JSON media type, or none at all."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            mime: bytes = value.split(b";", 1)[0].strip().lower()
            return mime == b"application/json" or (mime.startswith(b"application/")
                                                    and mime.endswith(b"+json"))
    return True


# --- OpenAPI -------------------------------------------------------------------------------------

ResponseDoc = dict[int | str, dict[str, Any]]


def error_responses(model: Any, *codes: int | tuple[int, str],
                    descriptions: Mapping[int, str] | None = None) -> ResponseDoc:
    """``responses=`` for a route: each status with its error ``model`` and a description.

    A code may come with its own description: ``(403, "the key may not submit for this source")``.
    """
    known = DESCRIPTIONS if descriptions is None else descriptions
    out: ResponseDoc = {}
    for c in codes:
        code, text = c if isinstance(c, tuple) else (c, known.get(c) or _phrase(c))
        out[code] = {"model": model, "description": text}
    return out


def problem_responses(*codes: int | tuple[int, str]) -> ResponseDoc:
    """``responses=`` documenting each 4xx as a Problem under ``application/problem+json``:
    ``@router.post(..., responses=problem_responses(403, (409, "already closed"), 422))``."""
    return error_responses(Problem, *codes)


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers do for every ``/v1`` operation.

    Every 4xx is a Problem under ``application/problem+json`` (also those documented with a
    description only, and FastAPI's own 422, which these handlers never send in its shape);
    an operation with a body may answer 400 (unreadable body), one with a security
    requirement 401.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = generate()
        if fresh:
            _problems_in(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented customisation


def _problems_in(schema: dict[str, Any]) -> None:
    ref = {"$ref": "#/components/schemas/Problem"}
    used = False
    for path, item in schema.get("paths", {}).items():
        if not is_native(path):
            continue
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            if "requestBody" in op:
                responses.setdefault("400", {"description": DESCRIPTIONS[400]})
                responses.setdefault("413", {"description": DESCRIPTIONS[413]})
            if op.get("security"):
                responses.setdefault("401", {"description": DESCRIPTIONS[401]})
                responses.setdefault("429", {"description": DESCRIPTIONS[429]})
            for code, response in responses.items():
                if not code.startswith("4"):
                    continue
                if response.get("description") == "Validation Error":  # FastAPI's own
                    response["description"] = DESCRIPTIONS[422]
                response["content"] = {PROBLEM_JSON: {"schema": dict(ref)}}
                used = True
    if not used:
        return
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    prune_unused_schemas(schema, "HTTPValidationError", "ValidationError")


def prune_unused_schemas(schema: dict[str, Any], *names: str) -> None:
    """Remove the named component schemas that nothing refers to any more (in order: a
    schema only another pruned one refers to goes too)."""
    schemas = schema.get("components", {}).get("schemas", {})
    for name in names:
        if name not in schemas:
            continue
        ref = json.dumps(f"#/components/schemas/{name}")
        rest = {k: v for k, v in schema.items() if k != "components"}
        others = {k: v for k, v in schemas.items() if k != name}
        if ref not in json.dumps(rest) and ref not in json.dumps(others):
            del schemas[name]


__all__ = [
    "BODY", "PROBLEM_JSON", "ApiError", "FieldError", "Problem", "describe", "error_responses",
    "field_errors", "install_error_handlers", "json_depth_exceeds", "problem_body",
    "problem_responses", "prune_unused_schemas",
]
