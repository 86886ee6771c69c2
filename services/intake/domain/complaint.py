"""The ``Complaint`` aggregate: who may act on a complaint and what a lifecycle action does
to it. Pure: no I/O. ``lifecycle`` decides the transitions; this module turns an allowed
action into the column changes, the events and their timeline summaries (Bahasa Indonesia),
and the repository persists exactly that.

Free text (titles, responses, replies, reasons) stays in intake's tables; events carry only
codes, numbers and instants (``shared.events`` invariant).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from services.intake import lifecycle
from services.intake.catalog import Opd, Service
from services.intake.domain.model import ComplaintRow
from services.intake.lifecycle import OPD_SCOPE_STATES, SOURCE_BOUND_ROLES, State
from services.intake.schemas import (
    CORRECTABLE,
    ActionIn,
    ArchiveIn,
    CorrectionsIn,
    DeferIn,
    DisposeIn,
    ForwardIn,
    RateIn,
    ReclassifyIn,
    ReopenIn,
    ReplyIn,
    RespondIn,
    ReturnIn,
    VerifyIn,
    WithdrawIn,
)
from services.intake.scopes import default_scopes
from shared.events import (
    ArchiveReason,
    CloudEvent,
    ComplaintArchived,
    ComplaintClosed,
    ComplaintDeferred,
    ComplaintForwarded,
    ComplaintRated,
    ComplaintReclassified,
    ComplaintReopened,
    ComplaintReporterReplied,
    ComplaintResponded,
    ComplaintResumed,
    ComplaintReturned,
    ComplaintRouted,
    ComplaintVerified,
    ComplaintWithdrawn,
    EventData,
    make_event,
)

SOURCE = "sp4n/intake"
ARCHIVE_LABELS: dict[ArchiveReason, str] = {
    "format_salah": "format laporan salah",
    "terlalu_umum": "laporan terlalu umum",
    "bukan_pelayanan_publik": "bukan tentang pelayanan publik",
    "duplikat": "duplikat",
    "tidak_ada_tanggapan_pelapor": "tidak ada tanggapan dari pelapor",
    "lainnya": "alasan lain",
}
ROLE_LABELS = {"admin_koordinator": "admin koordinator", "portal": "pelapor", "opd": "OPD",
               "importer": "impor data", "system": "sistem"}
# How people read the correctable fields and their values (timeline).
FIELD_LABELS = {"classification": "klasifikasi", "berkadar_pengawasan": "berkadar pengawasan",
                "category": "kategori", "anonymous": "anonim", "confidential": "rahasia",
                "location_public": "lokasi publik"}
# The ``field`` of an error about the body as a whole (``errors.BODY``).
WHOLE_BODY = "(body)"


@dataclass(frozen=True)
class Actor:
    """Who acts: the API key's role and its scope."""

    role: str  # one of lifecycle.ROLES
    opd_code: str | None = None
    # portal/importer keys: the only source they may see and act for (None: none at all)
    source: str | None = None
    name: str | None = None  # the API key's name (who, in events that say who changed what)
    key_id: int | None = None  # the API key's number (the audit trail); None: no key
    # The key's scopes; None: the role's defaults (intake's own actors, e.g. the importer's
    # replayed history, which have no key).
    scopes: tuple[str, ...] | None = None

    @property
    def who(self) -> str:
        return self.name or self.role

    def may(self, scope: str) -> bool:
        return scope in (self.scopes if self.scopes is not None else default_scopes(self.role))


class ComplaintNotFound(Exception):
    pass


class OutOfScope(Exception):
    """The key may not touch this complaint, or may never take this action (→ 403)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidField(Exception):
    """A value is well-formed but wrong for this complaint (→ 422 naming the field)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


# --- scope: who may see and act on which complaint ---------------------------------------

def current_opd(c: ComplaintRow) -> str | None:
    """The OPD the complaint is currently disposed to (None while with the admin koordinator)."""
    return c.opd_code if c.status in OPD_SCOPE_STATES else None


def check_scope(actor: Actor, c: ComplaintRow) -> None:
    """Raise ``OutOfScope`` unless ``actor`` may see/act on this complaint at all."""
    if actor.role == "opd":
        if actor.opd_code is None or current_opd(c) != actor.opd_code:
            raise OutOfScope(f"laporan ini tidak (lagi) didisposisikan ke OPD '{actor.opd_code}'")
    elif actor.role in SOURCE_BOUND_ROLES:
        if actor.source is None or actor.source != c.source:
            raise OutOfScope(f"kunci API ini hanya untuk laporan dari sumber '{actor.source}'")
    elif actor.role not in ("admin_koordinator", "system"):
        raise OutOfScope(f"peran '{actor.role}' tidak dikenal")


def actions_for(actor: Actor, c: ComplaintRow, hop_cap: int) -> list[str]:
    """What ``actor`` may do next on this complaint (empty when out of scope)."""
    try:
        check_scope(actor, c)
    except OutOfScope:
        return []
    return lifecycle.allowed_actions(c.status, actor.role, hop=c.counted_hops, hop_cap=hop_cap)


def variant_of(body: ActionIn) -> str | None:
    """The lifecycle variant a body asks for (``lifecycle.VARIANTS``)."""
    if isinstance(body, RespondIn) and not body.final:
        return lifecycle.PROGRESS
    return None


# --- the aggregate ----------------------------------------------------------------------

@dataclass(frozen=True)
class Recorded:
    """An event the complaint emits, with its timeline entry."""

    event: CloudEvent
    summary: str


@dataclass(frozen=True)
class Outcome:
    """What an action decided: the column changes and the events, in order."""

    before: ComplaintRow
    changes: dict[str, Any] = field(default_factory=dict)
    recorded: tuple[Recorded, ...] = ()
    actor: Actor | None = None  # who acted (the timeline records the key's name and role)

    @property
    def after(self) -> ComplaintRow:
        return replace(self.before, **self.changes)

    @property
    def events(self) -> list[CloudEvent]:
        return [r.event for r in self.recorded]


@dataclass(frozen=True)
class Facts:
    """What an action needs from outside the complaint; the use case gathers it."""

    original: ComplaintRow | None = None  # archive 'duplikat': the complaint named (None: unknown)
    opd: Opd | None = None  # dispose: the catalogue's OPD (None: unknown code)
    response_no: int | None = None  # respond: the number the stored response got
    category: Service | None = None  # verify/reclassify with a category: the catalogue's (None: unknown)


class Complaint:
    """One complaint and the rules that change it."""

    def __init__(self, state: ComplaintRow) -> None:
        self.state = state

    def begin(self, action: str, actor: Actor, *, at: datetime, hop_cap: int,
              variant: str | None = None) -> Step:
        """Check scope, transition and time of ``action``; raises ``OutOfScope``,
        ``lifecycle.RoleMayNot``, ``lifecycle.InvalidTransition`` or ``InvalidField``."""
        c = self.state
        check_scope(actor, c)
        transition = lifecycle.decide(c.status, actor.role, action, hop=c.counted_hops,
                                      hop_cap=hop_cap, resume_state=c.resume_state, variant=variant)
        latest = c.last_transition_at or c.received_at
        if at < latest:
            raise InvalidField("occurred_at", f"must not be before the complaint's latest transition "
                                              f"({latest.isoformat()})")
        return Step(c, transition, actor, at)

    def close_by_system(self, at: datetime, summary: str) -> Outcome:
        """Close with ``closed_by: system`` (the reply window elapsed)."""
        transition = lifecycle.decide(self.state.status, "system", "close")
        step = Step(self.state, transition, Actor("system"), at)
        step.close("system", summary)
        return step.outcome()

    def reply_window_elapsed(self, d: dict[str, Any], tz: ZoneInfo, now: datetime
                             ) -> tuple[Outcome, str]:
        """Close the complaint (``closed_by: system``) iff it still waits on the reporter after
        the very response the window was about; also returns the window's own timeline summary."""
        c = self.state
        responded_at = datetime.fromisoformat(d["responded_at"])
        deadline = local_time(d["deadline"], tz)
        if (c.status == State.DITINDAKLANJUTI and c.hop == d["hop"]
                and c.last_responded_at is not None and c.last_responded_at <= responded_at
                and (c.last_reply_at is None or c.last_reply_at < responded_at)):
            closed = self.close_by_system(max(now, c.last_transition_at or now), (
                "Laporan ditutup otomatis oleh sistem: pelapor tidak menanggapi tindak lanjut "
                f"hingga {deadline}"))
            return closed, f"Batas waktu tanggapan pelapor ({deadline}) lewat tanpa tanggapan"
        return Outcome(c), (f"Batas waktu tanggapan pelapor ({deadline}) lewat, tetapi laporan "
                            f"tidak ditutup: status {c.status}, disposisi ke-{c.hop}")

    def deferral_expired(self, d: dict[str, Any], tz: ZoneInfo, now: datetime
                         ) -> tuple[Outcome, str]:
        """Archive the complaint by the system (``tidak_ada_tanggapan_pelapor``) iff it is still
        DITUNDA since the very deferral that expired (a resume and a new deferral start a new
        wait); also returns the expiry's own timeline summary."""
        c = self.state
        deferred_at = datetime.fromisoformat(d["deferred_at"])
        deadline = local_time(d["deadline"], tz)
        if c.status == State.DITUNDA and c.deferred_at == deferred_at:
            transition = lifecycle.decide(c.status, "system", "archive")
            step = Step(c, transition, Actor("system"), max(now, c.last_transition_at or now))
            step.archive("tidak_ada_tanggapan_pelapor", None, (
                f"Diarsipkan oleh sistem: {ARCHIVE_LABELS['tidak_ada_tanggapan_pelapor']} "
                f"hingga {deadline}"))
            return step.outcome(), f"Batas tunda menunggu pelapor ({deadline}) lewat tanpa tanggapan"
        why = (f"ditunda lagi sejak {local_time(c.deferred_at.isoformat(), tz)}"
               if c.status == State.DITUNDA and c.deferred_at is not None else f"status {c.status}")
        return Outcome(c), (f"Batas tunda menunggu pelapor ({deadline}) lewat, tetapi laporan "
                            f"tidak diarsipkan: {why}")


class Step:
    """One allowed action in progress: the complaint as locked, the changes and the events."""

    def __init__(self, row: ComplaintRow, transition: lifecycle.Transition, actor: Actor,
                 at: datetime) -> None:
        self.row, self.transition, self.actor, self.at = row, transition, actor, at
        self.changes: dict[str, Any] = {}
        self.recorded: list[Recorded] = []

    @property
    def id(self) -> uuid.UUID:
        return self.row.id

    def apply(self, body: ActionIn, facts: Facts = Facts()) -> Outcome:
        """The action's effect (raises ``InvalidField`` for a value wrong for this complaint)."""
        _APPLY[self.transition.action](self, body, facts)
        return self.outcome()

    def outcome(self) -> Outcome:
        if self.transition.changes_state:
            self.changes.setdefault("status", self.transition.to_state)
            self.changes["last_transition_at"] = self.at
        return Outcome(self.row, dict(self.changes), tuple(self.recorded), self.actor)

    def emit(self, data: EventData, summary: str) -> CloudEvent:
        event = make_event(SOURCE, data, time=self.at)
        self.recorded.append(Recorded(event, summary))
        return event

    def opd_label(self) -> str:
        return self.row.opd_name or self.row.opd_code or "OPD"

    def resumed(self, by: str) -> None:
        """The deferral ends: paused clocks run again (sla moves their deadlines)."""
        self.changes.update(resume_state=None, deferred_at=None)
        deferred_at = self.row.deferred_at or self.row.last_transition_at or self.at
        self.emit(ComplaintResumed(complaint_id=self.id, resumed_at=self.at, deferred_at=deferred_at),
                  f"Laporan dilanjutkan setelah ditunda ({by})")

    def current_opd_code(self) -> str:
        """The OPD's code in a state where the complaint is with an OPD (always set there)."""
        if self.row.opd_code is None:
            raise RuntimeError(f"complaint {self.id} is {self.row.status} without an OPD")
        return self.row.opd_code

    def close(self, closed_by: Literal["admin_koordinator", "system"], summary: str) -> None:
        event = self.emit(ComplaintClosed(complaint_id=self.id, closed_at=self.at, closed_by=closed_by,
                                          opd_code=self.row.opd_code, hop=self.row.hop), summary)
        self.changes.update(closed_at=self.at, closed_by=closed_by, closed_event_id=event.id)

    def archive(self, reason: ArchiveReason, duplicate_of: uuid.UUID | None, summary: str) -> None:
        """Archive (DIARSIPKAN) by the actor: the admin koordinator, or the system."""
        self.changes.update(archive_reason=reason, duplicate_of=duplicate_of, needs_triage=False,
                            resume_state=None, deferred_at=None, archived_by=self.actor.role)
        self.emit(ComplaintArchived(complaint_id=self.id, archived_at=self.at, reason=reason,
                                    duplicate_of=duplicate_of), summary)

    def correct(self, body: CorrectionsIn, facts: Facts, *, reason: str, required: bool) -> None:
        """The admin koordinator's corrections of what the submitter sent: the changed columns
        and ``complaint.reclassified`` (sla recomputes the clocks that depend on them).
        Raises ``InvalidField`` for an impossible combination or an unknown category, and,
        when ``required`` (``reclassify``), when nothing would change."""
        row = self.row
        given = body.corrections()
        new: dict[str, Any] = {f: getattr(row, f) for f in CORRECTABLE} | given
        if new["classification"] != "pengaduan" and "berkadar_pengawasan" not in given:
            new["berkadar_pengawasan"] = False  # berkadar pengawasan is a kind of pengaduan
        if new["berkadar_pengawasan"] and new["classification"] != "pengaduan":
            raise InvalidField("berkadar_pengawasan", "applies to classification 'pengaduan' only")
        if new["category"] != row.category and facts.category is None:
            raise InvalidField("category", f"unknown category '{new['category']}'; "
                                           "see GET /v1/categories on routing")
        changed = [f for f in CORRECTABLE if new[f] != getattr(row, f)]
        if not changed:
            if required:
                raise InvalidField(WHOLE_BODY, "nothing to change: every value given is already "
                                               "the complaint's")
            return
        self.changes.update({f: new[f] for f in changed})
        self.emit(ComplaintReclassified(
            complaint_id=self.id, reclassified_at=self.at, classification=new["classification"],
            berkadar_pengawasan=new["berkadar_pengawasan"], category=new["category"],
            anonymous=new["anonymous"], confidential=new["confidential"],
            location_public=new["location_public"], changed_fields=changed,
            reason=reason, changed_by=self.actor.who),
            f"Data laporan dikoreksi oleh {ROLE_LABELS[self.actor.role]}: "
            + "; ".join(f"{FIELD_LABELS[f]} {_shown(getattr(row, f))} → {_shown(new[f])}"
                        for f in changed)
            + f" (alasan: {reason})")


def _shown(value: Any) -> str:
    """A correctable field's value as people read it."""
    if isinstance(value, bool):
        return "ya" if value else "tidak"
    return str(value).replace("_", " ")


def _verify(step: Step, body: VerifyIn, facts: Facts) -> None:
    if step.transition.from_state == State.DITUNDA:
        step.resumed("diverifikasi oleh admin koordinator")
    edited = body.title is not None and body.title != step.row.title
    if edited:
        step.changes["title"] = body.title
        if step.row.original_title is None:
            step.changes["original_title"] = step.row.title
    step.emit(ComplaintVerified(complaint_id=step.id, verified_at=step.at, title_edited=edited),
              "Laporan diverifikasi oleh admin koordinator" + ("; judul disunting" if edited else ""))
    # After the verification: sla learns the corrected classification of a verified complaint.
    step.correct(body, facts, reason=body.reason or "", required=False)


def _reclassify(step: Step, body: ReclassifyIn, facts: Facts) -> None:
    step.correct(body, facts, reason=body.reason, required=True)


def _withdraw(step: Step, body: WithdrawIn, _facts: Facts) -> None:
    step.changes["withdrawals"] = step.row.withdrawals + 1
    step.emit(ComplaintWithdrawn(complaint_id=step.id, opd_code=step.current_opd_code(),
                                 hop=step.row.hop, withdrawn_at=step.at),
              f"Ditarik kembali oleh admin koordinator dari {step.opd_label()} "
              f"(disposisi ke-{step.row.hop}): {body.reason}; menunggu disposisi ulang")


def _defer(step: Step, body: DeferIn, _facts: Facts) -> None:
    step.changes.update(resume_state=step.transition.from_state, deferred_at=step.at)
    step.emit(ComplaintDeferred(complaint_id=step.id, deferred_at=step.at),
              "Laporan ditunda: menunggu kelengkapan informasi dari pelapor"
              + (f" ({body.reason})" if body.reason else ""))


def _resume(step: Step, _body: ActionIn, _facts: Facts) -> None:
    step.resumed("oleh admin koordinator")


def _archive(step: Step, body: ArchiveIn, facts: Facts) -> None:
    duplicate_of: uuid.UUID | None = None
    label = ARCHIVE_LABELS[body.reason]
    if body.reason == "duplikat":
        original = facts.original
        if original is None:
            raise InvalidField("duplicate_of", f"no complaint with id or tracking id "
                                               f"'{body.duplicate_of}'")
        if original.id == step.id:
            raise InvalidField("duplicate_of", "a complaint cannot duplicate itself")
        duplicate_of = original.id
        label = f"duplikat dari {original.tracking_id}"
    step.archive(body.reason, duplicate_of,
                 f"Laporan diarsipkan: {label}" + (f" — {body.note}" if body.note else ""))


def _dispose(step: Step, body: DisposeIn, facts: Facts) -> None:
    hop = step.row.hop + 1
    # intake's mirror of routing's OPD directory: a typo must not send a complaint to an
    # office nobody reads.
    if facts.opd is None:
        raise InvalidField("opd_code", f"unknown OPD '{body.opd_code}'; see GET /v1/opds on routing")
    name = body.opd_name or facts.opd.name
    step.changes.update(opd_code=body.opd_code, opd_name=name, hop=hop, needs_triage=False,
                        return_reason=None)
    step.emit(ComplaintRouted(complaint_id=step.id, opd_code=body.opd_code, opd_name=name, hop=hop,
                              routed_at=step.at, routed_by="admin"),
              f"Didisposisikan oleh admin koordinator ke {name} (disposisi ke-{hop})")


def _forward(step: Step, body: ForwardIn, _facts: Facts) -> None:
    step.changes.update(forwarded_to=body.instansi, needs_triage=False)
    step.emit(ComplaintForwarded(complaint_id=step.id, forwarded_at=step.at, instansi=body.instansi),
              f"Dilimpahkan ke {body.instansi}")


def _close(step: Step, body: ActionIn, _facts: Facts) -> None:
    note = getattr(body, "note", None)
    step.close("admin_koordinator",
               "Laporan diselesaikan oleh admin koordinator" + (f" — {note}" if note else ""))


def _reopen(step: Step, body: ReopenIn, _facts: Facts) -> None:
    who = ROLE_LABELS[step.actor.role]
    step.changes.update(closed_at=None, closed_by=None, closed_event_id=None)
    step.emit(ComplaintReopened(complaint_id=step.id, reopened_at=step.at,
                                closed_event_id=step.row.closed_event_id or "",
                                opd_code=step.row.opd_code, hop=step.row.hop),
              f"Laporan dibuka kembali (banding) oleh {who}; kembali ke {step.opd_label()}"
              + (f": {body.reason}" if body.reason else ""))


def _respond(step: Step, body: RespondIn, facts: Facts) -> None:
    no = facts.response_no
    if no is None:
        raise RuntimeError("respond needs the number of the stored response")
    if body.final:
        # The reply window is about the final tindak lanjut only (``reply_window_elapsed``).
        step.changes["last_responded_at"] = step.at
    step.emit(ComplaintResponded(complaint_id=step.id, opd_code=step.current_opd_code(), hop=step.row.hop,
                                 response_no=no, responded_at=step.at, final=body.final),
              (f"Tindak lanjut akhir dari {step.opd_label()} (tanggapan ke-{no})" if body.final
               else f"Perkembangan tindak lanjut dari {step.opd_label()} (tanggapan ke-{no}); "
                    "menunggu tindak lanjut akhir"))


def _return(step: Step, body: ReturnIn, _facts: Facts) -> None:
    step.changes["return_reason"] = body.reason
    step.emit(ComplaintReturned(complaint_id=step.id, opd_code=step.current_opd_code(), hop=step.row.hop,
                                returned_at=step.at),
              f"Dikembalikan oleh {step.opd_label()} ke admin koordinator: bukan wewenang — "
              f"{body.reason}")


def _reply(step: Step, _body: ReplyIn, _facts: Facts) -> None:
    if step.transition.from_state == State.DITUNDA:
        step.resumed("pelapor melengkapi informasi")
        return
    step.changes["last_reply_at"] = step.at
    step.emit(ComplaintReporterReplied(complaint_id=step.id, replied_at=step.at,
                                       opd_code=step.row.opd_code, hop=step.row.hop),
              f"Pelapor menanggapi tindak lanjut; kembali ke {step.opd_label()}")


def _rate(step: Step, body: RateIn, _facts: Facts) -> None:
    step.changes.update(rating=body.rating, rated_at=step.at)
    step.emit(ComplaintRated(complaint_id=step.id, rating=body.rating, rated_at=step.at),
              f"Pelapor memberi penilaian {body.rating} dari 5")


# Each action's body type is ``schemas.ACTION_BODIES[action]``.
_APPLY: dict[str, Callable[[Step, Any, Facts], None]] = {
    "verify": _verify, "defer": _defer, "resume": _resume, "archive": _archive,
    "dispose": _dispose, "forward": _forward, "close": _close, "reopen": _reopen,
    "respond": _respond, "return": _return, "reply": _reply, "rate": _rate,
    "reclassify": _reclassify, "withdraw": _withdraw,
}
assert set(_APPLY) == set(lifecycle.ACTIONS)


def local_time(value: str, tz: ZoneInfo) -> str:
    """An event's instant as people in the regency read it."""
    return datetime.fromisoformat(value).astimezone(tz).strftime("%d-%m-%Y %H:%M %Z")
