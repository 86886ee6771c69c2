"""Verification of stored deadlines (``sp4n calendar verify``): each complaint's clocks derived
again from its facts, every clock under the calendar version it names, and compared with what
is stored (``domain.drifted``). A deadline kept under an older calendar (``--keep-deadlines``)
is checked against that calendar, rebuilt from its stored content (``calendar_versions``),
not against today's. Read-only: it reports, it changes nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.sla.calendars import CalendarSource, CalendarStamp, CalendarVersionStore
from services.sla.clocks import CompletionMetBy, Fact, OfficeHours
from services.sla.domain import ComplaintClocks, derive, drifted
from shared.uow import Tx


class VerifyRepository(CalendarVersionStore, Protocol):
    """What verification needs of the repository (``repository.PgSlaRepository``)."""

    async def lock(self, complaint_id: uuid.UUID) -> None: ...

    async def load(self, complaint_id: uuid.UUID, fact: Fact | None,
                   event_id: str) -> tuple[ComplaintClocks, CalendarStamp]: ...

    async def complaints_with_clocks(self, *, open_only: bool, after: uuid.UUID | None,
                                     limit: int) -> list[uuid.UUID]: ...


# ``PgUnitOfWork[PgSlaRepository]`` (as ``usecases.UnitOfWork``, with this repository).
UnitOfWork = Callable[..., contextlib.AbstractAsyncContextManager[Tx[VerifyRepository]]]


@dataclass(frozen=True)
class Mismatch:
    """A clock whose stored deadline columns are not what its facts give under its calendar
    version; ``stored`` None: the facts call for a clock that is not stored; ``recomputed``
    None: a stored clock the facts do not call for."""

    complaint_id: uuid.UUID
    clock: str
    hop: int
    instance: int
    calendar_version: str | None
    stored: datetime | None
    recomputed: datetime | None


@dataclass
class Verification:
    complaints: int = 0
    compared: int = 0  # clocks recomputed under their own calendar version
    mismatches: list[Mismatch] = field(default_factory=list)
    # Calendar version → clocks under it that could not be recomputed (another holidays
    # release than the installed one, or a revision made before its content was stored).
    not_rebuildable: Counter[str] = field(default_factory=Counter)


async def verify_deadlines(*, uow: UnitOfWork, calendars: CalendarSource, now: datetime,
                           complaint_ids: list[uuid.UUID] | None = None, open_only: bool = True,
                           completion_met_by: CompletionMetBy = "final_response",
                           office_hours: OfficeHours | None = None,
                           page: int = 500) -> Verification:
    """Verify the clocks of ``complaint_ids``, or of every complaint with a running clock
    (``open_only``) or with any clock. One short unit of work per complaint, under its lock
    (as a message would read it, so a message in flight is never half seen)."""
    out = Verification()
    if complaint_ids is not None:
        for complaint_id in complaint_ids:
            await _verify_one(complaint_id, out, uow, calendars, now, completion_met_by,
                              office_hours)
        return out
    after: uuid.UUID | None = None
    while True:
        async with uow() as tx:
            ids = await tx.repo.complaints_with_clocks(open_only=open_only, after=after, limit=page)
        for complaint_id in ids:
            await _verify_one(complaint_id, out, uow, calendars, now, completion_met_by,
                              office_hours)
        if len(ids) < page:
            return out
        after = ids[-1]


async def _verify_one(complaint_id: uuid.UUID, out: Verification, uow: UnitOfWork,
                      calendars: CalendarSource, now: datetime, met_by: CompletionMetBy,
                      office_hours: OfficeHours | None) -> None:
    async with uow() as tx:
        repo = tx.repo
        await repo.lock(complaint_id)
        state, stamp = await repo.load(complaint_id, None, "")
        current, policies = await calendars.resolve(repo, stamp)
        ladders = calendars.ladders(stamp.ladder_rows)
        stored = state.all_clocks()
        versions = {c.calendar_version for c in stored} | {current.version}
        derivations: dict[str, ComplaintClocks] = {}
        for version in sorted(versions):
            calendar = await calendars.at_version(repo, version)
            if calendar is None:
                out.not_rebuildable[version] += sum(c.calendar_version == version for c in stored)
                continue
            derivations[version] = derive(
                complaint_id, state.facts, calendar, policies, now, met_by, ladders=ladders,
                office_hours=office_hours, pinned=state.pinned_policies(policies),
                firings=state.firings)
    out.complaints += 1
    out.compared += sum(c.calendar_version in derivations for c in stored)
    for have, want in drifted(state, derivations, current.version):
        row = have or want
        assert row is not None  # drifted pairs a clock with at most one missing side
        out.mismatches.append(Mismatch(
            complaint_id, row.clock, row.hop, row.instance,
            have.calendar_version if have else None, have.deadline if have else None,
            want.deadline if want else None))
