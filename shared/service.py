"""The runtime every service shares: one FastAPI process that owns a database pool, a
FastStream broker (its subscribers), the outbox relay and the service's background loops,
and serves ``/metrics``, ``/healthz`` (liveness) and ``/readyz`` (readiness).

Each service's composition root (``build_app(settings)``) creates a ``ServiceRuntime``,
registers its subscribers, routes and loops on it, and returns ``runtime.app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar, overload

import aio_pika
import asyncpg
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from faststream.specification import AsyncAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from shared.broker import declare_topology, make_broker, publish_event, subscribe
from shared.db import create_pool, migrate
from shared.events import EVENT_MODELS, CloudEvent
from shared.outbox import OutboxGauges, OutboxRelay
from shared.retention import Retention
from shared.settings import Settings
from shared.topology import QueueSpec

log = logging.getLogger(__name__)
VERSION = "0.1.0"
Loop = Callable[["ServiceRuntime"], Coroutine[Any, Any, None]]
T = TypeVar("T")


class ServiceRuntime:
    def __init__(self, name: str, settings: Settings, migrations: Path, *, title: str) -> None:
        self.name = name
        self.settings = settings
        self.migrations = migrations
        self.registry = CollectorRegistry()
        self.broker = make_broker(settings, self.registry, name)
        self.consumed: list[QueueSpec] = []
        self._loops: list[Loop] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: asyncpg.Pool | None = None
        self._admin: aio_pika.abc.AbstractRobustConnection | None = None
        self.events_published = Counter(
            "sp4n_outbox_published", "Events published from the outbox",
            ["service"], registry=self.registry,
        ).labels(name)
        self.events_set_aside = Counter(
            "sp4n_outbox_set_aside_events", "Outbox rows set aside after repeated failures",
            ["service"], registry=self.registry,
        ).labels(name)
        self.outbox_gauges = OutboxGauges(self.registry, name)
        # Pruning of this service's own schema; services add their tables (``retention.add``).
        self.retention = Retention(name, settings.retention, self.registry)
        self.add_loop(self.retention.prune_retention)
        self.app = FastAPI(title=title, lifespan=self._lifespan)
        self._add_ops_routes()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: database pool used before start-up")
        return self._pool

    @overload
    def consume(self, spec: QueueSpec, handle: Callable[[CloudEvent], Awaitable[None]]) -> None: ...
    @overload
    def consume(self, spec: QueueSpec, handle: Callable[[T], Awaitable[None]],
                parse: Callable[[bytes], T]) -> None: ...

    def consume(self, spec: QueueSpec, handle: Callable[[Any], Awaitable[None]],
                parse: Callable[[bytes], Any] | None = None) -> None:
        """Register a consumer for one queue (see ``shared.broker.subscribe``): ``handle``
        gets a ``CloudEvent``, or what ``parse`` makes of the message body."""
        self.consumed.append(spec)
        if parse is None:
            subscribe(self.broker, self.settings, spec, handle)
        else:
            subscribe(self.broker, self.settings, spec, handle, parse)

    def add_loop(self, loop: Loop) -> None:
        """A background coroutine started after the broker, cancelled at shutdown."""
        self._loops.append(loop)

    async def publish(self, event: CloudEvent) -> None:
        await publish_event(self.broker, self.settings.namespace, event)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        s = self.settings
        await migrate(s.database_url, self.name, self.migrations)
        self._pool = await create_pool(s.database_url, schema=self.name,
                                       min_size=s.db_pool_min, max_size=s.db_pool_max)
        self._admin = await aio_pika.connect_robust(s.amqp_url)
        async with self._admin.channel() as channel:
            await declare_topology(channel, s.namespace, s.delivery_limit)
        await self.broker.start()
        relay = OutboxRelay(
            self.pool, self.publish, batch_size=s.outbox_batch_size,
            poll_interval_s=s.outbox_poll_interval_s, on_published=self.events_published.inc,
            lease_s=s.outbox_lease_s, publish_timeout_s=s.outbox_publish_timeout_s,
            max_attempts=s.outbox_max_attempts, backoff_s=s.outbox_retry_backoff_s,
            backoff_max_s=s.outbox_retry_backoff_max_s, on_set_aside=self.events_set_aside.inc)
        self._tasks = [asyncio.create_task(relay.run(), name=f"{self.name}-outbox")]
        self._tasks += [asyncio.create_task(loop(self), name=f"{self.name}-{loop.__name__}")
                        for loop in self._loops]
        log.info("%s started", self.name)
        try:
            yield
        finally:
            log.info("%s stopping", self.name)
            # Stop consuming first (graceful: in-flight handlers finish), then the loops, then
            # drain the outbox (the broker connection stays open for it), then disconnect.
            await asyncio.gather(*(sub.stop() for sub in self.broker.subscribers),
                                 return_exceptions=True)
            relay_task, loops = self._tasks[0], self._tasks[1:]
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            relay.stop()
            await asyncio.wait([relay_task], timeout=s.outbox_drain_timeout_s)
            relay_task.cancel()
            await asyncio.gather(relay_task, return_exceptions=True)
            await self.broker.stop()
            await self._admin.close()
            await self._pool.close()
            self._pool = None

    async def readiness(self) -> dict[str, str]:
        """Each check's outcome: ``ok`` or the reason it failed."""
        checks: dict[str, str] = {}
        try:
            async with self.pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"error: {type(exc).__name__}"
        checks["broker"] = "ok" if await self.broker.ping(timeout=2) else "error: no connection"
        for spec in self.consumed:
            checks[f"consumer:{spec.family}"] = await self._consumer_state(spec)
        for task in self._tasks:
            if task.done():
                checks[f"loop:{task.get_name()}"] = "error: stopped"
        return checks

    @contextlib.asynccontextmanager
    async def admin_channel(self) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
        """A fresh channel on the runtime's own AMQP connection (not the consumers'), for
        topology checks and changes; fresh because aio-pika caches passive declares."""
        if self._admin is None:
            raise RuntimeError(f"{self.name}: AMQP admin connection used before start-up")
        async with self._admin.channel() as channel:
            yield channel

    async def _consumer_state(self, spec: QueueSpec) -> str:
        try:
            async with self.admin_channel() as channel:
                q = await channel.declare_queue(spec.name(self.settings.namespace), passive=True)
                count = q.declaration_result.consumer_count
        except Exception as exc:  # noqa: BLE001
            return f"error: {type(exc).__name__}"
        return "ok" if count and count > 0 else "error: no consumer attached"

    def _add_ops_routes(self) -> None:
        app = self.app

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            if self._pool is not None:
                await self.outbox_gauges.refresh(self._pool)
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        @app.get("/healthz", tags=["ops"])
        async def healthz() -> dict[str, str]:
            return {"status": "ok", "service": self.name}

        @app.get("/asyncapi.json", tags=["ops"])
        async def asyncapi() -> Response:
            """AsyncAPI 3.0 of the queues this service consumes (FastStream)."""
            spec = AsyncAPI(self.broker, title=f"sp4n {self.name}", version=VERSION,
                            description="Consumes CloudEvents; payloads in /events.schema.json")
            return Response(spec.to_specification().to_json(), media_type="application/json")

        @app.get("/events.schema.json", tags=["ops"])
        async def event_schemas() -> dict[str, dict[str, Any]]:
            """Every sp4n event: routing key, CloudEvents type and the JSON Schema of ``data``."""
            return {name: {"routing_key": name, "type": model.ce_type(),
                           "data": model.model_json_schema()}
                    for name, model in EVENT_MODELS.items()}

        @app.get("/readyz", tags=["ops"])
        async def readyz() -> JSONResponse:
            checks = await self.readiness()
            ready = all(v == "ok" for v in checks.values())
            return JSONResponse({"ready": ready, "service": self.name, "checks": checks},
                                status_code=200 if ready else 503)


def runtime_pool(request: Request) -> asyncpg.Pool:
    """A route dependency: the database pool of the service's runtime (``app.state.runtime``,
    set by every composition root)."""
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime.pool


PoolDep = Annotated[asyncpg.Pool, Depends(runtime_pool)]


def serve(app: FastAPI, settings: Settings, service: str) -> None:
    """Run one service as its own process (``python -m services.<name>``)."""
    import uvicorn

    from shared.logs import configure_logging

    configure_logging(service, settings.log_level)
    uvicorn.run(app, host=settings.host, port=settings.port_of(service),
                log_config=None, timeout_graceful_shutdown=int(settings.graceful_timeout_s))
