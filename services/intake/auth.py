"""API-key authentication for portals, with a short in-process cache of verified keys.

Revocation takes effect within ``CACHE_TTL_S`` on every replica.
"""

from __future__ import annotations

import hashlib
import time

import asyncpg
from fastapi import HTTPException, Request, status

from services.intake.apikeys import ApiKey, verify_api_key

CACHE_TTL_S = 10.0


class KeyCache:
    """Verified keys by the SHA-256 of their plaintext, for ``CACHE_TTL_S``."""

    def __init__(self) -> None:
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
        self._cache[digest] = (time.monotonic() + CACHE_TTL_S, key)
        return key


class Authenticator:
    """The native API's key, from ``Authorization: Bearer`` or ``X-API-Key``."""

    def __init__(self) -> None:
        self._keys = KeyCache()

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


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED,
                         detail={"error": "unauthorized", "message": reason},
                         headers={"WWW-Authenticate": "Bearer"})


def require(key: ApiKey, scope: str) -> None:
    if not key.may(scope):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail={
            "error": "forbidden", "message": f"this API key lacks the scope '{scope}'"})
