"""Lifecycle use cases: an admin koordinator, an OPD or a portal acts on a complaint.

Each action runs in the caller's transaction and, in it: locks the complaint row
(``FOR UPDATE``), checks the caller's scope and the transition (``lifecycle.decide``), writes
the new state, a timeline entry (Bahasa Indonesia) and the event into the outbox. So a state
change never exists without its event, and two concurrent actions on one complaint
serialise on the row lock: the second sees the first's state.

Free text (titles, responses, replies, reasons) stays in intake's tables; events carry only
codes, numbers and instants (``shared.events`` invariant).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from services.intake import lifecycle
from services.intake.catalog import load_catalog
from services.intake.lifecycle import OPD_SCOPE_STATES, State
from services.intake.repository import IntakeRepository
from shared.uow import Tx

if TYPE_CHECKING:
    from services.intake.usecases import IntakeUnitOfWork
from services.intake.schemas import (
    ActionIn,
    ArchiveIn,
    DeferIn,
    DisposeIn,
    ForwardIn,
    RateIn,
    ReopenIn,
    ReplyIn,
    RespondIn,
    ReturnIn,
    VerifyIn,
)
from shared.events import (
    CloudEvent,
    ComplaintArchived,
    ComplaintClosed,
    ComplaintDeferred,
    ComplaintForwarded,
    ComplaintRated,
    ComplaintReopened,
    ComplaintReporterReplied,
    ComplaintResponded,
    ComplaintResumed,
    ComplaintReturned,
    ComplaintRouted,
    ComplaintVerified,
    EventData,
    make_event,
)

SOURCE = "sp4n/intake"
ARCHIVE_LABELS = {
    "format_salah": "format laporan salah",
    "terlalu_umum": "laporan terlalu umum",
    "bukan_pelayanan_publik": "bukan tentang pelayanan publik",
    "duplikat": "duplikat",
    "tidak_ada_tanggapan_pelapor": "tidak ada tanggapan dari pelapor",
    "lainnya": "alasan lain",
}
ROLE_LABELS = {"admin_koordinator": "admin koordinator", "portal": "pelapor", "opd": "OPD",
               "system": "sistem"}


@dataclass(frozen=True)
class Actor:
    """Who acts: the API key's role and its scope."""

    role: str  # admin_koordinator | opd | portal | system
    opd_code: str | None = None
    source: str | None = None  # portal keys: the only source they may act for (None: any)


class ComplaintNotFound(Exception):
    pass


class OutOfScope(Exception):
    """The key may not touch this complaint, or may never take this action (→ 403)."""


class InvalidField(Exception):
    """A value is well-formed but wrong for this complaint (→ 422 naming the field)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class ActionResult:
    complaint_id: uuid.UUID
    tracking_id: str
    action: str
    previous_status: str
    status: str
    hop: int
    opd_code: str | None
    event_id: str
    allowed_actions: list[str]


def current_opd(row: asyncpg.Record | dict[str, Any]) -> str | None:
    """The OPD the complaint is currently disposed to (None while with the admin koordinator)."""
    return row["opd_code"] if row["status"] in OPD_SCOPE_STATES else None


def check_scope(actor: Actor, row: asyncpg.Record | dict[str, Any]) -> None:
    """Raise ``OutOfScope`` unless ``actor`` may see/act on this complaint at all."""
    if actor.role == "opd":
        if actor.opd_code is None or current_opd(row) != actor.opd_code:
            raise OutOfScope(f"laporan ini tidak (lagi) didisposisikan ke OPD '{actor.opd_code}'")
    elif actor.role == "portal":
        if actor.source and actor.source != row["source"]:
            raise OutOfScope(f"kunci API ini hanya untuk laporan dari sumber '{actor.source}'")
    elif actor.role not in ("admin_koordinator", "system"):
        raise OutOfScope(f"peran '{actor.role}' tidak dikenal")


def actions_for(actor: Actor, row: asyncpg.Record | dict[str, Any], hop_cap: int) -> list[str]:
    """What ``actor`` may do next on this complaint (empty when out of scope)."""
    try:
        check_scope(actor, row)
    except OutOfScope:
        return []
    return lifecycle.allowed_actions(row["status"], actor.role, hop=row["hop"], hop_cap=hop_cap)


async def perform_action(uow: IntakeUnitOfWork, key: str, action: str, body: ActionIn,
                         actor: Actor, *, hop_cap: int, now: datetime) -> ActionResult:
    """Apply one lifecycle action, in one unit of work.

    Raises ``ComplaintNotFound`` (404), ``OutOfScope`` / ``lifecycle.RoleMayNot`` (403),
    ``lifecycle.InvalidTransition`` (409), ``InvalidField`` (422).
    """
    if not lifecycle.role_may(actor.role, action):
        raise lifecycle.RoleMayNot(actor.role, action)
    async with uow() as tx:
        return await _perform(tx, key, action, body, actor, hop_cap=hop_cap, now=now)


async def _perform(tx: Tx[IntakeRepository], key: str, action: str, body: ActionIn,
                   actor: Actor, *, hop_cap: int, now: datetime) -> ActionResult:
    repo = tx.repo
    row = await repo.find_for_update(key)
    if row is None:
        raise ComplaintNotFound(key)
    check_scope(actor, row)
    transition = lifecycle.decide(row["status"], actor.role, action, hop=row["hop"],
                                  hop_cap=hop_cap, resume_state=row["resume_state"])
    at = body.occurred_at or now
    latest = row["last_transition_at"] or row["received_at"]
    if at < latest:
        raise InvalidField("occurred_at", f"must not be before the complaint's latest transition "
                                          f"({latest.isoformat()})")
    step = _Step(repo, row, transition, actor, at)
    await _APPLY[action](step, body)
    if transition.changes_state:
        step.changes.setdefault("status", transition.to_state.value)
        step.changes["last_transition_at"] = at
    if step.changes:
        await repo.update_complaint(row["id"], **step.changes)
    for event, summary in step.events:
        await repo.add_timeline(row["id"], event, summary)
    tx.stage(*(e for e, _ in step.events))
    after = {**dict(row), **step.changes}
    return ActionResult(
        complaint_id=row["id"], tracking_id=row["tracking_id"], action=action,
        previous_status=row["status"], status=after["status"], hop=after["hop"],
        opd_code=after["opd_code"], event_id=step.events[-1][0].id,
        allowed_actions=actions_for(actor, after, hop_cap))


class _Step:
    """One action in progress: the row as locked, the column changes and the events."""

    def __init__(self, repo: IntakeRepository, row: asyncpg.Record,
                 transition: lifecycle.Transition, actor: Actor, at: datetime) -> None:
        self.repo, self.row, self.transition, self.actor, self.at = repo, row, transition, actor, at
        self.changes: dict[str, Any] = {}
        self.events: list[tuple[CloudEvent, str]] = []

    @property
    def id(self) -> uuid.UUID:
        return self.row["id"]

    def emit(self, data: EventData, summary: str) -> None:
        self.events.append((make_event(SOURCE, data, time=self.at), summary))

    def opd_label(self) -> str:
        return self.row["opd_name"] or self.row["opd_code"] or "OPD"

    def resumed(self, by: str) -> None:
        """The deferral ends: paused clocks run again (sla moves their deadlines)."""
        self.changes.update(resume_state=None, deferred_at=None)
        deferred_at = self.row["deferred_at"] or self.row["last_transition_at"] or self.at
        self.emit(ComplaintResumed(complaint_id=self.id, resumed_at=self.at, deferred_at=deferred_at),
                  f"Laporan dilanjutkan setelah ditunda ({by})")


async def _verify(step: _Step, body: VerifyIn) -> None:
    if step.transition.from_state == State.DITUNDA:
        step.resumed("diverifikasi oleh admin koordinator")
    edited = body.title is not None and body.title != step.row["title"]
    if edited:
        step.changes["title"] = body.title
        if step.row["original_title"] is None:
            step.changes["original_title"] = step.row["title"]
    step.emit(ComplaintVerified(complaint_id=step.id, verified_at=step.at, title_edited=edited),
              "Laporan diverifikasi oleh admin koordinator" + ("; judul disunting" if edited else ""))


async def _defer(step: _Step, body: DeferIn) -> None:
    step.changes.update(resume_state=step.transition.from_state.value, deferred_at=step.at)
    step.emit(ComplaintDeferred(complaint_id=step.id, deferred_at=step.at),
              "Laporan ditunda: menunggu kelengkapan informasi dari pelapor"
              + (f" ({body.reason})" if body.reason else ""))


async def _resume(step: _Step, _body: ActionIn) -> None:
    step.resumed("oleh admin koordinator")


async def _archive(step: _Step, body: ArchiveIn) -> None:
    duplicate_of = None
    label = ARCHIVE_LABELS[body.reason]
    if body.reason == "duplikat":
        original = await step.repo.find(body.duplicate_of or "")
        if original is None:
            raise InvalidField("duplicate_of", f"no complaint with id or tracking id "
                                               f"'{body.duplicate_of}'")
        if original["id"] == step.id:
            raise InvalidField("duplicate_of", "a complaint cannot duplicate itself")
        duplicate_of = original["id"]
        label = f"duplikat dari {original['tracking_id']}"
    step.changes.update(archive_reason=body.reason, duplicate_of=duplicate_of, needs_triage=False,
                        resume_state=None, deferred_at=None)
    step.emit(ComplaintArchived(complaint_id=step.id, archived_at=step.at, reason=body.reason,
                                duplicate_of=duplicate_of),
              f"Laporan diarsipkan: {label}" + (f" — {body.note}" if body.note else ""))


async def _dispose(step: _Step, body: DisposeIn) -> None:
    row = step.row
    hop = row["hop"] + 1
    # intake's mirror of routing's OPD directory: a typo must not send a complaint to an
    # office nobody reads.
    opd = load_catalog().opd(body.opd_code)
    if opd is None:
        raise InvalidField("opd_code", f"unknown OPD '{body.opd_code}'; see GET /v1/opds on routing")
    name = body.opd_name or opd.name
    step.changes.update(opd_code=body.opd_code, opd_name=name, hop=hop, needs_triage=False,
                        return_reason=None)
    step.emit(ComplaintRouted(complaint_id=step.id, opd_code=body.opd_code, opd_name=name, hop=hop,
                              routed_at=step.at, routed_by="admin"),
              f"Didisposisikan oleh admin koordinator ke {name} (disposisi ke-{hop})")


async def _forward(step: _Step, body: ForwardIn) -> None:
    step.changes.update(forwarded_to=body.instansi, needs_triage=False)
    step.emit(ComplaintForwarded(complaint_id=step.id, forwarded_at=step.at, instansi=body.instansi),
              f"Dilimpahkan ke {body.instansi}")


async def _close(step: _Step, body: ActionIn) -> None:
    close(step, "admin_koordinator",
          "Laporan diselesaikan oleh admin koordinator"
          + (f" — {body.note}" if getattr(body, "note", None) else ""))


def close(step: _Step, closed_by: str, summary: str) -> None:
    data = ComplaintClosed(complaint_id=step.id, closed_at=step.at, closed_by=closed_by,
                           opd_code=step.row["opd_code"], hop=step.row["hop"])
    step.emit(data, summary)
    step.changes.update(closed_at=step.at, closed_by=closed_by,
                        closed_event_id=step.events[-1][0].id)


async def _reopen(step: _Step, body: ReopenIn) -> None:
    who = ROLE_LABELS[step.actor.role]
    step.changes.update(closed_at=None, closed_by=None, closed_event_id=None)
    step.emit(ComplaintReopened(complaint_id=step.id, reopened_at=step.at,
                                closed_event_id=step.row["closed_event_id"] or "",
                                opd_code=step.row["opd_code"], hop=step.row["hop"]),
              f"Laporan dibuka kembali (banding) oleh {who}; kembali ke {step.opd_label()}"
              + (f": {body.reason}" if body.reason else ""))


async def _respond(step: _Step, body: RespondIn) -> None:
    row = step.row
    no = await step.repo.insert_response(step.id, row["opd_code"], row["hop"], body.body,
                                         [str(a) for a in body.attachments], step.at)
    step.changes["last_responded_at"] = step.at
    step.emit(ComplaintResponded(complaint_id=step.id, opd_code=row["opd_code"], hop=row["hop"],
                                 response_no=no, responded_at=step.at),
              f"Tindak lanjut dari {step.opd_label()} (tanggapan ke-{no})")


async def _return(step: _Step, body: ReturnIn) -> None:
    row = step.row
    step.changes["return_reason"] = body.reason
    step.emit(ComplaintReturned(complaint_id=step.id, opd_code=row["opd_code"], hop=row["hop"],
                                returned_at=step.at),
              f"Dikembalikan oleh {step.opd_label()} ke admin koordinator: bukan wewenang — "
              f"{body.reason}")


async def _reply(step: _Step, body: ReplyIn) -> None:
    row = step.row
    await step.repo.insert_reply(step.id, row["hop"], body.body,
                                 [str(a) for a in body.attachments], step.at)
    if step.transition.from_state == State.DITUNDA:
        step.resumed("pelapor melengkapi informasi")
        return
    step.changes["last_reply_at"] = step.at
    step.emit(ComplaintReporterReplied(complaint_id=step.id, replied_at=step.at,
                                       opd_code=row["opd_code"], hop=row["hop"]),
              f"Pelapor menanggapi tindak lanjut; kembali ke {step.opd_label()}")


async def _rate(step: _Step, body: RateIn) -> None:
    step.changes.update(rating=body.rating, rated_at=step.at)
    step.emit(ComplaintRated(complaint_id=step.id, rating=body.rating, rated_at=step.at),
              f"Pelapor memberi penilaian {body.rating} dari 5")


_APPLY = {
    "verify": _verify, "defer": _defer, "resume": _resume, "archive": _archive,
    "dispose": _dispose, "forward": _forward, "close": _close, "reopen": _reopen,
    "respond": _respond, "return": _return, "reply": _reply, "rate": _rate,
}
assert set(_APPLY) == set(lifecycle.ACTIONS)


async def close_by_system(tx: Tx[IntakeRepository], row: asyncpg.Record, at: datetime,
                          summary: str) -> CloudEvent:
    """The reply window elapsed: close with ``closed_by: system`` (caller holds the row lock and
    has checked the state)."""
    transition = lifecycle.decide(row["status"], "system", "close")
    step = _Step(tx.repo, row, transition, Actor("system"), at)
    close(step, "system", summary)
    step.changes.update(status=transition.to_state.value, last_transition_at=at)
    await tx.repo.update_complaint(row["id"], **step.changes)
    event, summary = step.events[0]
    await tx.repo.add_timeline(row["id"], event, summary)
    tx.stage(event)
    return event
