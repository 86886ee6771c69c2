"""The sla domain: one complaint's clocks as an aggregate, and the scanner's timer firings. Pure:
no SQL, no connection; the PostgreSQL mapper (``repository``) loads and saves them.

``ComplaintClocks`` is what one message sees and changes of a complaint: its clocks (all of
them, running or not), their live (not cancelled) timers, its lifecycle facts and the
DITUNDA periods already applied. ``apply`` decides, from one lifecycle event, which clocks stop
or are cancelled, pause, resume and start (each created already stopped, paused or moved when
later facts arrived first), which timers fire at once, and the events that say so; for an
operator's calendar change, ``recompute_deadlines`` decides which deadlines move. What is
written back is not their patches but ``diff``: the difference between the rows it was loaded
with and the rows ``derive`` gives from the facts, the calendar, the policies and the firing
log with those firings (the stored rows are a cache of ``derive``), each clock under the
calendar version it names; the mapper writes that and the events in one statement.

Invariants (besides those of ``clocks``):
- A clock is created at most once per (clock kind, hop, instance): a re-published event adds
  nothing.
- A DITUNDA period is applied to a clock at most once (``pause_applied``), whichever of the
  deferral and the resume is processed first.
- A timer that must fire and is not pending (a paused clock's timers were cancelled, or the
  clock never had one) is recorded as fired, so what fired is always in the timers.
- A breach a message fires at once is one the facts say happened: decided with all of the
  message's facts applied, so a correction applied after it in the same message (processed
  before the fact that created or stopped the clock) that was made before its due time
  withdraws it — no event, no firing (``_withdraw_at_once``); one made after its due time
  leaves it fired, and it gives way to the new deadline. What the loaded firing log has
  stays fired.
- A clock this message creates has a provisional negative id (−1, −2, … in creation order)
  until the mapper inserts it; its timers and pauses refer to it by that id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from services.sla import clocks
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import (
    ClockStart,
    ClockStop,
    CompletionMetBy,
    Deadline,
    Fact,
    Ladder,
    OfficeHours,
    StopReason,
    TimerKind,
)
from services.sla.policy import Policy
from shared.events import (
    ClockKind,
    CloudEvent,
    EventData,
    SlaBreached,
    SlaClockStarted,
    SlaClockStopped,
    SlaDeadlineChanged,
    SlaDeferralExpired,
    SlaEscalated,
    SlaReplyWindowElapsed,
    SlaWarning,
    make_event,
)

log = logging.getLogger(__name__)
SOURCE = "sp4n/sla"
AlertKind = Literal["warning", "breach", "elapsed", "expired", "escalation"]


@dataclass(frozen=True)
class ClockRow:
    id: int
    complaint_id: uuid.UUID
    clock: ClockKind
    hop: int
    opd_code: str | None
    started_at: datetime
    deadline: datetime
    stopped_at: datetime | None
    working_days: int
    warn_at: datetime | None
    calendar_version: str
    policy_version: int
    instance: int = 0
    initial_deadline: datetime | None = None
    initial_warn_at: datetime | None = None
    paused_working_days: int = 0
    paused_at: datetime | None = None
    policy_key: str = ""
    stop_reason: str | None = None
    # The completion clock's two outcomes, kept whichever meets it (``completion_met_by``).
    final_response_at: datetime | None = None
    closed_at: datetime | None = None
    category: str | None = None

    def deadline_record(self) -> Deadline:
        return Deadline(self.working_days, self.deadline, self.warn_at, self.calendar_version,
                        self.policy_version)

    def initial_deadline_record(self) -> Deadline:
        return Deadline(self.working_days, self.initial_deadline or self.deadline,
                        self.initial_warn_at, self.calendar_version, self.policy_version)


@dataclass
class Timer:
    id: int | None  # None: created by this message
    clock_id: int  # < 0: a clock created by this message
    kind: TimerKind
    due_at: datetime | None = None
    fired_at: datetime | None = None
    cancelled_at: datetime | None = None
    changed: bool = False
    point: str = ""  # which warning point or escalation step; "" for the others
    fire_at: datetime | None = None  # None: at due_at (quiet hours may hold a staff alert)

    @property
    def pending(self) -> bool:
        return self.fired_at is None and self.cancelled_at is None


# A firing as the log keeps it (``firings`` rows): which clock, timer kind, point and due time.
FiringKey = tuple[str, int, int, str, str, datetime]


@dataclass(frozen=True)
class Firing:
    """A timer that fired (the firing log, migration 0009): history, never a cache. Written by
    the statement that marks the timer fired, so with its event; derive reads it."""

    clock: str
    hop: int
    instance: int
    kind: str
    point: str
    due_at: datetime
    fired_at: datetime
    fire_at: datetime | None = None  # None: at due_at (quiet hours may have held it)

    @property
    def key(self) -> FiringKey:
        return (self.clock, self.hop, self.instance, self.kind, self.point, self.due_at)


@dataclass(frozen=True)
class PauseRow:
    """A DITUNDA period applied to a clock (idempotency and history)."""

    clock_id: int
    deferred_at: datetime
    resumed_at: datetime
    working_days: int
    deadline_before: datetime
    deadline_after: datetime
    calendar_version: str


@dataclass(frozen=True)
class ClockChanges:
    """What a message changed, for the mapper to write back."""

    new_clocks: list[ClockRow]
    changed_clocks: list[ClockRow]
    timer_updates: list[Timer]  # existing timers fired or cancelled
    timer_inserts: list[Timer]
    new_pauses: list[PauseRow]  # written, or rewritten when the clock has that period stored
    # Stored clocks the facts no longer call for (ids), deleted with their timers and pauses.
    deleted_clocks: list[int] = field(default_factory=list)
    # Stored pauses (clock id, deferred_at) of kept clocks the facts no longer call for.
    deleted_pauses: list[tuple[int, datetime]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.new_clocks or self.changed_clocks or self.timer_updates
                    or self.timer_inserts or self.new_pauses or self.deleted_clocks
                    or self.deleted_pauses)


@dataclass(frozen=True)
class Alert:
    kind: AlertKind  # "elapsed"/"expired": the reply window's or DITUNDA's end, not SLA alerts
    clock: str
    opd_code: str | None
    lag_s: float | None = None  # set only for scanner-detected timers


@dataclass
class Effects:
    """The events a decision produced (to stage in the outbox) and the alerts to count."""

    events: list[CloudEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    calendar: WorkingCalendar | None = None  # flags deadlines beyond its coverage
    silent: bool = False  # a derivation from scratch: its events are not emitted, not built

    def started(self, complaint_id: uuid.UUID, clock: ClockKind, hop: int, opd_code: str | None,
                started_at: datetime, deadline: Deadline, *, instance: int = 0,
                paused_working_days: int = 0) -> None:
        if self.silent:
            return
        self.events.append(make_event(SOURCE, SlaClockStarted(
            complaint_id=complaint_id, clock=clock, hop=hop, instance=instance, opd_code=opd_code,
            started_at=started_at, working_days=deadline.working_days,
            deadline=deadline.deadline, warn_at=deadline.warn_at,
            calendar_version=deadline.calendar_version, policy_version=deadline.policy_version,
            paused_working_days=paused_working_days,
            beyond_calendar_coverage=self.calendar is not None
            and self.calendar.beyond_coverage(deadline.deadline))))

    def expired(self, complaint_id: uuid.UUID, deferred_at: datetime, deadline: Deadline,
                lag_s: float | None = None) -> None:
        if self.silent:
            return
        self.events.append(make_event(SOURCE, SlaDeferralExpired(
            complaint_id=complaint_id, deferred_at=deferred_at, deadline=deadline.deadline,
            calendar_version=deadline.calendar_version, policy_version=deadline.policy_version)))
        self.alerts.append(Alert("expired", "deferral", None, lag_s))

    def deadline_changed(self, row: ClockRow, old: datetime, new: Deadline, reason: str,
                         note: str | None, changed_by: str | None) -> None:
        if self.silent:
            return
        self.events.append(make_event(SOURCE, SlaDeadlineChanged(
            complaint_id=row.complaint_id, clock=row.clock, hop=row.hop, instance=row.instance,
            opd_code=row.opd_code, old_deadline=old, new_deadline=new.deadline,
            reason=reason,  # type: ignore[arg-type]  # a DeadlineChangeReason from the caller
            note=note, changed_by=changed_by, calendar_version=new.calendar_version,
            policy_version=new.policy_version)))

    def elapsed(self, complaint_id: uuid.UUID, hop: int, opd_code: str | None,
                responded_at: datetime, deadline: Deadline, lag_s: float | None = None) -> None:
        if self.silent:
            return
        self.events.append(make_event(SOURCE, SlaReplyWindowElapsed(
            complaint_id=complaint_id, responded_at=responded_at, deadline=deadline.deadline,
            opd_code=opd_code, hop=hop, calendar_version=deadline.calendar_version,
            policy_version=deadline.policy_version)))
        self.alerts.append(Alert("elapsed", "auto_close", opd_code, lag_s))

    def stopped(self, complaint_id: uuid.UUID, clock: ClockKind, hop: int, opd_code: str | None,
                stop: ClockStop, deadline: datetime, instance: int = 0) -> None:
        if self.silent:
            return
        self.events.append(make_event(SOURCE, SlaClockStopped(
            complaint_id=complaint_id, clock=clock, hop=hop, instance=instance, opd_code=opd_code,
            stopped_at=stop.at, deadline=deadline, on_time=stop.at <= deadline,
            reason=stop.reason)))

    def alert(self, model: type[SlaWarning] | type[SlaBreached], complaint_id: uuid.UUID,
              clock: ClockKind, hop: int, opd_code: str | None, deadline: Deadline,
              due_at: datetime, lag_s: float | None = None, instance: int = 0) -> None:
        if self.silent:
            return
        self.events.append(make_event(SOURCE, model(
            complaint_id=complaint_id, clock=clock, hop=hop, instance=instance, opd_code=opd_code,
            deadline=deadline.deadline, due_at=due_at, calendar_version=deadline.calendar_version,
            policy_version=deadline.policy_version)))
        self.alerts.append(Alert("breach" if model is SlaBreached else "warning", clock, opd_code,
                                 lag_s))


@dataclass
class _AtOnce:
    """A breach a message fired at once (its timer marked fired, its event and alert made):
    provisional until the whole message is applied (``ComplaintClocks._withdraw_at_once``)."""

    timer: Timer
    events: list[CloudEvent]
    alerts: list[Alert]


class ComplaintClocks:
    """One complaint's clocks, live timers, facts and applied pauses as one message sees and
    changes them (see the module docstring)."""

    def __init__(self, complaint_id: uuid.UUID, clocks: list[ClockRow], timers: list[Timer],
                 facts: list[Fact], pauses: list[PauseRow],
                 firings: list[Firing] | None = None) -> None:
        self.complaint_id = complaint_id
        self.facts = facts
        self.firings = list(firings or [])  # the complaint's firing log, as loaded
        # derive only: what fired comes from the log, not from ``now`` (None: a message)
        self._log: dict[FiringKey, datetime] | None = None
        # derive only: what warning points skip by (when the fact replayed was recorded)
        self._skip_now: datetime | None = None
        self._clocks: dict[int, ClockRow] = {c.id: c for c in clocks}  # existing by id, then new
        self._loaded = dict(self._clocks)
        self._timers = timers
        # The rows as loaded, for ``diff`` (``apply`` changes the timers in place).
        self._loaded_timers = [replace(t) for t in timers]
        self._loaded_pauses = list(pauses)
        self._pauses = {(p.clock_id, p.deferred_at) for p in pauses}
        self._new_pauses: list[PauseRow] = []
        self._deleted: list[int] = []
        self.effects = Effects()
        self.met_by: CompletionMetBy = "final_response"
        self._policies: dict[str, Policy] = {}
        self._ladders: tuple[Ladder, ...] = ()
        self._office: OfficeHours | None = None
        # (clock, hop, instance) → the policy version a stored clock was computed with, so a
        # re-derivation keeps it (a policy edit applies to clocks started afterwards).
        self._pinned: dict[tuple[str, int, int], Policy] = {}
        # The older calendar versions stored clocks name, rebuilt (``apply(versions=)``): a
        # decision about such a clock is made under the calendar that computed it, as
        # ``derive`` under that version gives its rows (``diff``).
        self._versions: Mapping[str, WorkingCalendar] = {}
        # The breaches this message fired at once so far (``_breach_at_once``).
        self._at_once: list[_AtOnce] = []
        # The ``sla.clock_stopped`` this message emitted, by clock (judged again when a
        # correction applied after it moves the deadline it was judged by: ``_reclassify``).
        self._stopped_now: dict[int, CloudEvent] = {}
        # derive only: the time of the fact being replayed, and the firings of the log that
        # replay finds unfounded: given way to a deadline a fact moved before they came due
        # (``unfounded``).
        self._replaying: datetime | None = None
        self.unfounded: set[FiringKey] = set()

    @property
    def events(self) -> list[CloudEvent]:
        return self.effects.events

    @property
    def alerts(self) -> list[Alert]:
        return self.effects.alerts

    # -- the fact of this message -------------------------------------------------------------
    def record_fact(self, fact: Fact) -> None:
        """Add the fact this message records, unless the complaint has it already (a
        re-published event); kept in UTC, as read back from the table, so events carry the
        instants as before."""
        if any((f.kind, f.at, f.hop) == (fact.kind, fact.at, fact.hop) for f in self.facts):
            return
        self.facts.append(replace(
            fact, at=fact.at.astimezone(UTC),
            deferred_at=fact.deferred_at and fact.deferred_at.astimezone(UTC)))
        self.facts.sort(key=lambda f: f.at)

    # -- reads -------------------------------------------------------------------------------
    def open_clocks(self) -> list[ClockRow]:
        """The running clocks, oldest first."""
        return [c for c in self._clocks.values() if c.stopped_at is None]

    def all_clocks(self) -> list[ClockRow]:
        """Every clock, running or not, in creation order."""
        return list(self._clocks.values())

    def clocks_of_kind(self, clock: str) -> list[ClockRow]:
        return sorted((c for c in self._clocks.values() if c.clock == clock),
                      key=lambda c: (c.hop, c.instance))

    def pause_applied(self, clock_id: int, deferred_at: datetime) -> bool:
        return (clock_id, deferred_at) in self._pauses

    def live_timer_kinds(self, clock_id: int) -> tuple[set[str], set[str]]:
        """(pending, fired) timer kinds of a clock."""
        live = [t for t in self._timers if t.clock_id == clock_id and t.cancelled_at is None]
        return ({t.kind for t in live if t.fired_at is None},
                {t.kind for t in live if t.fired_at is not None})

    def firings_made(self) -> list[Firing]:
        """The timers this message fired at once (``apply``: a late stop's breach, a clock
        created past its deadline, a reply window a late close made elapse), as the firing log
        will have them once it commits: what ``derive`` must be given besides the loaded log
        for its rows to carry them (and their events). Also one that gave way to a later
        deadline in this message already (it came due before a correction made after it moved
        the deadline on: cancelled, it fired all the same). Not one a correction made before
        its due time withdrew (``_withdraw_at_once``): by the facts it never fired."""
        was_pending = {t.id for t in self._loaded_timers if t.fired_at is None}
        out = []
        for t in self._timers:
            if t.fired_at is None or t.due_at is None \
                    or (t.id is not None and t.id not in was_pending):
                continue
            c = self._clocks[t.clock_id]
            out.append(Firing(c.clock, c.hop, c.instance, t.kind, t.point, t.due_at, t.fired_at,
                              t.fire_at or t.due_at))
        return out

    def changes(self) -> ClockChanges:
        return ClockChanges(
            new_clocks=[c for i, c in self._clocks.items() if i < 0],
            changed_clocks=[c for i, c in self._clocks.items() if i > 0 and c != self._loaded[i]],
            timer_updates=[t for t in self._timers if t.id is not None and t.changed],
            timer_inserts=[t for t in self._timers if t.id is None],
            new_pauses=list(self._new_pauses), deleted_clocks=list(self._deleted))

    # -- row changes -------------------------------------------------------------------------
    def insert_clock(self, start: ClockStart, deadline: Deadline) -> int | None:
        """The new clock's (provisional) id, or None when it already exists."""
        key = (start.clock, start.hop, start.instance)
        if any((c.clock, c.hop, c.instance) == key for c in self._clocks.values()):
            return None
        clock_id = -1 - sum(1 for i in self._clocks if i < 0)
        self._clocks[clock_id] = ClockRow(
            clock_id, self.complaint_id, start.clock, start.hop, start.opd_code, start.started_at,
            deadline.deadline, None, deadline.working_days, deadline.warn_at,
            deadline.calendar_version, deadline.policy_version, start.instance,
            deadline.deadline, deadline.warn_at, 0, None, start.policy_key,
            category=start.category or self.category())
        return clock_id

    def category(self) -> str | None:
        """The complaint's category as its clocks know it (from the submission)."""
        return next((c.category for c in self._clocks.values() if c.category), None)

    def delete_clock(self, clock_id: int) -> None:
        """Drop a clock the facts no longer call for, with its timers and pauses (a stored one
        is deleted by the mapper)."""
        del self._clocks[clock_id]
        self._timers = [t for t in self._timers if t.clock_id != clock_id]
        self._new_pauses = [p for p in self._new_pauses if p.clock_id != clock_id]
        if clock_id > 0:
            self._deleted.append(clock_id)

    def set_paused(self, clock_id: int, at: datetime | None) -> None:
        self._clocks[clock_id] = replace(self._clocks[clock_id], paused_at=at)

    def record_pause(self, clock_id: int, deferred_at: datetime, resumed_at: datetime,
                     working_days: int, deadline_before: datetime,
                     deadline_after: Deadline) -> None:
        self._pauses.add((clock_id, deferred_at))
        self._new_pauses.append(PauseRow(clock_id, deferred_at, resumed_at, working_days,
                                         deadline_before, deadline_after.deadline,
                                         deadline_after.calendar_version))

    def set_recomputed_deadline(self, clock_id: int, deadline: Deadline,
                                paused_working_days: int, paused_at: datetime | None) -> None:
        """Store the deadline recomputed from the initial one and the total paused working days."""
        self._clocks[clock_id] = replace(
            self._clocks[clock_id], deadline=deadline.deadline, warn_at=deadline.warn_at,
            calendar_version=deadline.calendar_version, paused_working_days=paused_working_days,
            paused_at=paused_at)

    def mark_stopped(self, clock_id: int, at: datetime, reason: StopReason) -> None:
        if self._clocks[clock_id].stopped_at is None:
            self._clocks[clock_id] = replace(self._clocks[clock_id], stopped_at=at,
                                             stop_reason=reason)

    def insert_timer(self, clock_id: int, kind: TimerKind, due_at: datetime, *,
                     fired_at: datetime | None = None, point: str = "",
                     fire_at: datetime | None = None) -> None:
        if self._log is not None:  # derive: fired iff the log has it
            key = self._firing_key(clock_id, kind, point, due_at)
            fired_at = self._log.get(key)
            if fired_at is None and kind != "breach" and any(
                    k[:5] == key[:5] for k in self._log):
                return  # a warning or step fires once per clock, whatever its due time was
            row = self._clocks[clock_id]
            if fired_at is None and kind in ("breach", "warning") and any(
                    k[:4] == key[:3] + ("breach",) and k[5] >= (row.initial_deadline
                                                               or row.deadline)
                    for k in self._log):
                # Breached already, for a deadline no change has moved it past since: no
                # second breach, and after a breach a warning is noise.
                return
        self._timers.append(Timer(None, clock_id, kind, due_at, fired_at, point=point,
                                  fire_at=fire_at))

    def _firing_key(self, clock_id: int, kind: str, point: str, due_at: datetime) -> FiringKey:
        c = self._clocks[clock_id]
        return (c.clock, c.hop, c.instance, kind, point, due_at)

    def fired_points(self, clock_id: int) -> set[tuple[str, str]]:
        return {(t.kind, t.point) for t in self._timers
                if t.clock_id == clock_id and t.cancelled_at is None and t.fired_at is not None}

    def fire_timer(self, clock_id: int, kind: str, at: datetime) -> Timer | None:
        """Fire the clock's pending timer of ``kind``; the timer, or None when none fired."""
        for t in self._timers:
            if t.clock_id == clock_id and t.kind == kind and t.pending:
                if self._log is not None:  # derive: fired iff the log has it
                    assert t.due_at is not None
                    logged = self._log.get(self._firing_key(clock_id, kind, t.point, t.due_at))
                    if logged is None:
                        return None
                    at = logged
                t.fired_at, t.changed = at, True
                return t
        return None

    def cancel_pending_timers(self, clock_id: int, at: datetime) -> None:
        for t in self._timers:
            if t.clock_id == clock_id and t.pending:
                t.cancelled_at, t.changed = at, True

    def _settle_from_log(self, now: datetime) -> None:
        """derive with the firing log: a running reply window whose elapse, or DITUNDA clock
        whose expiry, the log has was stopped at its deadline by the scanner that fired it (an
        expiry whatever came after it, an elapse unless a reply came before it); a
        warning not fired whose clock's deadline passed by ``now`` is no live timer (a message
        never plans it, the scanner cancels it: after the breach, a warning is noise)."""
        for t in self._timers:
            row = self._clocks.get(t.clock_id)
            if t.kind == "warning" and t.pending and row is not None and row.deadline <= now:
                t.cancelled_at = now
        # What fired for a deadline the facts have since moved (a correction processed after
        # the firing, made before it) stays fired: history, kept as the fired timer it was.
        have = {self._firing_key(t.clock_id, t.kind, t.point, t.due_at) for t in self._timers
                if t.due_at is not None and t.fired_at is not None}
        ids: dict[tuple[str, int, int], int] = {(c.clock, c.hop, c.instance): c.id
                                              for c in self._clocks.values()}
        for f in self.firings:
            clock_id = ids.get((f.clock, f.hop, f.instance))
            if clock_id is not None and f.key not in have:
                self._timers.append(Timer(None, clock_id, f.kind,  # type: ignore[arg-type]
                                          f.due_at, f.fired_at, point=f.point,
                                          fire_at=None if f.fire_at == f.due_at else f.fire_at))
        for row in self.all_clocks():
            kind = {"auto_close": "elapse", "deferral": "breach"}.get(row.clock)
            if kind is None or not any(t.clock_id == row.id and t.kind == kind
                                       and t.fired_at is not None for t in self._timers):
                continue
            if row.stopped_at is None:
                self.mark_stopped(row.id, row.deadline, "stopped")
            elif row.clock == "deferral":
                # Expired (intake archived it): a resume processed after the expiry fired
                # cannot undo it, whenever it happened (``_restop``).
                self._clocks[row.id] = replace(row, stopped_at=row.deadline,
                                               stop_reason="stopped")
        # One live timer per (clock, kind, point), as the table's index has it: a firing for a
        # deadline a change has moved since (history, which the log keeps) gives way to the
        # timer of the current deadline — a pending one before a fired one, then the later.
        live: dict[tuple[int, str, str], Timer] = {}
        for t in self._timers:
            if t.cancelled_at is not None:
                continue
            k = (t.clock_id, t.kind, t.point)
            other = live.get(k)
            if other is None:
                live[k] = t
                continue
            keep = max(t, other, key=lambda x: (x.fired_at is None, x.due_at or now))
            (other if keep is t else t).cancelled_at = now
            live[k] = keep

    # -- decisions ---------------------------------------------------------------------------
    def apply(self, fact: Fact | None, calendar: WorkingCalendar,
              policies: dict[str, Policy], now: datetime,
              met_by: CompletionMetBy = "final_response", *, ladders: tuple[Ladder, ...] = (),
              office_hours: OfficeHours | None = None,
              versions: Mapping[str, WorkingCalendar] | None = None) -> None:
        """Apply one lifecycle fact (already recorded; None for an event that is no fact, a
        progress update): stop or cancel the running clocks it ends, pause or resume, then
        start the clocks it starts (``clocks.starts_of``: from the fact alone), and the
        follow-up clocks the facts now call for (reopens, reporter replies), whatever order
        they came. New clocks run under ``calendar`` (the current version); a stored clock
        computed under an older version that ``versions`` has (rebuilt: ``calendar_versions``)
        is stopped, resumed and reclassified under that one and keeps its version (an
        operator's change with ``keep_deadlines``), and so is the completion instance a
        reporter's reply resumes after it (it inherits its deadline); under a version
        ``versions`` lacks, under ``calendar``.

        A breach fired at once (a clock created past its deadline, a late stop, a deadline
        moved into the past) stands only if the facts say it came due: the corrections applied
        last (``_reclassify``) withdraw one due after a correction made before it, and judge a
        stop this message judged late again by the corrected deadline."""
        self.met_by = met_by
        self._policies, self._ladders, self._office = policies, ladders, office_hours
        self._versions = {**(versions or {}), calendar.version: calendar}
        self._at_once, self._stopped_now = [], {}
        self.effects.calendar = calendar
        facts = self.effective_facts()
        took = fact is None or fact.kind != "routed" or fact in facts
        if fact is not None and took:
            for row in list(self._clocks.values()):
                stop = clocks.stop_for(row.clock, row.hop, row.started_at, [fact], met_by)
                if stop is None:
                    continue
                if row.stopped_at is None:
                    self._stop_clock(row, stop, self._calendar_of(row, calendar), now)
                elif stop.at < row.stopped_at:
                    self._restop(row, stop, self._calendar_of(row, calendar))
            self._record_outcome(fact)
            self._drop_routings_that_never_took(calendar, now)
            if fact.kind == "deferred":
                self._pause(fact.at, now)
            elif fact.kind == "resumed" and fact.deferred_at is not None:
                self._resume(fact.deferred_at, fact.at, calendar, now)
        for start in clocks.starts_of(fact) if fact is not None else []:
            if not took:
                log.info("routing %s of %s never took: no clock", start.hop, self.complaint_id)
                continue
            if start.clock == "deferral":
                instance = self._instance_for("deferral", 0, start.started_at)
                if instance is None:
                    continue
                start = replace(start, instance=instance)
            self._start_clock(policies, start, calendar, now)
        if fact is not None and fact.kind in ("reclassified", "submitted"):
            self.record_fact(fact)
        self._start_reopened_completions(policies, calendar, now)
        self._start_reply_instances(policies, calendar, now)
        self._reclassify(policies, calendar, now)

    def _drop_routings_that_never_took(self, calendar: WorkingCalendar, now: datetime) -> None:
        """A routing that never took, as the facts now tell (``clocks.routing_took``: it came
        after the close, or after the admin archived, forwarded or deferred), has no OPD clock
        from scratch; processed before the fact that tells, it started one: that clock is
        deleted (never breached), with ``sla.clock_stopped`` (cancelled at its start) for
        whoever saw it start, unless it was already stopped."""
        routed = {(f.hop, f.at) for f in self.facts if f.kind == "routed"}
        took = {(f.hop, f.at) for f in self.effective_facts() if f.kind == "routed"}
        dropped = False
        for row in list(self._clocks.values()):
            key = (row.hop, row.started_at)
            if row.clock != "opd_response" or row.instance != 0 or key not in routed \
                    or key in took:
                continue
            if row.stopped_at is None:
                self.effects.stopped(row.complaint_id, row.clock, row.hop, row.opd_code,
                                     ClockStop("opd_response", row.hop, row.started_at,
                                               "cancelled"), row.deadline,
                                     instance=row.instance)
            self.delete_clock(row.id)
            dropped = True
        if not dropped:
            return
        # A routing of the same hop that did take, processed while the dropped clock held its
        # place, starts its clock now.
        for f in self.effective_facts():
            if f.kind == "routed" and not any(
                    (c.clock, c.hop, c.instance) == ("opd_response", f.hop, 0)
                    for c in self._clocks.values()):
                for start in clocks.starts_of(f):
                    self._start_clock(self._policies, start, calendar, now)

    def effective_facts(self) -> list[Fact]:
        return clocks.effective_facts(self.facts)

    def _calendar_of(self, row: ClockRow, calendar: WorkingCalendar) -> WorkingCalendar:
        """The calendar a decision about ``row`` is made under: the older version it names
        when rebuilt (``apply(versions=)``), else ``calendar`` (the current one)."""
        return self._versions.get(row.calendar_version, calendar)

    def older_versions(self, current: str) -> set[str]:
        """The calendar versions other than ``current`` the stored clocks name (as loaded):
        those a caller rebuilds to decide and derive them under (``apply(versions=)``)."""
        return {c.calendar_version for c in self._loaded.values()} - {current}

    def _instance_for(self, clock: str, hop: int, started_at: datetime) -> int | None:
        """The next instance of (clock, hop), or None when one started at ``started_at``."""
        same = [c for c in self._clocks.values() if c.clock == clock and c.hop == hop]
        if any(c.started_at == started_at for c in same):
            return None
        return max((c.instance for c in same), default=-1) + 1

    def _record_outcome(self, fact: Fact) -> None:
        """Keep the final tindak lanjut's and the close's times on the completion clock they
        belong to (the latest instance started before them), whichever meets it."""
        if fact.kind not in ("responded", "closed"):
            return
        owners = [c for c in self._clocks.values()
                  if c.clock == "completion" and c.started_at <= fact.at]
        if not owners:
            return
        row = max(owners, key=lambda c: c.started_at)
        for other in owners:  # an instance started since (reordered) takes it over
            if other.id != row.id and fact.kind == "responded" \
                    and other.final_response_at == fact.at:
                self._clocks[other.id] = replace(other, final_response_at=None)
            elif other.id != row.id and fact.kind == "closed" and other.closed_at == fact.at:
                self._clocks[other.id] = replace(other, closed_at=None)
        row = self._clocks[row.id]
        # The earliest of each (an earlier one may be processed after a later one).
        if fact.kind == "responded" and (row.final_response_at is None
                                         or fact.at < row.final_response_at):
            self._clocks[row.id] = replace(row, final_response_at=fact.at)
        elif fact.kind == "closed" and (row.closed_at is None or fact.at < row.closed_at):
            self._clocks[row.id] = replace(row, closed_at=fact.at)

    def _policy_for(self, clock: tuple[str, int, int], key: str,
                    policies: dict[str, Policy]) -> Policy:
        pin = self._pinned.get(clock)
        return pin if pin is not None and pin.key == key else policies[key]

    def pinned_policies(self, policies: dict[str, Policy]) -> dict[tuple[str, int, int], Policy]:
        """Each clock's policy as it was computed with (working days, version), with the
        current warning settings of its key."""
        out: dict[tuple[str, int, int], Policy] = {}
        for c in self._clocks.values():
            now = policies.get(c.policy_key)
            out[(c.clock, c.hop, c.instance)] = Policy(
                c.policy_key, c.working_days, now.warn_before_working_days if now else 0,
                c.policy_version, now.warn_points if now else ())
        return out

    def _start_clock(self, policies: dict[str, Policy], start: ClockStart,
                     calendar: WorkingCalendar, now: datetime,
                     initial: Deadline | None = None) -> None:
        complaint_id, out = self.complaint_id, self.effects
        policy = self._policy_for((start.clock, start.hop, start.instance), start.policy_key,
                                  policies)
        if initial is not None:
            pass
        elif start.clock == "auto_close":
            initial = clocks.auto_close_deadline(start.started_at, policy, calendar)
        else:
            initial = clocks.compute_deadline(start.started_at, policy, calendar)
        clock_id = self.insert_clock(start, initial)
        if clock_id is None:
            log.info("clock %s/%s/%s already exists for %s", start.clock, start.hop,
                     start.instance, complaint_id)
            return

        # Facts that arrived first (reordered events): a stop, DITUNDA periods.
        facts = self.effective_facts()
        stop = clocks.stop_for(start.clock, start.hop, start.started_at, facts, self.met_by)
        for f in facts:
            if f.at >= start.started_at:
                self._record_outcome(f)
        deadline, paused_at = initial, None
        total_paused = 0
        for pause in clocks.pauses_for(start.clock, start.started_at, stop, facts):
            if pause.resumed_at is None:
                paused_at = pause.deferred_at
                continue
            n = calendar.paused_working_days(pause.deferred_at, pause.resumed_at)
            total_paused += n
            moved = clocks.resumed_deadline(initial, total_paused, calendar)
            self.record_pause(clock_id, pause.deferred_at, pause.resumed_at, n,
                              deadline.deadline, moved)
            deadline = moved
        if paused_at is not None and any(p.resumed_at is not None and p.deferred_at > paused_at
                                         for p in clocks.pauses_for(start.clock, start.started_at,
                                                                    stop, facts)):
            paused_at = None  # an unmatched deferral older than a completed one: stale, ignore
        if deadline is not initial or paused_at is not None:
            self.set_recomputed_deadline(clock_id, deadline, total_paused, paused_at)
        out.started(complaint_id, start.clock, start.hop, start.opd_code, start.started_at,
                    deadline, instance=start.instance, paused_working_days=total_paused)

        judged = deadline.deadline
        if stop is not None:
            judged = clocks.deadline_at(deadline.deadline, paused_at, stop.at, calendar)
        if start.clock == "auto_close":
            plans = clocks.auto_close_timers(deadline, now, stop)
        elif start.clock == "deferral":
            # DITUNDA's end is no breach: it expires (intake archives) unless a resume came.
            plans = [] if stop is not None else clocks.initial_timers(
                replace(deadline, warn_at=None), now, None)
        elif stop is not None:
            plans = clocks.initial_timers(replace(deadline, deadline=judged), now, stop)
        elif paused_at is not None:
            plans = []  # DITUNDA: timers come with the resume
        else:
            plans = clocks.initial_timers(deadline, now, None)
        staff = stop is None and paused_at is None and start.clock not in ("auto_close",
                                                                           "deferral")
        if staff and policy.warn_points:
            plans = [p for p in plans if p.kind != "warning"]  # the points replace it
        for plan in plans:
            timer = self._inserted(clock_id, plan.kind, plan.due_at,
                                   fired_at=now if plan.fire_now else None,
                                   fire_at=self._quiet(plan.due_at, calendar)
                                   if plan.kind == "warning" else None)
            if plan.fire_now and plan.kind == "elapse":
                out.elapsed(complaint_id, start.hop, start.opd_code, start.started_at, deadline)
                stop = ClockStop(start.clock, start.hop, deadline.deadline, "stopped")
            elif plan.fire_now and start.clock == "deferral":
                out.expired(complaint_id, start.started_at, deadline)
                stop = ClockStop(start.clock, start.hop, deadline.deadline, "stopped")
            elif plan.fire_now:
                self._breach_at_once(clock_id, timer, replace(deadline, deadline=judged),
                                     plan.due_at)
        if staff:
            self._add_staff_timers(clock_id, deadline, calendar, now)
        if stop is not None:
            self.mark_stopped(clock_id, stop.at, stop.reason)
            self._stopped(clock_id, stop, judged)

    def recompute_deadlines(self, calendar: WorkingCalendar, policies: dict[str, Policy],
                            now: datetime, *, note: str | None, changed_by: str | None,
                            met_by: CompletionMetBy = "final_response",
                            ladders: tuple[Ladder, ...] = (),
                            office_hours: OfficeHours | None = None) -> int:
        """A calendar change: the complaint's clocks are derived again from its facts under
        ``calendar`` (``derive``, each clock under the policy version it was computed with),
        never patched; every running clock whose derived deadline differs takes it (with the
        working days paused as counted under the new calendar: a closure inside a DITUNDA
        period moves nothing), gets new timers (what fired stays fired) and
        ``sla.deadline_changed`` (reason ``calendar_changed``). Returns how many moved. A
        clock already stopped keeps the deadline it was judged by. These are the decisions
        (the events); the rows written are ``derive``'s (``usecases.change_calendar``)."""
        self.met_by = met_by
        self._policies, self._ladders, self._office = policies, ladders, office_hours
        self.effects.calendar = calendar
        derived = {(c.clock, c.hop, c.instance): c for c in derive(
            self.complaint_id, self.facts, calendar, policies, now, met_by,
            pinned=self.pinned_policies(policies)).all_clocks()}
        moved_count = 0
        for row in self.open_clocks():
            want = derived.get((row.clock, row.hop, row.instance))
            if want is None:
                continue
            cached = replace(
                row, initial_deadline=want.initial_deadline, initial_warn_at=want.initial_warn_at,
                deadline=want.deadline, warn_at=want.warn_at,
                paused_working_days=want.paused_working_days)
            if cached == row:
                continue
            # What it is derived from moved (e.g. a closure inside a DITUNDA period moves the
            # initial deadline one way and the paused days the other): the row follows.
            self._clocks[row.id] = replace(cached, calendar_version=calendar.version)
            if (want.deadline, want.warn_at) == (row.deadline, row.warn_at):
                continue
            moved = replace(want.deadline_record(), calendar_version=calendar.version)
            if want.deadline != row.deadline:  # (a warning alone that moved: new timers only)
                moved_count += 1
                self.effects.deadline_changed(row, row.deadline, moved, "calendar_changed",
                                              note, changed_by)
                self.effects.started(row.complaint_id, row.clock, row.hop, row.opd_code,
                                     row.started_at, moved, instance=row.instance,
                                     paused_working_days=want.paused_working_days)
            if row.paused_at is not None:
                continue
            _, fired = self.live_timer_kinds(row.id)
            self.cancel_pending_timers(row.id, now)
            if row.clock in ("auto_close", "deferral"):
                kind: TimerKind = "elapse" if row.clock == "auto_close" else "breach"
                if kind not in fired:
                    self.insert_timer(row.id, kind, moved.deadline)
                continue
            for plan, timer in self._replan(row.id, moved, calendar, now, moved_by_change=True):
                self._breach_at_once(row.id, timer, moved, plan.due_at)
        return moved_count

    def _replan(self, clock_id: int, moved: Deadline, calendar: WorkingCalendar,
                now: datetime, *, moved_by_change: bool = False,
                ) -> list[tuple[clocks.TimerPlan, Timer | None]]:
        """New timers of a running clock whose deadline moved (its pending ones cancelled by
        the caller): as for a new clock, except that what fired stays fired. Returns the
        plans fired at once, with their timers (a breach the caller reports:
        ``_breach_at_once``).

        A reclassification or a calendar change (``moved_by_change``) that moves the deadline
        past a breach that already fired: the breach stays fired and its event stays emitted
        (events are facts), but the clock follows its new deadline, so a new breach timer is
        planned at it (a second ``sla.breached``, for the new deadline, if that passes too —
        at once when it already has: what is planned does not depend on when the change is
        processed, so derive, which knows only the facts and the firing log, plans the same)."""
        _, fired = self.live_timer_kinds(clock_id)
        # A resume (not itself a change) re-arms only a breach a change had already moved the
        # clock past: one due before the clock's initial deadline under its current policy
        # (the change may have been processed before the resume, or after: the same timers).
        past = moved.deadline if moved_by_change else (
            self._clocks[clock_id].initial_deadline or moved.deadline)
        if "breach" in fired and all(
                t.due_at is not None and t.due_at < past for t in self._timers
                if t.clock_id == clock_id and t.kind == "breach" and t.cancelled_at is None):
            fired = fired - {"breach"}
            # The fired breach gives way to the new deadline's (one live timer per clock, kind
            # and point, as the index has it; the firing stays in the log, as in ``derive``).
            for t in self._timers:
                if t.clock_id == clock_id and t.kind == "breach" and t.cancelled_at is None:
                    t.cancelled_at, t.changed = now, True
                    if self._replaying is not None and t.fired_at is not None \
                            and t.due_at is not None and t.due_at > self._replaying:
                        # derive: the fact replayed moved this deadline before it came due,
                        # so by the facts it never fired (``unfounded``).
                        self.unfounded.add(self._firing_key(clock_id, t.kind, t.point,
                                                            t.due_at))
        policy = self._policies.get(self._clocks[clock_id].policy_key)
        fired_now = []
        for plan in clocks.resumed_timers(moved, now, fired):
            if plan.kind == "warning" and policy is not None and policy.warn_points:
                continue
            timer = self._inserted(clock_id, plan.kind, plan.due_at,
                                   fired_at=now if plan.fire_now else None,
                                   fire_at=self._quiet(plan.due_at, calendar)
                                   if plan.kind == "warning" else None)
            if plan.fire_now:
                fired_now.append((plan, timer))
        self._add_staff_timers(clock_id, moved, calendar, now)
        return fired_now

    def _quiet(self, due_at: datetime, calendar: WorkingCalendar) -> datetime | None:
        """When a staff-facing alert due at ``due_at`` is emitted: the next opening when quiet
        hours are on and it falls outside them, else None (at its due time)."""
        if self._office is None:
            return None
        at = self._office.next_opening(due_at, calendar)
        return None if at == due_at else at

    def _add_staff_timers(self, clock_id: int, deadline: Deadline, calendar: WorkingCalendar,
                          now: datetime, *, warnings: bool = True) -> None:
        """The running clock's warning points (when its policy names several) and its
        escalation ladder's steps, each once (what fired stays fired; a step already due is
        fired by the next scan)."""
        row = self._clocks[clock_id]
        policy = self._policies.get(row.policy_key)
        fired = self.fired_points(clock_id)
        pending = {(t.kind, t.point) for t in self._timers if t.clock_id == clock_id and t.pending}
        if warnings and policy is not None and policy.warn_points:
            for point, instant in clocks.warning_instants(row.started_at, deadline.deadline,
                                                          policy.warn_points, calendar):
                if ("warning", point) in fired | pending:
                    continue
                # derive: by when the fact planning it was recorded (``derive``)
                if instant <= (self._skip_now or now) and (
                        self._log is None
                        or self._firing_key(clock_id, "warning", point, instant) not in self._log):
                    continue  # passed before the clock was known: skipped, as ever
                self.insert_timer(clock_id, "warning", instant, point=point,
                                  fire_at=self._quiet(instant, calendar))
        ladder = clocks.ladder_for(self._ladders, row.clock, row.opd_code, row.category)
        if ladder is None:
            return
        for step in ladder.steps:
            point = clocks.escalation_point(step, ladder.version)
            if any(k == "escalate" and p.split(":")[0] == str(step.level)
                   for k, p in fired | pending):
                continue
            due = calendar.move_deadline(deadline.deadline, step.after_working_days)
            self.insert_timer(clock_id, "escalate", due, point=point,
                              fire_at=self._quiet(due, calendar))

    def _start_reopened_completions(self, policies: dict[str, Policy], calendar: WorkingCalendar,
                                    now: datetime) -> None:
        """One completion instance per reopen (banding), numbered 1, 2, … in the order sla
        learns of them; a reopen re-published under a new event id (same ``reopened_at``) adds
        nothing. Needs the first instance for the classification's policy: a reopen that arrives
        before ``complaint.submitted`` is started when the submission arrives."""
        existing = self.clocks_of_kind("completion")
        first = next((c for c in existing if c.hop == 0 and c.instance == 0), None)
        if first is None:
            return
        started = {c.started_at for c in existing}
        next_instance = max(c.hop for c in existing) + 1
        for fact in self.facts:
            if fact.kind != "reopened" or fact.at in started:
                continue
            self._start_clock(policies,
                              clocks.reopened_completion(first.policy_key, fact.at, next_instance),
                              calendar, now)
            started.add(fact.at)
            next_instance += 1

    def _start_reply_instances(self, policies: dict[str, Policy], calendar: WorkingCalendar,
                               now: datetime) -> None:
        """The OPD's turn again: after a reporter's reply (which needs a new answer) or a
        reopen, a new instance of the hop's OPD clock (full working days from then); after a
        reply, the completion clock met by the final tindak lanjut resumes (the reply window
        did not count against the regency: its deadline moves later by those working days).
        Each needs the clock it follows (the hop's first OPD clock, the met completion
        instance); until that one is known, the fact waits (re-checked on every message)."""
        for fact in self.facts:
            if fact.kind not in ("reporter_replied", "reopened"):
                continue
            opd = [c for c in self._clocks.values() if c.clock == "opd_response"
                   and c.started_at <= fact.at and (fact.hop == 0 or c.hop == fact.hop)]
            if opd:
                last = max(opd, key=lambda c: (c.hop, c.instance))
                instance = self._instance_for("opd_response", last.hop, fact.at)
                if instance is not None:
                    self._start_clock(policies, ClockStart(
                        "opd_response", last.hop, last.policy_key, fact.at,
                        opd_code=last.opd_code, instance=instance), calendar, now)
            if fact.kind == "reporter_replied" and self.met_by == "final_response":
                self._resume_completion(fact, calendar, policies, now)

    def _resume_completion(self, reply: Fact, calendar: WorkingCalendar,
                           policies: dict[str, Policy], now: datetime) -> None:
        met = [c for c in self._clocks.values() if c.clock == "completion"
               and c.stop_reason == "stopped" and c.final_response_at is not None
               and c.stopped_at == c.final_response_at and c.stopped_at <= reply.at]
        if not met:
            return
        prev = max(met, key=lambda c: c.started_at)
        if any(c.clock == "completion" and c.hop == prev.hop and c.started_at > prev.started_at
               for c in self._clocks.values()) or prev.stopped_at is None:
            return  # already resumed (or reopened since)
        instance = self._instance_for("completion", prev.hop, reply.at)
        if instance is None:
            return
        # It inherits the deadline of the instance it follows, so it runs under that one's
        # calendar version (one kept under an older version: that version).
        cal = self._calendar_of(prev, calendar)
        window = cal.paused_working_days(prev.stopped_at, reply.at)
        initial = clocks.resumed_deadline(prev.deadline_record(), window, cal)
        self._start_clock(policies, ClockStart(
            "completion", prev.hop, prev.policy_key, reply.at, instance=instance),
            cal, now, initial=initial)

    def _reclassify(self, policies: dict[str, Policy], calendar: WorkingCalendar,
                    now: datetime) -> None:
        """The admin's corrections, whatever order they were processed in: each completion
        clock runs under the policy of the latest correction made before it stopped (none: as
        it was created), recomputed from its start with the working days paused (a resumed
        instance: chained from the first, ``_chained_deadline``); a running one's timers are
        replaced (what fired stays fired). Each clock that changes gets ``sla.deadline_changed``
        with the correction's reason and who. Idempotent: a clock already under its policy is
        left as it is."""
        corrections = [(f.at, k) for f in self.facts if f.kind == "reclassified"
                       and (k := clocks.Correction.of(f))]
        if not corrections:
            return
        original = next((k for f in self.facts if f.kind == "submitted"
                         and (k := clocks.Correction.of(f))), None)
        category = corrections[-1][1].category
        for c in list(self._clocks.values()):  # a ladder may be scoped to the category
            if c.category != category:
                self._clocks[c.id] = replace(c, category=category)
        for row in list(self._clocks.values()):
            row = self._clocks[row.id]
            if row.clock != "completion":
                continue
            made = [k for at, k in corrections if row.stopped_at is None or at < row.stopped_at]
            data = made[-1] if made else original  # none made while it ran: as submitted
            if data is None or data.policy_key == row.policy_key:
                continue
            key = data.policy_key
            policy = self._policy_for((row.clock, row.hop, row.instance), key, policies)
            cal = self._calendar_of(row, calendar)
            chained = self._chained_deadline(row, policy, cal)
            if chained is None:
                continue
            initial, moved = chained
            self._clocks[row.id] = replace(
                row, policy_key=key, working_days=policy.working_days,
                policy_version=policy.version, initial_deadline=initial.deadline,
                initial_warn_at=initial.warn_at, deadline=moved.deadline, warn_at=moved.warn_at,
                calendar_version=cal.version)
            self.effects.deadline_changed(row, row.deadline, moved, "reclassified", data.reason,
                                          data.changed_by)
            # When the facts moved the deadline off the policy this message judged it by: the
            # first correction made while it ran to another policy.
            moved_at = min((at for at, k in corrections if k.policy_key != row.policy_key
                            and (row.stopped_at is None or at < row.stopped_at)), default=None)
            withdrawn = moved_at is not None and self._withdraw_at_once(row.id, moved_at, now)
            if row.stopped_at is not None:
                # Over: judged again by its new deadline, no timers — but a stop this message
                # judged late by a deadline the facts had moved first is judged by the new one.
                judged = clocks.deadline_at(moved.deadline, row.paused_at, row.stopped_at, cal)
                if withdrawn:
                    self._judge_stop_again(row.id, judged)
                pending, fired = self.live_timer_kinds(row.id)
                if withdrawn and "breach" not in fired \
                        and clocks.stop_decision(judged, row.stopped_at, True).fire_breach:
                    self._breach_at_once(row.id, self._fire(row.id, "breach", judged, pending,
                                                            now),
                                         replace(moved, deadline=judged), judged)
                continue
            self.effects.started(row.complaint_id, row.clock, row.hop, row.opd_code,
                                 row.started_at, moved, instance=row.instance,
                                 paused_working_days=row.paused_working_days)
            if row.paused_at is not None:
                continue  # DITUNDA: timers come with the resume
            self.cancel_pending_timers(row.id, now)
            for plan, timer in self._replan(row.id, moved, cal, now, moved_by_change=True):
                self._breach_at_once(row.id, timer, moved, plan.due_at)

    def _chained_deadline(self, row: ClockRow, policy: Policy,
                          calendar: WorkingCalendar) -> tuple[Deadline, Deadline] | None:
        """(initial, current) deadline of a clock recomputed from its start under ``policy``
        and ``calendar`` with the working days it paused. A completion instance resumed after
        a reporter's reply inherits the deadline of the instance it follows (recomputed the
        same way, down to the first), moved later by the reply window's working days; None
        when that chain is not known (an instance it follows is missing or still running)."""
        if row.clock == "completion" and row.instance > 0:
            prev = next((c for c in self._clocks.values() if c.clock == "completion"
                         and c.hop == row.hop and c.instance == row.instance - 1), None)
            if prev is None or prev.stopped_at is None:
                return None
            chained = self._chained_deadline(prev, policy, calendar)
            if chained is None:
                return None
            window = calendar.paused_working_days(prev.stopped_at, row.started_at)
            initial = clocks.resumed_deadline(chained[1], window, calendar)
        elif row.clock in ("auto_close", "deferral"):
            initial = clocks.auto_close_deadline(row.started_at, policy, calendar)
        else:
            initial = clocks.compute_deadline(row.started_at, policy, calendar)
        return initial, clocks.resumed_deadline(initial, row.paused_working_days, calendar)

    def _stop_clock(self, row: ClockRow, stop: ClockStop, calendar: WorkingCalendar,
                    now: datetime) -> None:
        """Stop or cancel a running clock. A late stop fires the breach if it has not fired; a
        reply window that elapsed before the stop fires its elapse instead; DITUNDA's clock
        never breaches."""
        if row.stopped_at is not None:
            return
        out = self.effects
        pending, fired = self.live_timer_kinds(row.id)
        judged = clocks.deadline_at(row.deadline, row.paused_at, stop.at, calendar)
        if row.clock == "auto_close":
            if stop.at > row.deadline:
                if "elapse" not in fired:
                    self._fire(row.id, "elapse", row.deadline, pending, now)
                    out.elapsed(row.complaint_id, row.hop, row.opd_code, row.started_at,
                                row.deadline_record())
                stop = ClockStop(stop.clock, stop.hop, row.deadline, "stopped")
        elif row.clock != "deferral":
            decision = clocks.stop_decision(judged, stop.at, breach_pending="breach" not in fired)
            if decision.fire_breach:
                self._breach_at_once(row.id, self._fire(row.id, "breach", judged, pending, now),
                                     replace(row.deadline_record(), deadline=judged), judged)
        self.cancel_pending_timers(row.id, now)
        self.mark_stopped(row.id, stop.at, stop.reason)
        self._stopped(row.id, stop, judged)

    def _restop(self, row: ClockRow, stop: ClockStop, calendar: WorkingCalendar) -> None:
        """An earlier stop processed after a later one (reordered): the earliest stop wins, as
        for a clock created after its stops. A reply window that a later close made elapse is
        undone by an earlier reply (the elapse event stays emitted: events are facts). Not
        for an expired DITUNDA (intake archived it). The correction is published as a new
        ``sla.clock_stopped``. (A late stop's breach that fired stays fired: the event is
        out.)"""
        if row.clock == "deferral" and row.stop_reason == "stopped" \
                and row.stopped_at == row.deadline:
            return  # expired: intake archived it, which cannot be undone
        # An elapsed reply window is undone by an earlier reply processed after the stop that
        # made it elapse: the clock ends at the reply (the elapse event stays emitted).
        self._clocks[row.id] = replace(row, stopped_at=stop.at, stop_reason=stop.reason)
        judged = clocks.deadline_at(row.deadline, row.paused_at, stop.at, calendar)
        self.effects.stopped(row.complaint_id, row.clock, row.hop, row.opd_code, stop, judged,
                             instance=row.instance)

    def _fire(self, clock_id: int, kind: TimerKind, due_at: datetime, pending: set[str],
              now: datetime) -> Timer | None:
        """Fire the clock's timer of ``kind`` at once; the timer fired (None: derive, and the
        log does not have it)."""
        if kind in pending:
            return self.fire_timer(clock_id, kind, now)
        # Paused (timers cancelled) or never had one: record the firing.
        return self._inserted(clock_id, kind, due_at, fired_at=now)

    def _inserted(self, clock_id: int, kind: TimerKind, due_at: datetime, *,
                  fired_at: datetime | None = None,
                  fire_at: datetime | None = None) -> Timer | None:
        """``insert_timer``, returning the timer inserted (None: derive left it out)."""
        before = len(self._timers)
        self.insert_timer(clock_id, kind, due_at, fired_at=fired_at, fire_at=fire_at)
        return self._timers[-1] if len(self._timers) > before else None

    def _stopped(self, clock_id: int, stop: ClockStop, judged: datetime) -> None:
        """``sla.clock_stopped`` of a clock this message stops, judged by ``judged``."""
        row, before = self._clocks[clock_id], len(self.effects.events)
        self.effects.stopped(row.complaint_id, row.clock, row.hop, row.opd_code, stop, judged,
                             instance=row.instance)
        if len(self.effects.events) > before:
            self._stopped_now[clock_id] = self.effects.events[-1]

    def _judge_stop_again(self, clock_id: int, judged: datetime) -> None:
        """The ``sla.clock_stopped`` this message emitted for the clock, judged by ``judged``
        instead (a correction applied after it moved the deadline first): rebuilt in its
        place, as nothing is out yet."""
        old, row = self._stopped_now.get(clock_id), self._clocks[clock_id]
        if old is None or row.stopped_at is None:
            return
        reason: StopReason = "cancelled" if row.stop_reason == "cancelled" else "stopped"
        self.effects.stopped(row.complaint_id, row.clock, row.hop, row.opd_code,
                             ClockStop(row.clock, row.hop, row.stopped_at, reason), judged,
                             instance=row.instance)
        new = self.effects.events.pop()
        self.effects.events[:] = [new if e is old else e for e in self.effects.events]
        self._stopped_now[clock_id] = new

    def _breach_at_once(self, clock_id: int, timer: Timer | None, deadline: Deadline,
                        due_at: datetime) -> None:
        """Report the breach this message fired at once (``timer``, marked fired), against
        ``deadline``. Provisional until the whole message is applied: a correction applied
        after it in the same message, made before ``due_at``, withdraws it
        (``_withdraw_at_once``): by the facts it never came due."""
        row = self._clocks[clock_id]
        events, alerts = len(self.effects.events), len(self.effects.alerts)
        self.effects.alert(SlaBreached, row.complaint_id, row.clock, row.hop, row.opd_code,
                           deadline, due_at, instance=row.instance)
        if timer is not None and self._log is None:  # (derive: the log says what fired)
            self._at_once.append(_AtOnce(timer, self.effects.events[events:],
                                         self.effects.alerts[alerts:]))

    def _withdraw_at_once(self, clock_id: int, moved_at: datetime, now: datetime) -> bool:
        """A correction made at ``moved_at`` moves the clock's deadline: a breach this message
        fired at once for a due time after ``moved_at`` never came due by the facts (the
        deadline had moved on first: the correction was processed before the fact that created
        the clock, or judged after its stop). It is withdrawn before anything is out: its
        event and alert are dropped, its timer is not fired (one inserted by this message is
        dropped, a stored one is cancelled). One due by ``moved_at`` stays fired (it gives way
        to the new deadline, ``_replan``). Returns whether any was withdrawn."""
        withdrawn = [a for a in self._at_once if a.timer.clock_id == clock_id
                     and a.timer.due_at is not None and a.timer.due_at > moved_at]
        if not withdrawn:
            return False
        drop_events = {id(e) for a in withdrawn for e in a.events}
        drop_alerts = {id(x) for a in withdrawn for x in a.alerts}
        self.effects.events[:] = [e for e in self.effects.events if id(e) not in drop_events]
        self.effects.alerts[:] = [x for x in self.effects.alerts if id(x) not in drop_alerts]
        for a in withdrawn:
            self._at_once.remove(a)
            if a.timer.id is None:
                self._timers = [t for t in self._timers if t is not a.timer]
            else:
                a.timer.fired_at, a.timer.cancelled_at, a.timer.changed = None, now, True
        return True

    def _pause(self, deferred_at: datetime, now: datetime) -> None:
        """DITUNDA: the clocks waiting on the reporter that run at ``deferred_at`` pause; their
        pending timers are cancelled (the resume makes new ones)."""
        for row in self.open_clocks():
            if row.clock not in clocks.PAUSABLE or row.started_at > deferred_at \
                    or row.paused_at is not None:
                continue
            if self.pause_applied(row.id, deferred_at):
                continue  # its resume arrived first and has been applied
            self.cancel_pending_timers(row.id, now)
            self.set_paused(row.id, deferred_at)

    def _resume(self, deferred_at: datetime, resumed_at: datetime, calendar: WorkingCalendar,
                now: datetime) -> None:
        """The paused clocks run again: deadline = initial deadline moved later by all working
        days paused so far; new timers; a new ``sla.clock_started`` carries the moved deadline."""
        complaint_id, out = self.complaint_id, self.effects
        for row in list(self._clocks.values()):
            if row.clock not in clocks.PAUSABLE or row.started_at > deferred_at:
                continue
            if self.pause_applied(row.id, deferred_at):
                continue
            cal = self._calendar_of(row, calendar)
            if row.stopped_at is not None:
                self._resume_stopped(row, deferred_at, resumed_at, cal, now)
                continue
            n = cal.paused_working_days(deferred_at, resumed_at)
            total = row.paused_working_days + n
            moved = clocks.resumed_deadline(row.initial_deadline_record(), total, cal)
            self.cancel_pending_timers(row.id, now)  # the deferral may not be seen yet
            self.record_pause(row.id, deferred_at, resumed_at, n, row.deadline, moved)
            # A later deferral processed before this resume keeps the clock paused.
            later = [p for p in clocks.pauses_for(row.clock, resumed_at, None, self.facts)
                     if p.resumed_at is None]
            paused_at = later[-1].deferred_at if later else None
            self.set_recomputed_deadline(row.id, moved, total, paused_at)
            out.started(complaint_id, row.clock, row.hop, row.opd_code, row.started_at, moved)
            if paused_at is not None:
                continue
            for plan, timer in self._replan(row.id, moved, cal, now):
                self._breach_at_once(row.id, timer, moved, plan.due_at)

    def _resume_stopped(self, row: ClockRow, deferred_at: datetime, resumed_at: datetime,
                        calendar: WorkingCalendar, now: datetime) -> None:
        """A resume processed after the clock stopped (reordered): if the DITUNDA began while
        it ran, its stored deadline gets the paused days too (the stop was already judged
        without them: ``deadline_at``); no timers, no event (the clock is over)."""
        if row.stopped_at is None or deferred_at >= row.stopped_at:
            return
        n = calendar.paused_working_days(deferred_at, min(resumed_at, row.stopped_at))
        total = row.paused_working_days + n
        moved = clocks.resumed_deadline(row.initial_deadline_record(), total, calendar)
        self.record_pause(row.id, deferred_at, resumed_at, n, row.deadline, moved)
        self.set_recomputed_deadline(row.id, moved, total, None)
        if row.clock == "completion" and n:
            self._shift_resumed_instances(row, n, calendar, now)

    def _shift_resumed_instances(self, row: ClockRow, n: int, calendar: WorkingCalendar,
                                 now: datetime) -> None:
        """The completion instances resumed after ``row`` (reporter replies) inherit its
        deadline: when it moves by ``n`` working days, so do they."""
        for c in list(self._clocks.values()):
            if c.clock != "completion" or c.hop != row.hop or c.instance <= row.instance:
                continue
            cal = self._calendar_of(c, calendar)
            warn = None if c.warn_at is None else cal.move_deadline(c.warn_at, n)
            self._clocks[c.id] = replace(
                c, deadline=cal.move_deadline(c.deadline, n), warn_at=warn,
                initial_deadline=cal.move_deadline(c.initial_deadline or c.deadline, n),
                initial_warn_at=None if c.initial_warn_at is None
                else cal.move_deadline(c.initial_warn_at, n))
            moved = self._clocks[c.id].deadline_record()
            if c.stopped_at is not None or c.paused_at is not None:
                continue
            self.cancel_pending_timers(c.id, now)
            for plan, timer in self._replan(c.id, moved, cal, now):
                self._breach_at_once(c.id, timer, moved, plan.due_at)
            self.effects.started(c.complaint_id, c.clock, c.hop, c.opd_code, c.started_at,
                                 moved, instance=c.instance)


# -- from scratch ------------------------------------------------------------------------------
def facts_of(timeline: list[EventData]) -> list[Fact]:
    """The facts a timeline of lifecycle events records (progress updates record none)."""
    return [f for f in map(clocks.fact_of, timeline) if f is not None]


def derive(complaint_id: uuid.UUID, facts: list[Fact], calendar: WorkingCalendar,
           policies: dict[str, Policy], now: datetime,
           met_by: CompletionMetBy = "final_response", *, ladders: tuple[Ladder, ...] = (),
           office_hours: OfficeHours | None = None,
           pinned: dict[tuple[str, int, int], Policy] | None = None,
           firings: list[Firing] | None = None) -> ComplaintClocks:
    """Every clock of a complaint computed from scratch from its facts alone (as stored:
    ``facts`` rows, whose ``detail`` carries what starting a clock needs), as of ``now``:
    applied in the order they happened (the submission first on a tie), from no stored
    state. Pure. The clocks sla maintains message by message, whatever order (and however
    often) the messages are processed in, must equal these (the properties in
    ``tests/unit/test_sla_order.py`` and ``tests/integration/test_sla_derive.py``).
    ``pinned``: the policy version each clock already stored was computed with (a policy
    edit applies to clocks started afterwards).

    ``firings``: the complaint's firing log. Given it, derive fires nothing itself: a timer
    is fired iff the log has it (same clock, kind, point and due time), every other timer the
    facts call for is still to fire, however long ago it came due (the scanner's job), and a
    reply window or DITUNDA is stopped by its elapse or expiry only when the log has that;
    a warning point already past when the clock was created (or planned again) is skipped,
    judged by when sla recorded the fact that did it (``Fact.recorded_at``, stored data), so
    the timers do not depend on when the derivation runs; ``now`` then only drops the
    warnings of clocks whose deadline has passed by it (noise: the scanner cancels them).
    Without it (None), the replay fires at ``now`` what is due by then."""
    state = ComplaintClocks(complaint_id, [], [], [], [])
    state._pinned = dict(pinned or {})
    state.effects.silent = True
    if firings is not None:
        state._log = {f.key: f.fired_at for f in firings}
        state.firings = list(firings)
    # A routing that never took (the facts after it tell) is no fact for the clocks at all,
    # not even until those facts come in the replay.
    effective = clocks.effective_facts(facts)
    replay_now = now if firings is None else _NOTHING_DUE
    for fact in sorted(facts, key=lambda f: (f.at, f.kind != "submitted")):
        state.record_fact(fact)
        took = fact.kind != "routed" or fact in effective
        if firings is not None:
            state._skip_now = fact.recorded_at or now
            state._replaying = fact.at
        state.apply(fact if took else None, calendar, policies, replay_now, met_by,
                    ladders=ladders, office_hours=office_hours)
    if firings is not None:
        state._settle_from_log(now)
    return state


# The replay's ``now`` when derive reads the firing log: before any timer is due, so nothing
# fires by the clock (the log says what fired).
_NOTHING_DUE = datetime(1970, 1, 1, tzinfo=UTC)


def drift(state: ComplaintClocks, derived: ComplaintClocks, calendar: WorkingCalendar, *,
          older: Mapping[str, ComplaintClocks] | None = None) -> list[str]:
    """The clocks (kinds) whose stored deadline columns differ from ``derive`` over the same
    facts, or that one of them lacks: the cache no longer equals the function (``drifted``).
    ``derived`` is under ``calendar`` (the current version); ``older`` holds the derivations
    under the older versions some clocks name, if the caller rebuilt those calendars (a clock
    under a version in neither is not compared)."""
    pairs = drifted(state, {**(older or {}), calendar.version: derived}, calendar.version)
    return [next(c for c in pair if c is not None).clock for pair in pairs]


def drifted(state: ComplaintClocks, derivations: Mapping[str, ComplaintClocks],
            current: str) -> list[tuple[ClockRow | None, ClockRow | None]]:
    """(stored, derived) for each clock whose stored deadline columns differ from ``derive``'s,
    or that one side lacks. Each stored clock is compared with the derivation under the
    calendar version it names (``derivations[its calendar_version]``: the same facts derived
    under that calendar), so a deadline kept under an older version is checked too; a clock
    whose version has no derivation (its calendar could not be rebuilt) is not compared. A
    clock the facts call for and nothing stored is looked for in the ``current`` derivation.
    Whether a clock has stopped yet is not compared (a reply window or DITUNDA that ran out by
    ``now`` is stopped by the scanner, later)."""
    def columns(c: ClockRow) -> tuple[object, ...]:
        return (c.opd_code, c.started_at, c.deadline, c.warn_at, c.initial_deadline,
                c.initial_warn_at, c.working_days, c.policy_key, c.policy_version,
                c.paused_working_days)

    def key(c: ClockRow) -> tuple[str, int, int]:
        return c.clock, c.hop, c.instance

    wants = {v: {key(c): c for c in d.all_clocks()} for v, d in derivations.items()}
    have = {key(c): c for c in state.all_clocks()}
    out: list[tuple[ClockRow | None, ClockRow | None]] = []
    for k, c in have.items():
        want = wants.get(c.calendar_version)
        if want is not None and (k not in want or columns(want[k]) != columns(c)):
            out.append((c, want.get(k)))
    return out + [(None, c) for k, c in wants.get(current, {}).items() if k not in have]


ClockKey = tuple[str, int, int]  # (clock kind, hop, instance): a clock in any derivation


def _key(c: ClockRow) -> ClockKey:
    return c.clock, c.hop, c.instance


def sources(state: ComplaintClocks, derived: ComplaintClocks, calendar: WorkingCalendar,
            older: Mapping[str, ComplaintClocks] | None = None) -> dict[ClockKey, ComplaintClocks]:
    """Which derivation a clock's rows are written from (``diff``) and its firings checked
    against (``unlogged``), for the clocks not written from ``derived`` (under ``calendar``,
    the current version): a clock that the decision leaves under an older calendar version
    ``older`` holds a derivation for (the same facts derived under that version, rebuilt),
    and that derivation has, is written from that one — its deadline stays as the version
    that computed it gives it (an operator's change with ``keep_deadlines``)."""
    out: dict[ClockKey, ComplaintClocks] = {}
    for c in state.all_clocks():
        src = (older or {}).get(c.calendar_version)
        if src is not None and c.calendar_version != calendar.version \
                and any(_key(d) == _key(c) for d in src.all_clocks()):
            out[_key(c)] = src
    return out


def unlogged(fired: list[Firing], derived: ComplaintClocks, *,
             sources: Mapping[ClockKey, ComplaintClocks] | None = None) -> list[Firing]:
    """The firings ``apply`` made (its events say so) that the derivation its clock's rows are
    written from (``sources``, else ``derived``) has no live fired timer for: they gave way to
    a later deadline at once — a breach that came due before a correction moved the deadline
    on (made after it came due, processed with or before the fact that created the clock).
    Real, so history: ``diff`` writes each as a fired timer cancelled at once, so the firing
    log has it."""
    def have(d: ComplaintClocks) -> set[FiringKey]:
        return {d._firing_key(t.clock_id, t.kind, t.point, t.due_at)
                for t in d._timers if t.fired_at is not None and t.due_at is not None
                and t.cancelled_at is None}

    fired_in: dict[int, set[FiringKey]] = {}
    out = []
    for f in fired:
        d = (sources or {}).get((f.clock, f.hop, f.instance), derived)
        if f.key not in fired_in.setdefault(id(d), have(d)):
            out.append(f)
    return out


def unfounded(fired: list[Firing], derived: ComplaintClocks, *,
              sources: Mapping[ClockKey, ComplaintClocks] | None = None) -> list[Firing]:
    """The firings ``apply`` made that the derivation its clock's rows come from
    (``sources``, else ``derived``) finds unfounded: in the replay of the facts in the order
    they happened, the deadline they were due at had moved before they came due (a
    correction made before it), so by the facts they never fired. ``apply`` withdraws such a
    firing before anything is out (``ComplaintClocks._withdraw_at_once``): a sanity check on
    its events, which stays empty. (One of them that a later correction brings back, due
    again, is live in derive's rows: founded.)"""
    return [f for f in unlogged(fired, derived, sources=sources)
            if f.key in (sources or {}).get((f.clock, f.hop, f.instance), derived).unfounded]


def _deadline_columns(c: ClockRow) -> tuple[object, ...]:
    return (c.deadline, c.warn_at, c.initial_deadline, c.initial_warn_at, c.paused_working_days)


def diff(state: ComplaintClocks, derived: ComplaintClocks, calendar: WorkingCalendar,
         now: datetime, given_way: list[Firing], *,
         older: Mapping[str, ComplaintClocks] | None = None) -> ClockChanges:
    """What to write so that the stored rows are ``derive``'s (over the facts, the pinned
    policies and the firing log, this message's firings included): the difference between
    the rows ``state`` was loaded with — every clock, the live (not cancelled) timers, the
    pauses — and the derivation's, clocks matched by (kind, hop, instance), timers by (clock,
    kind, point). Which clocks there are is ``derived``'s (under ``calendar``, the current
    version); each one's rows come from the derivation under the calendar version the
    decision leaves it under (``sources``): ``older`` holds the derivations under the older
    versions stored clocks name, rebuilt (``CalendarSource.at_version``), so a deadline kept
    under the version that computed it is derive's under that version, never patched. A
    clock derive has and storage lacks is inserted with its timers and pauses, one storage
    has and derive no longer calls for is deleted with them, a changed one is updated; a
    stored timer whose due or emission time derive no longer has is cancelled (a fired one
    too: its firing stays in the log, and the index allows one live timer per clock, kind and
    point) and derive's inserted; a pending one derive has fired (this message fired it) is
    marked fired. A firing this message made that derive's rows carry only as given way to a
    later deadline (``given_way``: ``unlogged``) is written as a fired timer cancelled at
    once, so the firing log has it.

    The one exception: a stored clock computed under an older calendar version ``older``
    has no derivation for (it cannot be rebuilt: another holidays release, or a revision
    made before its content was stored) whose deadline the current calendar would move
    keeps it, as ``apply`` leaves it — ``apply``'s changes of it and of its timers and
    pauses are written. A clock whose deadline the current calendar does not move keeps the
    version that computed it."""
    src_of = sources(state, derived, calendar, older)
    loaded = {_key(c): c for c in state._loaded.values()}
    want = {_key(c): c for c in derived.all_clocks()}
    # The derivations rows are taken from, and for each its clock id → the stored id (or the
    # provisional id of an insert).
    rows_from = [derived, *(d for d in (older or {}).values() if d is not derived)]
    ids: list[dict[int, int]] = [{} for _ in rows_from]
    new_clocks: list[ClockRow] = []
    changed: list[ClockRow] = []
    kept: set[int] = set()  # stored clocks as ``apply`` leaves them (older calendar, not rebuilt)
    for key, d in want.items():
        s = loaded.get(key)
        src = src_of.get(key, derived)
        i = next(i for i, r in enumerate(rows_from) if r is src)
        if s is None:
            d = next(c for c in src.all_clocks() if _key(c) == key)
            ids[i][d.id] = -1 - len(new_clocks)
            new_clocks.append(replace(d, id=ids[i][d.id]))
            continue
        if s.calendar_version != calendar.version and s.calendar_version not in (older or {}) \
                and _deadline_columns(d) != _deadline_columns(s) and s.id in state._clocks:
            kept.add(s.id)
            continue
        d = next(c for c in src.all_clocks() if _key(c) == key)
        ids[i][d.id] = s.id
        row = replace(d, id=s.id)
        if _deadline_columns(row) == _deadline_columns(s):
            row = replace(row, calendar_version=s.calendar_version)
        if row != s:
            changed.append(row)
    deleted = [s.id for k, s in loaded.items() if k not in want]

    stored: dict[tuple[int, str, str], Timer] = {
        (t.clock_id, t.kind, t.point): t for t in state._loaded_timers
        if t.cancelled_at is None and t.clock_id not in kept}
    updates: list[Timer] = []
    inserts: list[Timer] = []
    for src, mine in zip(rows_from, ids, strict=True):
        for t in src._timers:
            if t.cancelled_at is not None or t.clock_id not in mine:  # (not in: kept, or another's)
                continue
            clock_id = mine[t.clock_id]
            have = stored.pop((clock_id, t.kind, t.point), None)
            if have is not None and have.due_at == t.due_at \
                    and (have.fire_at or have.due_at) == (t.fire_at or t.due_at) \
                    and (have.fired_at is None or t.fired_at is not None):
                if have.fired_at is None and t.fired_at is not None:
                    updates.append(replace(have, fired_at=t.fired_at, changed=True))
                continue
            if have is not None:
                updates.append(replace(have, cancelled_at=now, changed=True))
            inserts.append(replace(t, id=None, clock_id=clock_id, cancelled_at=None,
                                   changed=False))
    updates += [replace(t, cancelled_at=now, changed=True) for t in stored.values()
                if t.clock_id not in deleted]
    # A firing this message made (its event is staged) that derive's live timers do not
    # carry — it came due, then a correction made after that moved the deadline on, and it
    # gave way (``given_way``: ``unlogged`` of the message's firings, which the caller has
    # computed) — is history: written as a fired timer, cancelled at once, so the log has it
    # and derive reads it from then on.
    by_key: dict[ClockKey, int] = {
        _key(c): mine[c.id] for src, mine in zip(rows_from, ids, strict=True)
        for c in src.all_clocks() if c.id in mine}
    for f in given_way:
        into = by_key.get((f.clock, f.hop, f.instance))
        if into is not None:  # (None: a clock derive does not have: nowhere to keep it)
            inserts.append(Timer(None, into, f.kind, f.due_at,  # type: ignore[arg-type]
                                 f.fired_at, now, point=f.point,
                                 fire_at=None if f.fire_at == f.due_at else f.fire_at))

    have_pauses = {(p.clock_id, p.deferred_at): p for p in state._loaded_pauses
                   if p.clock_id not in kept}
    pauses: dict[tuple[int, datetime], PauseRow] = {}
    for src, mine in zip(rows_from, ids, strict=True):
        for p in src._new_pauses:
            if p.clock_id in mine:
                pause = replace(p, clock_id=mine[p.clock_id])
                pauses[(pause.clock_id, pause.deferred_at)] = pause
    for k, pause in list(pauses.items()):
        old = have_pauses.pop(k, None)
        if old is not None and replace(pause, calendar_version=old.calendar_version) == old:
            del pauses[k]
    dropped = [k for k in have_pauses if k[0] not in deleted]

    if kept:  # apply's own changes of the clocks it keeps
        own = state.changes()
        changed += [c for c in own.changed_clocks if c.id in kept]
        updates += [t for t in own.timer_updates if t.clock_id in kept]
        inserts += [t for t in own.timer_inserts if t.clock_id in kept]
        pauses.update({(p.clock_id, p.deferred_at): p for p in own.new_pauses
                       if p.clock_id in kept})
    return ClockChanges(new_clocks, changed, updates, inserts, list(pauses.values()), deleted,
                        dropped)


# -- the scanner -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DueTimer:
    """A due timer the scanner claimed and marked fired (with its clock)."""

    timer_id: int
    kind: TimerKind
    due_at: datetime
    lag_s: float  # fire time − max(due time, creation time)
    complaint_id: uuid.UUID
    clock: ClockKind
    hop: int
    opd_code: str | None
    deadline: datetime
    calendar_version: str
    policy_version: int
    clock_id: int = 0
    started_at: datetime | None = None
    point: str = ""
    instance: int = 0


@dataclass
class TimerFirings(Effects):
    """The scanner's decisions for a batch of fired timers: events, alerts, and the clocks an
    elapsed reply window stops (clock id, stop)."""

    stops: list[tuple[int, ClockStop]] = field(default_factory=list)


def fire_timers(due: list[DueTimer]) -> TimerFirings:
    """What the firing of ``due`` (already marked fired) means: a warning or a breach event per
    timer; an elapsed reply window also stops its clock (intake closes the complaint), as does
    an expired DITUNDA (``sla.deferral_expired``: intake archives it)."""
    out = TimerFirings()
    for t in due:
        deadline = Deadline(0, t.deadline, None, t.calendar_version, t.policy_version)
        if t.kind == "elapse":
            if t.started_at is None:
                raise ValueError(f"elapsed timer {t.timer_id} without its clock's start")
            out.elapsed(t.complaint_id, t.hop, t.opd_code, t.started_at, deadline, t.lag_s)
            stop = ClockStop("auto_close", t.hop, t.deadline, "stopped")
            out.stops.append((t.clock_id, stop))
            out.stopped(t.complaint_id, t.clock, t.hop, t.opd_code, stop, t.deadline)
            continue
        if t.clock == "deferral":
            if t.started_at is None:
                raise ValueError(f"deferral timer {t.timer_id} without its clock's start")
            out.expired(t.complaint_id, t.started_at, deadline, t.lag_s)
            stop = ClockStop("deferral", t.hop, t.deadline, "stopped")
            out.stops.append((t.clock_id, stop))
            out.stopped(t.complaint_id, t.clock, t.hop, t.opd_code, stop, t.deadline)
            continue
        if t.kind == "escalate":
            level, target, late, version = clocks.parse_escalation_point(t.point)
            out.events.append(make_event(SOURCE, SlaEscalated(
                complaint_id=t.complaint_id, clock=t.clock, hop=t.hop, instance=t.instance,
                opd_code=t.opd_code, deadline=t.deadline, due_at=t.due_at,
                calendar_version=t.calendar_version, policy_version=t.policy_version,
                level=level, target_role=target, working_days_late=late,
                ladder_version=version)))
            out.alerts.append(Alert("escalation", t.clock, t.opd_code, t.lag_s))
            continue
        if t.kind == "warning":
            out.events.append(make_event(SOURCE, SlaWarning(
                complaint_id=t.complaint_id, clock=t.clock, hop=t.hop, instance=t.instance,
                opd_code=t.opd_code, deadline=t.deadline, due_at=t.due_at,
                calendar_version=t.calendar_version, policy_version=t.policy_version,
                point=t.point or None)))
            out.alerts.append(Alert("warning", t.clock, t.opd_code, t.lag_s))
            continue
        out.alert(SlaBreached, t.complaint_id, t.clock, t.hop, t.opd_code, deadline, t.due_at,
                  lag_s=t.lag_s, instance=t.instance)
    return out
