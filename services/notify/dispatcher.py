"""The delivery loop: claims due deliveries, sends them, records the outcome.

Runs in every notify replica. A claim is one statement with ``FOR UPDATE SKIP LOCKED``
that sets a lease; the HTTP request runs outside any transaction; the result is
recorded only while the lease is still ours. Woken by the ingest path (in process and via
LISTEN/NOTIFY from other replicas and the CLI), and polls every
``notify_poll_interval_s`` for retries that came due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from services.notify import usecases
from services.notify.domain import Outcome
from services.notify.metrics import NotifyMetrics
from services.notify.model import ClaimedDelivery
from services.notify.repository import WAKE_CHANNEL_PREFIX
from services.notify.subscriptions import Subscription
from services.notify.targets import GuardedTransport, target_policy
from shared.service import ServiceRuntime
from shared.settings import Settings

log = logging.getLogger(__name__)
USER_AGENT = "sp4n-notify/0.1"


def httpx_post(client: httpx.AsyncClient, total_timeout_s: float | None = None, *,
               max_answer_bytes: int) -> usecases.Post:
    """POST with an overall deadline (httpx's own timeouts are per phase, so a receiver
    dripping bytes could otherwise outlive the lease); reads at most ``max_answer_bytes``
    of the answer."""
    async def post(url: str, headers: dict[str, str], body: bytes) -> usecases.HttpAnswer:
        async with asyncio.timeout(total_timeout_s):
            async with client.stream("POST", url, content=body, headers=headers) as response:
                answer = b""
                async for chunk in response.aiter_bytes():
                    answer += chunk
                    if len(answer) >= max_answer_bytes:
                        break
                return usecases.HttpAnswer(
                    response.status_code, answer[:max_answer_bytes].decode("utf-8", "replace"))
    return post


class Dispatcher:
    """The delivery loop's adapter: claims, attempts and records through the use cases on
    ``uow``, records metrics and logs; the lease and attempt invariants live in the SQL of
    ``NotifyRepository.claim_due`` and the lease-checked outcome updates."""

    def __init__(self, settings: Settings, metrics: NotifyMetrics, uow: usecases.NotifyUnitOfWork, *,
                 file_subscriptions: list[Subscription] | None = None,
                 batch_size: int | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.uow = uow
        self.file_subscriptions = file_subscriptions or []
        self.batch_size = batch_size if batch_size is not None else settings.notify.batch_size
        # Set once the subscriptions file is in the table; consumers wait for it, so an
        # event arriving at start-up is matched against the configured subscriptions.
        self.subscriptions_synced = asyncio.Event()
        self._wake = asyncio.Event()
        self._pending_refreshed = 0.0
        self._listen: _Listener | None = None

    @property
    def lease_s(self) -> float:
        return self.settings.notify_timeout_s + self.settings.notify.lease_margin_s

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def dispatch_once(self, post: usecases.Post) -> int:
        """Send one batch of due deliveries; returns how many were claimed."""
        claimed = await usecases.claim_due(self.uow, limit=self.batch_size, lease_s=self.lease_s)
        if claimed:
            results = await asyncio.gather(*(self._deliver(d, post) for d in claimed),
                                           return_exceptions=True)
            for delivery, result in zip(claimed, results, strict=True):
                if isinstance(result, BaseException):
                    # Recording failed (database fault): the lease expires and the delivery
                    # is retried; the receiver dedupes on the unchanged webhook-id.
                    log.error("recording a webhook attempt failed", exc_info=result,
                              extra={"delivery_id": delivery.id, "event_id": delivery.event_id})
        return len(claimed)

    async def _deliver(self, delivery: ClaimedDelivery, post: usecases.Post) -> None:
        s = self.settings
        result, outcome = await usecases.attempt(
            self.uow, delivery, post, max_attempts=s.notify_max_attempts,
            backoff_base_s=s.notify_backoff_base_s, max_error_chars=s.notify.max_error_chars,
            excerpt_chars=s.notify.answer_excerpt_chars)
        latency = (datetime.now(UTC) - delivery.event_time).total_seconds()
        self.metrics.observe(delivery.subscription, outcome, latency)
        extra: dict[str, Any] = {
            "delivery_id": delivery.id, "event_id": delivery.event_id,
            "subscription": delivery.subscription, "attempt": delivery.attempt,
            "status_code": result.status_code}
        if outcome is None:
            log.warning("lease lost while delivering; attempt logged, state left to its owner", extra=extra)
        elif outcome is Outcome.DELIVERED:
            log.info("webhook delivered", extra=extra)
        elif outcome is Outcome.RETRY_SCHEDULED:
            log.info("webhook attempt failed; retry scheduled", extra=extra)
        else:
            log.warning("webhook dead-lettered after last attempt", extra=extra)

    async def refresh_pending_gauge(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._pending_refreshed >= self.settings.notify.pending_gauge_refresh_s:
            self._pending_refreshed = now
            self.metrics.pending.set(await usecases.count_pending(self.uow))

    async def _sync_subscriptions(self) -> None:
        delay = self.settings.notify_poll_interval_s
        while True:
            try:
                sealed = await usecases.sync_subscriptions(self.uow, self.file_subscriptions)
                if sealed:
                    log.info("webhook secrets encrypted at rest", extra={"sealed": sealed})
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
                delay = min(delay * 2, self.settings.notify.sync_backoff_max_s)

    async def deliver_webhooks(self, runtime: ServiceRuntime) -> None:
        """The background loop registered with ``ServiceRuntime.add_loop``. The LISTEN
        connection is the loop's own, held from the pool; when it is lost (a PostgreSQL
        restart, a terminated backend, a cut link) the loop keeps polling every
        ``notify_poll_interval_s`` and LISTENs again on a fresh connection as soon as one can
        be had (``listening`` says whether it currently does; readiness reports it)."""
        pool = runtime.pool
        await self._sync_subscriptions()
        self._listen = _Listener(pool, f"{WAKE_CHANNEL_PREFIX}{runtime.name}", self.wake)
        timeout = httpx.Timeout(self.settings.notify_timeout_s)
        try:
            # Every connection goes through the target policy (SSRF protection; no proxies,
            # no redirects: a redirect to 169.254.169.254 is never followed).
            transport = GuardedTransport(target_policy(self.settings))
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False,
                                         transport=transport,
                                         headers={"user-agent": USER_AGENT}) as client:
                post = httpx_post(client, self.settings.notify_timeout_s,
                                  max_answer_bytes=self.settings.notify.max_answer_bytes)
                while True:
                    self._wake.clear()
                    try:
                        await self._listen.ensure()
                        claimed = await self.dispatch_once(post)
                        await self.refresh_pending_gauge()
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("webhook dispatch failed; retrying")
                        claimed = 0
                    if claimed == self.batch_size:
                        continue
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.notify_poll_interval_s)
        finally:
            await self._listen.close()

    @property
    def listening(self) -> bool:
        return self._listen is not None and self._listen.active

    @property
    def listener_pid(self) -> int | None:
        """The server process of the LISTEN connection (for tools and tests)."""
        return self._listen.pid if self._listen is not None else None

    async def listen_state(self) -> str:
        """The readiness check of the wake-up channel (deliveries go on by polling without it)."""
        if self._listen is None:
            return "error: not listening yet"
        return "ok" if self.listening else "error: LISTEN lost; polling until it is re-established"


class _Listener:
    """One pooled connection that LISTENs on the wake-up channel, replaced when it is lost."""

    def __init__(self, pool: asyncpg.Pool, channel: str, callback: Callable[..., None]) -> None:
        self.pool = pool
        self.channel = channel
        self.callback = callback
        self.conn: asyncpg.Connection | None = None
        self.pid: int | None = None
        self.lost = 0

    @property
    def active(self) -> bool:
        if self.conn is None:
            return False
        try:
            return not self.conn.is_closed()
        except asyncpg.InterfaceError:  # a lost connection is released to the pool by asyncpg
            return False

    async def ensure(self) -> None:
        """LISTEN unless already listening; a failure is logged and tried again next round."""
        if self.active:
            return
        if self.conn is not None:
            self.lost += 1
            log.warning("LISTEN connection lost; polling until it is re-established")
            await self._drop()
        try:
            conn = await self.pool.acquire()
        except Exception as exc:  # noqa: BLE001 - the database is away: poll meanwhile
            log.info("LISTEN not re-established yet: %s", type(exc).__name__)
            return
        try:
            await conn.add_listener(self.channel, self.callback)
            self.pid = conn.get_server_pid()
        except Exception as exc:  # noqa: BLE001
            log.info("LISTEN not re-established yet: %s", type(exc).__name__)
            await self.pool.release(conn)
            return
        self.conn = conn
        if self.lost:
            log.info("LISTEN re-established")
        # A NOTIFY sent while no one listened is lost: look for due deliveries now.
        self.callback()

    async def _drop(self) -> None:
        conn, self.conn, self.pid = self.conn, None, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.remove_listener(self.channel, self.callback)
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    async def close(self) -> None:
        await self._drop()
