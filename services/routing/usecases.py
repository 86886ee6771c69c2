"""Routing use cases. Collaborators come in as arguments; no broker, no SQL here.

Invariants:
- The inbox record, the decision and the outgoing event commit in one transaction, so a
  crash anywhere leaves either all of them or none (the redelivery then redoes it).
- At most one decision per (complaint, hop): a complaint re-published under a new event id
  finds the stored decision and emits nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, Protocol

from shared.events import (
    CloudEvent,
    ComplaintRouted,
    ComplaintSubmitted,
    ComplaintTriageRequired,
    make_event,
)
from services.routing.model import DecisionRecord, Rulebook
from services.routing.rules import Decision, Routed, decide

log = logging.getLogger(__name__)
EVENT_SOURCE = "sp4n/routing"
FIRST_HOP = 1


class Repository(Protocol):
    async def first_delivery(self, event: CloudEvent) -> bool: ...
    async def add_decision(self, record: DecisionRecord) -> bool: ...
    async def add_to_outbox(self, *events: CloudEvent) -> None: ...


UnitOfWork = Callable[[], AbstractAsyncContextManager[Repository]]
RulebookSource = Callable[[], Awaitable[Rulebook]]


@dataclass(frozen=True)
class RoutingResult:
    status: Literal["decided", "duplicate_event", "already_decided"]
    decision: Decision | None = None
    emitted: CloudEvent | None = None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _outcome(submitted: ComplaintSubmitted, decision: Decision, now: datetime) -> CloudEvent:
    if isinstance(decision, Routed):
        data = ComplaintRouted(
            complaint_id=submitted.complaint_id, opd_code=decision.opd_code,
            opd_name=decision.opd_name, hop=FIRST_HOP, rule_id=decision.rule_id,
            rule_version=decision.rule_version, routed_at=now, routed_by="rule")
    else:
        data = ComplaintTriageRequired(
            complaint_id=submitted.complaint_id, reason=decision.reason,
            category=submitted.category, kecamatan=submitted.location.kecamatan)
    return make_event(EVENT_SOURCE, data, time=now)


def _record(event: CloudEvent, submitted: ComplaintSubmitted, decision: Decision,
            emitted: CloudEvent, now: datetime) -> DecisionRecord:
    common = dict(complaint_id=submitted.complaint_id, hop=FIRST_HOP,
                  category=submitted.category, kecamatan=submitted.location.kecamatan,
                  source_event_id=event.id, event_id=emitted.id, decided_at=now)
    if isinstance(decision, Routed):
        return DecisionRecord(outcome="routed", opd_code=decision.opd_code,
                              rule_id=decision.rule_id, rule_version=decision.rule_version, **common)
    # A triage may carry the rule that matched but may not dispose automatically.
    suggested = decision.suggested_rule
    return DecisionRecord(
        outcome="triage", reason=decision.reason,
        opd_code=suggested.opd_code if suggested else None,
        rule_id=suggested.id if suggested else None,
        rule_version=suggested.version if suggested else None, **common)


async def route_submitted(event: CloudEvent, submitted: ComplaintSubmitted, *,
                          unit_of_work: UnitOfWork, rulebook: RulebookSource,
                          clock: Callable[[], datetime] = _utcnow) -> RoutingResult:
    """Decide the first disposition of a newly submitted complaint."""
    book = await rulebook()
    now = clock()
    decision = decide(book.rules, book.opd_names, submitted.category, submitted.location.kecamatan)
    emitted = _outcome(submitted, decision, now)
    async with unit_of_work() as repo:
        if not await repo.first_delivery(event):
            return RoutingResult("duplicate_event")
        if not await repo.add_decision(_record(event, submitted, decision, emitted, now)):
            # The inbox row still commits: this event id is consumed, with no effect.
            return RoutingResult("already_decided")
        await repo.add_to_outbox(emitted)
    return RoutingResult("decided", decision, emitted)


class CachedRulebook:
    """The rulebook, reloaded when older than ``ttl_s``, so an operator's edit takes effect
    within ``ttl_s`` seconds on every replica without a restart. Concurrent callers share
    one reload."""

    def __init__(self, load: RulebookSource, ttl_s: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._book: Rulebook | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._book is not None and self._monotonic() - self._loaded_at < self._ttl_s

    async def __call__(self) -> Rulebook:
        if self._fresh():
            return self._book  # type: ignore[return-value]
        async with self._lock:
            if not self._fresh():
                self._book = await self._load()
                self._loaded_at = self._monotonic()
                log.debug("rulebook reloaded: %d rules", len(self._book.rules))
        return self._book  # type: ignore[return-value]

    def invalidate(self) -> None:
        self._book = None
