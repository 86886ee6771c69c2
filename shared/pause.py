"""Consumers pause while the database is unreachable and resume by themselves.

When a handler fails because the database cannot be reached (``Failure.unavailable ==
"database"``), every subscriber of the runtime is stopped — its consumer is cancelled, so
new messages stay in the queue for this or another replica — and the database is probed
with backoff (``settings.retry.probe_initial_s`` doubling up to ``probe_max_s``). When the
probe answers, the subscribers are started again (retried until the broker takes them).

Invariant: a paused subscriber holds no message. FastStream's ``stop()`` stops handling
before it cancels the consumer, so a message delivered in between is left unacknowledged
on the channel; each subscriber has its own channel (``shared.broker.subscribe``) and the
pause recovers it (``basic.recover`` with requeue) once the consumer is cancelled, which
puts such messages back in the queue. (Without it a quorum queue keeps the cancelled
consumer, and those messages, until the connection closes: the consumer count never drops.)
A recovered message counts as one return towards the queue's delivery limit (at most the
prefetch of each subscriber per pause); the consumer that next receives it with returns
counted hands it back as a fresh copy (``shared.broker.refresh_returned``), so pauses and
link faults, however many, never dead-letter it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from faststream.rabbit import RabbitBroker
from faststream.rabbit.subscriber import RabbitSubscriber

from shared.failures import Failure, describe

log = logging.getLogger(__name__)


class ConsumerPause:
    def __init__(self, broker: RabbitBroker, probe: Callable[[], Awaitable[object]], *,
                 initial_s: float, max_s: float,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.broker = broker
        self.probe = probe
        self.initial_s = initial_s
        self.max_s = max_s
        self.on_change = on_change
        self.subscribers: list[RabbitSubscriber] = []
        self.paused_since: float | None = None  # time.monotonic() of the pause
        self.pauses = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    def add(self, subscriber: RabbitSubscriber) -> None:
        self.subscribers.append(subscriber)

    def report(self, failure: Failure) -> None:
        """A handler failed: pause if the database is unreachable (once per outage)."""
        if failure.unavailable != "database" or self._task is not None or self._closed:
            return
        self.paused_since = time.monotonic()
        self.pauses += 1
        self._task = asyncio.create_task(self._pause_until_reachable(failure),
                                         name="consumer-pause")

    async def close(self) -> None:
        """At shutdown, before the broker stops: no more pausing or resuming."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_resumed(self) -> None:
        """For tests and tools: until a pause in progress has ended."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _pause_until_reachable(self, failure: Failure) -> None:
        log.warning("database unreachable (%s); consumers paused", failure.reason[:300])
        if self.on_change is not None:
            self.on_change(True)
        try:
            for subscriber in self.subscribers:
                await self._stop(subscriber)
            await self._wait_for_database()
            await self._start_all()
            log.info("database answers again; consumers resumed after %.1fs",
                     time.monotonic() - (self.paused_since or time.monotonic()))
        finally:
            self.paused_since = None
            self._task = None
            if self.on_change is not None:
                self.on_change(False)

    async def _stop(self, subscriber: RabbitSubscriber) -> None:
        log.info("stopping consumer of %s", subscriber.queue.name)
        await subscriber.stop()
        log.info("stopped consumer of %s", subscriber.queue.name)
        try:
            channel = await self.broker.config.channel_manager.get_channel(subscriber.channel)
            underlay = await channel.get_underlay_channel()
            await underlay.basic_recover(requeue=True)
        except Exception as exc:  # noqa: BLE001 - the broker link is gone: it requeues them itself
            log.info("recovering a paused subscriber's channel failed: %s", describe(exc))

    async def _wait_for_database(self) -> None:
        delay = self.initial_s
        while True:
            try:
                await self.probe()
                return
            except Exception as exc:  # noqa: BLE001 - any failure: still unreachable
                log.info("database probe failed (%s); next in %gs", describe(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_s)

    async def _start_all(self) -> None:
        delay = self.initial_s
        while True:
            pending = [s for s in self.subscribers if not s.running]
            for subscriber in pending:
                try:
                    await subscriber.start()
                except Exception as exc:  # noqa: BLE001 - the broker is away: retried
                    log.warning("restarting a consumer failed (%s); retrying in %gs",
                                describe(exc), delay)
            if all(s.running for s in self.subscribers):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_s)
