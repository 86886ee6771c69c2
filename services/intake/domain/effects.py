"""What a downstream event (from routing or sla) does to a complaint. Pure: no I/O.

``decide`` names the effect (one dataclass per kind, with its own named arguments) and the
timeline summary; ``IntakeRepository.apply_event`` persists exactly that in one statement.
Where an effect applies only in some states, the states travel as data (from ``lifecycle``),
so the SQL knows no status.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from services.intake import lifecycle
from services.intake.domain.complaint import SOURCE, local_time
from services.intake.lifecycle import State
from shared.events import CLOCK_LABELS, CloudEvent


@dataclass(frozen=True)
class MarkRouted:
    """routing disposed the complaint by a rule. Applies only to a later hop while the
    complaint still waits for its first disposition (``lifecycle.AUTO_ROUTING_FROM``): a
    person's action since then wins."""

    conditional: ClassVar[bool] = True  # the timeline entry only when it applied
    opd_code: str
    opd_name: str
    hop: int
    routed_at: datetime
    from_states: tuple[State, ...] = field(default=tuple(sorted(lifecycle.AUTO_ROUTING_FROM)))
    to_state: State = lifecycle.AUTO_ROUTING_TO


@dataclass(frozen=True)
class SetSuggestion:
    """A rule matched without disposing: the admin koordinator decides. An undisposed
    complaint in ``lifecycle.TRIAGE_STATES`` goes on the triage list."""

    conditional: ClassVar[bool] = False
    opd_code: str
    opd_name: str
    rule_id: int
    suggested_at: datetime
    triage_states: tuple[State, ...] = field(default=tuple(sorted(lifecycle.TRIAGE_STATES)))


@dataclass(frozen=True)
class AddDuplicateCandidates:
    conditional: ClassVar[bool] = False
    candidate_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class MarkNeedsTriage:
    """No rule matched: an undisposed complaint (hop 0) waits for the admin koordinator."""

    conditional: ClassVar[bool] = False


# Clocks: one row per (clock, hop, instance); any of sla's events about a clock may arrive
# first, so each sets only its own fields. A deadline is taken from the newest event that
# set one (``as_of``: the event's time), so a late ``sla.clock_started`` does not undo an
# ``sla.deadline_changed`` sla emitted after it.

@dataclass(frozen=True)
class StartClock:
    conditional: ClassVar[bool] = False
    clock: str
    hop: int
    instance: int
    opd_code: str | None
    started_at: datetime
    deadline: datetime
    working_days: int
    calendar_version: str
    policy_version: int
    paused_working_days: int
    beyond_calendar_coverage: bool
    as_of: datetime


@dataclass(frozen=True)
class FlagClock:
    """A clock stopped (met, late or cancelled), warned or breached."""

    conditional: ClassVar[bool] = False
    clock: str
    hop: int
    opd_code: str | None
    stopped_at: datetime | None
    breached: bool
    warned: bool
    deadline: datetime | None
    instance: int = 0
    cancelled: bool = False


@dataclass(frozen=True)
class ChangeDeadline:
    """sla recomputed a running clock's deadline (a reclassification, a calendar change)."""

    conditional: ClassVar[bool] = False
    clock: str
    hop: int
    instance: int
    opd_code: str | None
    new_deadline: datetime
    calendar_version: str
    policy_version: int
    as_of: datetime


@dataclass(frozen=True)
class EscalateClock:
    """One step of a clock's escalation ladder (which follows its breach); the clock keeps
    the highest level reached, whatever the order the steps arrive in."""

    conditional: ClassVar[bool] = False
    clock: str
    hop: int
    instance: int
    opd_code: str | None
    deadline: datetime
    level: int
    target_role: str
    working_days_late: int


Effect = (MarkRouted | SetSuggestion | AddDuplicateCandidates | MarkNeedsTriage | StartClock
          | FlagClock | ChangeDeadline | EscalateClock)
# How people read an escalation's target (``shared.events.EscalationTarget``).
TARGET_LABELS = {"pejabat_penghubung": "pejabat penghubung", "kepala_opd": "kepala OPD",
                 "admin_koordinator": "admin koordinator", "sekda": "Sekretaris Daerah",
                 "bupati": "Kantor Bupati"}
# Why a deadline moved (``shared.events.DeadlineChangeReason``).
CHANGE_LABELS = {"reclassified": "klasifikasi laporan dikoreksi",
                 "calendar_changed": "kalender hari kerja berubah",
                 "policy_changed": "kebijakan tenggat berubah"}


@dataclass(frozen=True)
class EventDecision:
    effect: Effect | None
    summary: str | None  # the timeline entry (None: none)


def decide(event: CloudEvent, tz: ZoneInfo) -> EventDecision:
    """The effect a downstream event has and its timeline summary."""
    if event.source == SOURCE:
        # intake's own lifecycle event coming back: applied when it was emitted
        return EventDecision(None, None)
    d: dict[str, Any] = event.data
    name = event.event_name
    clock = d.get("clock", "")
    label = CLOCK_LABELS.get(clock, clock)
    if name == "complaint.routed":
        return EventDecision(
            MarkRouted(d["opd_code"], d["opd_name"], d["hop"], datetime.fromisoformat(d["routed_at"])),
            f"Didisposisikan ke {d['opd_name']} (disposisi ke-{d['hop']})")
    if name == "complaint.routing_suggested":
        return EventDecision(
            SetSuggestion(d["opd_code"], d["opd_name"], d["rule_id"],
                          datetime.fromisoformat(d["suggested_at"])),
            f"Saran disposisi: {d['opd_name']} (menunggu keputusan admin koordinator)")
    if name == "complaint.duplicate_suspected":
        ids = tuple(uuid.UUID(c) for c in d["candidate_ids"])
        return EventDecision(
            AddDuplicateCandidates(ids),
            f"Diduga duplikat: {len(ids)} laporan serupa di desa yang sama dalam "
            f"{d['window_days']} hari terakhir")
    if name == "complaint.triage_required":
        return EventDecision(MarkNeedsTriage(), f"Menunggu triase admin koordinator: {d['reason']}")
    instance = d.get("instance", 0)
    if name == "sla.clock_started":
        paused = d.get("paused_working_days", 0)
        beyond = d.get("beyond_calendar_coverage", False)
        return EventDecision(
            StartClock(clock, d["hop"], instance, d["opd_code"], datetime.fromisoformat(d["started_at"]),
                       datetime.fromisoformat(d["deadline"]), d["working_days"],
                       d["calendar_version"], d["policy_version"], paused, beyond, event.time),
            f"Tenggat {label}: {local_time(d['deadline'], tz)} ({d['working_days']} hari kerja"
            + (f", {paused} hari kerja tertunda" if paused else "")
            + (", melewati cakupan kalender cuti bersama" if beyond else "") + ")")
    if name == "sla.clock_stopped":
        cancelled = d.get("reason") == "cancelled"
        return EventDecision(
            FlagClock(clock, d["hop"], d.get("opd_code"), datetime.fromisoformat(d["stopped_at"]),
                      breached=False, warned=False, deadline=None, instance=instance,
                      cancelled=cancelled),
            f"Tenggat {label} dibatalkan" if cancelled else
            f"Tenggat {label} berhenti ({'tepat waktu' if d['on_time'] else 'terlambat'})")
    if name == "sla.warning":
        return EventDecision(
            FlagClock(clock, d["hop"], d.get("opd_code"), None, breached=False, warned=True,
                      deadline=None, instance=instance),
            f"Peringatan: tenggat {label} jatuh pada {local_time(d['deadline'], tz)}")
    if name == "sla.breached":
        return EventDecision(
            FlagClock(clock, d["hop"], d.get("opd_code"), None, breached=True, warned=False,
                      deadline=datetime.fromisoformat(d["deadline"]), instance=instance),
            f"Tenggat {label} terlampaui ({local_time(d['deadline'], tz)})")
    if name == "sla.deadline_changed":
        why = CHANGE_LABELS.get(d["reason"], d["reason"])
        if d.get("note"):
            why += f": {d['note']}"
        if d.get("changed_by"):
            why += f"; oleh {d['changed_by']}"
        return EventDecision(
            ChangeDeadline(clock, d["hop"], instance, d.get("opd_code"),
                           datetime.fromisoformat(d["new_deadline"]), d["calendar_version"],
                           d["policy_version"], event.time),
            f"Tenggat {label} berubah dari {local_time(d['old_deadline'], tz)} menjadi "
            f"{local_time(d['new_deadline'], tz)} ({why})")
    if name == "sla.escalated":
        target = TARGET_LABELS.get(d["target_role"], d["target_role"])
        opd = f" ({d['opd_code']})" if d.get("opd_code") else ""
        return EventDecision(
            EscalateClock(clock, d["hop"], instance, d.get("opd_code"),
                          datetime.fromisoformat(d["deadline"]), d["level"], d["target_role"],
                          d["working_days_late"]),
            f"Eskalasi tingkat {d['level']} ke {target}{opd}: tenggat {label} "
            f"({local_time(d['deadline'], tz)}) terlambat {d['working_days_late']} hari kerja")
    return EventDecision(None, name)


def routed_ignored(effect: MarkRouted, status: State, hop: int) -> str:
    """The timeline entry for an automatic disposition the complaint had outgrown."""
    return (f"Disposisi otomatis ke {effect.opd_name} (disposisi ke-{effect.hop}) diabaikan: "
            f"laporan sudah berstatus {status} (disposisi ke-{hop})")
