"""Routing use cases. Collaborators come in as arguments; no broker, no SQL here.

Invariants:
- The inbox record, the decision and the outgoing event are written by one statement in
  one unit of work (``shared.uow``), so a crash anywhere leaves either all of them or none
  (the redelivery then redoes it).
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
from datetime import UTC, datetime
from typing import Protocol

from services.routing.duplicates import SubmissionKey
from services.routing.model import DecisionRecord, DecisionStatus, Rulebook
from services.routing.rules import Decision, Routed, Suggested, decide
from shared.events import (
    CloudEvent,
    ComplaintDuplicateSuspected,
    ComplaintRouted,
    ComplaintRoutingSuggested,
    ComplaintSubmitted,
    ComplaintTriageRequired,
    EventData,
    make_event,
)
from shared.uow import Tx

log = logging.getLogger(__name__)
EVENT_SOURCE = "sp4n/routing"
FIRST_HOP = 1


class Repository(Protocol):
    async def record_decision(self, record: DecisionRecord, emitted: CloudEvent,
                              key: SubmissionKey) -> DecisionStatus:
        """Record the unit of work's event in the inbox (and report it with ``set_claimed``);
        on its first delivery store the decision unless (complaint, hop) has one; when
        stored, write ``emitted`` to the outbox and remember the submission for duplicate
        suspicion (serialised per (category, desa)) — all in one statement."""

    async def duplicate_candidates(self, key: SubmissionKey, window_days: int,
                                   limit: int) -> list[uuid.UUID]: ...


# ``PgUnitOfWork(lambda: pool, RoutingRepository)`` in production, ``FakeUnitOfWork`` in tests.
UnitOfWork = Callable[[CloudEvent], AbstractAsyncContextManager[Tx[Repository]]]
RulebookSource = Callable[[], Awaitable[Rulebook]]


@dataclass(frozen=True)
class RoutingResult:
    status: DecisionStatus
    decision: Decision | None = None
    emitted: CloudEvent | None = None
    duplicate_suspected: CloudEvent | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _outcome(submitted: ComplaintSubmitted, decision: Decision, now: datetime) -> CloudEvent:
    data: EventData
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
    reason: str | None = None
    rule: tuple[str, int, int] | None  # (opd_code, rule_id, rule_version)
    if isinstance(decision, Routed | Suggested):
        outcome = "routed" if isinstance(decision, Routed) else "suggested"
        rule = (decision.opd_code, decision.rule_id, decision.rule_version)
    else:
        # A triage may carry the rule that matched but could not be used (its OPD is unknown).
        outcome, reason, suggested = "triage", decision.reason, decision.suggested_rule
        rule = (suggested.opd_code, suggested.id, suggested.version) if suggested else None
    opd_code, rule_id, rule_version = rule if rule else (None, None, None)
    return DecisionRecord(
        complaint_id=submitted.complaint_id, hop=FIRST_HOP, outcome=outcome, opd_code=opd_code,
        rule_id=rule_id, rule_version=rule_version, reason=reason, category=submitted.category,
        kecamatan=submitted.location.kecamatan, source_event_id=event.id, event_id=emitted.id,
        decided_at=now)


def _duplicate_event(submitted: ComplaintSubmitted, candidates: list[uuid.UUID],
                     window_days: int, now: datetime) -> CloudEvent:
    desa = " ".join((submitted.location.desa or "").split())
    return make_event(EVENT_SOURCE, ComplaintDuplicateSuspected(
        complaint_id=submitted.complaint_id, candidate_ids=candidates,
        category=submitted.category, desa=desa, window_days=window_days), time=now)


async def route_submitted(event: CloudEvent, submitted: ComplaintSubmitted, *,
                          uow: UnitOfWork, rulebook: RulebookSource,
                          duplicate_window_days: int, max_duplicate_candidates: int,
                          clock: Callable[[], datetime] = _utcnow) -> RoutingResult:
    """Decide the first disposition of a newly submitted complaint, and flag it when it
    looks like a duplicate of another recent one (naming at most
    ``max_duplicate_candidates`` others received within ``duplicate_window_days``)."""
    if submitted.historical:
        # Imported history (closed or archived before sp4n saw it): its disposition is known
        # and recorded by intake; routing decides nothing and remembers nothing for duplicate
        # suspicion. The inbox row still commits.
        async with uow(event) as tx:
            first = await tx.claim()
        return RoutingResult("historical" if first else "duplicate_event")
    book = await rulebook()
    now = clock()
    decision = decide(book.rules, book.opd_names, submitted.category, submitted.location.kecamatan)
    emitted = _outcome(submitted, decision, now)
    key = SubmissionKey.of(submitted.complaint_id, submitted.category, submitted.location.desa,
                           submitted.received_at)
    async with uow(event) as tx:
        # One statement: the inbox row, the decision and ``emitted`` in the outbox.
        status = await tx.repo.record_decision(
            _record(event, submitted, decision, emitted, now), emitted, key)
        if status != "decided":
            # The inbox row still commits: this event id is consumed, with no effect.
            return RoutingResult(status)
        candidates = await tx.repo.duplicate_candidates(key, duplicate_window_days,
                                                        max_duplicate_candidates)
        duplicate = (_duplicate_event(submitted, candidates, duplicate_window_days, now)
                     if candidates else None)
        if duplicate is not None:
            tx.stage(duplicate)  # the unit of work writes it before the commit
    return RoutingResult("decided", decision, emitted, duplicate)


class CachedRulebook:
    """The rulebook, reloaded when older than ``ttl_s``, so an operator's edit takes effect
    within ``ttl_s`` seconds on every replica without a restart. Concurrent callers share
    one reload."""

    def __init__(self, load: RulebookSource, *, ttl_s: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._book: Rulebook | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def _fresh(self) -> Rulebook | None:
        """The cached rulebook while it is younger than ``ttl_s``."""
        if self._book is not None and self._monotonic() - self._loaded_at < self._ttl_s:
            return self._book
        return None

    async def __call__(self) -> Rulebook:
        book = self._fresh()
        if book is not None:
            return book
        async with self._lock:
            book = self._fresh()
            if book is None:
                book = self._book = await self._load()
                self._loaded_at = self._monotonic()
                log.debug("rulebook reloaded: %d rules", len(book.rules))
        return book

    def invalidate(self) -> None:
        self._book = None
