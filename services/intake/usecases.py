"""intake's use cases. Each takes a unit of work and its collaborators as arguments, runs
in one unit of work, and knows no broker, pool or HTTP: the domain (``domain``) decides,
the repository persists."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from services.intake import lifecycle, scopes
from services.intake.audit import AuditEntry, Origin
from services.intake.catalog import Catalog, load_catalog
from services.intake.crypto import Keyring, keyring_from
from services.intake.domain.complaint import (
    SOURCE,
    Actor,
    Complaint,
    ComplaintNotFound,
    Facts,
    Outcome,
    OutOfScope,
    Step,
    actions_for,
    variant_of,
)
from services.intake.domain.effects import MarkRouted, decide, routed_ignored
from services.intake.domain.model import NewComplaint, ReporterRow
from services.intake.history import IMPORT_SOURCE, HistoryNotAllowed, advance_history, replay_history
from services.intake.idempotency import conflicting_fields
from services.intake.identity import fingerprint, new_tracking_id, reporter_ref
from services.intake.reporter_data import seal_reporter
from services.intake.repository import IntakeRepository
from services.intake.schemas import (
    ActionIn,
    ArchiveIn,
    ComplaintIn,
    CorrectionsIn,
    DisposeIn,
    ReplyIn,
    RespondIn,
)
from shared.events import CloudEvent, ComplaintSubmitted, Location, make_event
from shared.settings import IntakeSettings, Settings
from shared.uow import Tx


class IntakeUnitOfWork(Protocol):
    """``shared.uow.PgUnitOfWork`` on ``IntakeRepository`` (or the in-memory fake)."""

    def __call__(self, event: CloudEvent | None = None, *, single_statement: bool = False
                 ) -> AbstractAsyncContextManager[Tx[IntakeRepository]]: ...

    def read(self) -> AbstractAsyncContextManager[IntakeRepository]: ...


@dataclass(frozen=True)
class IntakeConfig:
    region_code: str
    tz: ZoneInfo
    reporter_ref_key: str
    hop_cap: int  # ``settings.hop_cap``
    catalog: Catalog = field(default_factory=load_catalog)
    # Seals reporters' identities (``settings.intake.master_key``; the default: the dev key).
    keyring: Keyring = field(default_factory=lambda: keyring_from(IntakeSettings()), repr=False)
    opd_contact_days: int = IntakeSettings().opd_contact_days_after_close

    @classmethod
    def from_settings(cls, settings: Settings) -> IntakeConfig:
        return cls(region_code=settings.region_code, tz=settings.tz,
                   reporter_ref_key=settings.intake.reporter_ref_key, hop_cap=settings.hop_cap,
                   keyring=keyring_from(settings.intake),
                   opd_contact_days=settings.intake.opd_contact_days_after_close)


# --- submission -------------------------------------------------------------------------

@dataclass(frozen=True)
class Accepted:
    complaint_id: uuid.UUID
    tracking_id: str
    status: str
    created: bool  # False: an idempotent retry of an already accepted complaint


class SubmissionConflict(Exception):
    def __init__(self, complaint_id: uuid.UUID, tracking_id: str, fields: list[str]) -> None:
        super().__init__(f"external_id already used for different content: {', '.join(fields)}")
        self.complaint_id = complaint_id
        self.tracking_id = tracking_id
        self.fields = fields


# The audit trail's name for replaying an importer's history (the steps LAPOR! took).
IMPORT_HISTORY = "import_history"


async def submit_complaint(uow: IntakeUnitOfWork, sub: ComplaintIn, cfg: IntakeConfig,
                           now: datetime, *, history_allowed: bool = False,
                           actor: Actor | None = None, origin: Origin | None = None) -> Accepted:
    """Accept a complaint exactly once per (source, external_id).

    The complaint, its reporter and its ``complaint.submitted`` event are written together,
    in one statement (``single_statement``): no surrounding transaction is needed. With
    imported ``history`` (``history_allowed``: an importer's key) the submission and the
    replayed steps share one transaction instead (``services.intake.history``), and the
    replay is recorded in the audit trail as ``import_history`` by ``actor`` (the importer's
    key) from ``origin``.
    """
    if sub.history is not None and not history_allowed:
        raise HistoryNotAllowed("history is accepted only from an importer key (scope "
                                f"'{scopes.HISTORY}', e.g. bound to source '{IMPORT_SOURCE}')")
    canonical = sub.canonical()
    r = sub.reporter
    reporter = ReporterRow(**r.model_dump()) if r else ReporterRow()
    reporter_fp = fingerprint(r.model_dump() if r else None, cfg.reporter_ref_key)
    complaint_id = uuid.uuid4()
    ref = reporter_ref(cfg.reporter_ref_key, sub.anonymous,
                       reporter.nik, reporter.phone, reporter.email, reporter.name)
    sealed = seal_reporter(cfg.keyring, complaint_id, reporter)  # only ciphertexts are stored
    for _ in range(3):
        tracking_id = new_tracking_id(cfg.region_code, now, cfg.tz)
        event = make_event(SOURCE, ComplaintSubmitted(
            complaint_id=complaint_id, tracking_id=tracking_id, source=sub.source,
            received_at=sub.received_at, accepted_at=now, classification=sub.classification,
            berkadar_pengawasan=sub.berkadar_pengawasan, category=sub.category,
            location=Location(kecamatan=sub.location.kecamatan, desa=sub.location.desa),
            anonymous=sub.anonymous, confidential=sub.confidential, reporter_ref=ref,
            historical=sub.history is not None and sub.history.historical,
        ), time=now)
        new = NewComplaint(
            id=complaint_id, tracking_id=tracking_id, source=sub.source,
            external_id=sub.external_id, fingerprint=fingerprint(canonical),
            submission=canonical, classification=sub.classification, category=sub.category,
            title=sub.title, kecamatan=sub.location.kecamatan, desa=sub.location.desa,
            anonymous=sub.anonymous, confidential=sub.confidential, reporter_ref=ref,
            received_at=sub.received_at, accepted_at=now, status=lifecycle.INITIAL_STATE,
            reporter=sealed, reporter_fp=reporter_fp,
            berkadar_pengawasan=sub.berkadar_pengawasan)
        if sub.history is None:
            async with uow(single_statement=True) as tx:
                tx.stage(event)
                created = await tx.repo.accept(new, f"Laporan diterima dari {sub.source}")
        else:
            async with uow() as tx:
                tx.stage(event)
                created = await tx.repo.accept(new, f"Laporan diterima dari {sub.source} (riwayat impor)")
                row = await tx.repo.lock(complaint_id) if created else None
                if row is not None:
                    new = replace(new, status=(await replay_history(
                        tx, row, sub.history, cfg.catalog, cfg.hop_cap)).status)
                    if actor is not None:
                        await tx.repo.record_audit(AuditEntry.of(actor, IMPORT_HISTORY, complaint_id, origin))
        if created:
            return Accepted(complaint_id, tracking_id, new.status.value, created=True)
        async with uow(single_statement=True) as tx:
            existing = await tx.repo.find_by_source(sub.source, sub.external_id)
        if existing is not None:
            diffs = conflicting_fields(existing.submission, existing.reporter_fp,
                                       canonical, reporter_fp)
            if diffs and sub.history is not None and all(d.startswith("history") for d in diffs):
                # A later export of the same row: the steps taken since are replayed.
                async with uow() as tx:
                    status = await advance_history(tx, existing.id, sub.history, cfg.catalog, cfg.hop_cap)
                    if actor is not None:
                        await tx.repo.record_audit(AuditEntry.of(actor, IMPORT_HISTORY, existing.id, origin))
                return Accepted(existing.id, existing.tracking_id, status.value, created=False)
            if diffs:
                raise SubmissionConflict(existing.id, existing.tracking_id, diffs)
            return Accepted(existing.id, existing.tracking_id, existing.status.value, created=False)
        # Not a retry: the random tracking id clashed; draw another.
    # 30 random bits a day make three clashes in a row unheard of
    raise RuntimeError("could not allocate a unique tracking id")  # pragma: no cover


# --- lifecycle actions ------------------------------------------------------------------

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


def check_may_act(actor: Actor, action: str, body: ActionIn) -> None:
    """The key's own permission for ``action`` with ``body``, before any complaint is read:
    its role (``lifecycle``), its scope for the action, and — when the body dates the action
    (``occurred_at``) — the backfill scope, so nobody records a late response as on time."""
    if not lifecycle.role_may(actor.role, action):
        raise lifecycle.RoleMayNot(actor.role, action)
    needed = scopes.action_scope(action)
    if not actor.may(needed):
        raise OutOfScope(f"kunci API ini tidak memiliki izin '{needed}'")
    if body.occurred_at is not None and not actor.may(scopes.BACKDATE):
        raise OutOfScope("kunci API ini tidak boleh menentukan waktu aksi (occurred_at); hanya "
                         "kunci importer dan admin koordinator yang boleh", field="occurred_at")


async def perform_action(uow: IntakeUnitOfWork, key: str, action: str, body: ActionIn,
                         actor: Actor, cfg: IntakeConfig, *, now: datetime,
                         origin: Origin | None = None) -> ActionResult:
    """Apply one lifecycle action, in one unit of work.

    The complaint row is locked first (``FOR UPDATE``): two concurrent actions on one
    complaint serialise on it, and the second sees the first's state. The state change, its
    timeline entries (with the acting key's name and role), its audit-trail row (``origin``:
    the request) and its events commit together.

    Raises ``ComplaintNotFound`` (404), ``OutOfScope`` / ``lifecycle.RoleMayNot`` (403),
    ``lifecycle.InvalidTransition`` (409), ``InvalidField`` (422).
    """
    check_may_act(actor, action, body)
    async with uow() as tx:
        state = await tx.repo.find_for_update(key)
        if state is None:
            raise ComplaintNotFound(key)
        step = Complaint(state).begin(action, actor, at=body.occurred_at or now, hop_cap=cfg.hop_cap,
                                      variant=variant_of(body))
        outcome = step.apply(body, await _facts(tx.repo, step, body, cfg.catalog))
        await tx.repo.save(outcome)
        await tx.repo.record_audit(AuditEntry.of(actor, action, state.id, origin))
        tx.stage(*outcome.events)
    after = outcome.after
    return ActionResult(
        complaint_id=after.id, tracking_id=after.tracking_id, action=action,
        previous_status=state.status.value, status=after.status.value, hop=after.hop,
        opd_code=after.opd_code, event_id=outcome.events[-1].id,
        allowed_actions=actions_for(actor, after, cfg.hop_cap))


async def _facts(repo: IntakeRepository, step: Step, body: ActionIn, catalog: Catalog) -> Facts:
    """What the action needs from outside the complaint. The texts a person wrote are
    stored here, under the row lock (a response's number goes into its event)."""
    row, at = step.row, step.at
    if isinstance(body, ArchiveIn) and body.reason == "duplikat":
        return Facts(original=await repo.find(body.duplicate_of or ""))
    if isinstance(body, DisposeIn):
        return Facts(opd=catalog.opd(body.opd_code))
    if isinstance(body, CorrectionsIn) and body.category is not None:
        return Facts(category=catalog.service(body.category))
    if isinstance(body, RespondIn):
        return Facts(response_no=await repo.insert_response(
            row.id, row.opd_code, row.hop, body.body, [str(a) for a in body.attachments], at,
            final=body.final))
    if isinstance(body, ReplyIn):
        await repo.insert_reply(row.id, row.hop, body.body, [str(a) for a in body.attachments], at)
    return Facts()


# --- downstream events ------------------------------------------------------------------

class UnknownComplaint(Exception):
    """An event names a complaint intake never accepted."""


async def record_event(uow: IntakeUnitOfWork, event: CloudEvent, tz: ZoneInfo,
                       now: datetime | None = None) -> bool:
    """Apply a downstream event to the complaint's status, clocks and timeline.

    Returns False for a redelivery (no effect). Events that no longer fit the complaint's
    state (reordered, or overtaken by a person's action) are noted on the timeline and
    otherwise ignored.

    The complaint row is locked first (lifecycle actions and these events serialise per
    complaint), then the inbox decides; every event but those the system acts on
    (``_SYSTEM_DECISIONS``: the reply window, an expired deferral) does that, its effect and
    its timeline entry in one statement (``IntakeRepository.apply_event``).
    """
    complaint_id = uuid.UUID(event.subject or event.data["complaint_id"])
    system_decision = _SYSTEM_DECISIONS.get(event.event_name) if event.source != SOURCE else None
    if system_decision is not None:
        return await _decide_by_system(uow, complaint_id, event, system_decision, tz,
                                       now or datetime.now(UTC))
    decision = decide(event, tz)
    async with uow(event) as tx:
        applied = await tx.repo.apply_event(complaint_id, event, decision)
        if applied is None:
            raise UnknownComplaint(f"complaint {complaint_id} is not known to intake")
        if not applied.first or event.source == SOURCE:
            return False
        if isinstance(decision.effect, MarkRouted) and not applied.applied:
            await tx.repo.add_timeline(complaint_id, event,
                                       routed_ignored(decision.effect, applied.status, applied.hop))
    return True


# sla's events on which the system itself takes a lifecycle action, iff the complaint is
# still where the event assumes: the reply window closes it, an expired deferral archives it.
SystemDecision = Callable[[Complaint, dict[str, Any], ZoneInfo, datetime], tuple[Outcome, str]]
_SYSTEM_DECISIONS: dict[str, SystemDecision] = {
    "sla.reply_window_elapsed": Complaint.reply_window_elapsed,
    "sla.deferral_expired": Complaint.deferral_expired,
}


async def _decide_by_system(uow: IntakeUnitOfWork, complaint_id: uuid.UUID, event: CloudEvent,
                            system_decision: SystemDecision, tz: ZoneInfo, now: datetime) -> bool:
    async with uow(event) as tx:
        # Lock the row: lifecycle actions and these events serialise per complaint.
        state = await tx.repo.lock(complaint_id)
        if state is None:
            raise UnknownComplaint(f"complaint {complaint_id} is not known to intake")
        if not await tx.claim():
            return False
        outcome, summary = system_decision(Complaint(state), event.data, tz, now)
        await tx.repo.save(outcome)
        tx.stage(*outcome.events)
        await tx.repo.add_timeline(complaint_id, event, summary)
    return True
