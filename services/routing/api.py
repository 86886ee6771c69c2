"""Routing's HTTP read API: read-only views for the admin console and the Open311 facade.

Rule edits are done in the database (or a future authorised admin API); reads expose no
personal data. Routes are thin: the pool and the rulebook come from the app's state (set by
``app.build_app``) through ``Depends``; the repository returns typed models.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from services.routing import repository
from services.routing.model import Category, DecisionRecord, Kecamatan, Opd, RuleListing
from services.routing.rules import Routed, Suggested, decide
from services.routing.usecases import CachedRulebook
from shared.service import PoolDep

router = APIRouter(prefix="/v1", tags=["routing"])


def _rulebook(request: Request) -> CachedRulebook:
    rulebook: CachedRulebook = request.app.state.rulebook
    return rulebook


RulebookDep = Annotated[CachedRulebook, Depends(_rulebook)]


class RulePreview(BaseModel):
    """A rule applies: ``routed`` disposes at once, ``suggested`` waits for the admin koordinator."""

    outcome: Literal["routed", "suggested"]
    auto_dispose: bool
    opd_code: str
    opd_name: str
    rule_id: int
    rule_version: int


class TriagePreview(BaseModel):
    outcome: Literal["triage"]
    reason: str


@router.get("/opds")
async def opds(pool: PoolDep) -> list[Opd]:
    return await repository.list_opds(pool)


@router.get("/kecamatan")
async def kecamatan(pool: PoolDep) -> list[Kecamatan]:
    return await repository.list_kecamatan(pool)


@router.get("/categories")
async def categories(pool: PoolDep) -> list[Category]:
    return await repository.list_categories(pool)


@router.get("/rules")
async def rules(pool: PoolDep) -> list[RuleListing]:
    return await repository.list_rules(pool)


@router.get("/routing/preview")
async def preview(rulebook: RulebookDep,
                  category: Annotated[str, Query(min_length=1, max_length=100)],
                  kecamatan: Annotated[str | None, Query(max_length=100)] = None,
                  ) -> RulePreview | TriagePreview:
    """What a complaint with this category and kecamatan would get now (nothing stored):
    ``routed`` (disposed at once), ``suggested`` (the rule does not auto-dispose: the admin
    koordinator decides) or ``triage``."""
    book = await rulebook()
    decision = decide(book.rules, book.opd_names, category, kecamatan)
    if isinstance(decision, Routed | Suggested):
        routed = isinstance(decision, Routed)
        return RulePreview(outcome="routed" if routed else "suggested", auto_dispose=routed,
                           opd_code=decision.opd_code, opd_name=decision.opd_name,
                           rule_id=decision.rule_id, rule_version=decision.rule_version)
    return TriagePreview(outcome="triage", reason=decision.reason)


@router.get("/decisions/{complaint_id}")
async def decisions(pool: PoolDep, complaint_id: uuid.UUID) -> list[DecisionRecord]:
    return await repository.get_decisions(pool, complaint_id)
