"""``X-Request-ID`` on every HTTP response of a service, and in its log lines.

A pure ASGI wrapper (no extra task per request) around the whole application, outside every
other middleware and the server-error handler, so even a 500 or a 413 carries the id. An
incoming id is kept when it is well-formed (1–128 characters of letters, digits and
``._:-``: safe in a header, a log line and a database column); anything else is replaced by
a fresh one (a UUID4 hex). The id is held in a context variable for the request's duration:
``shared.logs`` adds it to each line, and handlers read it with ``current_request_id``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI

HEADER = "x-request-id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_current: ContextVar[str | None] = ContextVar("sp4n_request_id", default=None)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


def current_request_id() -> str | None:
    """The id of the request being handled (None outside a request)."""
    return _current.get()


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's id when well-formed, else a new one."""
    for name, value in headers:
        if name.lower() == HEADER.encode():
            try:
                given = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _WELL_FORMED.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers") or [])
        scope.setdefault("state", {})["request_id"] = request_id
        token = _current.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER.encode()]
                headers.append((HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)


class RequestIdApp(FastAPI):
    """A FastAPI whose whole middleware stack (the server-error handler included) runs
    inside ``RequestIdMiddleware``."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(super().build_middleware_stack())
