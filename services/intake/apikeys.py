"""API keys (portals, the admin koordinator, OPDs): ``sp4n_<prefix>_<secret>``.

Only SHA-256 of the key is stored: the secret is 256 random bits, so a fast hash is safe
(no dictionary to guess from) and verification stays cheap on the hot path. The prefix
finds the row; the comparison is constant-time. A key is printed once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.intake.lifecycle import ROLES
from shared.events import CODE_PATTERN

KEY_PREFIX = "sp4n"
# The scopes a key of each role carries. Roles are the lifecycle's (``lifecycle.ROLES``);
# "system" acts inside intake and has no key.
SCOPES: dict[str, tuple[str, ...]] = {
    "portal": ("complaints:submit", "complaints:read"),
    "admin_koordinator": ("complaints:submit", "complaints:read", "complaints:admin"),
    # pejabat penghubung of one OPD: reads and acts on complaints currently disposed to it.
    "opd": ("complaints:read",),
}
assert set(SCOPES) <= set(ROLES)
_OPD_CODE = re.compile(CODE_PATTERN)


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    role: str
    scopes: tuple[str, ...]
    source: str | None = None  # a portal key may submit and read only this source's complaints
    opd_code: str | None = None  # role "opd": the OPD it speaks for

    def may(self, scope: str) -> bool:
        return scope in self.scopes


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(raw: str) -> tuple[str, str] | None:
    parts = raw.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], raw.strip()


async def create_api_key(conn: asyncpg.Connection, name: str, role: str = "portal",
                         source: str | None = None, opd_code: str | None = None
                         ) -> tuple[ApiKey, str]:
    """Create a key; returns it and the plaintext, which is never stored.

    ``role`` may also be given as ``opd:<code>``.
    """
    if role.startswith("opd:"):
        role, opd_code = "opd", opd_code or role[4:]
    if role not in SCOPES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(SCOPES)}")
    if role == "opd":
        if not opd_code or not _OPD_CODE.match(opd_code):
            raise ValueError("role 'opd' needs --opd-code: lower-case letters, digits, '_', '-', '.'")
        if source:
            raise ValueError("an OPD key is not bound to a portal source")
    elif opd_code:
        raise ValueError(f"--opd-code applies to role 'opd' only, not {role!r}")
    prefix = secrets.token_hex(4)
    plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    scopes = list(SCOPES[role])
    key_id = await conn.fetchval(
        "INSERT INTO api_keys (name, prefix, secret_hash, role, scopes, source, opd_code)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        name, prefix, _hash(plaintext), role, scopes, source, opd_code,
    )
    return ApiKey(key_id, name, role, tuple(scopes), source, opd_code), plaintext


async def verify_api_key(conn: asyncpg.Connection | asyncpg.Pool, raw: str) -> ApiKey | None:
    parsed = split_key(raw)
    if parsed is None:
        return None
    prefix, full = parsed
    row = await conn.fetchrow(
        "SELECT id, name, role, scopes, source, opd_code, secret_hash FROM api_keys"
        " WHERE prefix = $1 AND revoked_at IS NULL", prefix)
    if row is None or not hmac.compare_digest(row["secret_hash"], _hash(full)):
        return None
    return ApiKey(row["id"], row["name"], row["role"], tuple(row["scopes"]), row["source"],
                  row["opd_code"])


@dataclass(frozen=True)
class ApiKeyListing:
    """A key as ``sp4n list-api-keys`` shows it (never its secret or hash)."""

    id: int
    name: str
    prefix: str
    role: str
    source: str | None
    opd_code: str | None
    created_at: datetime
    revoked_at: datetime | None


async def list_api_keys(conn: asyncpg.Connection) -> list[ApiKeyListing]:
    rows = await conn.fetch(
        "SELECT id, name, prefix, role, source, opd_code, created_at, revoked_at FROM api_keys"
        " ORDER BY id")
    return [ApiKeyListing(**dict(r)) for r in rows]


async def revoke_api_key(conn: asyncpg.Connection, key_id: int) -> bool:
    done: str = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id)
    return done.endswith(" 1")
