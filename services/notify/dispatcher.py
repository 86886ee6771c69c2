"""The delivery loop: claims due deliveries, sends them, records the outcome.

Runs in every notify replica. Claims are short transactions with ``FOR UPDATE SKIP
LOCKED`` that set a lease; the HTTP request runs outside any transaction; the result is
recorded only while the lease is still ours. Woken by the ingest path (in process and via
LISTEN/NOTIFY from other replicas and the CLI), and polls every
``notify_poll_interval_s`` for retries that came due.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timezone

import httpx

from services.notify import repository as repo
from services.notify import usecases
from services.notify.metrics import NotifyMetrics
from services.notify.subscriptions import Subscription
from shared.settings import Settings

log = logging.getLogger(__name__)
LEASE_MARGIN_S = 30.0
PENDING_GAUGE_REFRESH_S = 1.0
USER_AGENT = "sp4n-notify/0.1"


MAX_ANSWER_BYTES = 1000


def httpx_post(client: httpx.AsyncClient, total_timeout_s: float | None = None) -> usecases.Post:
    """POST with an overall deadline (httpx's own timeouts are per phase, so a receiver
    dripping bytes could otherwise outlive the lease); reads at most 1000 bytes of answer."""
    async def post(url: str, headers: dict[str, str], body: bytes) -> usecases.HttpAnswer:
        async with asyncio.timeout(total_timeout_s):
            async with client.stream("POST", url, content=body, headers=headers) as response:
                answer = b""
                async for chunk in response.aiter_bytes():
                    answer += chunk
                    if len(answer) >= MAX_ANSWER_BYTES:
                        break
                return usecases.HttpAnswer(
                    response.status_code, answer[:MAX_ANSWER_BYTES].decode("utf-8", "replace"))
    return post


class Dispatcher:
    def __init__(self, settings: Settings, metrics: NotifyMetrics, *,
                 file_subscriptions: list[Subscription] | None = None,
                 batch_size: int = 16) -> None:
        self.settings = settings
        self.metrics = metrics
        self.file_subscriptions = file_subscriptions or []
        self.batch_size = batch_size
        # Set once the subscriptions file is in the table; consumers wait for it, so an
        # event arriving at start-up is matched against the configured subscriptions.
        self.subscriptions_synced = asyncio.Event()
        self._wake = asyncio.Event()
        self._pending_refreshed = 0.0

    @property
    def lease_s(self) -> float:
        return self.settings.notify_timeout_s + LEASE_MARGIN_S

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def dispatch_once(self, pool, post: usecases.Post) -> int:
        """Send one batch of due deliveries; returns how many were claimed."""
        async with pool.acquire() as conn, conn.transaction():
            claimed = await repo.claim_due(conn, limit=self.batch_size, lease_s=self.lease_s,
                                           lease_token=uuid.uuid4())
        if claimed:
            results = await asyncio.gather(*(self._deliver(pool, d, post) for d in claimed),
                                           return_exceptions=True)
            for delivery, result in zip(claimed, results):
                if isinstance(result, BaseException):
                    # Recording failed (database fault): the lease expires and the delivery
                    # is retried; the receiver dedupes on the unchanged webhook-id.
                    log.error("recording a webhook attempt failed", exc_info=result,
                              extra={"delivery_id": delivery.id, "event_id": delivery.event_id})
        return len(claimed)

    async def _deliver(self, pool, delivery: repo.ClaimedDelivery, post: usecases.Post) -> None:
        result = await usecases.send(delivery, post)
        outcome = await usecases.record(
            pool, delivery, result, max_attempts=self.settings.notify_max_attempts,
            backoff_base_s=self.settings.notify_backoff_base_s)
        latency = (datetime.now(timezone.utc) - delivery.event_time).total_seconds()
        self.metrics.observe(delivery.subscription, outcome, latency)
        extra = {"delivery_id": delivery.id, "event_id": delivery.event_id,
                 "subscription": delivery.subscription, "attempt": delivery.attempt,
                 "status_code": result.status_code}
        if outcome is None:
            log.warning("lease lost while delivering; attempt logged, state left to its owner", extra=extra)
        elif outcome is usecases.Outcome.DELIVERED:
            log.info("webhook delivered", extra=extra)
        elif outcome is usecases.Outcome.RETRY_SCHEDULED:
            log.info("webhook attempt failed; retry scheduled", extra=extra)
        else:
            log.warning("webhook dead-lettered after last attempt", extra=extra)

    async def refresh_pending_gauge(self, pool, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._pending_refreshed >= PENDING_GAUGE_REFRESH_S:
            self._pending_refreshed = now
            self.metrics.pending.set(await repo.count_pending(pool))

    async def _sync_subscriptions(self, pool) -> None:
        delay = self.settings.notify_poll_interval_s
        while True:
            try:
                await usecases.sync_subscriptions(pool, self.file_subscriptions)
                if self.file_subscriptions:
                    log.info("subscriptions file synced",
                             extra={"subscriptions": [s.name for s in self.file_subscriptions]})
                self.subscriptions_synced.set()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("syncing the subscriptions file failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def deliver_webhooks(self, runtime) -> None:
        """The background loop registered with ``ServiceRuntime.add_loop``."""
        pool = runtime.pool
        await self._sync_subscriptions(pool)
        listener = await pool.acquire()
        channel = f"{repo.WAKE_CHANNEL_PREFIX}{runtime.name}"
        await listener.add_listener(channel, self.wake)
        timeout = httpx.Timeout(self.settings.notify_timeout_s)
        try:
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                         headers={"user-agent": USER_AGENT}) as client:
                post = httpx_post(client, self.settings.notify_timeout_s)
                while True:
                    self._wake.clear()
                    try:
                        claimed = await self.dispatch_once(pool, post)
                        await self.refresh_pending_gauge(pool)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("webhook dispatch failed; retrying")
                        claimed = 0
                    if claimed == self.batch_size:
                        continue
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.settings.notify_poll_interval_s)
                    except TimeoutError:
                        pass
        finally:
            try:
                await listener.remove_listener(channel, self.wake)
            finally:
                await pool.release(listener)
