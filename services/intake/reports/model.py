"""The kinerja report's public interface: what a report is asked for and what it answers.

Stable: other modules (the CLI, the web page, the LAPOR! import summary) build on these
names; fields are added, never renamed. Rates are percentages (0–100) or None when their
denominator is zero; durations are in working days (hari kerja)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

Attribution = Literal["cohort", "event"]
GroupBy = Literal["opd", "category", "kecamatan", "source", "classification"]
ATTRIBUTIONS: tuple[Attribution, ...] = ("cohort", "event")
GROUP_BYS: tuple[GroupBy, ...] = ("opd", "category", "kecamatan", "source", "classification")
# The group of complaints no OPD holds (not yet disposed, archived, forwarded, returned).
NO_GROUP = "-"


@dataclass(frozen=True)
class ReportQuery:
    """A period of local dates in ``SP4N_TIMEZONE``, both ends included.

    ``attribution``: ``event`` counts a complaint in the period it was disposed to the OPD
    that holds it (its tindak lanjut and completion follow it, whenever they happen);
    ``cohort`` counts it in the period it was received. ``masuk`` is always by receipt."""

    date_from: date
    date_to: date
    opd: str | None = None
    group_by: GroupBy = "opd"
    attribution: Attribution = "event"


@dataclass(frozen=True)
class DurationStats:
    """Working days, over the complaints that reached the end point."""

    count: int = 0
    median: float | None = None
    p90: float | None = None


@dataclass(frozen=True)
class ReportRow:
    """One group (an OPD, a category, …). Counts are complaints."""

    key: str                     # the OPD code, category, kecamatan, source or classification
    label: str                   # what people read (the OPD's name; the key otherwise)
    received: int = 0            # masuk: received in the period (always by receipt)
    disposed: int = 0            # terdisposisi: the denominator of every rate
    followed_up: int = 0         # ditindaklanjuti: at least one tindak lanjut from the OPD
    completed: int = 0           # selesai: SELESAI now (closed by admin or by the system)
    response_on_time: int = 0    # first tindak lanjut within the OPD's clock
    completed_on_time: int = 0   # completed within the completion clock
    open: int = 0                # disposed and not completed
    open_overdue: int = 0        # disposed, not completed, completion deadline passed
    archived: int = 0            # received in the period and archived (outside every rate)
    forwarded: int = 0           # received in the period and dilimpahkan (outside every rate)
    returned_waiting: int = 0    # returned as bukan wewenang, not yet re-disposed
    reopened: int = 0            # disposed complaints reopened at least once
    follow_up_rate: float | None = None         # tingkat tindak lanjut = followed_up ÷ disposed
    completion_rate: float | None = None        # tingkat penyelesaian = completed ÷ disposed
    response_on_time_rate: float | None = None  # ketepatan waktu tindak lanjut = response_on_time ÷ disposed
    completion_on_time_rate: float | None = None  # completed_on_time ÷ (completed + open_overdue)
    days_to_disposition: DurationStats = field(default_factory=DurationStats)
    days_to_first_response: DurationStats = field(default_factory=DurationStats)
    days_to_final_response: DurationStats = field(default_factory=DurationStats)


@dataclass(frozen=True)
class ReportTotals(ReportRow):
    """The whole selection (the regency, or the one OPD asked for)."""


@dataclass(frozen=True)
class OverdueComplaint:
    """A disposed complaint still open past its completion deadline. No reporter identity."""

    complaint_id: uuid.UUID
    tracking_id: str
    opd_code: str | None
    opd_name: str | None
    category: str
    kecamatan: str | None
    status: str
    received_at: datetime
    deadline: datetime
    working_days_late: int


@dataclass(frozen=True)
class KinerjaReport:
    query: ReportQuery
    generated_at: datetime
    rows: list[ReportRow]
    totals: ReportTotals
    overdue: list[OverdueComplaint]  # oldest deadline first
    target_on_time_rate: float       # the regency's target (percent), for the chart's line


@dataclass(frozen=True)
class ComplaintFacts:
    """What the report needs of one complaint (``repository.complaint_facts``)."""

    id: uuid.UUID
    tracking_id: str
    source: str
    classification: str
    category: str
    kecamatan: str | None
    status: str
    received_at: datetime
    opd_code: str | None             # the OPD that holds it (the last disposition)
    opd_name: str | None
    hop: int
    first_disposed_at: datetime | None   # the first complaint.routed (verification ends)
    disposed_at: datetime | None         # the disposition to ``opd_code`` (hop ``hop``)
    first_response_at: datetime | None   # the first tindak lanjut from ``opd_code`` on that hop
    final_response_at: datetime | None   # the last final tindak lanjut
    response_deadline: datetime | None   # the OPD clock of hop ``hop`` (first instance)
    completion_deadline: datetime | None  # the completion clock in force
    completion_breached: bool
    first_closed_at: datetime | None
    closed_at: datetime | None           # the closing in force (None unless SELESAI)
    reopen_count: int
