"""Imported history (a LAPOR! row's known outcome) replayed as the lifecycle's own steps.

An importer-bound key (source ``lapor``) may send ``history`` with a submission. intake then
takes, in the submission's transaction, the steps that got the complaint to that state —
verify, defer, dispose, return, respond, reply, close/archive/forward, rate — each at its
recorded date, through the same ``Complaint`` aggregate a person's action goes through. So
imported rows look exactly like sp4n's own to every reader (status columns, responses,
timeline, events), and nothing a reader counts needs a special case.

Invariants:
- the submission and its history commit together (one transaction): no reader, and no
  consumer of ``complaint.submitted``, ever sees the complaint half-replayed;
- a known OPD only (the catalogue's, as for a person's disposition): an unknown code is 422;
- dates never go backwards (``HistoryIn`` validates; the aggregate checks again).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.intake import lifecycle
from services.intake.catalog import Catalog
from services.intake.domain.complaint import Actor, Complaint, Facts, InvalidField, Outcome, OutOfScope
from services.intake.domain.model import ComplaintRow
from services.intake.lifecycle import State
from services.intake.repository import IntakeRepository
from services.intake.schemas import (
    ActionIn,
    ArchiveIn,
    CloseIn,
    DeferIn,
    DisposeIn,
    ForwardIn,
    HistoryIn,
    RateIn,
    ReplyIn,
    RespondIn,
    ReturnIn,
    VerifyIn,
)
from shared.uow import Tx

IMPORT_SOURCE = "lapor"  # the only source whose keys may send history
ADMIN = Actor("admin_koordinator")
RESPONSE_TEXT = "Tindak lanjut tercatat di SP4N-LAPOR! (riwayat impor)."
REPLY_TEXT = "Tanggapan pelapor tercatat di SP4N-LAPOR! (riwayat impor)."
RETURN_TEXT = "Dikembalikan (bukan wewenang) menurut SP4N-LAPOR! (riwayat impor)."


class HistoryNotAllowed(Exception):
    """History from a key or path that is not an importer's (→ 403)."""


@dataclass(frozen=True)
class HistoryStep:
    action: str  # a lifecycle action, or "close_by_system"
    actor: Actor
    body: ActionIn


def plan(h: HistoryIn, source: str) -> list[HistoryStep]:
    """The lifecycle steps, in order, that lead to ``h.state`` (pure)."""
    portal = Actor("portal", source=source)
    steps: list[HistoryStep] = []

    def add(action: str, actor: Actor, body: ActionIn) -> None:
        steps.append(HistoryStep(action, actor, body))

    if h.verified_at is not None:
        add("verify", ADMIN, VerifyIn(occurred_at=h.verified_at))
    if h.state == "DITUNDA":
        add("defer", ADMIN, DeferIn(occurred_at=h.deferred_at, reason=h.lapor.alasan_tunda))
        return steps
    if h.state == "DIARSIPKAN":
        add("archive", ADMIN, ArchiveIn(occurred_at=h.closed_at, reason=(
            h.archive_reason if h.archive_reason != "duplikat" else "lainnya"), note=h.note))
        return steps
    if h.state == "DILIMPAHKAN":
        add("forward", ADMIN, ForwardIn(occurred_at=h.closed_at, instansi=h.forwarded_to or ""))
        return steps
    if h.opd_code is None:  # DITERIMA / TERVERIFIKASI: nothing more happened
        return steps
    opd = Actor("opd", opd_code=h.opd_code)
    add("dispose", ADMIN, DisposeIn(occurred_at=h.disposed_at, opd_code=h.opd_code))
    if h.state == "DIKEMBALIKAN":
        add("return", opd, ReturnIn(occurred_at=h.returned_at, reason=h.note or RETURN_TEXT))
        return steps
    if h.responded_at is None:
        return steps
    add("respond", opd, RespondIn(occurred_at=h.responded_at, body=RESPONSE_TEXT))
    if h.reporter_replied_at is not None:
        add("reply", portal, ReplyIn(occurred_at=h.reporter_replied_at, body=REPLY_TEXT))
    if h.rating is not None:
        add("rate", portal, RateIn(occurred_at=h.reporter_replied_at or h.responded_at, rating=h.rating))
    if h.state == "SELESAI":
        by_system = h.closed_by == "system" and h.reporter_replied_at is None
        add("close_by_system" if by_system else "close", ADMIN,
            CloseIn(occurred_at=h.closed_at, note=None if by_system else "ditutup di SP4N-LAPOR!"))
    return steps


async def replay_history(tx: Tx[IntakeRepository], row: ComplaintRow, h: HistoryIn,
                         catalog: Catalog, hop_cap: int, *, skip_taken: bool = False) -> ComplaintRow:
    """Take ``plan(h)``'s steps on the just-accepted complaint, in the caller's transaction;
    returns the complaint as it ends. Raises ``InvalidField`` (422) for an unknown OPD.

    ``skip_taken``: the complaint came in with an earlier export; a step its state no longer
    allows, or dated before its latest transition, was taken then (or is overtaken) and is
    skipped, so replaying the same or an older history changes nothing."""
    if h.opd_code is not None and catalog.opd(h.opd_code) is None:
        raise InvalidField("history.opd_code", f"unknown OPD '{h.opd_code}'; see GET /v1/opds on routing")
    for step in plan(h, row.source):
        if skip_taken and not _still_to_take(row, step, hop_cap):
            continue
        at = step.body.occurred_at or row.received_at
        outcome: Outcome
        if step.action == "close_by_system":
            outcome = Complaint(row).close_by_system(
                at, "Laporan ditutup otomatis oleh sistem SP4N-LAPOR! (riwayat impor)")
        else:
            begun = Complaint(row).begin(step.action, step.actor, at=at, hop_cap=hop_cap)
            outcome = begun.apply(step.body, await _facts(tx.repo, row, step, catalog, at))
        await tx.repo.save(outcome)
        tx.stage(*outcome.events)
        row = outcome.after
    return row


def _still_to_take(row: ComplaintRow, step: HistoryStep, hop_cap: int) -> bool:
    at = step.body.occurred_at or row.received_at
    if at < (row.last_transition_at or row.received_at) or (step.action == "rate" and row.rating):
        return False
    if step.action == "close_by_system":
        return row.status == State.DITINDAKLANJUTI
    try:
        Complaint(row).begin(step.action, step.actor, at=at, hop_cap=hop_cap)
    except (lifecycle.LifecycleError, InvalidField, OutOfScope):
        return False
    return True


async def advance_history(tx: Tx[IntakeRepository], complaint_id: uuid.UUID, h: HistoryIn,
                          catalog: Catalog, hop_cap: int) -> State:
    """A later export of an imported row: take the steps that happened since (a row open in
    November's export and closed in December's). Returns the state it ends in."""
    row = await tx.repo.lock(complaint_id)
    if row is None:  # pragma: no cover - found a moment ago; complaints are never deleted
        raise InvalidField("external_id", "complaint vanished")
    return (await replay_history(tx, row, h, catalog, hop_cap, skip_taken=True)).status


async def _facts(repo: IntakeRepository, row: ComplaintRow, step: HistoryStep, catalog: Catalog,
                 at: datetime) -> Facts:
    body = step.body
    if isinstance(body, DisposeIn):
        return Facts(opd=catalog.opd(body.opd_code))
    if isinstance(body, RespondIn):
        return Facts(response_no=await repo.insert_response(row.id, row.opd_code, row.hop, body.body, [], at))
    if isinstance(body, ReplyIn):
        await repo.insert_reply(row.id, row.hop, body.body, [], at)
    return Facts()
