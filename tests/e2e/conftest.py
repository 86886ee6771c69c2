from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest

from services.intake.apikeys import create_api_key
from shared.topology import events_exchange


class EventTap:
    """An exclusive queue on the events exchange: what the services published, by type."""

    def __init__(self, amqp_url: str, namespace: str, keys: tuple[str, ...]) -> None:
        self._url, self._ns, self._keys = amqp_url, namespace, keys
        self.events: list[dict] = []

    async def __aenter__(self) -> EventTap:
        self._conn = await aio_pika.connect(self._url)
        ch = await self._conn.channel()
        ex = await ch.declare_exchange(events_exchange(self._ns).name, aio_pika.ExchangeType.TOPIC,
                                       durable=True)
        self._queue = await ch.declare_queue(exclusive=True)
        for key in self._keys:
            await self._queue.bind(ex, routing_key=key)
        await self._queue.consume(self._on_message, no_ack=True)
        return self

    async def _on_message(self, msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.events.append(json.loads(msg.body))

    async def __aexit__(self, *exc) -> None:
        await self._conn.close()

    def of(self, name: str, complaint_id: str | None = None) -> list[dict]:
        return [e for e in self.events if e["type"].removesuffix(".v1").endswith(name)
                and (complaint_id is None or e["subject"] == complaint_id)]

    async def wait_for(self, name: str, complaint_id: str | None = None, count: int = 1,
                       timeout: float = 15) -> list[dict]:
        for _ in range(int(timeout / 0.05)):
            found = self.of(name, complaint_id)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {count}× {name} for {complaint_id} within {timeout}s; "
                             f"saw {[e['type'] for e in self.events]}")


@pytest.fixture(scope="session")
async def portal_key(settings) -> str:
    from services.cli import migrations_of
    from shared.db import migrate

    await migrate(settings.database_url, "intake", migrations_of("intake"))
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        _, plaintext = await create_api_key(conn, "e2e-portal", "portal", "portal-sekadau")
    finally:
        await conn.close()
    return plaintext


async def create_keys(settings, portal_key: str, prefix: str,
                      specs: list[tuple[str, str, str | None, str | None]],
                      backdate: tuple[str, ...] = ()) -> dict[str, str]:
    """API keys for an e2e module: ``{"portal": portal_key, name: plaintext, …}`` for each
    ``(name, role, source, opd_code)``, named ``{prefix}-{name}`` in intake's table.

    The keys named in ``backdate`` may also date their actions (``occurred_at``): a scenario
    that plays weeks of history in a minute needs its OPD keys to. Only here, in the
    database: ``sp4n create-api-key`` never gives an OPD key ``complaints:backdate``."""
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        out = {"portal": portal_key}
        for name, role, source, opd in specs:
            key, out[name] = await create_api_key(conn, f"{prefix}-{name}", role, source, opd)
            if name in backdate:
                await conn.execute("UPDATE api_keys SET scopes = array_append(scopes, $2)"
                                   " WHERE id = $1", key.id, "complaints:backdate")
    finally:
        await conn.close()
    return out


@contextlib.asynccontextmanager
async def intake_clients(running, keys: dict[str, str]) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One HTTP client on the running intake per key, each sending its key."""
    clients = {who: httpx.AsyncClient(base_url=running.url("intake"),
                                      headers={"Authorization": f"Bearer {key}"}, timeout=10)
               for who, key in keys.items()}
    try:
        yield clients
    finally:
        for c in clients.values():
            await c.aclose()


async def act(api: dict[str, httpx.AsyncClient], who: str, cid: str, action: str,
              expect: int = 200, at: datetime | None = None, **payload: Any) -> Any:
    """A lifecycle action through intake's API as ``who``; ``at`` backdates it."""
    if at is not None:
        payload["occurred_at"] = at.isoformat()
    r = await api[who].post(f"/v1/complaints/{cid}/{action}", json=payload)
    assert r.status_code == expect, (who, action, r.text)
    return r.json()


async def status_until(api: dict[str, httpx.AsyncClient], cid: str, done: Callable[[Any], Any],
                       timeout: float = 15.0, who: str = "admin") -> Any:
    """Poll the complaint's status until ``done(status)`` holds (AssertionError after ``timeout``)."""
    status: Any = {}
    for _ in range(int(timeout / 0.1)):
        status = (await api[who].get(f"/v1/complaints/{cid}")).json()
        if done(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"status never reached the expected state: {status}")
