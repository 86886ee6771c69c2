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
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from shared.broker import (
    Outcome,
    Seal,
    Sent,
    declare_retry_queues,
    declare_topology,
    make_broker,
    publish_event,
    subscribe,
    subscribe_quarantine,
)
from shared.db import create_pool, migrate
from shared.events import EVENT_MODELS, CloudEvent
from shared.failures import Failure, describe
from shared.outbox import OutboxGauges, OutboxRelay
from shared.pause import ConsumerPause
from shared.production import PRIVILEGED_ROLE_SQL, InsecureSettings, refuse_insecure
from shared.requestid import RequestIdApp
from shared.retention import Retention
from shared.settings import Settings
from shared.topology import QueueSpec
from shared.unavailable import UnavailableMiddleware

log = logging.getLogger(__name__)
VERSION = "0.1.0"
Loop = Callable[["ServiceRuntime"], Coroutine[Any, Any, None]]
# A readiness check of a service's own: ``ok`` or the reason it failed.
Check = Callable[[], Awaitable[str]]
T = TypeVar("T")
# A readiness check answers within this many seconds or counts as failed.
CHECK_TIMEOUT_S = 2.0


class ServiceRuntime:
    """``broker_required=False``: the service is ready while only the broker is down (its
    broker and consumer checks are still reported, under ``optional``) — for a service whose
    requests need only the database because the outbox covers the broker's absence."""

    def __init__(self, name: str, settings: Settings, migrations: Path, *, title: str,
                 broker_required: bool = True) -> None:
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
        self.broker_required = broker_required
        self._checks: dict[str, tuple[Check, bool]] = {}
        self.events_published = Counter(
            "sp4n_outbox_published", "Events published from the outbox",
            ["service"], registry=self.registry,
        ).labels(name)
        self.consumer_failures = Counter(
            "sp4n_consumer_failures", "Consumed messages whose handler failed, by queue family, "
            "kind (transient, permanent) and outcome (retried, dead_lettered, requeued)",
            ["service", "queue", "kind", "outcome"], registry=self.registry)
        paused = Gauge("sp4n_consumers_paused",
                       "1 while the consumers are paused because the database is unreachable",
                       ["service"], registry=self.registry).labels(name)
        self.pause = ConsumerPause(self.broker, self._probe_database,
                                   initial_s=settings.retry.probe_initial_s,
                                   max_s=settings.retry.probe_max_s,
                                   on_change=lambda p: paused.set(1 if p else 0))
        self.events_set_aside = Counter(
            "sp4n_outbox_set_aside_events", "Outbox rows set aside after repeated failures",
            ["service"], registry=self.registry,
        ).labels(name)
        self.outbox_gauges = OutboxGauges(self.registry, name)
        # Pruning of this service's own schema; services add their tables (``retention.add``).
        self.retention = Retention(name, settings.retention, self.registry)
        self.add_loop(self.retention.prune_retention)
        # RequestIdApp: every response carries X-Request-ID, every log line its request's id.
        self.app: FastAPI = RequestIdApp(title=title, lifespan=self._lifespan)
        self.app.add_middleware(UnavailableMiddleware, retry_after_s=settings.db.retry_after_s)
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
            subscriber = subscribe(self.broker, self.settings, spec, handle, observe=self._failed)
        else:
            subscriber = subscribe(self.broker, self.settings, spec, handle, parse, observe=self._failed)
        self.pause.add(subscriber)

    def _failed(self, spec: QueueSpec, failure: Failure, outcome: Outcome) -> None:
        kind = "transient" if failure.transient else "permanent"
        self.consumer_failures.labels(self.name, spec.family, kind, outcome).inc()
        self.pause.report(failure)

    async def _probe_database(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    def add_check(self, name: str, check: Check, *, required: bool = False) -> None:
        """A readiness check of the service's own (reported in ``/readyz``; counted only
        when ``required``)."""
        self._checks[name] = (check, required)

    def consume_sent(self, spec: QueueSpec, handle: Callable[[T], Awaitable[None]],
                     parse: Callable[[Sent], T]) -> None:
        """Like ``consume``, but ``parse`` gets the body with its sender (``Sent``: the
        ``user_id`` RabbitMQ validated, the exchange it came through)."""
        self.consumed.append(spec)
        self.pause.add(subscribe(self.broker, self.settings, spec, handle, parse_sent=parse,
                                 observe=self._failed))

    def quarantine(self, spec: QueueSpec, seal: Seal) -> None:
        """Consume the quarantine of a queue with personal data (``shared.broker.
        subscribe_quarantine``); paused with the other consumers."""
        self.pause.add(subscribe_quarantine(self.broker, self.settings, spec, seal,
                                            observe=self._failed))

    def add_loop(self, loop: Loop) -> None:
        """A background coroutine started after the broker, cancelled at shutdown."""
        self._loops.append(loop)

    async def publish(self, event: CloudEvent) -> None:
        await publish_event(self.broker, self.settings.namespace, event)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        s = self.settings
        refuse_insecure(s, self.name)
        # In production the schema and topology exist already (``sp4n migrate`` as the owner
        # role); the service's own role may not run DDL, and its subscribers only check
        # their queues passively (``shared.broker.subscribe``).
        if s.migrates_at_startup:
            await migrate(s.database_url, self.name, self.migrations)
        self._pool = await create_pool(s.database_url, schema=self.name,
                                       min_size=s.db_pool_min, max_size=s.db_pool_max, db=s.db)
        if s.production and await self._pool.fetchval(PRIVILEGED_ROLE_SQL):
            await self._pool.close()
            raise InsecureSettings(self.name, [
                "SP4N_DATABASE_URL names a superuser or a role that may create roles or "
                "databases; use the service's own role from `sp4n bootstrap`"])
        self._admin = await aio_pika.connect_robust(s.amqp_url)
        if s.migrates_at_startup:
            async with self._admin.channel() as channel:
                await declare_topology(channel, s.namespace, s.delivery_limit)
                for spec in self.consumed:
                    await declare_retry_queues(channel, s.namespace, spec, s.retry.delays_s)
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
            await self.pause.close()
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
        """Each check's outcome: ``ok`` or the reason it failed (``optional_checks`` names
        those that do not count)."""
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S), self.pool.acquire(timeout=CHECK_TIMEOUT_S) as conn:
                await conn.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"error: {type(exc).__name__}"
        checks["broker"] = ("ok" if await self.broker.ping(timeout=CHECK_TIMEOUT_S)
                            else "error: no connection")
        for spec in self.consumed:
            checks[f"consumer:{spec.family}"] = (
                "error: paused while the database is unreachable" if self.pause.paused
                else await self._consumer_state(spec))
        for task in self._tasks:
            if task.done():
                checks[f"loop:{task.get_name()}"] = "error: stopped"
        for name, (check, _required) in self._checks.items():
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    checks[name] = await check()
            except Exception as exc:  # noqa: BLE001
                checks[name] = f"error: {describe(exc)[:200]}"
        return checks

    def optional_checks(self, checks: dict[str, str]) -> list[str]:
        """The checks reported but not required for readiness."""
        broker_checks = {"broker", *(f"consumer:{spec.family}" for spec in self.consumed)}
        return [name for name in checks
                if (name in broker_checks and not self.broker_required)
                or (name in self._checks and not self._checks[name][1])]

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
            async with asyncio.timeout(CHECK_TIMEOUT_S), self.admin_channel() as channel:
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
            optional = self.optional_checks(checks)
            ready = all(v == "ok" for k, v in checks.items() if k not in optional)
            body: dict[str, Any] = {"ready": ready, "service": self.name, "checks": checks}
            if optional:
                body["optional"] = optional
            return JSONResponse(body, status_code=200 if ready else 503)


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
    try:
        refuse_insecure(settings, service)
    except InsecureSettings as exc:
        log.critical("%s", exc)
        raise SystemExit(f"error: {exc}") from None
    uvicorn.run(app, host=settings.host, port=settings.port_of(service),
                log_config=None, timeout_graceful_shutdown=int(settings.graceful_timeout_s))
