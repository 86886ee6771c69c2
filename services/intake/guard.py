"""intake's front door (plain ASGI, outermost): what a request may cost before anything reads it.

In this order, each before the body is read:

1. A client address that failed authentication too often (``rate_limit_failed_auth``) gets
   429 on every request carrying a key, without a database query.
2. A native-API route that takes a key (``/v1``, see ``KeyRoutes``): a missing, malformed or
   invalid key is 401 here, so an unauthenticated body is never read (the route checks the
   key again, from the authenticator's cache). A valid key is counted against
   ``rate_limit_per_key``.
3. Public reads (Open311 GETs) are counted per client address and per ``api_key``.
4. A ``Content-Length`` above the limit (``max_body_bytes``; Open311:
   ``open311_max_body_bytes``) is 413 at once; a body without one (chunked) is counted
   while it streams and cut at the limit with 413.

Every 401 (and Open311's 403 for a bad ``api_key``) the app answers counts as a failed
authentication of the client's address. Refusals are Problem Details (Open311: the spec's
error array), 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from services.intake.errors import BODY, PROBLEM_JSON, ApiError, instance, is_native, problem_body
from services.intake.ratelimit import Limit, RateLimiter
from shared.settings import IntakeSettings

log = logging.getLogger("sp4n.intake.guard")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# The key check of the native API: the key's identity (for its rate limit), or ``ApiError``.
Authenticate = Callable[[Request], Awaitable[str]]

OPEN311_PREFIX = "/open311/v2"


@dataclass(frozen=True)
class GuardLimits:
    max_body_bytes: int
    open311_max_body_bytes: int
    failed_auth: Limit
    public_reads: Limit
    public_reads_per_key: Limit
    per_key: Limit

    @classmethod
    def from_settings(cls, s: IntakeSettings) -> GuardLimits:
        return cls(max_body_bytes=s.max_body_bytes, open311_max_body_bytes=s.open311_max_body_bytes,
                   failed_auth=Limit.parse("failed_auth", s.rate_limit_failed_auth),
                   public_reads=Limit.parse("public_reads", s.rate_limit_public_reads),
                   public_reads_per_key=Limit.parse("public_reads_key",
                                                    s.rate_limit_public_reads_per_key),
                   per_key=Limit.parse("key", s.rate_limit_per_key))


class KeyRoutes:
    """Which requests go to an operation that takes a key: those the app's OpenAPI document
    gives a security requirement (the document is what portals are told; it is read at the
    first request, when every route is installed)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._operations: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def __call__(self, scope: Scope) -> bool:
        if self._operations is None:
            self._operations = self._secured(self._app.openapi())
        path, method = scope["path"], scope["method"].lower()
        return any(method in methods and pattern.fullmatch(path) for pattern, methods in self._operations)

    @staticmethod
    def _secured(document: dict[str, Any]) -> list[tuple[re.Pattern[str], frozenset[str]]]:
        out = []
        for template, item in document.get("paths", {}).items():
            methods = frozenset(m for m, op in item.items() if isinstance(op, dict) and op.get("security"))
            if methods:
                parts = re.split(r"(\{[^}]+\})", template)
                regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
                out.append((re.compile(regex), methods))
        return out


class RequestGuard:
    """See the module's docstring. ``needs_key``: whether a request goes to a route that takes
    the native API's key (see ``KeyRoutes``); ``sign_in_paths``: form posts that carry a key
    (the /kinerja sign-in), rate-limited like any other attempt to authenticate."""

    def __init__(self, app: ASGIApp, *, limits: GuardLimits, limiter: RateLimiter,
                 authenticate: Authenticate, needs_key: Callable[[Scope], bool],
                 sign_in_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.limits = limits
        self.limiter = limiter
        self.authenticate = authenticate
        self.needs_key = needs_key
        self.sign_in_paths = sign_in_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        native = is_native(path) and self.needs_key(scope)
        open311 = path.startswith(OPEN311_PREFIX + "/")
        client = _client(scope)
        api_key = _query_param(scope, "api_key") if open311 else None
        carries_key = native or bool(api_key) or (open311 and scope["method"] == "POST") or (
            path in self.sign_in_paths and scope["method"] == "POST")
        reply = _Reply(scope, send, open311)

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start" and carries_key and (
                    message["status"] == 401 or (open311 and message["status"] == 403)):
                await self.limiter.hit(self.limits.failed_auth, client)
            await send(message)

        reply.send = counted_send

        if carries_key and (wait := await self.limiter.exceeded(self.limits.failed_auth, client)):
            return await reply.too_many(wait, "too many failed authentications from this address")
        if native:
            try:
                identity = await self.authenticate(Request(scope))
            except ApiError as exc:
                return await reply.problem(exc.problem(instance(path)), exc.status_code, exc.headers)
            if wait := await self.limiter.hit(self.limits.per_key, hashlib.sha256(
                    identity.encode()).hexdigest()[:32]):
                return await reply.too_many(wait, "too many requests with this API key")
        if open311 and scope["method"] in ("GET", "HEAD"):
            if wait := await self.limiter.hit(self.limits.public_reads, client):
                return await reply.too_many(wait, "too many requests from this address")
            if api_key and (wait := await self.limiter.hit(
                    self.limits.public_reads_per_key, hashlib.sha256(api_key.encode()).hexdigest()[:32])):
                return await reply.too_many(wait, "too many requests with this api_key")

        limit = self.limits.open311_max_body_bytes if open311 else self.limits.max_body_bytes
        length = _content_length(scope)
        if length is not None and length > limit:
            return await reply.too_large(limit)

        received = 0
        cut = False

        async def limited_receive() -> Message:
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answered here; the app sees the client gone and its answer is dropped.
                    cut = True
                    await reply.too_large(limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not reply.answered:
                await reply.send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not cut:
                raise
            # The body was cut and 413 answered: whatever the app made of a vanished client
            # is nobody's concern.
            log.debug("request body cut at %d bytes", limit, exc_info=True)


class _Reply:
    """The guard's own answers, in the shape of the part of the API that was asked."""

    def __init__(self, scope: Scope, send: Send, open311: bool) -> None:
        self.scope = scope
        self.send = send
        self.open311 = open311
        self.answered = False

    async def problem(self, body: dict[str, Any], status: int,
                      headers: dict[str, str] | None = None) -> None:
        self.answered = True
        response = JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
        await response(self.scope, _no_body, self.send)

    async def spec_error(self, status: int, description: str,
                         headers: dict[str, str] | None = None) -> None:
        self.answered = True
        response = JSONResponse([{"code": status, "description": description}], status_code=status,
                                headers=headers)
        await response(self.scope, _no_body, self.send)

    async def too_large(self, limit: int) -> None:
        if self.answered:
            return
        if self.open311:
            return await self.spec_error(413, f"body: larger than {limit} bytes")
        await self.problem(problem_body(
            413, "payload_too_large", f"Isi permintaan melebihi batas {limit} byte.",
            instance(self.scope["path"]),
            errors=[{"field": BODY, "reason": f"larger than {limit} bytes"}]), 413)

    async def too_many(self, retry_after: int, reason: str) -> None:
        headers = {"Retry-After": str(retry_after)}
        if self.open311:
            return await self.spec_error(429, f"rate limit: {reason}; retry after {retry_after} s",
                                         headers)
        await self.problem(problem_body(
            429, "rate_limited", f"Terlalu banyak permintaan; coba lagi dalam {retry_after} detik.",
            instance(self.scope["path"]), retry_after=retry_after, reason=reason), 429, headers)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _query_param(scope: Scope, name: str) -> str | None:
    raw = scope.get("query_string", b"").decode("latin-1")
    for k, v in parse_qsl(raw, keep_blank_values=True):
        if k == name and v.strip():
            return v
    return None


__all__ = ["GuardLimits", "KeyRoutes", "RequestGuard"]
