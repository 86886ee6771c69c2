"""Routing's data shapes shared by the use case and the repository (no I/O)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from services.routing.rules import Rule


@dataclass(frozen=True)
class Rulebook:
    """What a decision needs: the enabled rules and the names of the OPDs they point to."""

    rules: tuple[Rule, ...]
    opd_names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DecisionRecord:
    """One stored decision; (complaint_id, hop) is unique."""

    complaint_id: uuid.UUID
    hop: int
    outcome: str  # 'routed' | 'suggested' | 'triage'
    category: str
    kecamatan: str | None
    source_event_id: str
    event_id: str
    decided_at: datetime
    opd_code: str | None = None
    rule_id: int | None = None
    rule_version: int | None = None
    reason: str | None = None
