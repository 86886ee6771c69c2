"""API-key authentication, with a short in-process cache of verified keys.

Revocation takes effect within the cache's TTL (``settings.intake.key_cache_ttl_s``) on
every replica; expiry at once (checked on every request, cached or not). ``last_used_at``
is kept in batches (``UsageRecorder``): a request only adds its key's id to a set in
memory, and one UPDATE every ``settings.intake.key_usage_flush_s`` writes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.intake.apikeys import ApiKey, lookup_api_key, mark_used
from services.intake.errors import ApiError
from shared.service import runtime_pool
from shared.settings import IntakeSettings

log = logging.getLogger(__name__)
CACHE_TTL_S = IntakeSettings().key_cache_ttl_s

# The two ways to send the key, as OpenAPI security schemes (the Authorize button of /docs).
# auto_error=False: a missing key is answered by ``Authenticator`` as a 401 problem.
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer",
    description="Kunci API portal: `Authorization: Bearer <kunci>`.")
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey",
    description="Kunci API portal di header `X-API-Key` (alternatif Bearer).")


class UsageRecorder:
    """The ids of keys used since the last flush; ``flush`` writes them in one UPDATE.

    A key used between two flushes gets one write, however many requests it made; a
    flush that fails keeps its ids for the next one (``last_used_at`` is a hint for
    operators, never a security decision: losing one flush at a crash is acceptable)."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def seen(self, key_id: int) -> None:
        self._seen.add(key_id)

    @property
    def pending(self) -> frozenset[int]:
        return frozenset(self._seen)

    async def flush(self, pool: asyncpg.Pool | asyncpg.Connection) -> int:
        """Write the pending ids; returns how many keys were written."""
        ids, self._seen = self._seen, set()
        try:
            await mark_used(pool, ids)
        except BaseException:
            self._seen |= ids
            raise
        return len(ids)

    async def run(self, pool: Callable[[], asyncpg.Pool], interval_s: float) -> None:
        """Flush every ``interval_s`` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await self.flush(pool())
                except Exception as exc:  # noqa: BLE001 - a hint; never stop the loop
                    log.warning("api key usage flush failed; retried at the next one: %s",
                                type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush(pool()))


class KeyCache:
    """Unrevoked keys by the SHA-256 of their plaintext, for ``ttl_s`` seconds. ``lookup``
    returns expired keys too (the caller answers why); ``verify`` only live ones. Each live
    key found is reported to ``usage``."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, usage: UsageRecorder | None = None) -> None:
        self.ttl_s = ttl_s
        self.usage = usage
        self._cache: dict[str, tuple[float, ApiKey]] = {}

    async def lookup(self, pool: asyncpg.Pool, raw: str) -> ApiKey | None:
        digest = hashlib.sha256(raw.encode()).hexdigest()
        cached = self._cache.get(digest)
        if cached and cached[0] > time.monotonic():
            key: ApiKey | None = cached[1]
        else:
            key = await lookup_api_key(pool, raw)
            if key is None:
                self._cache.pop(digest, None)
                return None
            self._cache[digest] = (time.monotonic() + self.ttl_s, key)
        if key is not None and self.usage is not None and not key.expired(datetime.now(UTC)):
            self.usage.seen(key.id)
        return key

    async def verify(self, pool: asyncpg.Pool, raw: str) -> ApiKey | None:
        key = await self.lookup(pool, raw)
        return None if key is None or key.expired(datetime.now(UTC)) else key


def security_schemes(
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    _header: Annotated[str | None, Security(api_key_scheme)],
) -> None:
    """A dependency that only declares both security schemes in the OpenAPI document (the
    Authorize button of ``/docs``); ``Authenticator.authenticate`` reads the headers itself,
    so every way of calling it accepts exactly the same requests."""


class Authenticator:
    """The native API's key, from ``Authorization: Bearer`` or ``X-API-Key``.

    Use the instance as the route dependency (``Depends(authenticator)``): it declares both
    security schemes in the OpenAPI document and takes the pool from the app's runtime.
    """

    def __init__(self, key_cache_ttl_s: float = CACHE_TTL_S,
                 usage: UsageRecorder | None = None) -> None:
        self.usage = usage or UsageRecorder()
        self._keys = KeyCache(key_cache_ttl_s, self.usage)

    async def __call__(self, request: Request,
                       _schemes: Annotated[None, Depends(security_schemes)]) -> ApiKey:
        return await self.authenticate(runtime_pool(request), request)

    async def authenticate(self, pool: asyncpg.Pool, request: Request) -> ApiKey:
        raw = request.headers.get("x-api-key") or ""
        authz = request.headers.get("authorization", "")
        if not raw and authz.lower().startswith("bearer "):
            raw = authz[7:].strip()
        if not raw:
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
        key = await self._keys.lookup(pool, raw)
        if key is None:
            raise _unauthorized("invalid or revoked API key")
        if key.expires_at is not None and key.expired(datetime.now(UTC)):
            until = key.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise _unauthorized(f"expired API key (expired at {until}); ask the operator for a new one")
        return key


def _unauthorized(reason: str) -> ApiError:
    return ApiError(401, "unauthorized", reason, headers={"WWW-Authenticate": "Bearer"})


def require(key: ApiKey, scope: str, field: str | None = None) -> None:
    """403 unless the key carries ``scope``; ``field`` names the request field that needs it."""
    if not key.may(scope):
        extra: dict[str, Any] = {"field": field} if field else {}
        raise ApiError(403, "forbidden", f"this API key lacks the scope '{scope}'"
                       + (f" needed for '{field}'" if field else ""), scope=scope, **extra)
