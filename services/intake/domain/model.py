"""What intake's repository reads and writes, as typed values (never database records)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from services.intake.lifecycle import State


@dataclass(frozen=True)
class ComplaintRow:
    """A complaint as stored: every column of ``complaints`` (the aggregate's state)."""

    id: uuid.UUID
    tracking_id: str
    source: str
    external_id: str
    fingerprint: str
    submission: dict[str, Any]
    classification: str
    category: str
    title: str
    kecamatan: str | None
    desa: str | None
    anonymous: bool
    confidential: bool
    reporter_ref: str
    received_at: datetime
    accepted_at: datetime
    status: State
    needs_triage: bool
    # The last OPD the complaint was disposed to (a reopen goes back to it); whether it is
    # *currently* with that OPD follows from ``status`` (``scope.current_opd``).
    opd_code: str | None
    opd_name: str | None
    hop: int
    updated_at: datetime
    original_title: str | None
    resume_state: State | None
    deferred_at: datetime | None
    last_transition_at: datetime | None
    archive_reason: str | None
    duplicate_of: uuid.UUID | None
    forwarded_to: str | None
    return_reason: str | None
    suggested_opd_code: str | None
    suggested_opd_name: str | None
    suggested_rule_id: int | None
    suggested_at: datetime | None
    duplicate_candidates: tuple[uuid.UUID, ...]
    rating: int | None
    rated_at: datetime | None
    last_responded_at: datetime | None
    last_reply_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    closed_event_id: str | None
    # Set at submission and by the admin koordinator's corrections (``reclassify``).
    berkadar_pengawasan: bool = False
    # Dispositions the admin koordinator withdrew (``withdraw``): they do not count toward
    # the hop cap (``counted_hops``).
    withdrawals: int = 0
    archived_by: str | None = None  # "admin_koordinator" or "system" (DITUNDA expired)
    # An anonim complaint's exact location may be shown publicly (the admin koordinator's call).
    location_public: bool = False

    @property
    def counted_hops(self) -> int:
        """The dispositions that count toward the hop cap."""
        return self.hop - self.withdrawals


@dataclass(frozen=True)
class ComplaintListRow:
    """What a listing shows of a complaint."""

    id: uuid.UUID
    tracking_id: str
    source: str
    status: State
    needs_triage: bool
    classification: str
    category: str
    title: str
    kecamatan: str | None
    desa: str | None
    opd_code: str | None
    opd_name: str | None
    hop: int
    received_at: datetime
    updated_at: datetime
    suggested_opd_code: str | None


@dataclass(frozen=True)
class ComplaintBrief:
    id: uuid.UUID
    tracking_id: str
    status: State


@dataclass(frozen=True)
class NewComplaint:
    """A complaint to insert at acceptance (with its reporter)."""

    id: uuid.UUID
    tracking_id: str
    source: str
    external_id: str
    fingerprint: str
    submission: dict[str, Any]
    classification: str
    category: str
    title: str
    kecamatan: str | None
    desa: str | None
    anonymous: bool
    confidential: bool
    reporter_ref: str
    received_at: datetime
    accepted_at: datetime
    status: State
    reporter: SealedReporter
    reporter_fp: str
    berkadar_pengawasan: bool = False


@dataclass(frozen=True)
class StoredSubmission:
    """An accepted submission, as an idempotent retry compares against it."""

    id: uuid.UUID
    tracking_id: str
    status: State
    submission: dict[str, Any]
    reporter_fp: str


@dataclass(frozen=True)
class ReporterRow:
    """A reporter's identity in plain text: only in memory, between decryption and the
    answer (or, for a row from before encryption, until intake has encrypted it)."""

    name: str | None = None
    phone: str | None = None
    email: str | None = None
    nik: str | None = None


REPORTER_FIELDS = ("name", "phone", "email", "nik")


@dataclass(frozen=True)
class SealedReporter:
    """A reporter's identity as stored: each field sealed under the reporter's data key
    (``services.intake.crypto``), which is stored wrapped by the master key. No wrapped key:
    nothing was given, or the reporter was erased (``erased``)."""

    name: bytes | None = None
    phone: bytes | None = None
    email: bytes | None = None
    nik: bytes | None = None
    key_id: str | None = None
    wrapped_key: bytes | None = None
    erased: bool = False


@dataclass(frozen=True)
class ResponseRow:
    response_no: int
    opd_code: str
    hop: int
    body: str
    attachments: list[str]
    created_at: datetime
    final: bool = True  # False: a progress update (perkembangan tindak lanjut)


@dataclass(frozen=True)
class ReplyRow:
    hop: int
    body: str
    attachments: list[str]
    created_at: datetime


ClockState = Literal["berjalan", "selesai", "terlambat", "dibatalkan"]


@dataclass(frozen=True)
class ClockRow:
    """A deadline as sla reported it (``sla.clock_*``, ``sla.warning``, ``sla.breached``,
    ``sla.escalated``, ``sla.deadline_changed``). One row per (clock, hop, instance)."""

    clock: str
    hop: int
    opd_code: str | None
    started_at: datetime | None
    deadline: datetime | None
    working_days: int | None
    calendar_version: str | None
    policy_version: int | None
    stopped_at: datetime | None
    breached: bool
    warned: bool
    instance: int = 0
    paused_working_days: int = 0  # sla's count of working days it stood still (DITUNDA)
    beyond_calendar_coverage: bool = False  # sla: the deadline lies past the known cuti bersama
    cancelled: bool = False  # stopped as cancelled (a withdrawal): neither met nor breached
    escalation_level: int = 0  # the highest ``sla.escalated`` level seen (0: none)
    escalated_to: str | None = None  # that level's target role
    working_days_late: int | None = None  # sla's count at that escalation

    @property
    def state(self) -> ClockState:
        if self.breached:
            return "terlambat"
        if self.cancelled:
            return "dibatalkan"
        return "selesai" if self.stopped_at is not None else "berjalan"


@dataclass(frozen=True)
class TimelineRow:
    event_type: str
    occurred_at: datetime
    summary: str
    actor_role: str | None = None  # the acting key's role (None: another service's event)
    actor_name: str | None = None  # the acting key's name


@dataclass(frozen=True)
class EventApplied:
    """What ``IntakeRepository.apply_event`` did."""

    status: State  # the complaint's, before the effect
    hop: int
    first: bool  # False: a redelivery, nothing was done
    applied: bool  # the effect changed a row
