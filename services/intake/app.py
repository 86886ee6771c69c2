"""intake's composition root: ``build_app(settings)`` wires the unit of work, the routes, the
Open311 facade and the broker consumers onto one ``ServiceRuntime``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request

from services.intake.api import install_api
from services.intake.auth import Authenticator
from services.intake.context import IntakeContext
from services.intake.errors import install_error_handlers
from services.intake.guard import GuardLimits, KeyRoutes, RequestGuard
from services.intake.handlers import install_consumers
from services.intake.metrics import IntakeMetrics
from services.intake.open311 import install_open311
from services.intake.ratelimit import RateLimiter
from services.intake.reports import install_reports
from services.intake.repository import IntakeRepository
from services.intake.usecases import IntakeConfig
from services.intake.web import install_web
from services.intake.web.routes import SIGN_IN
from shared.service import ServiceRuntime
from shared.settings import Settings
from shared.uow import PgUnitOfWork

MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime(
        "intake", settings, MIGRATIONS,
        title="sp4n intake — complaints API",
    )
    cfg = IntakeConfig.from_settings(settings)
    metrics = IntakeMetrics(runtime.registry)
    # The pool exists only after start-up: the unit of work and the key lookup read it late.
    ctx = IntakeContext(cfg=cfg, metrics=metrics,
                        uow=PgUnitOfWork(lambda: runtime.pool, IntakeRepository),
                        authenticator=Authenticator(settings.intake.key_cache_ttl_s),
                        pool=lambda: runtime.pool)
    runtime.app.state.intake = ctx
    install_error_handlers(runtime.app, metrics)
    install_api(runtime.app, metrics)
    install_open311(runtime, cfg, metrics)
    install_consumers(runtime, ctx)
    install_reports(runtime, settings)
    install_web(runtime, settings)
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
