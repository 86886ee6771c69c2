"""intake's read side: which complaints a key may see, and what of them. Each query takes
the unit of work (``uow.read()``: no transaction) and returns a view model (``schemas``).

Rules (the write side shares ``domain.complaint.check_scope``):
- A portal or importer key (bound to one source) does not learn that another source's
  complaint exists: 404, not 403. An OPD key sees what is currently disposed to its OPD
  (403 otherwise).
- The reporter's identity goes only to keys with the scope ``identity:read`` (by default the
  people who handle the complaint: admin koordinator, OPD), never for anonim reports, the
  NIK only with ``identity:nik`` (the admin koordinator's); portals already hold it. An OPD
  sees it only until ``opd_contact_days`` after SELESAI (a reopen shows it again). It is
  stored sealed (``reporter_data``) and opened only for such an answer; an erased reporter's
  data key is gone, and the answer says so (``reporter_withheld``). Every answer that
  carries identity is first recorded in the audit trail (``read_identity``).
- Routing's suggestion and the duplicate candidates are the admin koordinator's.
- Anonim and rahasia are read from the complaint's columns on every path (this module, the
  listing, Open311), so the admin koordinator's correction applies to the next read.
- Clocks are what sla reported; intake adds only what needs no working-day calendar (the
  label, the local deadline, calendar days left). Working days late are sla's count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from services.intake import scopes
from services.intake.audit import READ_IDENTITY, AuditEntry, Origin
from services.intake.crypto import Keyring, Undecryptable
from services.intake.domain.complaint import (
    Actor,
    ComplaintNotFound,
    OutOfScope,
    actions_for,
    check_scope,
    local_time,
)
from services.intake.domain.model import ClockRow, ComplaintRow, ReporterRow, SealedReporter
from services.intake.lifecycle import OPD_SCOPE_STATES, SOURCE_BOUND_ROLES, State
from services.intake.reporter_data import open_reporter
from services.intake.schemas import (
    ClockOut,
    ComplaintDetail,
    ComplaintPage,
    ComplaintSummary,
    DuplicateCandidateOut,
    ReplyOut,
    ReporterOut,
    ResponseOut,
    SuggestionOut,
    TimelineEntry,
)
from services.intake.usecases import IntakeUnitOfWork
from shared.events import CLOCK_LABELS

log = logging.getLogger(__name__)


def hidden_from(actor: Actor, c: ComplaintRow) -> bool:
    """A source-bound key is told another source's complaint does not exist (a key without
    a source, which the database refuses, sees none)."""
    return actor.role in SOURCE_BOUND_ROLES and (actor.source is None or actor.source != c.source)


def may_see_reporter(actor: Actor, c: ComplaintRow) -> bool:
    return actor.may(scopes.IDENTITY) and not c.anonymous


def opd_contact_expired(c: ComplaintRow, days: int, now: datetime) -> bool:
    """Whether an OPD's access to the reporter has ended: ``days`` after SELESAI."""
    return (c.status == State.SELESAI and c.closed_at is not None
            and now >= c.closed_at + timedelta(days=days))


Withheld = Literal["erased", "access_expired", "undecryptable"]


def reporter_answer(actor: Actor, c: ComplaintRow, stored: SealedReporter | ReporterRow | None,
                    keyring: Keyring, *, opd_contact_days: int, now: datetime
                    ) -> tuple[ReporterOut | None, Withheld | None]:
    """The reporter as ``actor`` sees them on ``c``, or why they are withheld (None: nothing
    to say — the actor may not see a reporter at all, or there is none)."""
    if not may_see_reporter(actor, c) or stored is None:
        return None, None
    if actor.role == "opd" and opd_contact_expired(c, opd_contact_days, now):
        return None, "access_expired"
    if isinstance(stored, ReporterRow):  # from before encryption, not yet encrypted
        return reporter_view(actor, stored), None
    if stored.erased:
        return None, "erased"
    try:
        plain = open_reporter(keyring, c.id, stored)
    except Undecryptable as exc:
        # Never the identity nor the key: which complaint and which master key id.
        log.error("reporter of complaint %s does not decrypt (master key id %s): %s",
                  c.id, stored.key_id, exc)
        return None, "undecryptable"
    return reporter_view(actor, plain), None


def reporter_view(actor: Actor, r: ReporterRow | None) -> ReporterOut | None:
    """The reporter as ``actor`` (who ``may_see_reporter``) sees them; None: nothing to show."""
    if r is None or not (r.name or r.phone or r.email):
        return None
    return ReporterOut(name=r.name, phone=r.phone, email=r.email,
                       nik=r.nik if actor.may(scopes.NIK) else None)


async def complaint_detail(uow: IntakeUnitOfWork, key: str, actor: Actor, *, hop_cap: int,
                           tz: ZoneInfo, keyring: Keyring, opd_contact_days: int,
                           now: datetime | None = None,
                           origin: Origin | None = None) -> ComplaintDetail:
    """A complaint by id or tracking id, as ``actor`` may see it (clocks read at ``now``, in
    ``tz``; the reporter opened with ``keyring``). Raises ``ComplaintNotFound`` (404) or
    ``OutOfScope`` (403). When the answer carries the reporter's identity, a
    ``read_identity`` audit row (from ``origin``) is written first."""
    now = now or datetime.now(UTC)
    async with uow.read() as repo:
        c = await repo.find(key)
        if c is None or hidden_from(actor, c):
            raise ComplaintNotFound(key)
        check_scope(actor, c)
        clocks = await repo.clocks_of(c.id)
        timeline = await repo.timeline_of(c.id)
        responses = await repo.responses_of(c.id)
        replies = await repo.replies_of(c.id)
        reporter, withheld = reporter_answer(
            actor, c, await repo.reporter_of(c.id) if may_see_reporter(actor, c) else None,
            keyring, opd_contact_days=opd_contact_days, now=now)
        if reporter is not None:
            await repo.record_audit(AuditEntry.of(actor, READ_IDENTITY, c.id, origin))
        admin = actor.role == "admin_koordinator"
        candidates = []
        if admin and c.duplicate_candidates:
            known = {b.id: b for b in await repo.briefs(list(c.duplicate_candidates))}
            candidates = [DuplicateCandidateOut(
                complaint_id=d, tracking_id=known[d].tracking_id if d in known else None,
                status=known[d].status.value if d in known else None)
                for d in c.duplicate_candidates]
    return ComplaintDetail(
        complaint_id=c.id, tracking_id=c.tracking_id, source=c.source,
        external_id=c.external_id, status=c.status.value, needs_triage=c.needs_triage,
        classification=c.classification, berkadar_pengawasan=c.berkadar_pengawasan,
        category=c.category, title=c.title,
        kecamatan=c.kecamatan, desa=c.desa, anonymous=c.anonymous,
        confidential=c.confidential, received_at=c.received_at,
        accepted_at=c.accepted_at, opd_code=c.opd_code, opd_name=c.opd_name, hop=c.hop,
        clocks=[clock_view(k, tz, now) for k in clocks],
        timeline=[TimelineEntry(event=t.event_type, at=t.occurred_at, summary=t.summary,
                                by_role=t.actor_role,
                                by_name=t.actor_name if actor.role not in SOURCE_BOUND_ROLES else None)
                  for t in timeline],
        original_title=c.original_title,
        allowed_actions=actions_for(actor, c, hop_cap),
        suggestion=SuggestionOut(
            opd_code=c.suggested_opd_code, opd_name=c.suggested_opd_name,
            rule_id=c.suggested_rule_id, suggested_at=c.suggested_at)
        if admin and c.suggested_opd_code else None,
        duplicate_candidates=candidates,
        responses=[ResponseOut(response_no=r.response_no, opd_code=r.opd_code, hop=r.hop,
                               body=r.body, attachments=r.attachments, at=r.created_at,
                               final=r.final)
                   for r in responses],
        replies=[ReplyOut(hop=r.hop, body=r.body, attachments=r.attachments, at=r.created_at)
                 for r in replies],
        rating=c.rating, archive_reason=c.archive_reason, archived_by=c.archived_by,
        duplicate_of=c.duplicate_of, forwarded_to=c.forwarded_to,
        return_reason=c.return_reason, closed_by=c.closed_by,
        closed_at=c.closed_at, reporter=reporter, reporter_withheld=withheld,
    )


@dataclass(frozen=True)
class ListScope:
    """Which complaints a key may list."""

    opd_code: str | None = None
    source: str | None = None
    states: frozenset[State] | None = None


def list_scope(actor: Actor, opd: str | None) -> ListScope:
    """All (admin koordinator), those currently disposed to the key's OPD (opd), or the key's
    portal source (portal). Raises ``OutOfScope`` for an OPD key asking for another OPD."""
    if actor.role == "opd":
        if opd is not None and opd != actor.opd_code:
            raise OutOfScope(f"kunci API ini hanya untuk OPD '{actor.opd_code}'", field="opd")
        return ListScope(opd_code=actor.opd_code, states=OPD_SCOPE_STATES)
    if actor.role in SOURCE_BOUND_ROLES:
        if actor.source is None:  # the database refuses such a key; never "any source"
            raise OutOfScope("kunci API ini tidak terikat pada sumber mana pun", field="source")
        return ListScope(opd_code=opd, source=actor.source)
    return ListScope(opd_code=opd)


async def complaint_page(uow: IntakeUnitOfWork, actor: Actor, *, status: State | None,
                         needs_triage: bool | None, opd: str | None, limit: int,
                         offset: int) -> ComplaintPage:
    """The complaints ``actor`` may see, newest first."""
    scope = list_scope(actor, opd)
    async with uow.read() as repo:
        total, rows = await repo.list_complaints(
            status=status, needs_triage=needs_triage, opd_code=scope.opd_code, source=scope.source,
            states=scope.states, limit=limit, offset=offset)
    admin = actor.role == "admin_koordinator"
    items = [ComplaintSummary(
        complaint_id=r.id, tracking_id=r.tracking_id, source=r.source, status=r.status.value,
        needs_triage=r.needs_triage, classification=r.classification, category=r.category,
        title=r.title, kecamatan=r.kecamatan, desa=r.desa, opd_code=r.opd_code,
        opd_name=r.opd_name, hop=r.hop, received_at=r.received_at, updated_at=r.updated_at,
        suggested_opd_code=r.suggested_opd_code if admin else None) for r in rows]
    return ComplaintPage(items=items, total=total, limit=limit, offset=offset)


def clock_view(c: ClockRow, tz: ZoneInfo, now: datetime) -> ClockOut:
    """A clock as the status answer shows it at ``now``."""
    days_left = None
    if c.deadline is not None and c.state == "berjalan":
        days_left = (c.deadline.astimezone(tz).date() - now.astimezone(tz).date()).days
    return ClockOut(
        clock=c.clock, label=CLOCK_LABELS.get(c.clock, c.clock), hop=c.hop, instance=c.instance,
        opd_code=c.opd_code, started_at=c.started_at, deadline=c.deadline,
        deadline_local=local_time(c.deadline.isoformat(), tz) if c.deadline else None,
        working_days=c.working_days, paused_working_days=c.paused_working_days,
        calendar_days_left=days_left, state=c.state, breached=c.breached, warned=c.warned,
        stopped_at=c.stopped_at, calendar_version=c.calendar_version,
        policy_version=c.policy_version, beyond_calendar_coverage=c.beyond_calendar_coverage,
        escalation_level=c.escalation_level, escalated_to=c.escalated_to,
        working_days_late=c.working_days_late)
