"""API-key authentication for portals, with a short in-process cache of verified keys.

Revocation takes effect within the cache's TTL (``settings.intake.key_cache_ttl_s``) on
every replica.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated

import asyncpg
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.intake.apikeys import ApiKey, verify_api_key
from services.intake.errors import ApiError
from shared.service import runtime_pool
from shared.settings import IntakeSettings

CACHE_TTL_S = IntakeSettings().key_cache_ttl_s

# The two ways to send the key, as OpenAPI security schemes (the Authorize button of /docs).
# auto_error=False: a missing key is answered by ``Authenticator`` as a 401 problem.
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer",
    description="Kunci API portal: `Authorization: Bearer <kunci>`.")
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey",
    description="Kunci API portal di header `X-API-Key` (alternatif Bearer).")


class KeyCache:
    """Verified keys by the SHA-256 of their plaintext, for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float = CACHE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, ApiKey]] = {}

    async def verify(self, pool: asyncpg.Pool, raw: str) -> ApiKey | None:
        digest = hashlib.sha256(raw.encode()).hexdigest()
        cached = self._cache.get(digest)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        key = await verify_api_key(pool, raw)
        if key is None:
            self._cache.pop(digest, None)
            return None
        self._cache[digest] = (time.monotonic() + self.ttl_s, key)
        return key


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

    def __init__(self, key_cache_ttl_s: float = CACHE_TTL_S) -> None:
        self._keys = KeyCache(key_cache_ttl_s)

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
        key = await self._keys.verify(pool, raw)
        if key is None:
            raise _unauthorized("invalid or revoked API key")
        return key


def _unauthorized(reason: str) -> ApiError:
    return ApiError(401, "unauthorized", reason, headers={"WWW-Authenticate": "Bearer"})


def require(key: ApiKey, scope: str) -> None:
    if not key.may(scope):
        raise ApiError(403, "forbidden", f"this API key lacks the scope '{scope}'")
