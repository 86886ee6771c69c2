"""The page's one read of its own: is the session's API key still active, and as what."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class ActiveKey:
    id: int
    name: str
    role: str
    opd_code: str | None


async def active_key(pool: asyncpg.Pool, key_id: int) -> ActiveKey | None:
    row = await pool.fetchrow(
        "SELECT id, name, role, opd_code FROM api_keys WHERE id = $1 AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())", key_id)
    return None if row is None else ActiveKey(row["id"], row["name"], row["role"], row["opd_code"])
