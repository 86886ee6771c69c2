"""On-demand bindings of notify's queue (``shared.topology.NOTIFY_ON_DEMAND``).

Every complaint produces the on-demand events several times over, and most deployments have
no subscription that wants them; binding them always would cost a quorum-queue delivery and
a consumption per event for nothing. So notify binds each on-demand routing key while an
enabled subscription asks for it, and unbinds it when none does.

Invariants:
- The wanted set is a pure function of the enabled subscriptions (``wanted_keys``); every
  replica computes the same set from the same table, and binding/unbinding is idempotent, so
  replicas converge without coordinating.
- A new subscription sees on-demand events from the moment its key is bound (within
  ``settings.notify.bindings_refresh_s`` of being added or resumed); events published before
  that were never meant for it. The always-bound events reach it at once, as before.
- The first pass after start-up applies the whole set (binds what is wanted, unbinds what is
  not), so a binding left by an earlier subscription never outlives it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager

import aio_pika

from services.notify.subscriptions import Subscription, event_type_matches
from shared.topology import NOTIFY_ON_DEMAND

log = logging.getLogger(__name__)


def wanted_keys(subscriptions: Iterable[Subscription]) -> frozenset[str]:
    """The on-demand routing keys some enabled subscription asks for."""
    return frozenset(key for key in NOTIFY_ON_DEMAND for s in subscriptions
                     if s.enabled and any(event_type_matches(p, key) for p in s.event_types))


async def apply_bindings(channel: aio_pika.abc.AbstractChannel, queue_name: str, exchange: str,
                         wanted: frozenset[str]) -> None:
    """Bind the queue to every wanted on-demand key and unbind the others (idempotent)."""
    queue = await channel.get_queue(queue_name, ensure=True)
    for key in NOTIFY_ON_DEMAND:
        if key in wanted:
            await queue.bind(exchange, routing_key=key)
        else:
            await queue.unbind(exchange, routing_key=key)


ChannelOpener = Callable[[], AbstractAsyncContextManager[aio_pika.abc.AbstractChannel]]


class BindingKeeper:
    """Keeps the on-demand bindings in step with the subscriptions table."""

    def __init__(self, queue_name: str, exchange: str,
                 load: Callable[[], Awaitable[list[Subscription]]], open_channel: ChannelOpener) -> None:
        self._queue_name, self._exchange = queue_name, exchange
        self._load = load
        self._open_channel = open_channel
        self.applied: frozenset[str] | None = None

    async def refresh(self) -> bool:
        """Apply the wanted set if it changed since the last pass; True when it did."""
        wanted = wanted_keys(await self._load())
        if wanted == self.applied:
            return False
        async with self._open_channel() as channel:
            await apply_bindings(channel, self._queue_name, self._exchange, wanted)
        log.info("on-demand bindings applied", extra={"bound": sorted(wanted)})
        self.applied = wanted
        return True

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Broker or database away: the bindings stay as they were; try again.
                log.exception("applying on-demand bindings failed; retrying")
            await asyncio.sleep(interval_s)
