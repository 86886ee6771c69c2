"""How tools outside a service process (the ``sp4n`` command, tests, benchmarks) reach one
service's schema: the same pool a service builds (``shared.db.create_pool``: its schema on
the ``search_path``, the JSON codecs), small, and optionally migrated first so the tool
works before the service ever started.

    async with service_pool(settings, "sla", migrations=path) as pool: ...
    async with service_connection(settings, "intake", migrations=path) as conn: ...

Invariant: a tool talks to one service's schema through that service's own admin or
repository functions, never across schemas.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from shared.db import create_pool, migrate
from shared.settings import Settings


async def ensure_database(url: str) -> None:
    """Create the target database when it is missing (a fresh local PostgreSQL)."""
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        head, _, tail = url.rpartition("/")
        name = tail.split("?", 1)[0]
        admin = await asyncpg.connect(f"{head}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        print(f"created database {name}")
    else:
        await conn.close()


@contextlib.asynccontextmanager
async def service_pool(settings: Settings, schema: str, *, migrations: Path | None = None,
                       min_size: int = 1, max_size: int = 2) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on ``schema``. With ``migrations`` (the service's migration directory)
    the database is created if missing and the schema migrated first."""
    if migrations is not None:
        await ensure_database(settings.database_url)
        await migrate(settings.database_url, schema, migrations)
    pool = await create_pool(settings.database_url, schema=schema, min_size=min_size,
                             max_size=max_size, db=settings.db)
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def service_connection(settings: Settings, schema: str, *,
                             migrations: Path | None = None) -> AsyncIterator[asyncpg.Connection]:
    """One connection on ``schema`` (a pool of one), for functions that take a connection."""
    async with service_pool(settings, schema, migrations=migrations, min_size=1, max_size=1) as pool, \
            pool.acquire() as conn:
        yield conn
