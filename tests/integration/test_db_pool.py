"""The asyncpg pool of every service (``shared.db.create_pool``) after a link that broke in
the middle of a statement, cut with the fault proxy in front of the real PostgreSQL: the
failure is transient, and the pool does not hand the broken connection out again (its
custom reset runs no query, so nothing else would notice) — the next acquire gets a fresh
one that works."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import create_pool
from shared.failures import classify
from tests.faults.proxy import FaultProxy

pytestmark = pytest.mark.integration
SLEEP = "SELECT pg_sleep(60)"


@pytest.fixture
async def proxied(infra) -> AsyncIterator[tuple[FaultProxy, asyncpg.Pool, asyncpg.Connection]]:
    """A one-connection pool through the proxy (the broken connection is the only one it
    could hand out again), and a direct connection to watch and clean up the server side."""
    async with FaultProxy.to(infra.postgres_admin_url, 5432) as proxy:
        pool = await create_pool(proxy.url(infra.postgres_admin_url), schema="public",
                                 min_size=1, max_size=1)
        admin = await asyncpg.connect(infra.postgres_admin_url)
        try:
            yield proxy, pool, admin
        finally:
            await proxy.restore()
            await pool.close()
            # The backend whose client vanished sleeps on; end it.
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE query = $1 AND pid <> pg_backend_pid()", SLEEP)
            await admin.close()


async def _running(admin: asyncpg.Connection, pid: int) -> None:
    """Until backend ``pid`` is executing the sleep (polled: the cut must come mid-statement)."""
    while await admin.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1 AND query = $2",
                               pid, SLEEP) != "active":
        await asyncio.sleep(0.05)


async def _cut_mid_statement(proxy: FaultProxy, admin: asyncpg.Connection, pid: int,
                             statement: asyncio.Task[object]) -> BaseException:
    await asyncio.wait_for(_running(admin, pid), 30)
    await proxy.cut()
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the type is asserted below
        await statement
    failure = classify(raised.value)
    assert failure.transient and failure.unavailable == "database", failure.reason
    await proxy.restore()
    return raised.value


async def _next_connection_works(pool: asyncpg.Pool, broken_pid: int) -> None:
    async with pool.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        assert pid != broken_pid  # a fresh connection, not the broken one handed out again
        assert await conn.fetchval("SELECT 41 + 1") == 42


async def test_a_link_cut_mid_statement_is_transient_and_the_next_acquire_gets_a_fresh_connection(
        proxied) -> None:
    proxy, pool, admin = proxied

    async def sleep_on_the_pool(started: asyncio.Future[int]) -> object:
        async with pool.acquire() as conn:
            started.set_result(await conn.fetchval("SELECT pg_backend_pid()"))
            return await conn.fetchval(SLEEP)

    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    statement = asyncio.create_task(sleep_on_the_pool(started))
    pid = await started
    exc = await _cut_mid_statement(proxy, admin, pid, statement)
    assert isinstance(exc, (asyncpg.exceptions.ConnectionDoesNotExistError,
                            asyncpg.exceptions.InternalClientError, asyncpg.InterfaceError,
                            ConnectionError)), repr(exc)
    await _next_connection_works(pool, pid)


async def test_a_link_cut_inside_a_transaction_leaves_no_broken_connection_in_the_pool(
        proxied) -> None:
    """As a unit of work sees it: the statement fails, the transaction's ROLLBACK cannot be
    sent either, and the connection is still discarded on release."""
    proxy, pool, admin = proxied

    async def in_a_transaction(started: asyncio.Future[int]) -> object:
        async with pool.acquire() as conn, conn.transaction():
            started.set_result(await conn.fetchval("SELECT pg_backend_pid()"))
            return await conn.fetchval(SLEEP)

    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    statement = asyncio.create_task(in_a_transaction(started))
    pid = await started
    await _cut_mid_statement(proxy, admin, pid, statement)
    await _next_connection_works(pool, pid)
    # And it stays so: every later acquire of the one-connection pool works.
    for _ in range(3):
        await _next_connection_works(pool, pid)
