"""The timer loop: fires due warnings and breaches.

Any number of sla replicas may run it: each batch is claimed with ``FOR UPDATE SKIP LOCKED``
and marked fired in the same transaction that stages its events in the outbox, so a timer
fires exactly once and a crash before commit leaves it pending for the next scan.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from services.sla import repository as repo
from services.sla.metrics import SlaMetrics
from services.sla.usecases import Outcome, fire_due_timers

log = logging.getLogger(__name__)
OPEN_CLOCKS_REFRESH_S = 5.0


async def scan_once(pool: asyncpg.Pool, batch_size: int, metrics: SlaMetrics | None = None) -> int:
    """Fire one batch of due timers; returns how many were claimed."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            outcome: Outcome = await fire_due_timers(conn, batch_size)
    if metrics is not None:
        metrics.record(outcome)
    return len(outcome.alerts)


async def refresh_open_clocks(pool: asyncpg.Pool, metrics: SlaMetrics) -> None:
    async with pool.acquire() as conn:
        metrics.set_open_clocks(await repo.open_clock_counts(conn))


def make_timer_loop(metrics: SlaMetrics):
    async def sla_timers(runtime) -> None:
        s = runtime.settings
        next_refresh = 0.0
        while True:
            try:
                # Drain a backlog without sleeping between full batches.
                while await scan_once(runtime.pool, s.sla_scan_batch_size, metrics) >= s.sla_scan_batch_size:
                    pass
                if time.monotonic() >= next_refresh:
                    await refresh_open_clocks(runtime.pool, metrics)
                    next_refresh = time.monotonic() + OPEN_CLOCKS_REFRESH_S
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sla timer scan failed; retrying")
            await asyncio.sleep(s.sla_scan_interval_s)

    return sla_timers
