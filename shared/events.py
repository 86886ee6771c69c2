"""Event contracts: a CloudEvents 1.0 envelope and one pydantic model per event type.

Events are facts in the past tense. The routing key is the event name (``complaint.routed``);
the CloudEvents ``type`` adds the product prefix and a version suffix
(``id.go.sp4n.complaint.routed.v1``). ``subject`` is always the complaint id.

Invariant: no event carries the reporter's name, phone, email or NIK, nor free text a
citizen wrote; only the pseudonymous ``reporter_ref``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

TYPE_PREFIX = "id.go.sp4n."
Classification = Literal["pengaduan", "aspirasi", "permintaan_informasi"]
ClockKind = Literal[
    "verification", "opd_response", "completion", "auto_close"
]


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
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(timezone.utc))
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
        time=time or datetime.now(timezone.utc),
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
    event_name: ClassVar[str] = "sla.clock_started"
    clock: ClockKind
    hop: int = 0
    opd_code: str | None = None
    started_at: AwareDatetime
    working_days: int
    deadline: AwareDatetime
    warn_at: AwareDatetime | None
    calendar_version: str
    policy_version: int


class SlaClockStopped(EventData):
    event_name: ClassVar[str] = "sla.clock_stopped"
    clock: ClockKind
    hop: int = 0
    opd_code: str | None = None
    stopped_at: AwareDatetime
    deadline: AwareDatetime
    on_time: bool
    reason: Literal["stopped", "cancelled"] = "stopped"


class _SlaAlert(EventData):
    clock: ClockKind
    hop: int = 0
    opd_code: str | None = None
    deadline: AwareDatetime
    due_at: AwareDatetime
    calendar_version: str
    policy_version: int


class SlaWarning(_SlaAlert):
    event_name: ClassVar[str] = "sla.warning"


class SlaBreached(_SlaAlert):
    event_name: ClassVar[str] = "sla.breached"


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
        SlaClockStarted, SlaClockStopped, SlaWarning, SlaBreached,
        NotificationDelivered, NotificationDeadLettered,
    )
}

__all__ = ["CloudEvent", "EventData", "EVENT_MODELS", "make_event"]
