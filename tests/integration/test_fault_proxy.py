"""The fault proxy of the fault scenarios (tests/faults/proxy.py) does what each fault says,
in front of the real PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tests.faults.proxy import ProxyProcess, target_of, through

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(infra):
    p = ProxyProcess(*target_of(infra.postgres_admin_url, 5432))
    yield p, through(infra.postgres_admin_url, p.port)
    p.close()


async def test_cut_closes_connections_and_refuses_new_ones_until_restored(proxy):
    p, url = proxy
    conn = await asyncpg.connect(url)
    assert await conn.fetchval("SELECT 1") == 1
    await asyncio.to_thread(p.cut)
    with pytest.raises((asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.InterfaceError,
                        ConnectionError)):
        await conn.fetchval("SELECT 1")
    with pytest.raises(OSError):
        await asyncpg.connect(url, timeout=3)
    await asyncio.to_thread(p.restore)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT 2") == 2
    finally:
        await conn.close()


async def test_latency_delays_each_round_trip(proxy):
    p, url = proxy
    conn = await asyncpg.connect(url)
    try:
        await asyncio.to_thread(p.latency, 150)
        t0 = time.monotonic()
        await conn.fetchval("SELECT 1")
        assert time.monotonic() - t0 >= 0.3  # 150 ms each way
        await asyncio.to_thread(p.restore)
        assert await conn.fetchval("SELECT 3") == 3
    finally:
        await conn.close()


async def test_blackhole_answers_nothing_and_restore_drops_the_corrupted_links(proxy):
    p, url = proxy
    conn = await asyncpg.connect(url)
    await asyncio.to_thread(p.blackhole)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(conn.fetchval("SELECT 1"), 1.0)
    with pytest.raises((TimeoutError, asyncio.TimeoutError)):
        await asyncpg.connect(url, timeout=1.0)  # the TCP connect succeeds; no answer follows
    await asyncio.to_thread(p.restore)
    conn.terminate()
    fresh = await asyncpg.connect(url)
    try:
        assert await fresh.fetchval("SELECT 4") == 4
    finally:
        await fresh.close()
