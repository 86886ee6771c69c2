"""The regency's definitions, pure: which complaint counts where, and the rates.

Counting rule (LAPOR! practice):
- A complaint counts for the OPD that holds it now (its last disposition) while it is
  disposed, followed up or closed (``HELD_STATES``). A hop returned as bukan wewenang counts
  against no OPD; re-disposed, the complaint counts for the new OPD only.
- Archived (DIARSIPKAN) and forwarded out of the regency (DILIMPAHKAN) complaints are outside
  every denominator (they are counted, in ``archived``/``forwarded``, by receipt). So are
  complaints not yet disposed, and returned ones waiting for re-disposition.
- A reopened complaint keeps its history (first close, reopen, final close): it counts as
  completed only when closed again.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import date, datetime

from services.intake.reports.model import (
    NO_GROUP,
    ComplaintFacts,
    DurationStats,
    OverdueComplaint,
    ReportQuery,
    ReportRow,
    ReportTotals,
)
from services.intake.reports.workdays import WorkCalendar

# Without a mirrored OPD clock (imported LAPOR! history: no clock ran), the first tindak
# lanjut is judged against the policy's default: the 5th working day after the disposition.
FALLBACK_OPD_RESPONSE_DAYS = 5
HELD_STATES = frozenset({"TERDISPOSISI", "DITINDAKLANJUTI", "DITANGGAPI_PELAPOR", "SELESAI"})
COMPLETED_STATE = "SELESAI"


def held(f: ComplaintFacts) -> bool:
    return f.status in HELD_STATES and f.opd_code is not None


def received_in(f: ComplaintFacts, q: ReportQuery, cal: WorkCalendar) -> bool:
    return q.date_from <= cal.local_date(f.received_at) <= q.date_to


def counted_in(f: ComplaintFacts, q: ReportQuery, cal: WorkCalendar) -> bool:
    """Disposed in the selection's denominator (by ``q.attribution``)."""
    if not held(f) or f.disposed_at is None:
        return False
    at = f.received_at if q.attribution == "cohort" else f.disposed_at
    return q.date_from <= cal.local_date(at) <= q.date_to


def completed(f: ComplaintFacts) -> bool:
    return f.status == COMPLETED_STATE


def response_deadline(f: ComplaintFacts, cal: WorkCalendar) -> datetime | None:
    if f.response_deadline is not None:
        return f.response_deadline
    if f.disposed_at is None:
        return None
    return cal.deadline_after(f.disposed_at, FALLBACK_OPD_RESPONSE_DAYS)


def response_on_time(f: ComplaintFacts, cal: WorkCalendar) -> bool:
    deadline = response_deadline(f, cal)
    return f.first_response_at is not None and deadline is not None and f.first_response_at <= deadline


def completed_on_time(f: ComplaintFacts) -> bool:
    """Completed, and its final tindak lanjut (the closing, without one) within the
    completion clock in force (a reopen starts a new one). Judged on the dates, not on
    sla's breach flag: a backdated import breaches at once and may still have been met.
    Imported history without a clock counts on time (LAPOR! exports carry no deadline)."""
    if not completed(f):
        return False
    end = f.final_response_at or f.closed_at
    return f.completion_deadline is None or end is None or end <= f.completion_deadline


def overdue(f: ComplaintFacts, now: datetime) -> bool:
    """Held, not completed, and the completion deadline in force has passed."""
    return (held(f) and not completed(f) and f.completion_deadline is not None
            and f.completion_deadline < now)


def group_key(f: ComplaintFacts, group_by: str) -> tuple[str, str]:
    if group_by == "opd":
        return (f.opd_code, f.opd_name or f.opd_code) if held(f) and f.opd_code else (NO_GROUP, NO_GROUP)
    value: str | None = getattr(f, group_by)
    return (value, value) if value else (NO_GROUP, NO_GROUP)


def rate(n: int, d: int) -> float | None:
    return None if d == 0 else 100.0 * n / d


def duration_stats(values: list[int]) -> DurationStats:
    if not values:
        return DurationStats()
    p90 = float(values[0]) if len(values) == 1 else statistics.quantiles(values, n=10,
                                                                           method="inclusive")[8]
    return DurationStats(count=len(values), median=float(statistics.median(values)), p90=p90)


@dataclass
class _Acc:
    key: str
    label: str
    counts: dict[str, int] = field(default_factory=dict)
    to_disposition: list[int] = field(default_factory=list)
    to_first_response: list[int] = field(default_factory=list)
    to_final_response: list[int] = field(default_factory=list)

    def add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


@dataclass(frozen=True)
class _Contribution:
    """What one complaint adds to its group's row and to the totals (computed once)."""

    counts: tuple[str, ...]
    to_disposition: int | None = None
    to_first_response: int | None = None
    to_final_response: int | None = None

    def add_to(self, acc: _Acc) -> None:
        for name in self.counts:
            acc.add(name)
        if self.to_disposition is not None:
            acc.to_disposition.append(self.to_disposition)
        if self.to_first_response is not None:
            acc.to_first_response.append(self.to_first_response)
        if self.to_final_response is not None:
            acc.to_final_response.append(self.to_final_response)


_END_STATES = {"DIARSIPKAN": "archived", "DILIMPAHKAN": "forwarded", "DIKEMBALIKAN": "returned_waiting"}


def contribution(f: ComplaintFacts, q: ReportQuery, cal: WorkCalendar, now: datetime) -> _Contribution:
    names: list[str] = []
    if received_in(f, q, cal):
        names.append("received")
        if f.status in _END_STATES:
            names.append(_END_STATES[f.status])
    if not counted_in(f, q, cal):
        return _Contribution(tuple(names))
    names.append("disposed")
    if f.first_response_at is not None:
        names.append("followed_up")
    if response_on_time(f, cal):
        names.append("response_on_time")
    if completed(f):
        names.append("completed")
        if completed_on_time(f):
            names.append("completed_on_time")
    else:
        names.append("open")
        if overdue(f, now):
            names.append("open_overdue")
    if f.reopen_count:
        names.append("reopened")
    return _Contribution(
        tuple(names),
        to_disposition=None if f.first_disposed_at is None
        else cal.days_between(f.received_at, f.first_disposed_at),
        to_first_response=None if f.first_response_at is None or f.disposed_at is None
        else cal.days_between(f.disposed_at, f.first_response_at),
        to_final_response=None if f.final_response_at is None
        else cal.days_between(f.received_at, f.final_response_at))


def _row(acc: _Acc, cls: Callable[..., ReportRow] = ReportRow) -> ReportRow:
    c = acc.counts
    names = {f.name for f in fields(ReportRow)}
    counts = {k: v for k, v in c.items() if k in names}
    d = c.get("disposed", 0)
    return cls(
        key=acc.key, label=acc.label, **counts,
        follow_up_rate=rate(c.get("followed_up", 0), d),
        completion_rate=rate(c.get("completed", 0), d),
        response_on_time_rate=rate(c.get("response_on_time", 0), d),
        completion_on_time_rate=rate(c.get("completed_on_time", 0),
                                     c.get("completed", 0) + c.get("open_overdue", 0)),
        days_to_disposition=duration_stats(acc.to_disposition),
        days_to_first_response=duration_stats(acc.to_first_response),
        days_to_final_response=duration_stats(acc.to_final_response),
    )


def build_rows(facts: Iterable[ComplaintFacts], q: ReportQuery, cal: WorkCalendar, now: datetime
               ) -> tuple[list[ReportRow], ReportTotals, list[OverdueComplaint]]:
    """The per-group rows (sorted by key, the no-group row last), the totals, the overdue list."""
    groups: dict[str, _Acc] = {}
    total = _Acc("total", "Total")
    late: list[OverdueComplaint] = []
    for f in facts:
        if q.opd is not None and not (held(f) and f.opd_code == q.opd):
            # an OPD's report: what it holds (received-but-not-disposed belongs to no OPD)
            continue
        key, label = group_key(f, q.group_by)
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = _Acc(key, label)
        part = contribution(f, q, cal, now)
        part.add_to(acc)
        part.add_to(total)
        if "open_overdue" in part.counts and f.completion_deadline is not None:
            late.append(OverdueComplaint(
                complaint_id=f.id, tracking_id=f.tracking_id, opd_code=f.opd_code,
                opd_name=f.opd_name, category=f.category, kecamatan=f.kecamatan, status=f.status,
                received_at=f.received_at, deadline=f.completion_deadline,
                working_days_late=cal.days_between(f.completion_deadline, now)))
    rows = [_row(a) for a in groups.values() if a.counts]
    rows.sort(key=lambda r: (r.key == NO_GROUP, r.key))
    late.sort(key=lambda o: o.deadline)
    totals = _row(total, ReportTotals)
    assert isinstance(totals, ReportTotals)
    return rows, totals, late


def month_range(month: str) -> tuple[date, date]:
    """``2026-11`` → (1 Nov, 30 Nov)."""
    y, m = (int(p) for p in month.split("-"))
    start = date(y, m, 1)
    end = date(y + (m == 12), m % 12 + 1, 1)
    return start, date.fromordinal(end.toordinal() - 1)
