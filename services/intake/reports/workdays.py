"""Working days (hari kerja) for the report's durations, read-only: Monday–Friday minus the
Indonesian holidays the ``holidays`` package knows (categories ``public`` + ``government`` =
cuti bersama, as sla uses them). The regency's override table lives in sla's schema, which
intake does not read: a duration may differ from sla's count by an override day. Every
verdict against a deadline (on time, overdue) comes from sla's own clocks, which intake
mirrors, so those include the overrides."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays

HOLIDAY_CATEGORIES = ("public", "government")


@cache
def _cumulative(year: int) -> tuple[int, ...]:
    """``c[i]`` = working days from 1 January through day ``i`` (0-based) of ``year``."""
    closed = frozenset(holidays.country_holidays("ID", categories=HOLIDAY_CATEGORIES, years=year))
    out: list[int] = []
    n = 0
    d = date(year, 1, 1)
    while d.year == year:
        if d.weekday() < 5 and d not in closed:
            n += 1
        out.append(n)
        d += timedelta(days=1)
    return tuple(out)


def _through(d: date) -> int:
    return _cumulative(d.year)[d.timetuple().tm_yday - 1]


class WorkCalendar:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz

    def local_date(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    def days_between(self, start: datetime, end: datetime) -> int:
        """Working days after the day of ``start`` up to and including the day of ``end``
        (a deadline of N HK lies on the Nth such day); 0 on the same day or earlier."""
        a, b = self.local_date(start), self.local_date(end)
        if b <= a:
            return 0
        if a.year == b.year:
            return _through(b) - _through(a)
        n = _cumulative(a.year)[-1] - _through(a)
        for y in range(a.year + 1, b.year):
            n += _cumulative(y)[-1]
        return n + _through(b)

    def deadline_after(self, start: datetime, working_days: int) -> datetime:
        """The end of the Nth working day after the day of ``start`` (sla's deadline rule,
        without the regency's overrides)."""
        d = self.local_date(start)
        n = working_days
        while n > 0:
            d += timedelta(days=1)
            n -= is_working(d)
        return datetime.combine(d, time.max, self.tz)


def is_working(d: date) -> bool:
    i = d.timetuple().tm_yday - 1
    c = _cumulative(d.year)
    return c[i] - (c[i - 1] if i else 0) == 1
