"""What the page shows, decided without I/O: the period from the query string, the table's
columns and sort order, numbers as people read them (one decimal, as the API rounds)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from services.intake.reports.export import percent_text
from services.intake.reports.model import NO_GROUP, ReportRow

# (sort key, column title, the row attribute, percent?)
COLUMNS: tuple[tuple[str, str, str, bool], ...] = (
    ("opd", "OPD", "label", False),
    ("masuk", "Masuk", "received", False),
    ("terdisposisi", "Terdisposisi", "disposed", False),
    ("ditindaklanjuti", "Ditindaklanjuti", "followed_up", False),
    ("selesai", "Selesai", "completed", False),
    ("terlambat", "Terbuka lewat tenggat", "open_overdue", False),
    ("tindak_lanjut", "Tingkat tindak lanjut", "follow_up_rate", True),
    ("penyelesaian", "Tingkat penyelesaian", "completion_rate", True),
    ("ketepatan", "Ketepatan waktu", "response_on_time_rate", True),
    ("selesai_tepat", "Selesai tepat waktu", "completion_on_time_rate", True),
)
SORT_KEYS = {c[0]: c[2] for c in COLUMNS}
DEFAULT_SORT = "terdisposisi"
MONTHS = ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September",
          "Oktober", "November", "Desember")


# The group no OPD holds, as people read it.
NO_GROUP_LABEL = "Di luar OPD (belum didisposisikan, diarsipkan, dilimpahkan, dikembalikan)"


def cell(row: ReportRow, attr: str, percent: bool) -> str:
    if attr == "label" and row.key == NO_GROUP:
        return NO_GROUP_LABEL
    value = getattr(row, attr)
    return percent_text(value) if percent else str(value)


def sort_rows(rows: list[ReportRow], sort: str | None, descending: bool) -> list[ReportRow]:
    """By the chosen column; rates without a denominator ('-') always last; ties by name."""
    attr = SORT_KEYS.get(sort or "", SORT_KEYS[DEFAULT_SORT])
    by_name = sorted(rows, key=lambda r: r.label.lower())
    if attr == "label":
        return list(reversed(by_name)) if descending else by_name
    present = [r for r in by_name if getattr(r, attr) is not None]
    missing = [r for r in by_name if getattr(r, attr) is None]
    return sorted(present, key=lambda r: getattr(r, attr), reverse=descending) + missing


@dataclass(frozen=True)
class Period:
    date_from: date
    date_to: date

    @property
    def label(self) -> str:
        a, b = self.date_from, self.date_to
        return f"{a.day} {MONTHS[a.month - 1]} {a.year} – {b.day} {MONTHS[b.month - 1]} {b.year}"


def default_period(today: date) -> Period:
    """This month so far."""
    return Period(today.replace(day=1), today)


def period_of(date_from: date | None, date_to: date | None, today: date, max_days: int) -> Period:
    if date_from is None and date_to is None:
        return default_period(today)
    start = date_from or (date_to or today).replace(day=1)
    end = date_to or today
    if end < start:
        start, end = end, start
    if (end - start).days > max_days:
        start = end - timedelta(days=max_days)
    return Period(start, end)
