"""Routing's data shapes shared by the use case, the repository and the read API (no I/O)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from services.routing.rules import Rule


@dataclass(frozen=True)
class Rulebook:
    """What a decision needs: the enabled rules and the names of the OPDs they point to."""

    rules: tuple[Rule, ...]
    opd_names: dict[str, str] = field(default_factory=dict)


# Fields in the order of the read API's JSON (keyword-only, so defaults may sit anywhere).
@dataclass(frozen=True, kw_only=True)
class DecisionRecord:
    """One stored decision; (complaint_id, hop) is unique."""

    complaint_id: uuid.UUID
    hop: int
    outcome: str  # 'routed' | 'suggested' | 'triage'
    opd_code: str | None = None
    rule_id: int | None = None
    rule_version: int | None = None
    reason: str | None = None
    category: str
    kecamatan: str | None
    source_event_id: str
    event_id: str
    decided_at: datetime


# Read side: the directory and the rules as the admin console and the Open311 facade see them.

@dataclass(frozen=True)
class Opd:
    code: str
    name: str
    kind: str


@dataclass(frozen=True)
class Kecamatan:
    code: str
    name: str
    opd_code: str | None  # the kecamatan office


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    group: str
    keywords: list[str]
    description: str | None


@dataclass(frozen=True)
class RuleListing:
    """A rule as listed for operators, disabled ones included."""

    id: int
    category: str
    kecamatan: str
    opd_code: str
    priority: int
    version: int
    enabled: bool
    auto_dispose: bool
    note: str | None
    updated_at: datetime


# What ``RoutingRepository.record_decision`` found: the decision was stored, the event was a
# redelivery (inbox hit), or the complaint already had a decision for this hop.
DecisionStatus = Literal["decided", "duplicate_event", "already_decided", "historical"]
