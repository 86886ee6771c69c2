"""Composition root of the routing service."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from services.routing import repository
from services.routing.api import router
from services.routing.handlers import submitted_handler
from services.routing.metrics import RoutingMetrics
from services.routing.repository import RoutingRepository
from services.routing.usecases import CachedRulebook
from shared.service import ServiceRuntime
from shared.settings import Settings
from shared.topology import ROUTING_SUBMITTED
from shared.uow import PgUnitOfWork

MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: Settings) -> FastAPI:
    runtime = ServiceRuntime("routing", settings, MIGRATIONS, title="sp4n routing")
    metrics = RoutingMetrics.register(runtime.registry)
    # An operator's rule edit takes effect within rules_ttl_s seconds on every replica.
    rulebook = CachedRulebook(lambda: repository.load_rulebook(runtime.pool),
                              ttl_s=settings.routing.rules_ttl_s)
    runtime.consume(ROUTING_SUBMITTED, submitted_handler(
        uow=PgUnitOfWork(lambda: runtime.pool, RoutingRepository),
        rulebook=rulebook, metrics=metrics,
        duplicate_window_days=settings.duplicate_window_days,
        max_duplicate_candidates=settings.routing.max_duplicate_candidates))
    # Remembered submissions outlive the duplicate window by a margin (late arrivals).
    keep = timedelta(days=settings.duplicate_window_days
                     + settings.retention.recent_submissions_margin_days)
    runtime.retention.add("recent_submissions", lambda pool, limit: repository.prune_recent_submissions(
        pool, older_than=keep, limit=limit))
    runtime.app.include_router(router)
    runtime.app.state.runtime = runtime
    runtime.app.state.rulebook = rulebook
    return runtime.app
