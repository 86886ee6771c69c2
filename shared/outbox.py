"""Transactional outbox and its relay.

Invariant: an event row is inserted in the same transaction as the state change it
describes, so there is no state change without its event and no event without its change.
The relay claims unsent rows with ``FOR UPDATE SKIP LOCKED`` (never "id > last seen":
transactions commit out of id order), publishes each with publisher confirms, and marks
it sent in the same transaction. A crash between confirm and commit republishes the row:
delivery is at-least-once and consumers deduplicate on the event id (inbox).

Wake-up: ``add_to_outbox`` marks its connection; when the pool takes that connection back
(after commit), this process's relays are woken (``shared.db`` calls ``connection_released``).
Rows written by another replica are published by that replica's relay; rows a crashed
process left behind are found by the relay's poll. No ``pg_notify``: PostgreSQL serialises
the commits of notifying transactions behind one global lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from shared.events import CloudEvent

log = logging.getLogger(__name__)
# Backend pids of pool connections that staged outbox rows in their current transaction.
_staged: set[int] = set()
_relays: set[OutboxRelay] = set()


async def add_to_outbox(conn: asyncpg.Connection, *events: CloudEvent) -> None:
    """Stage events for publishing; call inside the transaction of the state change."""
    if not events:
        return
    await conn.executemany(
        "INSERT INTO outbox (event_id, routing_key, payload) VALUES ($1, $2, $3)",
        [outbox_row(e) for e in events],
    )
    staged_on(conn)


def outbox_row(event: CloudEvent) -> tuple[str, str, dict[str, Any]]:
    """Values of ``outbox (event_id, routing_key, payload)``, for a repository that writes
    its state change and the event in one statement (then calls ``staged_on``)."""
    return event.id, event.event_name, event.model_dump(mode="json")


def staged_on(conn: asyncpg.Connection) -> None:
    """Record that ``conn``'s transaction wrote outbox rows: the relay wakes on release."""
    _staged.add(conn.get_server_pid())


def connection_released(conn: asyncpg.Connection) -> None:
    """The pool took a connection back: its transaction is over; wake relays if it staged rows."""
    if _staged:
        pid = conn.get_server_pid()
        if pid in _staged:
            _staged.discard(pid)
            for relay in _relays:
                relay.wake()


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, publish: Callable[[CloudEvent], Awaitable[None]],
                 *, batch_size: int = 200, poll_interval_s: float = 1.0,
                 on_published: Callable[[int], None] | None = None) -> None:
        self._pool = pool
        self._publish = publish
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._on_published = on_published
        self._wake = asyncio.Event()

    async def relay_once(self) -> int:
        """Publish one batch of unsent events; returns how many were sent.

        The rows are claimed and marked sent in one statement, inside a transaction that
        commits only after every publish was confirmed; a failed publish rolls the mark back.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE outbox SET sent_at = now() WHERE id IN ("
                " SELECT id FROM outbox WHERE sent_at IS NULL"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
                " RETURNING payload",
                self._batch_size,
            )
            if not rows:
                return 0
            events = [CloudEvent.model_validate(r["payload"]) for r in rows]
            await asyncio.gather(*(self._publish(e) for e in events))
        if self._on_published:
            self._on_published(len(rows))
        return len(rows)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        _relays.add(self)
        try:
            while True:
                try:
                    while await self.relay_once() == self._batch_size:
                        pass
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox relay failed; retrying")
                    await asyncio.sleep(self._poll_interval_s)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
        finally:
            _relays.discard(self)


# For a repository that stages events inside a larger statement (as a CTE): inserts the rows of
# three parallel text arrays (event ids, routing keys, JSON payloads; see ``outbox_arrays``) in
# array order. ``{ids}``, ``{keys}``, ``{payloads}``: the statement's parameter numbers. Call
# ``staged_on`` once the statement has run.
OUTBOX_INSERT_ARRAYS = (
    "INSERT INTO outbox (event_id, routing_key, payload)"
    " SELECT e.event_id, e.routing_key, e.payload::jsonb"
    " FROM unnest(${ids}::text[], ${keys}::text[], ${payloads}::text[]) WITH ORDINALITY"
    "  AS e(event_id, routing_key, payload, ord) ORDER BY e.ord")


def outbox_arrays(events: Sequence[CloudEvent]) -> tuple[list[str], list[str], list[str]]:
    """The values of ``OUTBOX_INSERT_ARRAYS`` for ``events`` (the payload as JSON text, encoded as
    the pool's jsonb codec encodes it)."""
    rows = [outbox_row(e) for e in events]
    return [r[0] for r in rows], [r[1] for r in rows], [json.dumps(r[2]) for r in rows]
