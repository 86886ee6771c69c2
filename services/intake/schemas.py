"""The HTTP (and inbound broker) contract of intake: what a portal submits and gets back."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.events import CODE_PATTERN, ArchiveReason, Classification

# Portals' clocks drift; a received_at further in the future than this is a bug upstream.
MAX_CLOCK_SKEW = timedelta(minutes=5)
_PHONE = re.compile(r"^\+?[0-9][0-9 \-]{6,18}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# Dates before this are nobody's complaint (and year 1 overflows date arithmetic downstream);
# none is accepted further than a day in the future (the fields say more precisely how far).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=1)
NUL = "\x00"


def has_nul(value: Any) -> bool:
    """Whether a raw input value holds a NUL character (PostgreSQL text cannot store one)."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def nul_parameter(path_params: Mapping[str, Any], query: Iterable[tuple[str, str]]) -> str | None:
    """The first path or query parameter whose value holds a NUL character, by name."""
    for name, value in [*path_params.items(), *query]:
        if has_nul(value):
            return name
    return None


NUL_REASON = "must not contain the NUL character (\\u0000)"


class _Strict(BaseModel):
    """Every input model: unknown fields refused, strings stripped, no NUL character in any
    string, every date-time between ``EARLIEST`` and a day from now."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, v: Any) -> Any:
        if has_nul(v):
            raise ValueError(NUL_REASON)
        return v

    @field_validator("*", mode="after")
    @classmethod
    def _sane_datetime(cls, v: Any) -> Any:
        if isinstance(v, datetime):
            if v < EARLIEST:
                raise ValueError(f"must not be before {EARLIEST:%Y-%m-%d}")
            if v > datetime.now(UTC) + LATEST_AHEAD:
                raise ValueError("must not be in the future")
        return v


class LocationIn(_Strict):
    kecamatan: str | None = Field(default=None, max_length=100)
    desa: str | None = Field(default=None, max_length=100, description="desa / kelurahan")
    address: str | None = Field(default=None, max_length=500)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _both_coordinates(self) -> LocationIn:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together")
        return self


class ReporterIn(_Strict):
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=30)
    email: str | None = Field(default=None, max_length=254)
    nik: str | None = Field(default=None, description="Nomor Induk Kependudukan, 16 digits")

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is not None and not _PHONE.match(v):
            raise ValueError("must be a phone number: digits, optional leading +")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not _EMAIL.match(v):
            raise ValueError("must be an e-mail address")
        return v.lower() if v else v

    @field_validator("nik")
    @classmethod
    def _nik(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9]{16}", v):
            raise ValueError("must be exactly 16 digits")
        return v


HistoryState = Literal["DITERIMA", "TERVERIFIKASI", "DITUNDA", "TERDISPOSISI", "DIKEMBALIKAN",
                       "DITINDAKLANJUTI", "DITANGGAPI_PELAPOR", "SELESAI", "DIARSIPKAN", "DILIMPAHKAN"]
# States a history reaches through an OPD: it needs the OPD and the disposition's date.
_VIA_OPD = ("TERDISPOSISI", "DIKEMBALIKAN", "DITINDAKLANJUTI", "DITANGGAPI_PELAPOR", "SELESAI")


class LaporFactsIn(_Strict):
    """What LAPOR! showed for the row, kept as it was (the submission stores it)."""
    status: str | None = Field(default=None, max_length=200)
    category_label: str | None = Field(default=None, max_length=200)
    category_id: str | None = Field(default=None, max_length=100)
    instansi: str | None = Field(default=None, max_length=300)
    rating: str | None = Field(default=None, max_length=50)
    alasan_tunda: str | None = Field(default=None, max_length=2000)
    alasan_arsip: str | None = Field(default=None, max_length=2000)


class HistoryIn(_Strict):
    """The outcome another system (LAPOR!) already recorded, replayed by intake as the
    lifecycle's own steps, with their dates: verify → (defer) → dispose → return / respond →
    reply → close / archive / forward, then the rating."""
    state: HistoryState
    historical: bool = Field(default=False, description=(
        "closed or archived there: complaint.submitted says historical, no clock runs"))
    verified_at: AwareDatetime | None = None
    deferred_at: AwareDatetime | None = None
    opd_code: str | None = Field(default=None, pattern=CODE_PATTERN)
    disposed_at: AwareDatetime | None = None
    returned_at: AwareDatetime | None = None
    responded_at: AwareDatetime | None = None
    reporter_replied_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = Field(default=None, description="closed, archived or forwarded")
    closed_by: Literal["admin_koordinator", "system"] = "admin_koordinator"
    archive_reason: ArchiveReason = "lainnya"
    forwarded_to: str | None = Field(default=None, min_length=2, max_length=200)
    rating: int | None = Field(default=None, ge=1, le=5)
    note: str | None = Field(default=None, max_length=1000, description="e.g. LAPOR!'s Alasan Arsip")
    lapor: LaporFactsIn = Field(default_factory=LaporFactsIn)

    def dated(self) -> list[tuple[str, datetime]]:
        """The steps' dates in the order the lifecycle takes them."""
        names = ("verified_at", "deferred_at", "disposed_at", "returned_at", "responded_at",
                 "reporter_replied_at", "closed_at")
        return [(n, v) for n in names if (v := getattr(self, n)) is not None]

    def first_at(self) -> datetime | None:
        dated = self.dated()
        return dated[0][1] if dated else None

    @model_validator(mode="after")
    def _complete_and_ordered(self) -> HistoryIn:
        needs: list[str] = []
        if self.state in _VIA_OPD:
            needs += ["opd_code", "disposed_at"]
        if self.state == "DITUNDA":
            needs.append("deferred_at")
        if self.state == "DIKEMBALIKAN":
            needs.append("returned_at")
        if self.state in ("DITINDAKLANJUTI", "DITANGGAPI_PELAPOR", "SELESAI"):
            needs.append("responded_at")
        if self.state == "DITANGGAPI_PELAPOR":
            needs.append("reporter_replied_at")
        if self.state in ("SELESAI", "DIARSIPKAN", "DILIMPAHKAN"):
            needs.append("closed_at")
        if self.state == "DILIMPAHKAN":
            needs.append("forwarded_to")
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            raise ValueError(f"state {self.state} needs {', '.join(missing)}")
        dated = self.dated()
        for (a, at), (b, bt) in zip(dated, dated[1:], strict=False):
            if bt < at:
                raise ValueError(f"{b} must not be before {a}")
        now = datetime.now(UTC) + MAX_CLOCK_SKEW
        future = [n for n, v in dated if v > now]
        if future:
            raise ValueError(f"{', '.join(future)} must not be in the future")
        if self.historical != (self.state in ("SELESAI", "DIARSIPKAN", "DILIMPAHKAN")):
            raise ValueError("historical is true exactly for SELESAI, DIARSIPKAN and DILIMPAHKAN")
        return self


class ComplaintIn(_Strict):
    """A complaint as a portal submits it. Text fields are stripped of surrounding whitespace
    before their length limits apply."""

    source: str = Field(pattern=CODE_PATTERN,
                        description="the portal's name, e.g. 'portal-sekadau', 'wa-bot', 'lapor'")
    external_id: str = Field(min_length=1, max_length=100, description="the portal's own id")
    received_at: AwareDatetime = Field(description=(
        "when the citizen filed it, with offset; not in the future (clocks start here, so a late "
        "import may already be overdue)"))
    classification: Classification
    berkadar_pengawasan: bool = Field(default=False, description=(
        "pengaduan needing field examination (60 HK instead of 14); only with classification "
        "'pengaduan'"))
    category: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=3, max_length=200)
    description: str = Field(min_length=10, max_length=4000)
    location: LocationIn = Field(default_factory=LocationIn)
    anonymous: bool = Field(default=False, description="anonim: identity hidden from the OPD")
    confidential: bool = Field(default=False, description="rahasia: hidden from the public")
    # Declared after ``anonymous``: its validator reads it.
    reporter: ReporterIn | None = Field(default=None, validate_default=True, description=(
        "required unless anonymous is true: a name and at least one of phone, email, nik "
        "(source 'lapor': a name alone)"))
    attachments: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)
    # Importers only (a key bound to source 'lapor'): what the other system already knows.
    history: HistoryIn | None = Field(default=None, description=(
        "imported history (source 'lapor' keys only): the state the complaint reached there "
        "and when; intake replays those steps with their dates in the same transaction"))

    @model_validator(mode="after")
    def _history_after_receipt(self) -> ComplaintIn:
        if self.history is not None:
            first = self.history.first_at()
            if first is not None and first < self.received_at:
                raise ValueError("history: dates must not be before received_at")
        return self

    @field_validator("received_at")
    @classmethod
    def _not_in_future(cls, v: datetime) -> datetime:
        if v > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("must not be in the future")
        return v

    @field_validator("berkadar_pengawasan")
    @classmethod
    def _pengawasan_only_for_pengaduan(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("classification", "pengaduan") != "pengaduan":
            raise ValueError("applies to classification 'pengaduan' only")
        return v

    @field_validator("reporter")
    @classmethod
    def _reporter_unless_anonymous(cls, r: ReporterIn | None, info: ValidationInfo) -> ReporterIn | None:
        # LAPOR! keeps its reporters' contact; its export names them only.
        named_in_lapor = info.data.get("source") == "lapor" and r is not None and bool(r.name)
        if not info.data.get("anonymous", False) and not named_in_lapor and (
                r is None or not r.name or not (r.phone or r.email or r.nik)):
            raise ValueError("needs a name and a phone, email or nik unless anonymous is true")
        return r

    def canonical(self) -> dict[str, Any]:
        """The submission without the reporter, in a stable JSON form."""
        return self.model_dump(mode="json", exclude={"reporter"})


class ComplaintAccepted(BaseModel):
    complaint_id: uuid.UUID
    tracking_id: str
    status: str
    status_url: str


class ClockOut(BaseModel):
    """One clock as sla reported it, with what intake derives for people reading it.

    From sla's events: kind, hop, instance, deadline, working days, paused days, calendar and
    policy versions, calendar coverage, the outcome and the escalation level reached. Computed
    by intake at read time: ``label``, ``deadline_local`` and ``calendar_days_left`` (intake
    has no working-day calendar: working days late are sla's count at its latest escalation)."""
    clock: str = Field(description="the clock's kind (ClockKind)")
    label: str = Field(description="how people read the kind, e.g. 'tindak lanjut OPD'")
    hop: int
    instance: int = Field(description="several instances of one clock and hop: after a reporter's "
                                      "reply, a reopen, a second response")
    opd_code: str | None
    started_at: datetime | None
    deadline: datetime | None = Field(description="ISO 8601, with offset")
    deadline_local: str | None = Field(description="the deadline in the regency's local time, "
                                                   "e.g. '12-11-2026 23:59 WIB'")
    working_days: int | None = Field(description="the clock's length in working days (HK)")
    paused_working_days: int = Field(description="working days it stood still while DITUNDA")
    calendar_days_left: int | None = Field(description=(
        "a running clock: calendar days from today (local) to the deadline's day; 0 = due "
        "today, negative = that many days past it. None once stopped. Calendar days, "
        "computed by intake; sla counts working days"))
    state: Literal["berjalan", "selesai", "terlambat", "dibatalkan"]
    breached: bool
    warned: bool
    stopped_at: datetime | None
    calendar_version: str | None
    policy_version: int | None
    beyond_calendar_coverage: bool = Field(description=(
        "the deadline lies past the last year whose cuti bersama the calendar knows for sure"))
    escalation_level: int = Field(description="the highest escalation level reached (0: none)")
    escalated_to: str | None = Field(description="that level's target role")
    working_days_late: int | None = Field(description="working days late at that escalation (sla)")


class TimelineEntry(BaseModel):
    event: str
    at: datetime
    summary: str
    by_role: str | None = Field(default=None, description=(
        "the acting key's role (admin_koordinator, opd, portal, system); absent for what "
        "another service reported"))
    by_name: str | None = Field(default=None, description=(
        "the acting key's name; shown to the admin koordinator and OPDs, not to portals"))


class ComplaintCore(BaseModel):
    """What every view of a complaint shows (a listing row, the status)."""
    complaint_id: uuid.UUID
    tracking_id: str
    source: str
    status: str
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


class ComplaintStatus(ComplaintCore):
    external_id: str
    berkadar_pengawasan: bool = False
    anonymous: bool
    confidential: bool
    accepted_at: datetime
    clocks: list[ClockOut]
    timeline: list[TimelineEntry]


# --- The lifecycle: one body per action (POST /v1/complaints/{key}/{action}) --------------


class ActionIn(_Strict):
    occurred_at: AwareDatetime | None = Field(
        default=None,
        description=("when the action really happened (backfills); default now. Not in the "
                     "future, not before the complaint's latest transition. Only keys with the "
                     "scope complaints:backdate (importer, admin koordinator) may send it; any "
                     "other key gets 403 naming occurred_at."))

    @field_validator("occurred_at")
    @classmethod
    def _occurred_not_in_future(cls, v: datetime | None) -> datetime | None:
        if v is not None and v > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("must not be in the future")
        return v


# What the admin koordinator may correct of what the submitter sent (verify, reclassify).
CORRECTABLE = ("classification", "berkadar_pengawasan", "category", "anonymous", "confidential",
               "location_public")


class CorrectionsIn(ActionIn):
    """The admin koordinator's corrections; a field left out keeps its value."""
    classification: Classification | None = None
    berkadar_pengawasan: bool | None = Field(
        default=None, description="pengaduan needing field examination (60 HK instead of 14); "
                                  "pengaduan only. Changing the classification away from "
                                  "pengaduan clears it")
    category: str | None = Field(default=None, min_length=1, max_length=100)
    anonymous: bool | None = Field(default=None, description="anonim: identity hidden from the OPD")
    confidential: bool | None = Field(default=None, description="rahasia: hidden from the public")
    location_public: bool | None = Field(
        default=None, description="anonim only matters: show the exact location (lat/long, "
                                  "street address) in public reads instead of a coarsened one")

    def corrections(self) -> dict[str, Any]:
        """The correctable fields given, by name."""
        return {f: getattr(self, f) for f in CORRECTABLE if getattr(self, f) is not None}


class VerifyIn(CorrectionsIn):
    title: str | None = Field(default=None, min_length=3, max_length=200,
                              description="a corrected title; the original is kept")
    # Declared after the corrections: its validator reads them.
    reason: str | None = Field(default=None, min_length=3, max_length=500, validate_default=True,
                               description="why: required when any of classification, "
                                           "berkadar_pengawasan, category, anonymous, "
                                           "confidential or location_public is given")

    @field_validator("reason")
    @classmethod
    def _reason_with_corrections(cls, v: str | None, info: ValidationInfo) -> str | None:
        if not v and any(info.data.get(f) is not None for f in CORRECTABLE):
            raise ValueError("required when classification, berkadar_pengawasan, category, "
                             "anonymous, confidential or location_public is given")
        return v


class ReclassifyIn(CorrectionsIn):
    reason: str = Field(min_length=3, max_length=500,
                        description="why the correction (the admin's words; carried by the event)")


class WithdrawIn(ActionIn):
    reason: str = Field(min_length=3, max_length=1000,
                        description="why the complaint is pulled back from the OPD")


class DeferIn(ActionIn):
    reason: str | None = Field(default=None, max_length=1000,
                               description="what information the reporter must supply")


class ResumeIn(ActionIn):
    pass


class ArchiveIn(ActionIn):
    reason: ArchiveReason
    # Declared after ``reason``: its validator reads it.
    duplicate_of: str | None = Field(default=None, min_length=1, max_length=64,
                                     validate_default=True,
                                     description=("complaint id or tracking id of the original; "
                                                  "required with reason 'duplikat', refused "
                                                  "with any other reason"))
    note: str | None = Field(default=None, max_length=1000)

    @field_validator("duplicate_of")
    @classmethod
    def _duplicate_needs_original(cls, v: str | None, info: ValidationInfo) -> str | None:
        reason = info.data.get("reason")
        if reason == "duplikat" and not v:
            raise ValueError("required when reason is 'duplikat'")
        if reason is not None and reason != "duplikat" and v:
            raise ValueError("only for reason 'duplikat'")
        return v


class DisposeIn(ActionIn):
    opd_code: str = Field(pattern=CODE_PATTERN, description="the OPD to dispose to, e.g. 'dinkes'")
    opd_name: str | None = Field(default=None, min_length=2, max_length=200,
                                 description="display name; defaults to routing's suggestion")


class ForwardIn(ActionIn):
    instansi: str = Field(min_length=2, max_length=200,
                          description="the instansi outside the regency it is forwarded to")


class CloseIn(ActionIn):
    note: str | None = Field(default=None, max_length=1000)


class ReopenIn(ActionIn):
    reason: str | None = Field(default=None, max_length=2000, description="the appeal's grounds")


class RespondIn(ActionIn):
    body: str = Field(min_length=1, max_length=4000, description="the tindak lanjut text")
    attachments: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)
    final: bool = Field(default=True, description=(
        "true: the final tindak lanjut (DITINDAKLANJUTI; meets the OPD's and the completion "
        "clock); false: a progress update (perkembangan): the status stays, no clock stops"))


class ReturnIn(ActionIn):
    reason: str = Field(min_length=3, max_length=2000, description="why it is bukan wewenang")


class ReplyIn(ActionIn):
    body: str = Field(min_length=1, max_length=4000, description="the reporter's answer")
    attachments: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)


class RateIn(ActionIn):
    rating: int = Field(ge=1, le=5)


ACTION_BODIES: dict[str, type[ActionIn]] = {
    "verify": VerifyIn, "defer": DeferIn, "resume": ResumeIn, "archive": ArchiveIn,
    "dispose": DisposeIn, "forward": ForwardIn, "close": CloseIn, "reopen": ReopenIn,
    "respond": RespondIn, "return": ReturnIn, "reply": ReplyIn, "rate": RateIn,
    "reclassify": ReclassifyIn, "withdraw": WithdrawIn,
}


class ActionDone(BaseModel):
    complaint_id: uuid.UUID
    tracking_id: str
    action: str
    status: str
    previous_status: str
    hop: int
    opd_code: str | None
    event_id: str
    allowed_actions: list[str]


class ReporterOut(BaseModel):
    name: str | None
    phone: str | None
    email: str | None
    nik: str | None = None  # admin koordinator only, never an OPD


class SuggestionOut(BaseModel):
    opd_code: str
    opd_name: str | None
    rule_id: int | None
    suggested_at: datetime | None


class DuplicateCandidateOut(BaseModel):
    complaint_id: uuid.UUID
    tracking_id: str | None
    status: str | None


class ResponseOut(BaseModel):
    response_no: int
    opd_code: str
    hop: int
    body: str
    attachments: list[str]
    at: datetime
    final: bool = Field(default=True, description="false: a progress update")


class ReplyOut(BaseModel):
    hop: int
    body: str
    attachments: list[str]
    at: datetime


class ComplaintDetail(ComplaintStatus):
    """The status with the lifecycle: what the caller may do next and what was done so far."""
    original_title: str | None = None
    allowed_actions: list[str] = Field(default_factory=list)
    suggestion: SuggestionOut | None = None  # admin koordinator only
    duplicate_candidates: list[DuplicateCandidateOut] = Field(default_factory=list)  # admin only
    responses: list[ResponseOut] = Field(default_factory=list)
    replies: list[ReplyOut] = Field(default_factory=list)
    rating: int | None = None
    archive_reason: str | None = None
    archived_by: str | None = Field(default=None, description="admin_koordinator or system")
    duplicate_of: uuid.UUID | None = None
    forwarded_to: str | None = None
    return_reason: str | None = None
    closed_by: str | None = None
    closed_at: datetime | None = None
    reporter: ReporterOut | None = Field(
        default=None, description="admin koordinator and OPD only; never for anonim complaints")
    reporter_withheld: Literal["erased", "access_expired", "undecryptable"] | None = Field(
        default=None, description=(
            "why a reporter the caller could otherwise see is not shown: 'erased' (the "
            "reporter's identity was erased), 'access_expired' (an OPD key, more than "
            "settings.intake.opd_contact_days_after_close days after SELESAI), "
            "'undecryptable' (the master key that wrapped it is not configured)"))


class ComplaintSummary(ComplaintCore):
    updated_at: datetime
    suggested_opd_code: str | None = None  # admin koordinator only


class AuditEntryOut(BaseModel):
    """One row of the audit trail (``GET /v1/audit``)."""
    id: int
    at: datetime
    key_id: int | None = Field(description="the acting API key's number; null: the system")
    key_name: str | None
    role: str
    action: str = Field(description="a lifecycle action, 'read_identity' (the reporter's "
                                    "identity was in an answer) or 'import_history' (an "
                                    "importer's history replayed)")
    complaint_id: uuid.UUID | None
    request_id: str | None = Field(description="the request's X-Request-ID")
    client_addr: str | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_after: int | None = Field(description=(
        "pass as 'after' for the next page; null when this page is the last"))


class ComplaintPage(BaseModel):
    items: list[ComplaintSummary]
    total: int
    limit: int
    offset: int
