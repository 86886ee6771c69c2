"""intake's error answers, without I/O: Problem Details, body checks, the OpenAPI document."""

import json
import time
from types import SimpleNamespace
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException
from prometheus_client import CollectorRegistry

from services.intake.apikeys import ApiKey
from services.intake.auth import Authenticator, require
from services.intake.errors import (
    ApiError,
    Problem,
    field_errors,
    install_error_handlers,
    json_depth_exceeds,
    problem_body,
    problem_responses,
)
from services.intake.metrics import IntakeMetrics


@pytest.mark.parametrize(("body", "limit", "deeper"), [
    (b"[]", 1, False),
    (b"[[]]", 1, True),
    (b"[[]]", 2, False),
    (b'{"a": [1, {"b": [2]}], "c": {}}', 4, False),
    (b'{"a": [1, {"b": [2]}], "c": {}}', 3, True),
    (b'{"a": "[[[[[[[[{{{{{{{{"}', 1, False),  # brackets in a string are text
    (b'{"a": "x\\"[[[[[[[[[["}', 1, False),  # an escaped quote does not end the string
    (b"[" * 2000 + b"]" * 2000, 32, True),
    (b"[" * 2000, 32, False),  # unbalanced: the parser says where
    (b'{"a": "unterminated [[[[', 1, False),
    (b"", 32, False),
    (b"42", 1, False),
])
def test_json_depth(body, limit, deeper):
    assert json_depth_exceeds(body, limit) is deeper


def test_json_depth_stays_linear_on_hostile_quotes():
    """Escaped quotes must not make the depth scan quadratic: four times the input costs
    about four times the time (a quadratic scan: sixteen). Compared as a ratio of the best of
    three runs, so a loaded machine slows both sizes alike instead of failing the test."""
    def cost(n: int) -> float:
        bodies = (b'"\\"' * n + b"[" * 10, b'"' + b'a"' * n)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for body in bodies:
                json_depth_exceeds(body, 32)
            best = min(best, time.perf_counter() - started)
        return best

    assert cost(200_000) / cost(50_000) < 8


def test_a_json_syntax_error_names_the_body_and_says_where():
    doc = '{\n  "title": "x",\n  oops\n}'
    errors = [{"type": "json_invalid", "loc": ("body", doc.index("oops")), "msg": "JSON decode error",
               "ctx": {"error": "Expecting property name enclosed in double quotes"}}]
    assert field_errors(errors, doc) == [{
        "field": "(body)",
        "reason": "invalid JSON: Expecting property name enclosed in double quotes (line 3, column 3)"}]


def test_field_errors_name_the_field_and_the_reason_only():
    errors = [{"type": "value_error", "loc": ("body", "location", "lat"), "msg": "Value error, too far"},
              {"type": "missing", "loc": ("body",), "msg": "Field required"},
              {"type": "greater_than_equal", "loc": ("query", "limit"), "msg": "too small"}]
    assert field_errors(errors) == [{"field": "location.lat", "reason": "too far"},
                                    {"field": "(body)", "reason": "Field required"},
                                    {"field": "limit", "reason": "too small"}]


def test_problem_body_members():
    p = problem_body(409, "invalid_transition", "tidak bisa", "/v1/complaints/X/close",
                     current_state="DITERIMA", allowed_actions=["verify"])
    assert p == {"type": "urn:sp4n:problem:invalid_transition", "status": 409, "detail": "tidak bisa",
                 "title": "Aksi tidak dapat dilakukan pada status laporan saat ini",
                 "instance": "/v1/complaints/X/close",
                 "current_state": "DITERIMA", "allowed_actions": ["verify"]}
    # Field errors keep field and reason; extension members never replace the standard ones.
    p = problem_body(422, "validation_failed", "x", errors=[
        {"field": "duplicate_of", "reason": "required", "type": "value_error"}], title="x")
    assert p["errors"] == [{"field": "duplicate_of", "reason": "required"}]
    assert p["title"] == "Data tidak valid"
    assert "instance" not in p
    assert problem_body(404, None, "Not Found")["type"] == "about:blank"
    assert problem_body(404, None, "Not Found")["title"] == "Not Found"
    Problem.model_validate(ApiError(404, "not_found", "tidak ada", field="key").problem("/v1/x"))


def test_problem_responses_document_each_status():
    doc = problem_responses(401, (409, "already closed"))
    assert doc == {401: {"model": Problem, "description": "no API key, or an invalid or revoked one"},
                   409: {"model": Problem, "description": "already closed"}}


def small_app() -> FastAPI:
    """A stand-in for the native API: the real handlers, the real authenticator."""
    app = FastAPI()
    install_error_handlers(app, IntakeMetrics(CollectorRegistry()), max_json_depth=4)
    app.state.runtime = SimpleNamespace(pool=None)  # never reached without a key
    authenticator = Authenticator()
    Key = Annotated[ApiKey, Depends(authenticator)]

    @app.get("/v1/things", responses=problem_responses(401, 403))
    async def things(key: Key) -> dict[str, str]:
        require(key, "things:read")
        return {}

    @app.post("/v1/conflict")
    async def conflict(n: int) -> None:
        raise HTTPException(409, detail={"error": "conflict", "message": "sudah ada",
                                         "conflicting_fields": ["title"]})

    @app.post("/v1/echo")
    async def echo(body: dict[str, object]) -> dict[str, object]:
        return body

    return app


async def call(app: FastAPI, method: str, url: str, **kw) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.request(method, url, **kw)


async def test_the_authenticator_declares_both_security_schemes():
    app = small_app()
    doc = app.openapi()
    assert doc["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer", "description": doc["components"][
            "securitySchemes"]["bearer"]["description"]},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": doc[
            "components"]["securitySchemes"]["apiKey"]["description"]},
    }
    op = doc["paths"]["/v1/things"]["get"]
    assert op["security"] == [{"bearer": []}, {"apiKey": []}]
    assert op["responses"]["401"]["content"] == {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "422" not in op["responses"]  # no parameter to be invalid
    assert "400" in doc["paths"]["/v1/echo"]["post"]["responses"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]


async def test_a_missing_key_is_a_401_problem_with_the_challenge():
    r = await call(small_app(), "GET", "/v1/things")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:sp4n:problem:unauthorized" and r.json()["instance"] == "/v1/things"
    r = await call(small_app(), "GET", "/v1/things", headers={"Authorization": "Basic eDp5"})
    assert r.status_code == 401


async def test_an_http_exception_with_a_dict_renders_the_same_problem():
    r = await call(small_app(), "POST", "/v1/conflict", params={"n": 1})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert r.json() == {"type": "urn:sp4n:problem:conflict", "status": 409, "detail": "sudah ada",
                        "title": "Bertentangan dengan laporan yang sudah diterima",
                        "instance": "/v1/conflict", "conflicting_fields": ["title"]}


async def test_bodies_are_bounded_before_parsing():
    app = small_app()
    headers = {"content-type": "application/json"}
    r = await call(app, "POST", "/v1/echo", content=json.dumps({"a": [[[[1]]]]}), headers=headers)
    assert r.status_code == 400 and r.json()["errors"] == [
        {"field": "(body)", "reason": "JSON nested deeper than 4 levels"}]
    r = await call(app, "POST", "/v1/echo", content=json.dumps({"a": [[[1]]]}), headers=headers)
    assert r.status_code == 200 and r.json() == {"a": [[[1]]]}
    r = await call(app, "POST", "/v1/echo", content=b'{"a": "\xc3\x28"}', headers=headers)
    assert r.status_code == 400
    [error] = r.json()["errors"]
    assert error["field"] == "(body)"
    assert error["reason"] == "not valid UTF-8: invalid continuation byte (line 1, column 8, byte 7)"


def test_the_importer_reads_a_conflict_problem():
    from services.importer.submit import rejection_reason

    conflict = problem_body(409, "conflict", "sudah ada", "/v1/complaints", tracking_id="SKD-1",
                            conflicting_fields=["title", "location.desa"], complaint_id="c-1")
    reason = rejection_reason(httpx.Response(409, json=conflict))
    assert reason == "sudah diimpor sebagai SKD-1 dengan isi berbeda (kolom berbeda: title, location.desa)"
    forbidden = problem_body(403, "forbidden", "kunci ini hanya untuk 'wa-bot'", field="source")
    assert rejection_reason(httpx.Response(403, json=forbidden)) == "kunci ini hanya untuk 'wa-bot'"


async def test_instance_is_a_uri_reference_and_unknown_native_paths_are_problems():
    r = await call(small_app(), "GET", "/v1/laporan ä")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json() == {"type": "about:blank", "title": "Not Found", "status": 404,
                        "detail": "Not Found", "instance": "/v1/laporan%20%C3%A4"}
