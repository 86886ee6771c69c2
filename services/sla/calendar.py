"""Working-day (hari kerja) arithmetic for one regency. Pure: no I/O, no clock reads.

A working day is a Monday–Friday in the regency's time zone that is not an Indonesian
national holiday (libur nasional) or joint leave day (cuti bersama), as the ``holidays``
package knows them (categories ``public`` + ``government``). The operator's override table
wins over both: an override with ``working=True`` makes any day a working day (a moved
holiday, a Saturday replacement day), ``working=False`` closes one (a regency closure).

Counting rule (Permenpan RB 62/2018 as used by LAPOR!): day 1 is the first working day
*after* the local date of the start instant; a deadline of N working days falls at the END
of the Nth working day, local time.

Deadline representation: the last representable instant of that local day,
``23:59:59.999999`` in the regency's zone (PostgreSQL ``timestamptz`` keeps microseconds, so
it round-trips exactly). An action at instant ``t`` is on time iff ``t <= deadline``; a
breach is due at ``deadline`` and fires once ``now >= deadline``. We chose the inclusive
end-of-day instant over "next midnight" because it shows the right calendar day to people
reading it (Friday 27 March, not Saturday 28 March 00:00).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from holidays.version import __version__ as HOLIDAYS_VERSION

END_OF_DAY = time(23, 59, 59, 999999)
HOLIDAY_CATEGORIES = ("public", "government")  # government = cuti bersama


@lru_cache(maxsize=64)
def _library_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("ID", categories=HOLIDAY_CATEGORIES, years=year))


def library_holiday_names(year: int) -> dict[date, str]:
    """The package's Indonesian holidays of one year, for display and the CLI."""
    return dict(holidays.country_holidays("ID", categories=HOLIDAY_CATEGORIES, years=year))


@lru_cache(maxsize=1)
def library_coverage_year(first: int = 2024, last: int = 2040) -> int:
    """The last year whose cuti bersama (``government``) the holidays package has: the SKB
    on joint leave is published year by year, so days after it may be missing."""
    covered = first - 1
    for year in range(first, last + 1):
        if holidays.country_holidays("ID", categories=("government",), years=year):
            covered = year
    return covered


def calendar_version(override_revision: int) -> str:
    """Identifies what produced a deadline: the holiday data release + the override revision."""
    return f"holidays-{HOLIDAYS_VERSION}+ovr-{override_revision}"


def rebuildable_revision(version: str) -> int | None:
    """The override revision of ``version`` if this process can build that calendar again: its
    holidays release is the installed one (the package's data is code, not stored), and it is
    a version ``calendar_version`` made. None otherwise (another release, a foreign string)."""
    prefix = f"holidays-{HOLIDAYS_VERSION}+ovr-"
    rest = version.removeprefix(prefix)
    if rest == version or not rest.isdigit():
        return None
    return int(rest)


class WorkingCalendar:
    """Working days of one regency; built from its time zone and its override table."""

    def __init__(self, tz: ZoneInfo | str, overrides: Mapping[date, bool] | None = None,
                 *, override_revision: int = 0, confirmed_years: frozenset[int] = frozenset()
                 ) -> None:
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.overrides: dict[date, bool] = dict(overrides or {})
        self.override_revision = override_revision
        self.version = calendar_version(override_revision)
        # Coverage: the package's last year with cuti bersama, extended by every following
        # year an operator confirmed (``sp4n calendar confirm YEAR``).
        covered = library_coverage_year()
        while covered + 1 in confirmed_years:
            covered += 1
        self.covered_through = covered

    def beyond_coverage(self, instant: datetime) -> bool:
        """Whether ``instant`` falls after the last year whose cuti bersama are known."""
        return self.local_date(instant).year > self.covered_through

    # -- days ------------------------------------------------------------------------------
    def is_working_day(self, day: date) -> bool:
        if day in self.overrides:
            return self.overrides[day]
        return day.weekday() < 5 and day not in _library_holidays(day.year)

    def local_date(self, instant: datetime) -> date:
        if instant.tzinfo is None:
            raise ValueError("instant must be timezone-aware")
        return instant.astimezone(self.tz).date()

    def end_of_day(self, day: date) -> datetime:
        """The deadline instant of a local day: 23:59:59.999999 in the regency's zone."""
        return datetime.combine(day, END_OF_DAY, tzinfo=self.tz)

    def nth_working_day_after(self, day: date, n: int) -> date:
        """The Nth working day strictly after ``day`` (``n == 0`` gives ``day`` itself)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        current = day
        remaining = n
        while remaining:
            current += timedelta(days=1)
            if self.is_working_day(current):
                remaining -= 1
        return current

    # -- instants --------------------------------------------------------------------------
    def deadline(self, start: datetime, working_days: int) -> datetime:
        """End of the Nth working day after the local date of ``start``."""
        return self.end_of_day(self.nth_working_day_after(self.local_date(start), working_days))

    def move_deadline(self, deadline: datetime, working_days: int) -> datetime:
        """``deadline`` moved later by ``working_days`` working days: the end of the Nth working
        day after its local date. ``move_deadline(deadline(s, a), b) == deadline(s, a + b)``."""
        return self.end_of_day(self.nth_working_day_after(self.local_date(deadline), working_days))

    def paused_working_days(self, deferred_at: datetime, resumed_at: datetime) -> int:
        """Working days a pause (DITUNDA) from ``deferred_at`` to ``resumed_at`` takes off a clock.

        ``working_days_between``: the working days ``d`` with ``local(deferred_at) < d <=
        local(resumed_at)``. A partial day counts as follows: the day of deferral still counts
        against the clock (it had already begun running that day), the day of resumption is a
        paused day (as with receipt, counting restarts on the next working day). So a pause
        opened and closed on the same local day moves nothing; Fri → Mon moves one day (the
        Monday); a resume stamped before the deferral (bad clocks upstream) moves nothing.
        """
        return max(0, self.working_days_between(deferred_at, resumed_at))

    def working_days_between(self, a: datetime, b: datetime) -> int:
        """Working days ``d`` with ``local(a) < d <= local(b)``; negative when ``b < a``.

        Consistent with ``deadline``: ``working_days_between(s, deadline(s, n)) == n``, and an
        action at ``t`` meets an N-day deadline iff ``working_days_between(s, t) <= n``.
        """
        da, db = self.local_date(a), self.local_date(b)
        if db < da:
            return -self.working_days_between(b, a)
        count = 0
        day = da
        while day < db:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return count
