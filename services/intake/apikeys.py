"""API keys (portals, importers, the admin koordinator, OPDs): ``sp4n_<prefix>_<secret>``.

Only SHA-256 of the key is stored: the secret is 256 random bits, so a fast hash is safe
(no dictionary to guess from) and verification stays cheap on the hot path. The prefix
finds the row; the comparison is constant-time. A key is printed once, at creation.

Invariants:
- a ``portal`` or ``importer`` key is bound to exactly one source (no source never means
  "any"; the database's ``api_keys_source_bound`` CHECK holds it too);
- what a key may do is its stored ``scopes``, checked per action (``auth.require``); a
  role's default scopes derive from the lifecycle table (``SCOPES``), and a key may be
  created with fewer, never more;
- an expired key (``expires_at`` passed) is refused at every verification, cached or not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from services.intake.lifecycle import SOURCE_BOUND_ROLES
from services.intake.scopes import SCOPES
from shared.events import CODE_PATTERN

KEY_PREFIX = "sp4n"
__all__ = ["SCOPES", "ApiKey", "ApiKeyListing", "check_key_spec", "create_api_key", "list_api_keys",
           "lookup_api_key", "mark_used", "revoke_api_key", "split_key", "verify_api_key"]
_OPD_CODE = re.compile(CODE_PATTERN)


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    role: str
    scopes: tuple[str, ...]
    source: str | None = None  # portal/importer: the one source it submits for and reads
    opd_code: str | None = None  # role "opd": the OPD it speaks for
    expires_at: datetime | None = None

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(raw: str) -> tuple[str, str] | None:
    parts = raw.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], raw.strip()


def check_key_spec(role: str, source: str | None, opd_code: str | None,
                   scopes: Iterable[str] | None = None) -> tuple[str, ...]:
    """The key's scopes; raises ``ValueError`` (naming the option) for an inconsistent key."""
    if role not in SCOPES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(SCOPES)}")
    if role == "opd":
        if not opd_code or not _OPD_CODE.match(opd_code):
            raise ValueError("role 'opd' needs --opd-code: lower-case letters, digits, '_', '-', '.'")
        if source:
            raise ValueError("an OPD key is not bound to a portal source")
    elif opd_code:
        raise ValueError(f"--opd-code applies to role 'opd' only, not {role!r}")
    if role in SOURCE_BOUND_ROLES and not source:
        raise ValueError(f"role {role!r} needs --source: the one source the key speaks for "
                         "(a key without one would read every portal's complaints)")
    if role not in SOURCE_BOUND_ROLES and source:
        raise ValueError(f"--source applies to roles {' and '.join(SOURCE_BOUND_ROLES)} only, not {role!r}")
    if scopes is None:
        return SCOPES[role]
    wanted = tuple(dict.fromkeys(scopes))
    extra = [s for s in wanted if s not in SCOPES[role]]
    if extra or not wanted:
        raise ValueError(f"--scopes must be some of role {role!r}'s: {', '.join(SCOPES[role])}"
                         + (f" (not {', '.join(extra)})" if extra else ""))
    return wanted


async def create_api_key(conn: asyncpg.Connection, name: str, role: str = "portal",
                         source: str | None = None, opd_code: str | None = None, *,
                         scopes: Iterable[str] | None = None,
                         expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns it and the plaintext, which is never stored.

    ``role`` may also be given as ``opd:<code>``; ``scopes`` narrows the role's defaults.
    """
    if role.startswith("opd:"):
        role, opd_code = "opd", opd_code or role[4:]
    granted = check_key_spec(role, source, opd_code, scopes)
    prefix = secrets.token_hex(4)
    plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key_id = await conn.fetchval(
        "INSERT INTO api_keys (name, prefix, secret_hash, role, scopes, source, opd_code, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        name, prefix, _hash(plaintext), role, list(granted), source, opd_code, expires_at,
    )
    return ApiKey(key_id, name, role, granted, source, opd_code, expires_at), plaintext


async def lookup_api_key(conn: asyncpg.Connection | asyncpg.Pool, raw: str) -> ApiKey | None:
    """The unrevoked key ``raw`` is, expired or not (the caller says which: ``ApiKey.expired``)."""
    parsed = split_key(raw)
    if parsed is None:
        return None
    prefix, full = parsed
    row = await conn.fetchrow(
        "SELECT id, name, role, scopes, source, opd_code, expires_at, secret_hash FROM api_keys"
        " WHERE prefix = $1 AND revoked_at IS NULL", prefix)
    if row is None or not hmac.compare_digest(row["secret_hash"], _hash(full)):
        return None
    return ApiKey(row["id"], row["name"], row["role"], tuple(row["scopes"]), row["source"],
                  row["opd_code"], row["expires_at"])


async def verify_api_key(conn: asyncpg.Connection | asyncpg.Pool, raw: str,
                         now: datetime | None = None) -> ApiKey | None:
    """The key ``raw`` is, if it is neither revoked nor expired."""
    key = await lookup_api_key(conn, raw)
    if key is None or key.expired(now or datetime.now(UTC)):
        return None
    return key


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
    scopes: tuple[str, ...] = ()
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_reason: str | None = None


async def list_api_keys(conn: asyncpg.Connection) -> list[ApiKeyListing]:
    rows = await conn.fetch(
        "SELECT id, name, prefix, role, source, opd_code, created_at, revoked_at, scopes,"
        " expires_at, last_used_at, revoked_reason FROM api_keys ORDER BY id")
    return [ApiKeyListing(**{**dict(r), "scopes": tuple(r["scopes"])}) for r in rows]


async def revoke_api_key(conn: asyncpg.Connection, key_id: int, reason: str | None = None) -> bool:
    done: str = await conn.execute(
        "UPDATE api_keys SET revoked_at = now(), revoked_reason = $2"
        " WHERE id = $1 AND revoked_at IS NULL", key_id, reason)
    return done.endswith(" 1")


async def mark_used(conn: asyncpg.Connection | asyncpg.Pool, key_ids: Iterable[int]) -> None:
    """One statement for a batch of keys seen since the last flush (``auth.UsageRecorder``)."""
    ids = sorted(set(key_ids))
    if ids:
        await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::bigint[])",
                           ids)
