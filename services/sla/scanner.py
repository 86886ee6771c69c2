"""The timer loop: fires due warnings and breaches.

Any number of sla replicas may run it: each batch is claimed with ``FOR UPDATE SKIP LOCKED``
and marked fired in the same transaction that stages its events in the outbox, so a timer
fires exactly once and a crash before commit leaves it pending for the next scan.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from services.sla.calendars import CalendarSource
from services.sla.metrics import SlaMetrics
from services.sla.usecases import (
    UnitOfWork,
    clocks_beyond_coverage,
    fire_due_timers,
    open_clock_counts,
)
from shared.service import ServiceRuntime
from shared.settings import Settings

log = logging.getLogger(__name__)


async def scan_once(uow: UnitOfWork, batch_size: int, metrics: SlaMetrics | None = None) -> int:
    """Fire one batch of due timers; returns how many were claimed."""
    outcome = await fire_due_timers(batch_size, uow=uow)
    if metrics is not None:
        metrics.record(outcome)
    return len(outcome.alerts)


async def refresh_open_clocks(uow: UnitOfWork, metrics: SlaMetrics,
                              calendars: CalendarSource | None = None) -> None:
    metrics.set_open_clocks(await open_clock_counts(uow=uow))
    if calendars is not None:
        metrics.beyond_coverage.set(await clocks_beyond_coverage(uow=uow, calendars=calendars))


def make_timer_loop(uow: UnitOfWork, metrics: SlaMetrics, settings: Settings,
                    calendars: CalendarSource | None = None,
                    ) -> Callable[[ServiceRuntime], Coroutine[Any, Any, None]]:
    batch_size = settings.sla_scan_batch_size

    async def sla_timers(_runtime: ServiceRuntime) -> None:
        next_refresh = 0.0
        while True:
            try:
                # Drain a backlog without sleeping between full batches.
                while await scan_once(uow, batch_size, metrics) >= batch_size:
                    pass
                if time.monotonic() >= next_refresh:
                    await refresh_open_clocks(uow, metrics, calendars)
                    next_refresh = time.monotonic() + settings.sla.open_clocks_refresh_s
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sla timer scan failed; retrying")
            await asyncio.sleep(settings.sla_scan_interval_s)

    return sla_timers
