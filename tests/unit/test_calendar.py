"""Working-day arithmetic: weekends, libur nasional, cuti bersama, overrides, time zones."""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import holidays
import pytest

from services.sla.calendar import WorkingCalendar, calendar_version

WIB = ZoneInfo("Asia/Pontianak")
CAL = WorkingCalendar("Asia/Pontianak")


def wib(y, m, d, hh=10, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=WIB)


def end_of(y, m, d):
    return datetime(y, m, d, 23, 59, 59, 999999, tzinfo=WIB)


def test_weekdays_are_working_and_weekends_are_not():
    assert CAL.is_working_day(date(2026, 3, 16))       # Monday
    assert CAL.is_working_day(date(2026, 3, 13))       # Friday
    assert not CAL.is_working_day(date(2026, 3, 14))   # Saturday
    assert not CAL.is_working_day(date(2026, 3, 15))   # Sunday


def test_national_holidays_are_not_working_days():
    assert not CAL.is_working_day(date(2026, 8, 17))   # Hari Kemerdekaan, a Monday
    assert not CAL.is_working_day(date(2026, 3, 19))   # Nyepi, a Thursday
    assert not CAL.is_working_day(date(2026, 1, 1))


def test_cuti_bersama_is_not_a_working_day():
    # Government category: joint leave around Nyepi and Idul Fitri 2026.
    for day in (date(2026, 3, 18), date(2026, 3, 20), date(2026, 3, 23), date(2026, 3, 24)):
        assert not CAL.is_working_day(day), day
    # Without the government category the library would call 23 March a working day.
    public_only = holidays.country_holidays("ID", categories=("public",), years=2026)
    assert date(2026, 3, 23) not in public_only


def test_march_2026_example_three_working_days():
    # Received Tue 17 Mar; 18–24 Mar are all off; day 1 = Wed 25, day 3 = Fri 27 Mar.
    assert CAL.is_working_day(date(2026, 3, 16))
    assert all(not CAL.is_working_day(date(2026, 3, d)) for d in range(18, 25))
    deadline = CAL.deadline(wib(2026, 3, 17, 9), 3)
    assert deadline == end_of(2026, 3, 27)
    assert deadline.astimezone(WIB).time() == time(23, 59, 59, 999999)
    assert deadline.astimezone(UTC) == datetime(2026, 3, 27, 16, 59, 59, 999999, tzinfo=UTC)


def test_day_one_is_the_first_working_day_after_receipt():
    # Received Monday morning or late Monday evening: day 1 is Tuesday either way.
    assert CAL.deadline(wib(2026, 3, 9, 0, 1), 1) == end_of(2026, 3, 10)
    assert CAL.deadline(wib(2026, 3, 9, 23, 59), 1) == end_of(2026, 3, 10)
    # 5 working days from Wed 4 Mar: Thu 5, Fri 6, Mon 9, Tue 10, Wed 11.
    assert CAL.deadline(wib(2026, 3, 4), 5) == end_of(2026, 3, 11)


def test_start_on_weekend_or_holiday():
    # Saturday 7 Mar: day 1 = Mon 9, day 3 = Wed 11.
    assert CAL.deadline(wib(2026, 3, 7), 3) == end_of(2026, 3, 11)
    # Nyepi (Thu 19 Mar): day 1 = Wed 25 Mar.
    assert CAL.deadline(wib(2026, 3, 19), 1) == end_of(2026, 3, 25)


def test_local_date_not_utc_date_decides_the_start_day():
    # 2026-03-16T20:00Z is Tue 17 Mar 03:00 WIB: counted from the 17th, not Monday the 16th.
    start = datetime(2026, 3, 16, 20, 0, tzinfo=UTC)
    assert CAL.local_date(start) == date(2026, 3, 17)
    assert CAL.deadline(start, 3) == end_of(2026, 3, 27)
    # Counted from Monday 16th it would have been day 1 = 17th, day 3 = 26th.
    assert CAL.deadline(datetime(2026, 3, 16, 16, 59, tzinfo=UTC), 3) == end_of(2026, 3, 26)


def test_override_makes_a_holiday_a_working_day():
    cal = WorkingCalendar("Asia/Pontianak", {date(2026, 3, 23): True}, override_revision=1)
    assert cal.is_working_day(date(2026, 3, 23))
    # Day 1 = Mon 23 (overridden), day 2 = Wed 25, day 3 = Thu 26.
    assert cal.deadline(wib(2026, 3, 17), 3) == end_of(2026, 3, 26)


def test_override_can_make_a_saturday_a_working_day():
    cal = WorkingCalendar("Asia/Pontianak", {date(2026, 3, 14): True})
    assert cal.deadline(wib(2026, 3, 13), 1) == end_of(2026, 3, 14)


def test_override_closes_a_working_day():
    cal = WorkingCalendar("Asia/Pontianak", {date(2026, 3, 25): False}, override_revision=2)
    assert not cal.is_working_day(date(2026, 3, 25))
    assert cal.deadline(wib(2026, 3, 17), 3) == end_of(2026, 3, 30)


def test_working_days_between_is_consistent_with_deadline():
    start = wib(2026, 3, 17, 9)
    assert CAL.working_days_between(start, end_of(2026, 3, 27)) == 3
    assert CAL.working_days_between(start, wib(2026, 3, 24, 15)) == 0
    assert CAL.working_days_between(start, start) == 0
    assert CAL.working_days_between(end_of(2026, 3, 27), start) == -3
    for n in (1, 3, 5, 14, 60):
        assert CAL.working_days_between(start, CAL.deadline(start, n)) == n


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        CAL.deadline(datetime(2026, 3, 17, 9), 3)


def test_calendar_version_names_library_and_override_revision():
    assert calendar_version(7) == f"holidays-{holidays.__version__}+ovr-7"
    assert WorkingCalendar("Asia/Pontianak", override_revision=3).version.endswith("+ovr-3")


def test_paused_working_days_count_the_resume_day_not_the_defer_day():
    # Rule: working days d with local(deferred_at) < d <= local(resumed_at). The defer day
    # already counted against the clock; the resume day is paused (counting restarts the next
    # working day, as after receipt).
    # Tue 17 → Wed 25 Mar 2026: 18–24 are all off (cuti bersama, Nyepi, Idul Fitri, weekend),
    # so only Wed 25 is a paused working day.
    assert CAL.paused_working_days(wib(2026, 3, 17, 9), wib(2026, 3, 25, 14)) == 1
    # Across a weekend: Fri 13 → Tue 17 Mar pauses Mon 16 and Tue 17.
    assert CAL.paused_working_days(wib(2026, 3, 13, 16), wib(2026, 3, 17, 8)) == 2
    # Across a weekend and the holidays: Fri 13 → Thu 26 Mar pauses 16, 17, 25, 26.
    assert CAL.paused_working_days(wib(2026, 3, 13, 16), wib(2026, 3, 26, 8)) == 4
    # A partial day: deferred and resumed the same day moves nothing, whatever the hours.
    assert CAL.paused_working_days(wib(2026, 3, 16, 8), wib(2026, 3, 16, 17)) == 0
    # Resumed "before" it was deferred (skewed upstream clocks): nothing, never negative.
    assert CAL.paused_working_days(wib(2026, 3, 17), wib(2026, 3, 16)) == 0


def test_move_deadline_adds_working_days_to_the_deadline_day():
    # Fri 27 Mar moved by 1 → Mon 30 Mar; by 0 → unchanged.
    assert CAL.move_deadline(end_of(2026, 3, 27), 1) == end_of(2026, 3, 30)
    assert CAL.move_deadline(end_of(2026, 3, 27), 0) == end_of(2026, 3, 27)
    # Moving composes with counting: deadline(s, a) moved by b == deadline(s, a + b).
    start = wib(2026, 3, 12, 10)
    for a, b in ((3, 1), (5, 4), (14, 7)):
        assert CAL.move_deadline(CAL.deadline(start, a), b) == CAL.deadline(start, a + b)
