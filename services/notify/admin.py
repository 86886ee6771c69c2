"""Operations the ``sp4n`` CLI calls: manage subscriptions, inspect and replay
dead-lettered deliveries.

Every function takes ``db``: an asyncpg connection or pool whose ``search_path`` is the
notify schema (``shared.connect.service_pool(settings, "notify", …)`` gives one). Changes wake
running dispatchers through NOTIFY, so a replayed delivery is sent at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypeAlias

import asyncpg

from services.notify.model import DeadLetteredDelivery
from services.notify.repository import NotifyRepository
from services.notify.signing import generate_secret
from services.notify.subscriptions import Subscription
from services.notify.usecases import dead_lettered_event
from shared.outbox import add_to_outbox

__all__ = [
    "DeadLetteredDelivery", "Subscription", "add_subscription", "generate_secret",
    "list_dead_lettered", "list_subscriptions", "remove_subscription", "replay_all_dead_lettered",
    "replay_dead_lettered", "set_subscription_enabled",
]


# An asyncpg connection or pool on the notify schema.
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


@contextlib.asynccontextmanager
async def _transaction(db: Db) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db


async def add_subscription(db: Db, *, name: str, url: str, event_types: list[str],
                           opd_codes: list[str] | None = None, secret: str | None = None,
                           enabled: bool = True, replace: bool = False) -> Subscription:
    """Create a subscription (a new ``whsec_`` secret if none given) and return it, secret
    included — show it to the operator once. ``ValueError`` if invalid, or if the name
    exists and ``replace`` is False."""
    sub = Subscription(name=name, url=url, secret=secret or generate_secret(),
                       event_types=tuple(event_types),
                       opd_codes=tuple(opd_codes) if opd_codes is not None else None,
                       enabled=enabled)
    async with _transaction(db) as conn:
        if replace:
            await NotifyRepository(conn).upsert_subscriptions([sub])
        elif not await NotifyRepository(conn).insert_subscription(sub):
            raise ValueError(f"subscription {name!r} already exists")
    return sub


async def list_subscriptions(db: Db) -> list[Subscription]:
    async with _transaction(db) as conn:
        return await NotifyRepository(conn).fetch_subscriptions()


async def set_subscription_enabled(db: Db, name: str, enabled: bool) -> bool:
    """Pause (deliveries wait, none are created) or resume a subscription; False if unknown."""
    async with _transaction(db) as conn:
        changed = await NotifyRepository(conn).set_subscription_enabled(name, enabled)
        if changed and enabled:
            await NotifyRepository(conn).wake_dispatchers()
        return changed


async def remove_subscription(db: Db, name: str) -> bool:
    """Delete a subscription; its unfinished deliveries become dead-lettered (replayable
    if it is added again). False if there was no such subscription."""
    async with _transaction(db) as conn:
        if not await NotifyRepository(conn).delete_subscription(name):
            return False
        dropped = await NotifyRepository(conn).dead_letter_pending_of(name, "subscription removed")
        await add_to_outbox(conn, *(
            dead_lettered_event(r.complaint_id, r.subscription, r.event_id,
                                r.event_type, r.attempts, "subscription removed")
            for r in dropped if r.complaint_id is not None))
        return True


async def list_dead_lettered(db: Db, *, subscription: str | None = None,
                             limit: int = 100) -> list[DeadLetteredDelivery]:
    """Dead-lettered deliveries, oldest first (ids and errors; no payload)."""
    async with _transaction(db) as conn:
        return await NotifyRepository(conn).fetch_dead_lettered(subscription=subscription, limit=limit)


async def replay_dead_lettered(db: Db, delivery_id: int) -> bool:
    """Send a dead-lettered delivery again with a fresh round of attempts (same webhook-id
    and body). False if it is not dead-lettered; ``ValueError`` if its subscription is gone."""
    async with _transaction(db) as conn:
        row = await NotifyRepository(conn).fetch_delivery(delivery_id)
        if row is None or row.status != "dead_lettered":
            return False
        if await NotifyRepository(conn).fetch_subscription(row.subscription) is None:
            raise ValueError(f"subscription {row.subscription!r} no longer exists; add it first")
        replayed = await NotifyRepository(conn).requeue_dead_lettered(delivery_id)
        if replayed:
            await NotifyRepository(conn).wake_dispatchers()
        return replayed


async def replay_all_dead_lettered(db: Db, *, subscription: str | None = None) -> int:
    """Replay every dead-lettered delivery (of one subscription); returns how many."""
    count = 0
    for d in await list_dead_lettered(db, subscription=subscription, limit=1_000_000):
        try:
            count += await replay_dead_lettered(db, d.id)
        except ValueError:
            continue
    return count
