"""Retention: every service deletes what it no longer needs from its own schema, in bounded
batches, so no table grows forever.

Invariants:
- A prune job is ONE autocommit ``DELETE`` of at most ``limit`` rows (``FOR UPDATE SKIP
  LOCKED``: replicas pruning together never wait on each other); a round runs each job until
  a batch comes back short or ``max_batches`` ran, so one round is bounded too.
- Only rows no rule reads any more are deleted: sent outbox rows (never unsent or set-aside
  ones), inbox ids past the redelivery horizon, and what each service registers for its own
  tables (``Retention.add``).
- ``sp4n_retention_pruned_total{service, table}`` counts the rows deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from shared.settings import RetentionSettings

if TYPE_CHECKING:
    from shared.service import ServiceRuntime

log = logging.getLogger(__name__)
# Deletes at most ``limit`` rows of one table; returns how many it deleted.
PruneJob = Callable[[asyncpg.Pool, int], Awaitable[int]]


def deleted(status: str) -> int:
    """The row count of a ``DELETE n`` command status."""
    return int(status.rsplit(" ", 1)[-1])


def days(value: float) -> timedelta:
    return timedelta(days=value)


def sent_outbox(older_than: timedelta) -> PruneJob:
    """Outbox rows sent longer than ``older_than`` ago."""
    async def prune(pool: asyncpg.Pool, limit: int) -> int:
        return deleted(await pool.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
            " WHERE sent_at < now() - $1::interval ORDER BY sent_at LIMIT $2"
            " FOR UPDATE SKIP LOCKED)", older_than, limit))
    return prune


def consumed_inbox(older_than: timedelta) -> PruneJob:
    """Inbox ids of events consumed longer than ``older_than`` ago (the redelivery horizon)."""
    async def prune(pool: asyncpg.Pool, limit: int) -> int:
        return deleted(await pool.execute(
            "DELETE FROM inbox WHERE event_id IN (SELECT event_id FROM inbox"
            " WHERE consumed_at < now() - $1::interval ORDER BY consumed_at LIMIT $2"
            " FOR UPDATE SKIP LOCKED)", older_than, limit))
    return prune


class Retention:
    """The prune jobs of one service and the loop that runs them (``ServiceRuntime`` registers
    the loop and the outbox and inbox jobs; a service adds its own tables with ``add``)."""

    def __init__(self, service: str, settings: RetentionSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.jobs: dict[str, PruneJob] = {
            "outbox": sent_outbox(days(settings.outbox_sent_days)),
            "inbox": consumed_inbox(days(settings.inbox_days)),
        }
        self._pruned = Counter("sp4n_retention_pruned", "Rows deleted by retention pruning",
                               ["service", "table"], registry=registry)
        self._service = service

    def add(self, table: str, job: PruneJob) -> None:
        self.jobs[table] = job

    async def prune_once(self, pool: asyncpg.Pool) -> dict[str, int]:
        """One round over every job; returns the rows deleted per table."""
        s = self.settings
        counts: dict[str, int] = {}
        for table, job in self.jobs.items():
            total = 0
            for _ in range(s.max_batches):
                n = await job(pool, s.batch_size)
                total += n
                if n < s.batch_size:
                    break
            counts[table] = total
            if total:
                self._pruned.labels(self._service, table).inc(total)
                log.info("pruned %d rows of %s", total, table)
        return counts

    async def prune_retention(self, runtime: ServiceRuntime) -> None:
        """The loop: a round at start-up, then one every ``interval_s``; a failed round (the
        database away) is retried at the next one."""
        while True:
            try:
                await self.prune_once(runtime.pool)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention pruning failed; retrying at the next round")
            await asyncio.sleep(self.settings.interval_s)
