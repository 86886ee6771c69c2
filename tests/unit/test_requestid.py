"""X-Request-ID (``shared.requestid``) and its place in the log lines (``shared.logs``)."""

from __future__ import annotations

import json
import logging

import httpx
from fastapi import HTTPException

from shared.logs import JsonFormatter
from shared.requestid import RequestIdApp, current_request_id, request_id_from

log = logging.getLogger("tests.requestid")


def app_with_routes() -> RequestIdApp:
    app = RequestIdApp()
    seen: list[str | None] = []
    app.state.seen = seen

    @app.get("/ok")
    async def ok() -> dict[str, str | None]:
        seen.append(current_request_id())
        return {"id": current_request_id()}

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unhandled")

    return app


async def get(app: RequestIdApp, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path, headers=headers)


async def test_a_well_formed_incoming_id_is_kept_and_visible_to_handlers():
    app = app_with_routes()
    r = await get(app, "/ok", **{"X-Request-ID": "trace-01.a:b"})
    assert r.headers["x-request-id"] == "trace-01.a:b" and r.json() == {"id": "trace-01.a:b"}
    assert current_request_id() is None  # reset after the request


async def test_errors_and_unhandled_exceptions_carry_the_id_too():
    app = app_with_routes()
    for path, status in (("/teapot", 418), ("/boom", 500), ("/missing", 404)):
        r = await get(app, path)
        assert r.status_code == status and len(r.headers["x-request-id"]) == 32


def test_malformed_ids_are_replaced():
    for given in (b"", b"x" * 129, b"a b", b"id\r\nX-Evil: 1", "é".encode(), b"\xff"):
        rid = request_id_from([(b"x-request-id", given)])
        assert rid != given.decode("latin-1") and len(rid) == 32
    assert request_id_from([(b"X-Request-ID", b"ok-1")]) == "ok-1"


async def test_the_log_line_carries_the_request_id():
    app = RequestIdApp()
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter("intake").format(record))

    handler = Capture()
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    @app.get("/logged")
    async def logged() -> None:
        log.info("handled")

    try:
        await get(app, "/logged", **{"X-Request-ID": "log-me-1"})
        log.info("outside")
    finally:
        log.removeHandler(handler)
    inside, outside = (json.loads(line) for line in lines)
    assert inside["request_id"] == "log-me-1" and inside["msg"] == "handled"
    assert "request_id" not in outside
