"""Operations the ``sp4n`` CLI calls: manage subscriptions, inspect and replay
dead-lettered deliveries.

Every function takes ``db``: an asyncpg connection or pool whose ``search_path`` is the
notify schema (``shared.connect.service_pool(settings, "notify", …)`` gives one). Changes wake
running dispatchers through NOTIFY, so a replayed delivery is sent at once.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import TypeAlias

import asyncpg

from services.notify.model import DeadLetteredDelivery
from services.notify.repository import NotifyRepository
from services.notify.secretbox import SecretBox
from services.notify.signing import generate_secret, secret_key
from services.notify.subscriptions import Subscription
from services.notify.targets import Resolver, TargetPolicy, target_policy
from services.notify.usecases import dead_lettered_event
from shared.outbox import add_to_outbox
from shared.settings import Settings

__all__ = [
    "DeadLetteredDelivery", "Subscription", "add_subscription", "generate_secret",
    "list_dead_lettered", "list_subscriptions", "remove_subscription", "replay_all_dead_lettered",
    "replay_dead_lettered", "rotate_secret", "set_subscription_enabled",
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


def box_of(settings: Settings) -> SecretBox:
    return SecretBox(settings.notify.secrets_key)


@functools.cache
def _default_box() -> SecretBox:
    return box_of(Settings())


def _repo(conn: asyncpg.Connection, box: SecretBox | None = None) -> NotifyRepository:
    return NotifyRepository(conn, _box(box))


def _box(box: SecretBox | None) -> SecretBox:
    # Tooling that passes no box uses the one of this process's settings (SP4N_NOTIFY__…).
    return box or _default_box()


async def add_subscription(db: Db, *, name: str, url: str, event_types: list[str],
                           opd_codes: list[str] | None = None, secret: str | None = None,
                           enabled: bool = True, replace: bool = False,
                           box: SecretBox | None = None, policy: TargetPolicy | None = None,
                           resolve: Resolver | None = None) -> Subscription:
    """Create a subscription (a new ``whsec_`` secret if none given) and return it, secret
    included — show it to the operator once. ``ValueError`` if invalid (a ``TargetRefused``
    if the URL's host is not one notify may call: see ``services.notify.targets``), or if
    the name exists and ``replace`` is False."""
    sub = Subscription(name=name, url=url, secret=secret or generate_secret(),
                       event_types=tuple(event_types),
                       opd_codes=tuple(opd_codes) if opd_codes is not None else None,
                       enabled=enabled)
    await (policy or target_policy(Settings())).check_url(sub.url, resolve)
    async with _transaction(db) as conn:
        repo = _repo(conn, box)
        if replace:
            await repo.upsert_subscriptions([sub])
        elif not await repo.insert_subscription(sub):
            raise ValueError(f"subscription {name!r} already exists")
    return sub


async def rotate_secret(db: Db, name: str, *, overlap_s: float, secret: str | None = None,
                        box: SecretBox | None = None) -> str | None:
    """Give subscription ``name`` a new signing secret (generated unless given) and return
    it — show it once. For ``overlap_s`` seconds every webhook carries a signature with the
    old secret too, so the receiver can switch without rejecting anything. None if there is
    no such subscription."""
    new = secret or generate_secret()
    secret_key(new)
    async with _transaction(db) as conn:
        repo = _repo(conn, box)
        if not await repo.rotate_secret(name, new, overlap_s=overlap_s):
            return None
    return new


async def list_subscriptions(db: Db, *, box: SecretBox | None = None) -> list[Subscription]:
    async with _transaction(db) as conn:
        return await _repo(conn, box).fetch_subscriptions()


async def set_subscription_enabled(db: Db, name: str, enabled: bool) -> bool:
    """Pause (deliveries wait, none are created) or resume a subscription; False if unknown."""
    async with _transaction(db) as conn:
        changed = await _repo(conn).set_subscription_enabled(name, enabled)
        if changed and enabled:
            await _repo(conn).wake_dispatchers()
        return changed


async def remove_subscription(db: Db, name: str) -> bool:
    """Delete a subscription; its unfinished deliveries become dead-lettered (replayable
    if it is added again). False if there was no such subscription."""
    async with _transaction(db) as conn:
        if not await _repo(conn).delete_subscription(name):
            return False
        dropped = await _repo(conn).dead_letter_pending_of(name, "subscription removed")
        await add_to_outbox(conn, *(
            dead_lettered_event(r.complaint_id, r.subscription, r.event_id,
                                r.event_type, r.attempts, "subscription removed")
            for r in dropped if r.complaint_id is not None))
        return True


async def list_dead_lettered(db: Db, *, subscription: str | None = None,
                             limit: int = 100) -> list[DeadLetteredDelivery]:
    """Dead-lettered deliveries, oldest first (ids and errors; no payload)."""
    async with _transaction(db) as conn:
        return await _repo(conn).fetch_dead_lettered(subscription=subscription, limit=limit)


async def replay_dead_lettered(db: Db, delivery_id: int) -> bool:
    """Send a dead-lettered delivery again with a fresh round of attempts (same webhook-id
    and body). False if it is not dead-lettered; ``ValueError`` if its subscription is gone."""
    async with _transaction(db) as conn:
        row = await _repo(conn).fetch_delivery(delivery_id)
        if row is None or row.status != "dead_lettered":
            return False
        if await _repo(conn).fetch_subscription(row.subscription) is None:
            raise ValueError(f"subscription {row.subscription!r} no longer exists; add it first")
        replayed = await _repo(conn).requeue_dead_lettered(delivery_id)
        if replayed:
            await _repo(conn).wake_dispatchers()
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
