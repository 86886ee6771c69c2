"""intake's rate limiter (``services.intake.ratelimit``) over the ``limits`` library's memory
storage, and what it does when its Redis is gone."""

from __future__ import annotations

import logging
import socket

from services.intake.ratelimit import Limit, RateLimiter
from shared.settings import IntakeSettings, Settings


async def test_counts_per_identity_and_says_how_long_to_wait():
    limiter = RateLimiter.from_settings(Settings())
    limit = Limit.parse("t", "2/minute")
    assert await limiter.hit(limit, "a") is None
    assert await limiter.hit(limit, "a") is None
    assert await limiter.exceeded(limit, "a") is not None
    wait = await limiter.hit(limit, "a")
    assert wait is not None and 1 <= wait <= 60
    assert await limiter.hit(limit, "b") is None  # another identity counts apart


async def test_an_empty_limit_is_no_limit():
    limiter = RateLimiter.from_settings(Settings())
    limit = Limit.parse("t", "")
    assert not limit
    for _ in range(100):
        assert await limiter.hit(limit, "a") is None


async def test_an_unreachable_redis_lets_requests_through_and_says_so(caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    limiter = RateLimiter.from_settings(Settings(intake=IntakeSettings(
        rate_limit_redis_url=f"redis://127.0.0.1:{port}/0")))
    limit = Limit.parse("t", "1/minute")
    with caplog.at_level(logging.WARNING, logger="sp4n.intake.ratelimit"):
        for _ in range(3):
            assert await limiter.hit(limit, "a") is None
            assert await limiter.exceeded(limit, "a") is None
    assert [r.getMessage() for r in caplog.records].count(
        "rate-limit storage unavailable, requests are not limited: StorageError") == 1
