"""The current working calendar and SLA policies, cached in process and rebuilt only when they
changed.

Freshness without a TTL: the repository reads the calendar revision and the policy rows in the
same statement as the complaint's clocks (after the complaint lock) and hands them over as a
``CalendarStamp``, so an operator's edit applies to the very next message, on every replica,
and costs no extra round trip; the override table is re-read (one statement, through a
``CalendarStore``) only when its revision moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Protocol
from zoneinfo import ZoneInfo

from services.sla.calendar import WorkingCalendar, rebuildable_revision
from services.sla.clocks import Ladder, LadderStep
from services.sla.policy import Policy

# (key, working_days, warn_before_working_days, version, warn_points), ordered by key.
PolicyRow = tuple[str, int, int, int, tuple[str, ...]]
# (clock, opd_code, category, steps as JSON text, version).
LadderRow = tuple[str, str | None, str | None, str, int]


@dataclass(frozen=True)
class CalendarSnapshot:
    """The override table at one revision (read in one statement, so they always match)."""

    revision: int
    overrides: dict[date, bool]
    confirmed_years: frozenset[int] = frozenset()


@dataclass(frozen=True)
class CalendarStamp:
    """What a message read with the clocks: the override revision and the policy rows."""

    revision: int
    policy_rows: tuple[PolicyRow, ...]
    ladder_rows: tuple[LadderRow, ...] = ()


class CalendarStore(Protocol):
    async def read_calendar(self) -> CalendarSnapshot: ...


class CalendarVersionStore(CalendarStore, Protocol):
    async def read_calendar_version(self, revision: int) -> CalendarSnapshot | None:
        """The overrides and confirmed years of ``revision``; None if it was never recorded."""
        ...


class CalendarSource:
    def __init__(self, tz: ZoneInfo | str) -> None:
        self._tz = tz
        self._cached: WorkingCalendar | None = None
        self._policy_rows: tuple[PolicyRow, ...] | None = None
        self._policies: dict[str, Policy] = {}
        self._ladder_rows: tuple[LadderRow, ...] | None = None
        self._ladders: tuple[Ladder, ...] = ()
        # Versions are immutable: a calendar built (or found missing) once stays so.
        self._versions: dict[str, WorkingCalendar | None] = {}

    async def current(self, store: CalendarStore) -> WorkingCalendar:
        snapshot = await store.read_calendar()
        if self._cached is None or self._cached.override_revision != snapshot.revision:
            self._cached = WorkingCalendar(self._tz, snapshot.overrides,
                                           override_revision=snapshot.revision,
                                           confirmed_years=snapshot.confirmed_years)
        return self._cached

    async def at_revision(self, store: CalendarStore, revision: int) -> WorkingCalendar:
        """The calendar of override ``revision`` (read by the caller): the cached one, or the
        current one re-read when the revision moved."""
        cached = self._cached
        if cached is not None and cached.override_revision == revision:
            return cached
        return await self.current(store)

    async def at_version(self, store: CalendarVersionStore,
                         version: str) -> WorkingCalendar | None:
        """The calendar a clock's ``calendar_version`` names, as it was then; None when it
        cannot be rebuilt (another holidays release, or a revision with no stored content)."""
        cached = self._cached
        if cached is not None and cached.version == version:
            return cached
        if version not in self._versions:
            revision = rebuildable_revision(version)
            snapshot = None if revision is None else await store.read_calendar_version(revision)
            self._versions[version] = None if snapshot is None else WorkingCalendar(
                self._tz, snapshot.overrides, override_revision=snapshot.revision,
                confirmed_years=snapshot.confirmed_years)
        return self._versions[version]

    def policies(self, rows: tuple[PolicyRow, ...]) -> dict[str, Policy]:
        """The policies of ``rows``, rebuilt only when a row changed."""
        if rows != self._policy_rows:
            self._policies = {k: Policy(k, n, w, v, tuple(points)) for k, n, w, v, points in rows}
            self._policy_rows = rows
        return self._policies

    def ladders(self, rows: tuple[LadderRow, ...]) -> tuple[Ladder, ...]:
        """The escalation ladders of ``rows``, rebuilt only when a row changed."""
        if rows != self._ladder_rows:
            self._ladders = tuple(parse_ladder(*row) for row in rows)
            self._ladder_rows = rows
        return self._ladders

    async def resolve(self, store: CalendarStore,
                      stamp: CalendarStamp) -> tuple[WorkingCalendar, dict[str, Policy]]:
        """The calendar and policies a message read the ``stamp`` of."""
        return await self.at_revision(store, stamp.revision), self.policies(stamp.policy_rows)


def parse_ladder(clock: str, opd_code: str | None, category: str | None, steps: str,
                 version: int) -> Ladder:
    return Ladder(clock, opd_code, category, tuple(
        LadderStep(int(s["level"]), int(s["after_working_days"]), s["target"])
        for s in sorted(json.loads(steps), key=lambda s: int(s["level"]))), version)
