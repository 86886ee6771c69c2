"""PostgreSQL access: the asyncpg pool and the migration runner.

Migrations are numbered plain-SQL files (``0001_init.sql``) per service schema. They run
with ``search_path`` set to that schema, so files never name it. The messaging tables
every service needs (outbox, inbox) come from ``shared/migrations`` and are applied to
each schema first. The whole run holds an advisory lock, so replicas starting together
apply each file exactly once; re-running is a no-op.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from shared.outbox import connection_released
from shared.settings import DatabaseSettings

log = logging.getLogger(__name__)
SHARED_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_KEY = 0x5F4E_0001
# The migration ledger of one schema (on the search_path); ``sp4n bootstrap`` creates it
# too, as the owner role, so it can make it read-only for the service role.
LEDGER_DDL = ("CREATE TABLE IF NOT EXISTS schema_migrations ("
              " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _on_release(conn: asyncpg.Connection) -> None:
    # asyncpg has already rolled back any open transaction and dropped local listeners.
    # Invariant: pool connections never change session state (SET, session advisory locks),
    # so the default per-release ``RESET ALL; UNLISTEN *; …`` round trip is not needed.
    connection_released(conn)


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg is untyped
    """An asyncpg pool whose ``acquire()`` gives up after ``acquire_timeout`` seconds unless
    the caller passes its own timeout (asyncpg waits forever by default), raising
    ``TimeoutError``: during an outage a request answers 503 instead of hanging."""

    __slots__ = ("_acquire_timeout",)

    def __init__(self, *args: Any, acquire_timeout: float | None, **kwargs: Any) -> None:
        self._acquire_timeout = acquire_timeout
        super().__init__(*args, **kwargs)

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)


def session_settings(db: DatabaseSettings) -> dict[str, str]:
    """The server-side limits of every pooled session (``DatabaseSettings``)."""
    return {
        "statement_timeout": str(int(db.statement_timeout_s * 1000)),
        "idle_in_transaction_session_timeout": str(int(db.idle_in_transaction_timeout_s * 1000)),
        "tcp_keepalives_idle": str(db.keepalives_idle_s),
        "tcp_keepalives_interval": str(db.keepalives_interval_s),
        "tcp_keepalives_count": str(db.keepalives_count),
    }


async def create_pool(dsn: str, *, schema: str, min_size: int = 2, max_size: int = 10,
                      query_logger: Callable[[Any], None] | None = None,
                      db: DatabaseSettings | None = None) -> asyncpg.Pool:
    """A pool on one service schema, with the timeouts and keepalives of ``db`` (the
    defaults of ``DatabaseSettings`` when not given); ``query_logger`` (asyncpg's, called per
    query) is for tooling that counts or traces statements."""
    db = db or DatabaseSettings()

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        if query_logger is not None:
            conn.add_query_logger(query_logger)

    command_timeout = (db.statement_timeout_s + db.command_timeout_margin_s
                       if db.statement_timeout_s > 0 else None)
    pool = BoundedPool(
        dsn, min_size=min_size, max_size=max_size, init=init, reset=_on_release,
        acquire_timeout=db.acquire_timeout_s or None, timeout=db.connect_timeout_s,
        command_timeout=command_timeout,
        server_settings={"search_path": f"{schema},public", "application_name": f"sp4n-{schema}",
                         **session_settings(db)},
        # create_pool's own defaults, which Pool() does not supply.
        connection_class=asyncpg.Connection, record_class=asyncpg.Record, init_size=None,
        max_queries=50000, max_inactive_connection_lifetime=300.0, connect=None, setup=None,
        loop=None,
    )
    await pool
    return pool


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.sql") if p.name[:4].isdigit())


async def migrate(dsn: str, schema: str, directory: Path) -> list[str]:
    """Apply pending migrations of one service schema; returns the versions applied."""
    applied_now: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}", public')
            await conn.execute(LEDGER_DDL)
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            plan = [(f"shared/{p.stem}", p) for p in _files(SHARED_MIGRATIONS)]
            plan += [(p.stem, p) for p in _files(directory)]
            for version, path in plan:
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied_now.append(version)
                log.info("migrated %s to %s", schema, version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
    return applied_now
