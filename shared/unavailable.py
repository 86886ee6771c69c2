"""HTTP during an outage: a request that fails transiently (the database unreachable or too
slow, ``shared.failures``) is answered ``503`` with ``Retry-After`` and an RFC 9457 Problem
(the shape of intake's ``services/intake/errors.py``)::

    {"type": "urn:sp4n:problem:unavailable", "title": "Layanan sementara tidak tersedia",
     "status": 503, "detail": "Basis data sedang tidak dapat dihubungi. Coba lagi dalam 5 detik.",
     "instance": "/v1/complaints"}

How long a request may wait before it fails is bounded by the pool's acquire, connect and
command timeouts (``settings.db``). Other failures propagate unchanged (a bug is a 500).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from fastapi.responses import JSONResponse

from shared.failures import classify

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
UNAVAILABLE_TYPE = "urn:sp4n:problem:unavailable"
TITLE = "Layanan sementara tidak tersedia"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def unavailable_problem(path: str, retry_after_s: int, dependency: str | None = "database") -> dict[str, Any]:
    what = "Antrean pesan" if dependency == "broker" else "Basis data"
    return {"type": UNAVAILABLE_TYPE, "title": TITLE, "status": 503,
            "detail": f"{what} sedang tidak dapat dihubungi. Coba lagi dalam {retry_after_s} detik.",
            "instance": quote(path, safe="/:@!$&'()*+,;=-._~")}


class UnavailableMiddleware:
    """Turns a transient failure escaping a route into ``503`` + ``Retry-After`` (pure ASGI:
    nothing is buffered; a response already started is left to fail as it would)."""

    def __init__(self, app: ASGIApp, retry_after_s: int = 5) -> None:
        self.app = app
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            failure = classify(exc)
            if started or not failure.transient:
                raise
            log.warning("answered 503 to %s %s: %s", scope.get("method"), scope.get("path"),
                        failure.reason[:300])
            response = JSONResponse(unavailable_problem(scope.get("path", ""), self.retry_after_s,
                                                        failure.unavailable),
                                    status_code=503, media_type=PROBLEM_JSON,
                                    headers={"Retry-After": str(self.retry_after_s)})
            await response(scope, receive, send)
