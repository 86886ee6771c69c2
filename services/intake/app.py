"""intake's composition root: ``build_app(settings)`` wires the unit of work, the routes, the
Open311 facade and the broker consumers onto one ``ServiceRuntime``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request

from services.intake import privacy
from services.intake.api import install_api
from services.intake.auth import Authenticator, UsageRecorder
from services.intake.context import IntakeContext
from services.intake.errors import install_error_handlers
from services.intake.guard import GuardLimits, KeyRoutes, RequestGuard
from services.intake.handlers import install_consumers
from services.intake.metrics import IntakeMetrics
from services.intake.open311 import install_open311
from services.intake.privacy_api import install_privacy_api
from services.intake.ratelimit import RateLimiter
from services.intake.reports import install_reports
from services.intake.repository import IntakeRepository
from services.intake.usecases import IntakeConfig
from services.intake.web import install_web
from services.intake.web.routes import SIGN_IN
from shared.service import ServiceRuntime
from shared.settings import Settings
from shared.unavailable import UnavailableMiddleware
from shared.uow import PgUnitOfWork

MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime(
        "intake", settings, MIGRATIONS,
        title="sp4n intake — complaints API",
        # Accepting a complaint needs only the database (the outbox holds its events while
        # the broker is away): a broker outage must not take intake out of its Service.
        broker_required=False,
    )
    cfg = IntakeConfig.from_settings(settings)
    metrics = IntakeMetrics(runtime.registry)
    # The pool exists only after start-up: the unit of work and the key lookup read it late.
    usage = UsageRecorder()  # every way in (native API, Open311) reports the keys it used
    ctx = IntakeContext(cfg=cfg, metrics=metrics,
                        uow=PgUnitOfWork(lambda: runtime.pool, IntakeRepository),
                        authenticator=Authenticator(settings.intake.key_cache_ttl_s, usage),
                        pool=lambda: runtime.pool)

    async def key_usage(rt: ServiceRuntime) -> None:
        await usage.run(lambda: rt.pool, settings.intake.key_usage_flush_s)

    runtime.add_loop(key_usage)
    runtime.app.state.intake = ctx
    install_error_handlers(runtime.app, metrics)
    install_api(runtime.app, metrics)
    install_privacy_api(runtime.app)
    install_open311(runtime, cfg, metrics)
    install_consumers(runtime, ctx)
    install_reports(runtime, settings)
    install_web(runtime, settings)

    async def reporter_data_upkeep(rt: ServiceRuntime) -> None:
        await privacy.upkeep(rt.pool, cfg.keyring,
                             retention_days=settings.intake.failed_submission_retention_days,
                             interval_s=settings.intake.privacy_upkeep_interval_s)

    runtime.add_loop(reporter_data_upkeep)
    runtime.app.state.runtime = runtime
    install_guard(runtime.app, ctx, settings)
    return runtime.app


def install_guard(app: FastAPI, ctx: IntakeContext, settings: Settings) -> None:
    """The size limits, the early key check and the rate limits (``services.intake.guard``);
    added last, so it runs first, before any middleware reads the body."""

    async def authenticate(request: Request) -> str:
        key = await ctx.authenticator.authenticate(ctx.pool(), request)
        return str(key.id)

    limiter = RateLimiter.from_settings(settings)
    app.state.rate_limiter = limiter
    app.add_middleware(RequestGuard, limits=GuardLimits.from_settings(settings.intake),
                       limiter=limiter, authenticate=authenticate,
                       needs_key=KeyRoutes(app), sign_in_paths=frozenset({SIGN_IN}))
    # The guard looks keys up in the database before any route runs: a transient failure
    # there (the database unreachable) is a 503 with Retry-After too, never a 500.
    app.add_middleware(UnavailableMiddleware, retry_after_s=settings.db.retry_after_s)
