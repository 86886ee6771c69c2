"""intake's audit trail: who (key id, role, name) did what (a lifecycle action, or
``read_identity``) to which complaint, when, in which request, from where.

Invariants:
- the table is append-only (migration 0005: triggers refuse UPDATE, DELETE, TRUNCATE);
- an action's row commits in the action's own transaction (``usecases.perform_action``):
  no action without its row, no row for an action that rolled back;
- a ``read_identity`` row is written before the answer that carries the identity is sent
  (``queries.complaint_detail``): no identity leaves intake unrecorded;
- rows carry ids and key names, never a reporter's identity or complaint text.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.intake.domain.complaint import Actor

READ_IDENTITY = "read_identity"
# A reporter's identity erased (crypto-shredding), through the admin API or ``sp4n erase-reporter``.
ERASE_IDENTITY = "erase_identity"


@dataclass(frozen=True)
class Origin:
    """Where a request came from: its ``X-Request-ID`` and the client's address."""

    request_id: str | None = None
    client_addr: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    key_id: int | None
    key_name: str | None
    role: str
    action: str
    complaint_id: uuid.UUID | None
    request_id: str | None = None
    client_addr: str | None = None

    @classmethod
    def of(cls, actor: Actor, action: str, complaint_id: uuid.UUID | None,
           origin: Origin | None) -> AuditEntry:
        o = origin or Origin()
        return cls(actor.key_id, actor.name, actor.role, action, complaint_id, o.request_id,
                   o.client_addr)


@dataclass(frozen=True)
class AuditRow(AuditEntry):
    id: int = 0
    at: datetime | None = None


async def insert(conn: asyncpg.Connection, e: AuditEntry) -> None:
    await conn.execute(
        "INSERT INTO audit_log (key_id, key_name, role, action, complaint_id, request_id,"
        " client_addr) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        e.key_id, e.key_name, e.role, e.action, e.complaint_id, e.request_id, e.client_addr)


async def fetch(conn: asyncpg.Connection | asyncpg.Pool, *, complaint_id: uuid.UUID | None = None,
                key_id: int | None = None, since: datetime | None = None, after: int = 0,
                limit: int = 100) -> list[AuditRow]:
    """Rows matching every filter given, oldest first, with ``id > after`` (a keyset page:
    pass the last row's id as the next ``after``)."""
    where = ["id > $1"]
    args: list[Any] = [after]
    for column, op, value in (("complaint_id", "=", complaint_id), ("key_id", "=", key_id),
                              ("at", ">=", since)):
        if value is not None:
            args.append(value)
            where.append(f"{column} {op} ${len(args)}")
    args.append(limit)
    rows = await conn.fetch(
        "SELECT id, at, key_id, key_name, role, action, complaint_id, request_id, client_addr"
        f" FROM audit_log WHERE {' AND '.join(where)} ORDER BY id LIMIT ${len(args)}", *args)
    return [AuditRow(**dict(r)) for r in rows]
