"""Transactional outbox and its relay.

Invariant: an event row is inserted in the same transaction as the state change it
describes, so there is no state change without its event and no event without its change.
The relay claims unsent rows with ``FOR UPDATE SKIP LOCKED`` (never "id > last seen":
transactions commit out of id order), publishes each with publisher confirms, and marks
it sent in the same transaction. A crash between confirm and commit republishes the row:
delivery is at-least-once and consumers deduplicate on the event id (inbox).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from shared.events import CloudEvent

log = logging.getLogger(__name__)
NOTIFY_CHANNEL = "sp4n_outbox"


async def add_to_outbox(conn: asyncpg.Connection, *events: CloudEvent) -> None:
    """Stage events for publishing; call inside the transaction of the state change."""
    if not events:
        return
    await conn.executemany(
        "INSERT INTO outbox (event_id, routing_key, payload) VALUES ($1, $2, $3)",
        [(e.id, e.event_name, e.model_dump(mode="json")) for e in events],
    )
    # A wake-up hint for the relay, delivered at commit; the relay also polls.
    await conn.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}_' || current_schema(), '')")


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, publish: Callable[[CloudEvent], Awaitable[None]],
                 *, schema: str, batch_size: int = 200, poll_interval_s: float = 1.0,
                 on_published: Callable[[int], None] | None = None) -> None:
        self._pool = pool
        self._publish = publish
        self._schema = schema
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._on_published = on_published
        self._wake = asyncio.Event()

    async def relay_once(self) -> int:
        """Publish one batch of unsent events; returns how many were sent."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, payload FROM outbox WHERE sent_at IS NULL"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            if not rows:
                return 0
            events = [CloudEvent.model_validate(r["payload"]) for r in rows]
            await asyncio.gather(*(self._publish(e) for e in events))
            await conn.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
        if self._on_published:
            self._on_published(len(rows))
        return len(rows)

    async def run(self) -> None:
        listener = await self._pool.acquire()
        channel = f"{NOTIFY_CHANNEL}_{self._schema}"
        await listener.add_listener(channel, self._on_notify)
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
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
                except TimeoutError:
                    pass
        finally:
            try:
                await listener.remove_listener(channel, self._on_notify)
            finally:
                await self._pool.release(listener)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()
