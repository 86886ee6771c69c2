"""In-memory intake repository for use-case unit tests; it keeps the promises
``services.intake.repository.IntakeRepository`` keeps (and the SQL there implements)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.intake.audit import AuditEntry, AuditRow
from services.intake.domain.complaint import Actor, Outcome
from services.intake.domain.effects import (
    AddDuplicateCandidates,
    ChangeDeadline,
    EscalateClock,
    EventDecision,
    FlagClock,
    MarkNeedsTriage,
    MarkRouted,
    SetSuggestion,
    StartClock,
)
from services.intake.domain.model import (
    ClockRow,
    ComplaintBrief,
    ComplaintListRow,
    ComplaintRow,
    EventApplied,
    NewComplaint,
    ReplyRow,
    ReporterRow,
    ResponseRow,
    StoredSubmission,
    TimelineRow,
)
from services.intake.lifecycle import State
from shared.events import CloudEvent
from tests.unit.fakes import FakeTx, FakeUnitOfWork

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def complaint(**overrides: Any) -> ComplaintRow:
    """A stored complaint (DITERIMA, never disposed) with ``overrides``."""
    cid = overrides.pop("id", None) or uuid.uuid4()
    base: dict[str, Any] = dict(
        id=cid, tracking_id=f"SKD-261102-{cid.hex[:6].upper()}", source="portal-sekadau",
        external_id=cid.hex, fingerprint="f", submission={}, classification="pengaduan",
        category="kesehatan", title="Puskesmas tutup", kecamatan="Sekadau Hilir", desa="Mungguk",
        anonymous=False, confidential=False, reporter_ref="rep_x", received_at=T0,
        accepted_at=T0, status=State.DITERIMA, needs_triage=False, opd_code=None, opd_name=None,
        hop=0, updated_at=T0, original_title=None, resume_state=None, deferred_at=None,
        last_transition_at=None, archive_reason=None, duplicate_of=None, forwarded_to=None,
        return_reason=None, suggested_opd_code=None, suggested_opd_name=None,
        suggested_rule_id=None, suggested_at=None, duplicate_candidates=(), rating=None,
        rated_at=None, last_responded_at=None, last_reply_at=None, closed_at=None, closed_by=None,
        closed_event_id=None)
    base.update(overrides)
    return ComplaintRow(**base)


def disposed(**overrides: Any) -> ComplaintRow:
    """Disposed to dinkes (hop 1) an hour after acceptance."""
    return complaint(**{"status": State.TERDISPOSISI, "opd_code": "dinkes",
                        "opd_name": "Dinas Kesehatan", "hop": 1,
                        "last_transition_at": T0 + timedelta(hours=1), **overrides})


class FakeIntakeRepository:
    def __init__(self, *complaints: ComplaintRow) -> None:
        self.tx: FakeTx[FakeIntakeRepository] | None = None
        self.uow: FakeIntakeUnitOfWork | None = None
        self.complaints = {c.id: c for c in complaints}
        self.reporters: dict[uuid.UUID, tuple[ReporterRow, str]] = {}
        self.timeline: dict[str, tuple[uuid.UUID, str, str]] = {}  # event id -> (complaint, type, summary)
        self.responses: list[tuple[uuid.UUID, ResponseRow]] = []
        self.replies: list[tuple[uuid.UUID, ReplyRow]] = []
        self.clocks: dict[tuple[uuid.UUID, str, int, int], ClockRow] = {}
        self.deadline_as_of: dict[tuple[uuid.UUID, str, int, int], datetime] = {}
        self.audit: list[AuditEntry] = []
        self.timeline_actors: dict[str, tuple[str, str | None]] = {}  # event id -> (role, name)

    # --- writes -------------------------------------------------------------------------
    async def record_audit(self, entry: AuditEntry) -> None:
        self.audit.append(entry)

    async def audit_rows(self, *, complaint_id: uuid.UUID | None, key_id: int | None,
                         since: datetime | None, after: int, limit: int) -> list[AuditRow]:
        rows = [AuditRow(**vars(e), id=i + 1, at=T0) for i, e in enumerate(self.audit)]
        return [r for r in rows if r.id > after
                and (complaint_id is None or r.complaint_id == complaint_id)
                and (key_id is None or r.key_id == key_id)][:limit]

    async def accept(self, c: NewComplaint, summary: str) -> bool:
        assert self.tx is not None
        [event], self.tx.staged[:] = list(self.tx.staged), []
        taken = any(x.tracking_id == c.tracking_id or (x.source, x.external_id) == (c.source, c.external_id)
                    for x in self.complaints.values())
        if taken:
            return False
        self.complaints[c.id] = complaint(
            id=c.id, tracking_id=c.tracking_id, source=c.source, external_id=c.external_id,
            fingerprint=c.fingerprint, submission=c.submission, classification=c.classification,
            category=c.category, title=c.title, kecamatan=c.kecamatan, desa=c.desa,
            anonymous=c.anonymous, confidential=c.confidential, reporter_ref=c.reporter_ref,
            received_at=c.received_at, accepted_at=c.accepted_at, status=c.status,
            berkadar_pengawasan=c.berkadar_pengawasan)
        self.reporters[c.id] = (c.reporter, c.reporter_fp)
        self.timeline[event.id] = (c.id, event.event_name, summary)
        self.tx.staged.append(event)  # written with the complaint (the fake commits it)
        return True

    async def save(self, outcome: Outcome) -> None:
        if outcome.changes:
            self.complaints[outcome.before.id] = replace(self.complaints[outcome.before.id],
                                                         **outcome.changes)
        for r in outcome.recorded:
            await self.add_timeline(outcome.before.id, r.event, r.summary, outcome.actor)

    async def add_timeline(self, complaint_id: uuid.UUID, event: CloudEvent, summary: str,
                           actor: Actor | None = None) -> None:
        self.timeline.setdefault(event.id, (complaint_id, event.event_name, summary))
        if actor is not None:
            self.timeline_actors.setdefault(event.id, (actor.role, actor.name))

    async def insert_response(self, complaint_id: uuid.UUID, opd_code: str | None, hop: int,
                              body: str, attachments: list[str], at: datetime, final: bool = True) -> int:
        no = 1 + max((r.response_no for c, r in self.responses if c == complaint_id), default=0)
        self.responses.append((complaint_id, ResponseRow(no, opd_code or "", hop, body, attachments, at,
                                                         final)))
        return no

    async def insert_reply(self, complaint_id: uuid.UUID, hop: int, body: str,
                           attachments: list[str], at: datetime) -> None:
        self.replies.append((complaint_id, ReplyRow(hop, body, attachments, at)))

    async def apply_event(self, complaint_id: uuid.UUID, event: CloudEvent,
                          decision: EventDecision) -> EventApplied | None:
        c = self.complaints.get(complaint_id)
        if c is None:
            return None
        assert self.tx is not None
        assert self.uow is not None
        first = event.id not in self.uow.inbox
        self.tx.set_claimed(first)
        applied = first and decision.effect is not None and self._apply(c, decision.effect)
        effect = decision.effect
        if first and decision.summary is not None and (
                effect is None or not effect.conditional or applied):
            await self.add_timeline(complaint_id, event, decision.summary)
        return EventApplied(c.status, c.hop, first, applied)

    def _apply(self, c: ComplaintRow, e: Any) -> bool:
        if isinstance(e, MarkRouted):
            if not (c.hop < e.hop and c.status in e.from_states):
                return False
            c = replace(c, status=e.to_state, needs_triage=False, opd_code=e.opd_code,
                        opd_name=e.opd_name, hop=e.hop, return_reason=None,
                        last_transition_at=max(c.last_transition_at or c.received_at, e.routed_at))
        elif isinstance(e, SetSuggestion):
            c = replace(c, suggested_opd_code=e.opd_code, suggested_opd_name=e.opd_name,
                        suggested_rule_id=e.rule_id, suggested_at=e.suggested_at,
                        needs_triage=c.hop == 0 and c.status in e.triage_states)
        elif isinstance(e, AddDuplicateCandidates):
            ids = tuple(dict.fromkeys(x for x in (*c.duplicate_candidates, *e.candidate_ids) if x != c.id))
            c = replace(c, duplicate_candidates=ids)
        elif isinstance(e, MarkNeedsTriage):
            if c.hop != 0:
                return False
            c = replace(c, needs_triage=True)
        elif isinstance(e, StartClock | FlagClock | ChangeDeadline | EscalateClock):
            self._clock(c.id, e)
            return True
        self.complaints[c.id] = c
        return True

    def _clock(self, cid: uuid.UUID, e: StartClock | FlagClock | ChangeDeadline | EscalateClock) -> None:
        """The clock upserts of ``repository._EFFECT_SQL``, in Python."""
        key = (cid, e.clock, e.hop, e.instance)
        old = self.clocks.get(key) or ClockRow(e.clock, e.hop, e.opd_code, None, None, None, None,
                                               None, None, False, False, instance=e.instance)
        as_of = self.deadline_as_of.get(key)
        if isinstance(e, StartClock):
            new_run = old.started_at is not None and old.started_at != e.started_at
            fresher = new_run or as_of is None or e.as_of >= as_of
            new = replace(old, opd_code=e.opd_code, started_at=e.started_at, working_days=e.working_days)
            if fresher:
                new = replace(new, deadline=e.deadline, calendar_version=e.calendar_version,
                              policy_version=e.policy_version)
            if fresher or old.started_at is None:
                new = replace(new, paused_working_days=e.paused_working_days,
                              beyond_calendar_coverage=e.beyond_calendar_coverage)
            if new_run:
                new = replace(new, stopped_at=None, breached=False, warned=False, cancelled=False,
                              escalation_level=0, escalated_to=None, working_days_late=None)
                self.deadline_as_of[key] = e.as_of
            else:
                self.deadline_as_of[key] = max(as_of or e.as_of, e.as_of)
        elif isinstance(e, ChangeDeadline):
            new = replace(old, opd_code=old.opd_code or e.opd_code)
            if as_of is None or e.as_of >= as_of:
                new = replace(new, deadline=e.new_deadline, calendar_version=e.calendar_version,
                              policy_version=e.policy_version)
            self.deadline_as_of[key] = max(as_of or e.as_of, e.as_of)
        elif isinstance(e, EscalateClock):
            new = replace(old, breached=True, deadline=old.deadline or e.deadline,
                          opd_code=old.opd_code or e.opd_code)
            if e.level > old.escalation_level:
                new = replace(new, escalation_level=e.level, escalated_to=e.target_role,
                              working_days_late=e.working_days_late)
        else:
            new = replace(old, stopped_at=e.stopped_at or old.stopped_at,
                          breached=old.breached or e.breached, warned=old.warned or e.warned,
                          cancelled=old.cancelled or e.cancelled, deadline=old.deadline or e.deadline,
                          opd_code=old.opd_code or e.opd_code)
        self.clocks[key] = new

    # --- reads --------------------------------------------------------------------------
    async def find(self, key: str) -> ComplaintRow | None:
        return next((c for c in self.complaints.values()
                     if str(c.id) == key or c.tracking_id == key.upper()), None)

    find_for_update = find

    async def lock(self, complaint_id: uuid.UUID) -> ComplaintRow | None:
        return self.complaints.get(complaint_id)

    async def find_by_source(self, source: str, external_id: str) -> StoredSubmission | None:
        c = next((c for c in self.complaints.values()
                  if (c.source, c.external_id) == (source, external_id)), None)
        return None if c is None else StoredSubmission(c.id, c.tracking_id, c.status, c.submission,
                                                       self.reporters[c.id][1])

    async def clocks_of(self, complaint_id: uuid.UUID) -> list[ClockRow]:
        return [k for (cid, _, _, _), k in self.clocks.items() if cid == complaint_id]

    async def timeline_of(self, complaint_id: uuid.UUID) -> list[TimelineRow]:
        return [TimelineRow(t, T0, s) for cid, t, s in self.timeline.values() if cid == complaint_id]

    async def responses_of(self, complaint_id: uuid.UUID) -> list[ResponseRow]:
        return [r for cid, r in self.responses if cid == complaint_id]

    async def replies_of(self, complaint_id: uuid.UUID) -> list[ReplyRow]:
        return [r for cid, r in self.replies if cid == complaint_id]

    async def reporter_of(self, complaint_id: uuid.UUID) -> ReporterRow | None:
        found = self.reporters.get(complaint_id)
        return found[0] if found else None

    async def briefs(self, ids: list[uuid.UUID]) -> list[ComplaintBrief]:
        return [ComplaintBrief(c.id, c.tracking_id, c.status)
                for c in self.complaints.values() if c.id in ids]

    async def list_complaints(self, *, status: State | None, needs_triage: bool | None,
                              opd_code: str | None, source: str | None,
                              states: frozenset[State] | None, limit: int, offset: int
                              ) -> tuple[int, list[ComplaintListRow]]:
        rows = [c for c in self.complaints.values()
                if (status is None or c.status == status)
                and (needs_triage is None or c.needs_triage == needs_triage)
                and (opd_code is None or c.opd_code == opd_code)
                and (source is None or c.source == source)
                and (states is None or c.status in states)]
        rows.sort(key=lambda c: (-c.received_at.timestamp(), str(c.id)))
        listed = [ComplaintListRow(
            c.id, c.tracking_id, c.source, c.status, c.needs_triage, c.classification, c.category,
            c.title, c.kecamatan, c.desa, c.opd_code, c.opd_name, c.hop, c.received_at, c.updated_at,
            c.suggested_opd_code) for c in rows]
        return len(rows), listed[offset:offset + limit]


class FakeIntakeUnitOfWork(FakeUnitOfWork[FakeIntakeRepository]):
    """``FakeUnitOfWork`` that hands its transaction to the repository, as ``PgUnitOfWork``
    builds the repository on its ``PgTx``."""

    @contextlib.asynccontextmanager
    async def __call__(self, event: CloudEvent | None = None, *,
                       single_statement: bool = False) -> AsyncIterator[FakeTx[FakeIntakeRepository]]:
        async with super().__call__(event, single_statement=single_statement) as tx:
            self.repo.tx, self.repo.uow = tx, self
            yield tx
