"""Routing use cases. Collaborators come in as arguments; no broker, no SQL here.

Invariants:
- The inbox record, the decision and the outgoing event commit in one transaction, so a
  crash anywhere leaves either all of them or none (the redelivery then redoes it).
- At most one decision per (complaint, hop): a complaint re-published under a new event id
  finds the stored decision and emits nothing.
- The decision emits exactly one of complaint.routed (rule with auto_dispose),
  complaint.routing_suggested (rule without it) or complaint.triage_required (no usable rule).
- Duplicate suspicion runs in the same transaction and may add complaint.duplicate_suspected;
  it never changes the decision (see ``duplicates`` for the matching and its symmetry).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, Protocol

from shared.events import (
    CloudEvent,
    ComplaintDuplicateSuspected,
    ComplaintRouted,
    ComplaintRoutingSuggested,
    ComplaintSubmitted,
    ComplaintTriageRequired,
    make_event,
)
from services.routing.duplicates import SubmissionKey
from services.routing.model import DecisionRecord, Rulebook
from services.routing.rules import Decision, Routed, Suggested, decide

log = logging.getLogger(__name__)
EVENT_SOURCE = "sp4n/routing"
FIRST_HOP = 1
DEFAULT_DUPLICATE_WINDOW_DAYS = 7


class Repository(Protocol):
    async def record_decision(self, event: CloudEvent, record: DecisionRecord, emitted: CloudEvent,
                              key: SubmissionKey
                              ) -> Literal["decided", "duplicate_event", "already_decided"]:
        """Record the event in the inbox; on its first delivery store the decision unless
        (complaint, hop) has one; when stored, stage ``emitted`` and remember the submission for
        duplicate suspicion (serialised per (category, desa))."""
    async def duplicate_candidates(self, key: SubmissionKey, window_days: int) -> list[uuid.UUID]: ...
    async def add_to_outbox(self, *events: CloudEvent) -> None: ...


UnitOfWork = Callable[[], AbstractAsyncContextManager[Repository]]
RulebookSource = Callable[[], Awaitable[Rulebook]]


@dataclass(frozen=True)
class RoutingResult:
    status: Literal["decided", "duplicate_event", "already_decided"]
    decision: Decision | None = None
    emitted: CloudEvent | None = None
    duplicate_suspected: CloudEvent | None = None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _outcome(submitted: ComplaintSubmitted, decision: Decision, now: datetime) -> CloudEvent:
    if isinstance(decision, Routed):
        data = ComplaintRouted(
            complaint_id=submitted.complaint_id, opd_code=decision.opd_code,
            opd_name=decision.opd_name, hop=FIRST_HOP, rule_id=decision.rule_id,
            rule_version=decision.rule_version, routed_at=now, routed_by="rule")
    elif isinstance(decision, Suggested):
        data = ComplaintRoutingSuggested(
            complaint_id=submitted.complaint_id, opd_code=decision.opd_code,
            opd_name=decision.opd_name, rule_id=decision.rule_id,
            rule_version=decision.rule_version, suggested_at=now)
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
    if isinstance(decision, Routed | Suggested):
        outcome = "routed" if isinstance(decision, Routed) else "suggested"
        return DecisionRecord(outcome=outcome, opd_code=decision.opd_code,
                              rule_id=decision.rule_id, rule_version=decision.rule_version, **common)
    # A triage may carry the rule that matched but could not be used (its OPD is unknown).
    suggested = decision.suggested_rule
    return DecisionRecord(
        outcome="triage", reason=decision.reason,
        opd_code=suggested.opd_code if suggested else None,
        rule_id=suggested.id if suggested else None,
        rule_version=suggested.version if suggested else None, **common)


def _duplicate_event(submitted: ComplaintSubmitted, candidates: list[uuid.UUID],
                     window_days: int, now: datetime) -> CloudEvent:
    desa = " ".join((submitted.location.desa or "").split())
    return make_event(EVENT_SOURCE, ComplaintDuplicateSuspected(
        complaint_id=submitted.complaint_id, candidate_ids=candidates,
        category=submitted.category, desa=desa, window_days=window_days), time=now)


async def route_submitted(event: CloudEvent, submitted: ComplaintSubmitted, *,
                          unit_of_work: UnitOfWork, rulebook: RulebookSource,
                          clock: Callable[[], datetime] = _utcnow,
                          duplicate_window_days: int = DEFAULT_DUPLICATE_WINDOW_DAYS) -> RoutingResult:
    """Decide the first disposition of a newly submitted complaint, and flag it when it
    looks like a duplicate of another recent one."""
    book = await rulebook()
    now = clock()
    decision = decide(book.rules, book.opd_names, submitted.category, submitted.location.kecamatan)
    emitted = _outcome(submitted, decision, now)
    key = SubmissionKey.of(submitted.complaint_id, submitted.category, submitted.location.desa,
                           submitted.received_at)
    async with unit_of_work() as repo:
        status = await repo.record_decision(
            event, _record(event, submitted, decision, emitted, now), emitted, key)
        if status != "decided":
            # The inbox row still commits: this event id is consumed, with no effect.
            return RoutingResult(status)
        candidates = await repo.duplicate_candidates(key, duplicate_window_days)
        duplicate = (_duplicate_event(submitted, candidates, duplicate_window_days, now)
                     if candidates else None)
        if duplicate is not None:
            await repo.add_to_outbox(duplicate)
    return RoutingResult("decided", decision, emitted, duplicate)


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
