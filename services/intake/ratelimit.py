"""intake's rate limits, counted by the ``limits`` library: in each replica's memory by default,
in Redis (shared by every replica) when ``settings.intake.rate_limit_redis_url`` is set.

A limit is a ``limits`` string ("30/minute", "5/second;100/hour"); an empty string is no
limit. Counters are sliding windows. When the storage cannot be reached the request is let
through (a rate limit is a guard, not a dependency complaints may wait on) and a warning is
logged once per outage.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from shared.settings import Settings

log = logging.getLogger("sp4n.intake.ratelimit")
# A Redis that does not answer within this long costs a request no more than that: the
# request is let through (see the module's docstring).
STORAGE_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class Limit:
    """One named limit: its items (a "5/second;100/hour" string is two) and what it counts."""

    name: str  # the counter's namespace, e.g. "failed_auth"
    items: Sequence[RateLimitItem]

    @classmethod
    def parse(cls, name: str, spec: str) -> Limit:
        return cls(name, parse_many(spec) if spec.strip() else ())

    def __bool__(self) -> bool:
        return bool(self.items)


class RateLimiter:
    """Counts hits per (limit, identity) and says how long until the next is allowed."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._down = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        s = settings.intake
        prefix = s.rate_limit_key_prefix or f"{settings.namespace}:ratelimit"
        if s.rate_limit_redis_url:
            uri = s.rate_limit_redis_url
            return cls(RedisStorage(uri if uri.startswith("async+") else f"async+{uri}",
                                    implementation="redispy", key_prefix=prefix,
                                    wrap_exceptions=True, socket_timeout=STORAGE_TIMEOUT_S,
                                    socket_connect_timeout=STORAGE_TIMEOUT_S))
        return cls(MemoryStorage())

    async def exceeded(self, limit: Limit, identity: str) -> int | None:
        """Without counting: the seconds until ``identity`` may try again, or None if it may now."""
        for item in limit.items:
            try:
                allowed = await self._strategy.test(item, limit.name, identity)
                if not allowed:
                    return await self._retry_after(item, limit.name, identity)
            except Exception as exc:  # noqa: BLE001 - any storage failure lets the request through
                self._unavailable(exc)
                return None
        self._available()
        return None

    async def hit(self, limit: Limit, identity: str) -> int | None:
        """Count one hit; the seconds to wait when it was over the limit, else None."""
        for item in limit.items:
            try:
                if not await self._strategy.hit(item, limit.name, identity):
                    return await self._retry_after(item, limit.name, identity)
            except Exception as exc:  # noqa: BLE001 - see ``exceeded``
                self._unavailable(exc)
                return None
        self._available()
        return None

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self._strategy.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def _unavailable(self, exc: Exception) -> None:
        if not self._down:
            log.warning("rate-limit storage unavailable, requests are not limited: %s",
                        type(exc).__name__)
        self._down = True

    def _available(self) -> None:
        if self._down:
            log.info("rate-limit storage reachable again")
        self._down = False


__all__ = ["Limit", "RateLimiter"]
