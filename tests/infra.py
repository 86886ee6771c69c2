"""Where the tests find PostgreSQL and RabbitMQ, and how each run isolates itself.

Order: the ``SP4N_TEST_POSTGRES_URL`` / ``SP4N_TEST_AMQP_URL`` environment variables; else
testcontainers when a Docker engine answers; else the tests that need them are skipped with
a message saying so. Each run gets a fresh database and a unique namespace for exchanges and
queues, and removes both afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from contextlib import ExitStack
from dataclasses import dataclass

import aio_pika
import asyncpg

from shared.settings import RetrySettings
from shared.topology import (
    ALL_QUEUES,
    dead_letter_exchange,
    events_exchange,
    inbound_exchange,
    retry_exchange,
)


@dataclass
class Infra:
    postgres_admin_url: str  # a URL to a database we may CREATE DATABASE from
    amqp_url: str


def _docker_available() -> bool:
    try:
        import docker  # testcontainers depends on it

        docker.from_env().ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means no engine
        return False


def find_infra(stack: ExitStack) -> Infra | str:
    """The infrastructure to test against, or the reason there is none."""
    pg = os.environ.get("SP4N_TEST_POSTGRES_URL")
    amqp = os.environ.get("SP4N_TEST_AMQP_URL")
    if pg and amqp:
        return Infra(pg, amqp)
    if not _docker_available():
        return ("no SP4N_TEST_POSTGRES_URL/SP4N_TEST_AMQP_URL given and no Docker engine for "
                "testcontainers: set both variables (see README) to run integration and e2e tests")
    if not pg:
        from testcontainers.postgres import PostgresContainer

        container = stack.enter_context(PostgresContainer("postgres:16-alpine"))
        pg = container.get_connection_url(driver=None)
    if not amqp:
        from testcontainers.rabbitmq import RabbitMqContainer

        container = stack.enter_context(RabbitMqContainer("rabbitmq:3.13-management-alpine"))
        amqp = (f"amqp://{container.username}:{container.password}@"
                f"{container.get_container_host_ip()}:{container.get_exposed_port(container.port)}/")
    return Infra(pg, amqp)


def with_database(url: str, database: str) -> str:
    head, _, _old = url.rpartition("/")
    query = ""
    if "?" in _old:
        query = "?" + _old.split("?", 1)[1]
    return f"{head}/{database}{query}"


async def _execute(url: str, sql: str) -> None:
    """One statement on a connection of its own."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(admin_url: str, name: str) -> None:
    await _execute(admin_url, f'CREATE DATABASE "{name}"')


async def drop_database(admin_url: str, name: str) -> None:
    await _execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def delete_namespace(amqp_url: str, ns: str, extra_retry_delays_s: tuple[float, ...] = ()) -> None:
    """Remove every queue and exchange of a test namespace (the retry queues of the default
    retry steps and of ``extra_retry_delays_s``)."""
    conn = await aio_pika.connect(amqp_url)
    try:
        retry_steps = (*RetrySettings().delays_s, *extra_retry_delays_s)
        for spec in ALL_QUEUES:
            names = [spec.name(ns), spec.dlq_name(ns), *(spec.retry_name(ns, d) for d in retry_steps)]
            if spec.personal_data:
                names.append(spec.quarantine_name(ns))
            for name in names:
                async with conn.channel() as ch:
                    await ch.queue_delete(name, if_unused=False, if_empty=False)
        for ex in (events_exchange(ns), inbound_exchange(ns), dead_letter_exchange(ns),
                   retry_exchange(ns)):
            async with conn.channel() as ch:
                await ch.exchange_delete(ex.name)
    finally:
        await conn.close()


async def drop_schema(database_url: str, schema: str) -> None:
    """Remove a test's own schema (if it is there) and everything in it."""
    await _execute(database_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def unique_suffix() -> str:
    return uuid.uuid4().hex[:10]


def run(coro):
    return asyncio.run(coro)


async def next_message(queue: aio_pika.abc.AbstractQueue, timeout: float = 5.0):
    """The next message of ``queue`` (unacked), or None if none arrives within ``timeout``."""
    for _ in range(int(timeout / 0.1)):
        msg = await queue.get(fail=False)
        if msg is not None:
            return msg
        await asyncio.sleep(0.1)
    return None


async def message_count(ch: aio_pika.abc.AbstractChannel, name: str, expected: int,
                        timeout: float = 5.0) -> int:
    """A queue's message count, polled until it is ``expected`` or ``timeout`` passed (the
    broker counts a just-published or just-acked message a moment later)."""
    for _ in range(int(timeout / 0.05)):
        q = await ch.declare_queue(name, passive=True)
        if q.declaration_result.message_count == expected:
            break
        await asyncio.sleep(0.05)
    return q.declaration_result.message_count or 0
