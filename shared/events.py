"""Event contracts: a CloudEvents 1.0 envelope and one pydantic model per event type.

Events are facts in the past tense. The routing key is the event name (``complaint.routed``);
the CloudEvents ``type`` adds the product prefix and a version suffix
(``id.go.sp4n.complaint.routed.v1``). ``subject`` is always the complaint id.

Invariant: no event carries the reporter's name, phone, email or NIK, nor free text a
citizen wrote; only the pseudonymous ``reporter_ref``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

TYPE_PREFIX = "id.go.sp4n."
Classification = Literal["pengaduan", "aspirasi", "permintaan_informasi"]
ClockKind = Literal[
    "verification", "opd_response", "completion", "auto_close", "redisposition", "deferral"
]
# How people read each clock (timelines, the demo).
CLOCK_LABELS: dict[str, str] = {
    "verification": "verifikasi dan disposisi",
    "opd_response": "tindak lanjut OPD",
    "completion": "penyelesaian",
    "auto_close": "penutupan otomatis",
    "redisposition": "disposisi ulang setelah dikembalikan",
    "deferral": "batas tunda menunggu pelapor",
}
# Who an escalation step is addressed to (a regency's Perbup names them; the ladder is data).
EscalationTarget = Literal[
    "pejabat_penghubung", "kepala_opd", "admin_koordinator", "sekda", "bupati"
]
# Why a deadline moved (``sla.deadline_changed``).
DeadlineChangeReason = Literal["reclassified", "calendar_changed", "policy_changed"]
# A portal's source name or an OPD's code: lower-case letters, digits, '_', '.', '-'.
CODE_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{1,39}$"


class EventData(BaseModel):
    """Base of every event's ``data``; subclasses name their event and version."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_name: ClassVar[str]
    version: ClassVar[int] = 1

    complaint_id: uuid.UUID

    @classmethod
    def ce_type(cls) -> str:
        return f"{TYPE_PREFIX}{cls.event_name}.v{cls.version}"


class CloudEvent(BaseModel):
    """CloudEvents 1.0, structured JSON mode."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    data: dict[str, Any]

    @property
    def event_name(self) -> str:
        """``id.go.sp4n.complaint.routed.v1`` → ``complaint.routed``."""
        name = self.type.removeprefix(TYPE_PREFIX)
        head, _, tail = name.rpartition(".")
        return head if tail.startswith("v") and tail[1:].isdigit() else name

    def parse_data(self) -> EventData:
        return EVENT_MODELS[self.event_name].model_validate(self.data)


def make_event(source: str, data: EventData, *, time: datetime | None = None,
               event_id: str | None = None) -> CloudEvent:
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=data.ce_type(),
        subject=str(data.complaint_id),
        time=time or datetime.now(UTC),
        data=data.model_dump(mode="json"),
    )


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kecamatan: str | None = None
    desa: str | None = None


class ComplaintSubmitted(EventData):
    event_name: ClassVar[str] = "complaint.submitted"
    tracking_id: str
    source: str
    received_at: AwareDatetime
    accepted_at: AwareDatetime
    classification: Classification
    berkadar_pengawasan: bool = False
    category: str
    location: Location
    anonymous: bool
    confidential: bool
    reporter_ref: str
    # Imported history (a LAPOR! row already closed or archived there): its outcome is known and
    # recorded by intake; no clock runs for it, so nothing breaches or warns at import.
    historical: bool = False


class ComplaintRouted(EventData):
    event_name: ClassVar[str] = "complaint.routed"
    opd_code: str
    opd_name: str
    hop: int = Field(ge=1)
    rule_id: int | None = None
    rule_version: int | None = None
    routed_at: AwareDatetime
    routed_by: Literal["rule", "admin"] = "rule"


class ComplaintTriageRequired(EventData):
    event_name: ClassVar[str] = "complaint.triage_required"
    reason: str
    category: str
    kecamatan: str | None = None


class SlaClockStarted(EventData):
    """A clock started, or its deadline moved (a resume, a recomputation): the same
    (clock, hop, instance) with the same ``started_at`` is the same clock."""
    event_name: ClassVar[str] = "sla.clock_started"
    clock: ClockKind
    hop: int = 0
    # Several instances of one clock and hop: an OPD clock again after a reporter's reply or
    # a reopen, a completion clock per reopen, a reply window per response.
    instance: int = 0
    opd_code: str | None = None
    started_at: AwareDatetime
    working_days: int
    deadline: AwareDatetime
    warn_at: AwareDatetime | None
    calendar_version: str
    policy_version: int
    # Working days the clock stood still while the complaint was DITUNDA.
    paused_working_days: int = 0
    # The deadline lies past the last year whose cuti bersama the calendar knows for sure.
    beyond_calendar_coverage: bool = False


class SlaClockStopped(EventData):
    event_name: ClassVar[str] = "sla.clock_stopped"
    clock: ClockKind
    hop: int = 0
    instance: int = 0
    opd_code: str | None = None
    stopped_at: AwareDatetime
    deadline: AwareDatetime
    on_time: bool
    reason: Literal["stopped", "cancelled"] = "stopped"


class _SlaAlert(EventData):
    clock: ClockKind
    hop: int = 0
    instance: int = 0
    opd_code: str | None = None
    deadline: AwareDatetime
    # When the alert came due; the event's own ``time`` is when it was emitted, later for a
    # staff-facing alert held back by quiet hours.
    due_at: AwareDatetime
    calendar_version: str
    policy_version: int


class SlaWarning(_SlaAlert):
    event_name: ClassVar[str] = "sla.warning"
    # Which warning point of the clock's policy: "2hk" (2 working days before) or "50%".
    point: str | None = None


class SlaBreached(_SlaAlert):
    event_name: ClassVar[str] = "sla.breached"


class SlaEscalated(_SlaAlert):
    """One step of the clock's escalation ladder, emitted once (a response, close or
    withdrawal stops the ladder)."""
    event_name: ClassVar[str] = "sla.escalated"
    level: int = Field(ge=1)
    target_role: EscalationTarget
    working_days_late: int = Field(ge=0)
    ladder_version: int


class SlaDeadlineChanged(EventData):
    """A running clock's deadline was recomputed (reclassification, a calendar change)."""
    event_name: ClassVar[str] = "sla.deadline_changed"
    clock: ClockKind
    hop: int = 0
    instance: int = 0
    opd_code: str | None = None
    old_deadline: AwareDatetime
    new_deadline: AwareDatetime
    reason: DeadlineChangeReason
    note: str | None = Field(default=None, max_length=500)  # the admin's or operator's words
    changed_by: str | None = None  # who: a key name or an operator, never a citizen
    calendar_version: str
    policy_version: int


class SlaDeferralExpired(EventData):
    """DITUNDA for the policy's working days without the reporter's answer: intake archives
    the complaint by the system (reason ``tidak_ada_tanggapan_pelapor``)."""
    event_name: ClassVar[str] = "sla.deferral_expired"
    deferred_at: AwareDatetime
    deadline: AwareDatetime
    calendar_version: str
    policy_version: int


# --- The lifecycle (issue: the whole complaint lifecycle). intake emits these when the admin
# koordinator, an OPD or the portal acts; free text (titles, responses) stays in intake.

ArchiveReason = Literal[
    "format_salah", "terlalu_umum", "bukan_pelayanan_publik", "duplikat",
    "tidak_ada_tanggapan_pelapor", "lainnya",
]


class ComplaintVerified(EventData):
    event_name: ClassVar[str] = "complaint.verified"
    verified_at: AwareDatetime
    title_edited: bool = False


class ComplaintDeferred(EventData):
    """Tunda: waiting for information from the reporter; clocks that wait on the reporter pause."""
    event_name: ClassVar[str] = "complaint.deferred"
    deferred_at: AwareDatetime


class ComplaintResumed(EventData):
    """The reporter supplied what was asked (or the admin resumed): paused clocks run again."""
    event_name: ClassVar[str] = "complaint.resumed"
    resumed_at: AwareDatetime
    deferred_at: AwareDatetime


class ComplaintArchived(EventData):
    event_name: ClassVar[str] = "complaint.archived"
    archived_at: AwareDatetime
    reason: ArchiveReason
    duplicate_of: uuid.UUID | None = None


class ComplaintForwarded(EventData):
    """Dilimpahkan to an instansi outside the regency: the regency's clocks end."""
    event_name: ClassVar[str] = "complaint.forwarded"
    forwarded_at: AwareDatetime
    instansi: str


class ComplaintRoutingSuggested(EventData):
    """A rule matched but does not dispose automatically: the admin koordinator decides."""
    event_name: ClassVar[str] = "complaint.routing_suggested"
    opd_code: str
    opd_name: str
    rule_id: int
    rule_version: int
    suggested_at: AwareDatetime


class ComplaintReturned(EventData):
    """Bukan wewenang: the OPD returns the complaint to the admin koordinator."""
    event_name: ClassVar[str] = "complaint.returned"
    opd_code: str
    hop: int = Field(ge=1)
    returned_at: AwareDatetime


class ComplaintResponded(EventData):
    """Tindak lanjut: the OPD posted a response (its text stays in intake). ``final`` False is a
    progress update: it stops no clock; the final tindak lanjut meets the OPD's clock and the
    completion clock."""
    event_name: ClassVar[str] = "complaint.responded"
    opd_code: str
    hop: int = Field(ge=1)
    response_no: int = Field(ge=1)
    responded_at: AwareDatetime
    final: bool = True


class ComplaintReclassified(EventData):
    """The admin koordinator corrected what the submitter sent (at verification or later);
    clocks that depend on it are recomputed (``sla.deadline_changed``)."""
    event_name: ClassVar[str] = "complaint.reclassified"
    reclassified_at: AwareDatetime
    classification: Classification
    berkadar_pengawasan: bool
    category: str
    anonymous: bool
    confidential: bool
    location_public: bool = False  # an anonim complaint's exact location may be public
    changed_fields: list[str]
    reason: str = Field(max_length=500)  # the admin's words, not the citizen's
    changed_by: str | None = None


class ComplaintWithdrawn(EventData):
    """The admin koordinator pulled a mis-disposed complaint back from an OPD (TERDISPOSISI):
    that hop's OPD clock is cancelled, not breached; the complaint waits for disposition."""
    event_name: ClassVar[str] = "complaint.withdrawn"
    opd_code: str
    hop: int = Field(ge=1)
    withdrawn_at: AwareDatetime


class ComplaintReporterReplied(EventData):
    """The reporter answered a response: the OPD's turn again."""
    event_name: ClassVar[str] = "complaint.reporter_replied"
    replied_at: AwareDatetime
    opd_code: str | None = None
    hop: int = 0


class ComplaintRated(EventData):
    event_name: ClassVar[str] = "complaint.rated"
    rating: int = Field(ge=1, le=5)
    rated_at: AwareDatetime


class ComplaintClosed(EventData):
    event_name: ClassVar[str] = "complaint.closed"
    closed_at: AwareDatetime
    closed_by: Literal["admin_koordinator", "system"]
    opd_code: str | None = None
    hop: int = 0


class ComplaintReopened(EventData):
    """Banding: the completion clock restarts; links to the closing it undoes."""
    event_name: ClassVar[str] = "complaint.reopened"
    reopened_at: AwareDatetime
    closed_event_id: str
    opd_code: str | None = None
    hop: int = 0


class ComplaintDuplicateSuspected(EventData):
    event_name: ClassVar[str] = "complaint.duplicate_suspected"
    candidate_ids: list[uuid.UUID] = Field(min_length=1)
    category: str
    desa: str
    window_days: int


class SlaReplyWindowElapsed(EventData):
    """10 HK after a response with no reply from the reporter: intake closes (closed_by system)."""
    event_name: ClassVar[str] = "sla.reply_window_elapsed"
    responded_at: AwareDatetime
    deadline: AwareDatetime
    opd_code: str | None = None
    hop: int = 0
    calendar_version: str
    policy_version: int


class NotificationDelivered(EventData):
    event_name: ClassVar[str] = "notification.delivered"
    subscription: str
    notified_event_id: str
    notified_event_type: str
    attempts: int


class NotificationDeadLettered(EventData):
    event_name: ClassVar[str] = "notification.dead_lettered"
    subscription: str
    notified_event_id: str
    notified_event_type: str
    attempts: int
    last_error: str


EVENT_MODELS: dict[str, type[EventData]] = {
    m.event_name: m
    for m in (
        ComplaintSubmitted, ComplaintRouted, ComplaintTriageRequired,
        SlaClockStarted, SlaClockStopped, SlaWarning, SlaBreached, SlaReplyWindowElapsed,
        ComplaintVerified, ComplaintDeferred, ComplaintResumed, ComplaintArchived,
        ComplaintForwarded, ComplaintRoutingSuggested, ComplaintReturned, ComplaintResponded,
        ComplaintReporterReplied, ComplaintRated, ComplaintClosed, ComplaintReopened,
        ComplaintDuplicateSuspected, ComplaintReclassified, ComplaintWithdrawn,
        SlaEscalated, SlaDeadlineChanged, SlaDeferralExpired,
        NotificationDelivered, NotificationDeadLettered,
    )
}

__all__ = ["CLOCK_LABELS", "CODE_PATTERN", "ArchiveReason", "Classification", "ClockKind",
           "DeadlineChangeReason", "EscalationTarget",
           "CloudEvent", "EventData", "EVENT_MODELS", "make_event"]
