"""Composition root of the routing service."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi import APIRouter, FastAPI, Query

from shared.service import ServiceRuntime
from shared.settings import Settings
from shared.topology import ROUTING_SUBMITTED
from services.routing import repository
from services.routing.handlers import submitted_handler
from services.routing.metrics import RoutingMetrics
from services.routing.rules import Routed, Suggested, decide
from services.routing.usecases import CachedRulebook

MIGRATIONS = Path(__file__).parent / "migrations"
# An operator's rule edit takes effect within this many seconds on every replica.
RULES_TTL_S = 2.0


def build_app(settings: Settings, *, rules_ttl_s: float = RULES_TTL_S) -> FastAPI:
    runtime = ServiceRuntime("routing", settings, MIGRATIONS, title="sp4n routing")
    metrics = RoutingMetrics.register(runtime.registry)
    rulebook = CachedRulebook(lambda: repository.load_rulebook(runtime.pool), ttl_s=rules_ttl_s)
    runtime.consume(ROUTING_SUBMITTED, submitted_handler(
        unit_of_work=lambda: repository.unit_of_work(runtime.pool),
        rulebook=rulebook, metrics=metrics, duplicate_window_days=settings.duplicate_window_days))
    runtime.app.include_router(_read_api(runtime, rulebook))
    runtime.app.state.runtime = runtime
    runtime.app.state.rulebook = rulebook
    return runtime.app


def _read_api(runtime: ServiceRuntime, rulebook: CachedRulebook) -> APIRouter:
    """Read-only views for the admin console and the Open311 facade. Rule edits are done in
    the database (or a future authorised admin API); reads expose no personal data."""
    api = APIRouter(prefix="/v1", tags=["routing"])

    @api.get("/opds")
    async def opds() -> list[dict]:
        return await repository.list_opds(runtime.pool)

    @api.get("/kecamatan")
    async def kecamatan() -> list[dict]:
        return await repository.list_kecamatan(runtime.pool)

    @api.get("/categories")
    async def categories() -> list[dict]:
        return await repository.list_categories(runtime.pool)

    @api.get("/rules")
    async def rules() -> list[dict]:
        return await repository.list_rules(runtime.pool)

    @api.get("/routing/preview")
    async def preview(category: str = Query(min_length=1, max_length=100),
                      kecamatan: str | None = Query(default=None, max_length=100)) -> dict:
        """What a complaint with this category and kecamatan would get now (nothing stored):
        ``routed`` (disposed at once), ``suggested`` (the rule does not auto-dispose: the admin
        koordinator decides) or ``triage``."""
        book = await rulebook()
        decision = decide(book.rules, book.opd_names, category, kecamatan)
        if isinstance(decision, Routed | Suggested):
            return {"outcome": "routed" if isinstance(decision, Routed) else "suggested",
                    "auto_dispose": isinstance(decision, Routed),
                    "opd_code": decision.opd_code, "opd_name": decision.opd_name,
                    "rule_id": decision.rule_id, "rule_version": decision.rule_version}
        return {"outcome": "triage", "reason": decision.reason}

    @api.get("/decisions/{complaint_id}")
    async def decisions(complaint_id: uuid.UUID) -> list[dict]:
        return await repository.get_decisions(runtime.pool, complaint_id)

    return api
