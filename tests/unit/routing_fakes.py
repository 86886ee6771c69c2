"""Routing's repository in memory, for use-case and wiring tests.

    uow = RoutingUnitOfWork(FakeRoutingRepository())
    await route_submitted(event, submitted, uow=uow, ...)
    uow.committed_events, uow.repo.decisions, uow.repo.submissions, uow.inbox

``reference_candidates`` is the duplicate-candidate rule written out in Python for the fake;
production has only the SQL in ``RoutingRepository.duplicate_candidates``, and
tests/integration/test_routing_duplicates.py asserts both agree on generated data.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable

from services.routing.duplicates import SubmissionKey, window
from services.routing.model import DecisionRecord, DecisionStatus
from shared.events import CloudEvent
from tests.unit.fakes import FakeTx, FakeUnitOfWork


def reference_candidates(new: SubmissionKey, recent: Iterable[SubmissionKey], window_days: int,
                         limit: int) -> list[uuid.UUID]:
    """Same category and desa, received within the inclusive window, not itself; the
    ``limit`` nearest in received_at (ties: lower id as text), listed by received_at, id."""
    if not new.has_desa:
        return []
    low, high = window(new.received_at, window_days)
    found = [o for o in recent
             if o.complaint_id != new.complaint_id and o.category == new.category
             and o.desa == new.desa and low <= o.received_at <= high]
    nearest = sorted(found, key=lambda o: (abs((o.received_at - new.received_at).total_seconds()),
                                           str(o.complaint_id)))[:limit]
    return [o.complaint_id for o in sorted(nearest, key=lambda o: (o.received_at, str(o.complaint_id)))]


class FakeRoutingRepository:
    """``RoutingRepository`` with dicts for tables. It works on the transaction the unit of
    work opened (``tx``, set by ``RoutingUnitOfWork``), as the real one does."""

    def __init__(self) -> None:
        self.decisions: dict[tuple[uuid.UUID, int], DecisionRecord] = {}
        self.submissions: dict[uuid.UUID, SubmissionKey] = {}
        self.tx: FakeTx[FakeRoutingRepository] | None = None
        self.fail_on_candidates = False
        self.candidate_calls: list[tuple[SubmissionKey, int, int]] = []

    async def record_decision(self, record: DecisionRecord, emitted: CloudEvent,
                              key: SubmissionKey) -> DecisionStatus:
        # As the real statement: inbox, decision, remembered key and the outbox row of emitted.
        assert self.tx is not None, "used outside a unit of work"
        if not await self.tx.claim():
            return "duplicate_event"
        if (record.complaint_id, record.hop) in self.decisions:
            return "already_decided"
        self.decisions[(record.complaint_id, record.hop)] = record
        if key.has_desa:
            self.submissions.setdefault(key.complaint_id, key)
        self.tx.stage(emitted)  # commits (or rolls back) with the transaction, like the outbox row
        return "decided"

    async def duplicate_candidates(self, key: SubmissionKey, window_days: int,
                                   limit: int) -> list[uuid.UUID]:
        self.candidate_calls.append((key, window_days, limit))
        if self.fail_on_candidates:
            raise ConnectionError("database gone")
        return reference_candidates(key, self.submissions.values(), window_days, limit)


class RoutingUnitOfWork(FakeUnitOfWork[FakeRoutingRepository]):
    """``FakeUnitOfWork`` whose repository works on the block's transaction and whose tables
    roll back with it (as ``PgUnitOfWork(pool, RoutingRepository)``)."""

    @contextlib.asynccontextmanager
    async def __call__(self, event: CloudEvent | None = None, *,
                       single_statement: bool = False) -> AsyncIterator[FakeTx[FakeRoutingRepository]]:
        saved = dict(self.repo.decisions), dict(self.repo.submissions)
        try:
            async with super().__call__(event, single_statement=single_statement) as tx:
                self.repo.tx = tx
                yield tx
        except BaseException:
            self.repo.decisions, self.repo.submissions = saved
            raise
        finally:
            self.repo.tx = None
