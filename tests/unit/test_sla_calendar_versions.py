"""Calendar versions are recomputable: any version a clock names is rebuilt from its stored
content (``CalendarSource.at_version``), and drift and ``sp4n calendar verify`` compare each
clock with a derivation under its own version — in memory, no database."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta

from holidays.version import __version__ as HOLIDAYS_VERSION

from services.sla import domain
from services.sla.calendar import WorkingCalendar, calendar_version, rebuildable_revision
from services.sla.calendars import CalendarSnapshot, CalendarSource
from services.sla.policy import default_policies
from services.sla.verification import verify_deadlines
from tests.unit.test_sla_scenarios import CID, submitted
from tests.unit.test_sla_usecases import (
    T0,
    VERIFICATION_DEADLINE,
    WIB,
    FakeSlaRepository,
    Sla,
)
from tests.unit.test_sla_usecases import submitted as submitted_event

# Version A closes Wed 25 March (verification moves from Fri 27 to Mon 30 March); version B
# removes that override again.
CLOSED = date(2026, 3, 25)
A = CalendarSnapshot(1, {CLOSED: False})
B = CalendarSnapshot(2, {})
CAL_A = WorkingCalendar(WIB, A.overrides, override_revision=A.revision)
CAL_B = WorkingCalendar(WIB, B.overrides, override_revision=B.revision)
DEADLINE_A = datetime(2026, 3, 30, 23, 59, 59, 999999, tzinfo=WIB)


class VersionedRepository(FakeSlaRepository):
    """The fake with ``calendar_versions`` (migration 0011) and what verification reads."""

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[int, CalendarSnapshot] = {}
        self.version_reads: list[int] = []

    def change_calendar(self, snapshot: CalendarSnapshot) -> None:
        self.calendar = snapshot
        self.versions[snapshot.revision] = snapshot

    async def read_calendar_version(self, revision: int) -> CalendarSnapshot | None:
        self.version_reads.append(revision)
        return self.versions.get(revision)

    async def lock(self, complaint_id: uuid.UUID) -> None:
        pass  # one task: nothing runs concurrently

    async def complaints_with_clocks(self, *, open_only: bool, after: uuid.UUID | None,
                                     limit: int) -> list[uuid.UUID]:
        ids = sorted({c.complaint_id for c in self.clocks.values()
                      if not open_only or c.stopped_at is None})
        return [i for i in ids if after is None or i > after][:limit]


def test_only_versions_of_the_installed_holidays_release_are_rebuildable() -> None:
    assert rebuildable_revision(calendar_version(7)) == 7
    assert rebuildable_revision(calendar_version(0)) == 0
    assert rebuildable_revision("holidays-0.0.1+ovr-7") is None  # another release's data
    assert rebuildable_revision(f"holidays-{HOLIDAYS_VERSION}+ovr-") is None
    assert rebuildable_revision("bench") is None


async def test_a_version_is_rebuilt_from_its_content_once_and_kept() -> None:
    repo = VersionedRepository()
    repo.change_calendar(A)
    repo.change_calendar(B)
    calendars = CalendarSource(WIB)
    current = await calendars.current(repo)
    assert current.version == CAL_B.version
    old = await calendars.at_version(repo, CAL_A.version)
    assert old is not None and old.version == CAL_A.version
    assert old.deadline(T0, 3) == DEADLINE_A and current.deadline(T0, 3) == VERIFICATION_DEADLINE
    assert await calendars.at_version(repo, CAL_A.version) is old  # versions never change
    assert await calendars.at_version(repo, CAL_B.version) is current  # no read for the current
    assert await calendars.at_version(repo, calendar_version(99)) is None  # never recorded
    assert await calendars.at_version(repo, calendar_version(99)) is None
    assert await calendars.at_version(repo, "holidays-0.0.1+ovr-1") is None
    assert repo.version_reads == [1, 99]


def test_drift_compares_a_clock_kept_under_an_older_version_with_that_version() -> None:
    facts = domain.facts_of([submitted()])
    policies = default_policies()
    state = domain.derive(CID, facts, CAL_A, policies, T0)
    under_a = domain.derive(CID, facts, CAL_A, policies, T0)
    under_b = domain.derive(CID, facts, CAL_B, policies, T0)
    v = next(c for c in state.all_clocks() if c.clock == "verification")
    assert (v.calendar_version, v.deadline) == (CAL_A.version, DEADLINE_A)
    # Against the current calendar alone, the kept deadline would look wrong: it is not.
    assert domain.drift(state, under_b, CAL_B, older={CAL_A.version: under_a}) == []
    state.set_recomputed_deadline(v.id, replace(v.deadline_record(),
                                                deadline=v.deadline + timedelta(days=1)), 0, None)
    # Tampered under version A: only a comparison under A can see it.
    assert domain.drift(state, under_b, CAL_B) == []
    assert domain.drift(state, under_b, CAL_B, older={CAL_A.version: under_a}) == ["verification"]
    [(have, want)] = domain.drifted(state, {CAL_A.version: under_a, CAL_B.version: under_b},
                                    CAL_B.version)
    assert have is not None and want is not None
    assert (have.deadline, want.deadline) == (DEADLINE_A + timedelta(days=1), DEADLINE_A)


async def test_verify_recomputes_kept_deadlines_under_their_version_and_names_a_tampered_one(
) -> None:
    sla = Sla()
    repo = VersionedRepository()
    sla.repo = repo
    sla.uow.repo = repo
    repo.change_calendar(A)
    cid = uuid.uuid4()
    await sla(submitted_event(cid), T0)
    v = repo.clocks_of(cid)[("verification", 0)]
    assert (v.calendar_version, v.deadline) == (CAL_A.version, DEADLINE_A)
    repo.change_calendar(B)  # "keep deadlines": the stored clocks stay under A
    out = await verify_deadlines(uow=sla.uow, calendars=sla.calendars, now=T0)
    assert (out.complaints, out.compared, out.mismatches) == (1, 2, [])
    repo.clocks[v.id] = replace(v, deadline=v.deadline + timedelta(days=1))
    out = await verify_deadlines(uow=sla.uow, calendars=sla.calendars, now=T0, page=1)
    [m] = out.mismatches
    assert (m.complaint_id, m.clock, m.calendar_version, m.stored, m.recomputed) == (
        cid, "verification", CAL_A.version, DEADLINE_A + timedelta(days=1), DEADLINE_A)
    # A clock under a version whose calendar cannot be rebuilt is counted, not compared.
    repo.clocks[v.id] = replace(v, calendar_version="holidays-0.0.1+ovr-1")
    out = await verify_deadlines(uow=sla.uow, calendars=sla.calendars, now=T0,
                                 complaint_ids=[cid])
    assert (out.compared, out.mismatches) == (1, [])
    assert out.not_rebuildable == {"holidays-0.0.1+ovr-1": 1}
