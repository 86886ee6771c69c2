"""Which clocks start and stop on which event, their deadlines and their timers. Pure.

A clock is identified by (complaint, clock kind, hop, instance); events carry ``hop`` only:
- verification: hop 0, instance 0.
- opd_response: hop = the routing hop (1, 2, …), instance 0.
- completion: hop = the completion instance — 0 from receipt, k from the k-th reopen (banding)
  — so every consumer keyed on (clock, hop) sees a reopened completion clock as a new clock.
- auto_close: hop = the OPD hop of the response, instance = its ``response_no``: a newer
  response restarts the window as a new instance of the same hop.
- opd_response again after a reporter's reply or a reopen: the same hop, instance 1, 2, …
- completion resumed after a reporter's reply: the same hop, instance 1, 2, … (its deadline is
  the previous instance's, moved later by the working days of the reply window).
- redisposition: hop = the hop returned or withdrawn; the admin koordinator's clock until the
  next disposition (or an archive, a forward).
- deferral: hop 0, instance 0, 1, … per DITUNDA; it expires into ``sla.deferral_expired``.

Every lifecycle event is also kept as a ``Fact``; ``stop_for`` says which fact stops or
cancels which clock, so a clock created after its stopping event (competing consumers
reorder events) is created already stopped, and the earliest stop always wins.

Invariants:
- A deadline is a pure function of (start instant, policy, calendar): recomputed, never
  edited in place. It carries the calendar version and policy version that produced it.
- A clock stopped after its deadline is a breach: if its breach has not fired yet, the stop
  fires it (a late stop is a breach, not silence).
- A clock whose deadline has already passed when it is created fires its breach at once and
  never warns.
- auto_close is not an SLA: it has no warning and no breach; its only timer is ``elapse``
  (``sla.reply_window_elapsed``), fired once, after which the clock is stopped at its deadline.
- DITUNDA pauses verification and completion (the clocks that wait on the reporter): their
  pending timers are cancelled; on resume the deadline is the initial deadline moved later by
  all working days paused so far (``WorkingCalendar.paused_working_days``), with new timers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Literal

from services.sla.calendar import WorkingCalendar
from services.sla.policy import (
    AUTO_CLOSE,
    DEFERRAL,
    OPD_RESPONSE,
    REDISPOSITION,
    VERIFICATION,
    Policy,
    completion_policy_key,
)
from shared.events import (
    ClockKind,
    ComplaintArchived,
    ComplaintClosed,
    ComplaintDeferred,
    ComplaintForwarded,
    ComplaintReclassified,
    ComplaintReopened,
    ComplaintReporterReplied,
    ComplaintResponded,
    ComplaintResumed,
    ComplaintReturned,
    ComplaintRouted,
    ComplaintSubmitted,
    ComplaintWithdrawn,
    EscalationTarget,
    EventData,
)

StopReason = Literal["stopped", "cancelled"]
# What meets the completion clock (a policy setting: a regency whose Perbup reads differently
# chooses "close"): the OPD's final tindak lanjut (default), or the close.
CompletionMetBy = Literal["final_response", "close"]
TimerKind = Literal["warning", "breach", "elapse", "escalate"]
# The clocks that wait on the reporter: DITUNDA pauses them.
PAUSABLE: frozenset[str] = frozenset({"verification", "completion"})


@dataclass(frozen=True)
class ClockStart:
    """A clock to start: what, for which hop/OPD, from when, under which policy row."""

    clock: ClockKind
    hop: int
    policy_key: str
    started_at: datetime
    opd_code: str | None = None
    instance: int = 0
    category: str | None = None  # the complaint's, when the event says it


@dataclass(frozen=True)
class ClockStop:
    clock: ClockKind
    hop: int
    at: datetime
    reason: StopReason = "stopped"


@dataclass(frozen=True)
class Deadline:
    working_days: int
    deadline: datetime
    warn_at: datetime | None
    calendar_version: str
    policy_version: int


@dataclass(frozen=True)
class TimerPlan:
    """A timer row to write. ``fire_now``: fire it in the creating transaction."""

    kind: TimerKind
    due_at: datetime
    fire_now: bool = False
    point: str = ""


@dataclass(frozen=True)
class StopDecision:
    on_time: bool
    fire_breach: bool


def starts_on_submission(event: ComplaintSubmitted) -> list[ClockStart]:
    """complaint.submitted starts verification and completion, both from ``received_at``
    (the moment the complaint reached the first portal, so a late import may be overdue).
    Imported history (``historical``) starts nothing: its outcome is already known."""
    if event.historical:
        return []
    return [
        ClockStart("verification", 0, VERIFICATION, event.received_at,
                   category=event.category),
        ClockStart("completion", 0,
                   completion_policy_key(event.classification, event.berkadar_pengawasan),
                   event.received_at, category=event.category),
    ]


def compute_deadline(started_at: datetime, policy: Policy, calendar: WorkingCalendar) -> Deadline:
    deadline = calendar.deadline(started_at, policy.working_days)
    warn_days = policy.working_days - policy.warn_before_working_days
    # Warn at the end of working day N - w (i.e. w working days before the deadline); no
    # warning when that is not after the start (w >= N) or warnings are off (w == 0).
    warn_at = (calendar.deadline(started_at, warn_days)
               if policy.warn_before_working_days > 0 and warn_days > 0 else None)
    return Deadline(policy.working_days, deadline, warn_at, calendar.version, policy.version)


def stop_decision(deadline: datetime, stopped_at: datetime, breach_pending: bool) -> StopDecision:
    on_time = stopped_at <= deadline
    return StopDecision(on_time=on_time, fire_breach=not on_time and breach_pending)


def initial_timers(deadline: Deadline, now: datetime, stop: ClockStop | None) -> list[TimerPlan]:
    """Timers of a newly created clock.

    - Created already stopped (its stop event arrived first): a breach fires at once iff the
      stop was late; nothing else.
    - Deadline already passed: the breach fires at once; no warning.
    - Otherwise: a pending breach at the deadline and a pending warning at ``warn_at``.
    """
    if stop is not None:
        if stop_decision(deadline.deadline, stop.at, breach_pending=True).fire_breach:
            return [TimerPlan("breach", deadline.deadline, fire_now=True)]
        return []
    if deadline.deadline <= now:
        return [TimerPlan("breach", deadline.deadline, fire_now=True)]
    plans = [TimerPlan("breach", deadline.deadline)]
    if deadline.warn_at is not None:
        plans.insert(0, TimerPlan("warning", deadline.warn_at))
    return plans


def earliest_stop(*stops: ClockStop | None) -> ClockStop | None:
    present = [s for s in stops if s is not None]
    return min(present, key=lambda s: s.at) if present else None


# -- the whole lifecycle ---------------------------------------------------------------------
@dataclass(frozen=True)
class Fact:
    """A lifecycle event as the clocks see it: what happened, when (the event's own time
    field, never the arrival time), for which OPD hop. ``deferred_at`` only for ``resumed``."""

    kind: str
    at: datetime
    hop: int = 0
    deferred_at: datetime | None = None
    # ``reclassified``: the correction as JSON (``Correction``), so it applies whatever order
    # it is processed in (before the submission, it waits for the completion clock);
    # ``submitted``: the classification's policy, which a correction found not to apply (the
    # clock stopped before it, learnt later) gives back.
    detail: str | None = None
    # When sla first recorded it (the processing time of the message that brought it; kept on
    # the ``facts`` row): what a clock's creation is judged against when derive decides which
    # warning points had already passed (``domain.derive``), so that is stored data, not the
    # time of the derivation. Not part of the fact's identity. None: not stored (yet).
    recorded_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Correction:
    """An admin's reclassification as the clocks need it."""

    policy_key: str
    category: str | None
    reason: str | None
    changed_by: str | None

    @classmethod
    def of(cls, fact: Fact) -> Correction | None:
        if fact.kind not in ("reclassified", "submitted") or not fact.detail:
            return None
        d = json.loads(fact.detail)
        return cls(d["policy_key"], d.get("category"), d.get("reason"), d.get("changed_by"))


def _detail(policy_key: str, category: str | None, reason: str | None,
            changed_by: str | None, **extra: object) -> str:
    return json.dumps({"policy_key": policy_key, "category": category, "reason": reason,
                       "changed_by": changed_by, **extra}, sort_keys=True)


def _opd_detail(opd_code: str | None, **extra: object) -> str:
    return json.dumps({"opd_code": opd_code, **extra}, sort_keys=True)


def detail_of(fact: Fact) -> dict[str, object]:
    """What a fact carries besides its kind, time and hop (empty for a row written before its
    kind carried any: migration 0008 filled those in from the clocks they started)."""
    return json.loads(fact.detail) if fact.detail else {}


def fact_of(data: EventData) -> Fact | None:
    """The fact a lifecycle event records; None for events that start clocks only."""
    match data:
        case ComplaintRouted():
            return Fact("routed", data.routed_at, data.hop, detail=_opd_detail(data.opd_code))
        case ComplaintResponded():
            # A progress update (``final`` False) stops nothing: not a fact for the clocks.
            return Fact("responded", data.responded_at, data.hop, detail=_opd_detail(
                data.opd_code, response_no=data.response_no)) if data.final else None
        case ComplaintWithdrawn():
            return Fact("withdrawn", data.withdrawn_at, data.hop,
                        detail=_opd_detail(data.opd_code))
        case ComplaintReclassified():
            return Fact("reclassified", data.reclassified_at, detail=_detail(
                completion_policy_key(data.classification, data.berkadar_pengawasan),
                data.category, data.reason, data.changed_by))
        case ComplaintSubmitted():
            # Everything the submission's clocks need (``starts_of``): the classification (and
            # its completion policy), the category, and whether it is imported history.
            return Fact("submitted", data.received_at, detail=_detail(
                completion_policy_key(data.classification, data.berkadar_pengawasan),
                data.category, None, None, classification=data.classification,
                berkadar_pengawasan=data.berkadar_pengawasan, historical=data.historical))
        case ComplaintReturned():
            return Fact("returned", data.returned_at, data.hop,
                        detail=_opd_detail(data.opd_code))
        case ComplaintArchived():
            return Fact("archived", data.archived_at)
        case ComplaintForwarded():
            return Fact("forwarded", data.forwarded_at)
        case ComplaintClosed():
            return Fact("closed", data.closed_at, data.hop)
        case ComplaintReopened():
            return Fact("reopened", data.reopened_at, data.hop)
        case ComplaintReporterReplied():
            return Fact("reporter_replied", data.replied_at, data.hop)
        case ComplaintDeferred():
            return Fact("deferred", data.deferred_at)
        case ComplaintResumed():
            return Fact("resumed", data.resumed_at, deferred_at=data.deferred_at)
    return None


_ENDS_REGENCY_CLOCKS = ("archived", "forwarded")


def _stop_by(clock: str, hop: int, started_at: datetime, f: Fact,
             met_by: CompletionMetBy) -> ClockStop | None:
    def stop(reason: StopReason) -> ClockStop:
        return ClockStop(clock, hop, f.at, reason)  # type: ignore[arg-type]

    if clock == "verification":
        # The admin koordinator's decision (dispose, archive, forward) meets the clock; a
        # close without one (rare) just ends it.
        if f.kind in ("routed", "archived", "forwarded"):
            return stop("stopped")
        if f.kind == "closed" and f.at >= started_at:
            return stop("cancelled")
    elif clock == "opd_response":
        if f.kind in ("responded", "returned") and f.hop == hop and f.at >= started_at:
            return stop("stopped")  # a late response or return is a breach
        if f.kind == "withdrawn" and f.hop == hop and f.at >= started_at:
            return stop("cancelled")  # pulled back by the admin: not the OPD's breach
        if f.kind == "routed" and f.hop > hop:
            return stop("cancelled")  # re-routed: a later hop supersedes this one
        if f.kind in (*_ENDS_REGENCY_CLOCKS, "closed") and f.at >= started_at:
            return stop("cancelled")
        if f.kind == "deferred" and f.at >= started_at:
            # DITUNDA is never entered from TERDISPOSISI: the routing never took.
            return stop("cancelled")
    elif clock == "completion":
        # Each completion instance is ended by the first meeting fact after its start; a close
        # before a reopen belongs to the earlier instance.
        if f.at < started_at:
            return None
        if f.kind == "closed":
            return stop("stopped")
        if f.kind == "responded" and met_by == "final_response":
            return stop("stopped")
        if f.kind in _ENDS_REGENCY_CLOCKS:
            return stop("cancelled")
    elif clock == "auto_close":
        if f.kind in ("reporter_replied", "closed", "reopened", *_ENDS_REGENCY_CLOCKS) \
                and f.at >= started_at:
            return stop("cancelled")
        if f.kind == "responded" and f.at > started_at:
            return stop("cancelled")  # a newer response restarts the window
    elif clock == "redisposition":
        if f.at < started_at:
            return None
        if f.kind == "routed" and f.hop > hop:
            return stop("stopped")  # re-disposed
        if f.kind in _ENDS_REGENCY_CLOCKS:
            return stop("stopped")  # the admin decided otherwise: met too
        if f.kind == "closed":
            return stop("cancelled")
    elif clock == "deferral":
        if f.kind == "resumed" and f.deferred_at == started_at:
            return stop("stopped")
        if f.kind in (*_ENDS_REGENCY_CLOCKS, "closed") and f.at >= started_at:
            return stop("cancelled")
    return None


def stop_for(clock: str, hop: int, started_at: datetime, facts: list[Fact],
             met_by: CompletionMetBy = "final_response") -> ClockStop | None:
    """The earliest stop or cancel of a clock among ``facts``, or None."""
    return earliest_stop(*(_stop_by(clock, hop, started_at, f, met_by) for f in facts))


_PRE_DISPOSITION_ENDS = ("archived", "forwarded", "deferred")


def routing_took(routed: Fact, facts: list[Fact]) -> bool:
    """Whether a routing ``routed`` applied to the complaint, as far as ``facts`` tell.

    An automatic routing that reached intake after the admin koordinator had archived,
    forwarded or deferred the complaint was ignored there; sla sees the admin's fact at or
    after the routing's time with no return or withdrawal of that hop in between (archive,
    forward and defer are never allowed while TERDISPOSISI)."""
    back = [f.at for f in facts if f.hop == routed.hop and f.kind in ("returned", "withdrawn")
            and f.at >= routed.at]
    # A routing after the close (with no reopen since) came too late: intake ignored it.
    reopened = [f.at for f in facts if f.kind == "reopened" and f.at <= routed.at]
    if any(f.kind == "closed" and f.at <= routed.at and not any(r >= f.at for r in reopened)
           for f in facts):
        return False
    return not any(f.kind in _PRE_DISPOSITION_ENDS and f.at >= routed.at
                   and not any(b <= f.at for b in back) for f in facts)


def effective_facts(facts: list[Fact]) -> list[Fact]:
    """``facts`` without routings that never took (``routing_took``)."""
    return [f for f in facts if f.kind != "routed" or routing_took(f, facts)]


def starts_on(data: EventData) -> list[ClockStart]:
    """Clocks a lifecycle event starts (the completion instance of a reopen is numbered by the
    caller, which knows the existing instances)."""
    match data:
        case ComplaintSubmitted():
            return starts_on_submission(data)
        case ComplaintRouted():
            # Each hop's OPD clock starts at its disposition; the routing also stops the
            # verification clock and cancels earlier hops' OPD clocks (``_stop_by``).
            return [ClockStart("opd_response", data.hop, OPD_RESPONSE, data.routed_at,
                               opd_code=data.opd_code)]
        case ComplaintResponded() if data.final:
            return [ClockStart("auto_close", data.hop, AUTO_CLOSE, data.responded_at,
                               opd_code=data.opd_code, instance=data.response_no)]
        case ComplaintReturned():
            return [ClockStart("redisposition", data.hop, REDISPOSITION, data.returned_at,
                               opd_code=data.opd_code)]
        case ComplaintWithdrawn():
            return [ClockStart("redisposition", data.hop, REDISPOSITION, data.withdrawn_at,
                               opd_code=data.opd_code)]
        case ComplaintDeferred():
            # The instance is numbered by the caller (one per DITUNDA).
            return [ClockStart("deferral", 0, DEFERRAL, data.deferred_at)]
    return []


def starts_of(fact: Fact) -> list[ClockStart]:
    """The clocks a fact starts: ``starts_on`` of the event it records, from the fact alone
    (its ``detail`` carries the OPD, the response number, the classification's policy and the
    category), so the clocks are a function of the stored facts (``domain.derive``)."""
    d = detail_of(fact)
    opd = d.get("opd_code")
    opd_code = opd if isinstance(opd, str) else None
    match fact.kind:
        case "submitted":
            key = d.get("policy_key")
            if d.get("historical") or not isinstance(key, str):
                return []
            category = d.get("category")
            cat = category if isinstance(category, str) else None
            return [ClockStart("verification", 0, VERIFICATION, fact.at, category=cat),
                    ClockStart("completion", 0, key, fact.at, category=cat)]
        case "routed":
            return [ClockStart("opd_response", fact.hop, OPD_RESPONSE, fact.at,
                               opd_code=opd_code)]
        case "responded":
            no = d.get("response_no")
            return [ClockStart("auto_close", fact.hop, AUTO_CLOSE, fact.at, opd_code=opd_code,
                               instance=no if isinstance(no, int) else 1)]
        case "returned" | "withdrawn":
            return [ClockStart("redisposition", fact.hop, REDISPOSITION, fact.at,
                               opd_code=opd_code)]
        case "deferred":
            return [ClockStart("deferral", 0, DEFERRAL, fact.at)]
    return []


def reopened_completion(policy_key: str, reopened_at: datetime, instance: int) -> ClockStart:
    """A reopen (banding) starts a new completion clock with the full working days."""
    return ClockStart("completion", instance, policy_key, reopened_at)


@dataclass(frozen=True)
class Pause:
    deferred_at: datetime
    resumed_at: datetime | None  # None: still DITUNDA


def pauses_for(clock: str, started_at: datetime, stop: ClockStop | None,
               facts: list[Fact]) -> list[Pause]:
    """The DITUNDA periods that pause this clock: deferred after it started and before it
    stopped; a ``resumed`` fact alone is a whole period (it carries ``deferred_at``)."""
    if clock not in PAUSABLE:
        return []
    periods: dict[datetime, datetime | None] = {}
    for f in facts:
        if f.kind == "deferred":
            periods.setdefault(f.at, None)
        elif f.kind == "resumed" and f.deferred_at is not None:
            periods[f.deferred_at] = f.at
    return [Pause(d, r) for d, r in sorted(periods.items())
            if d >= started_at and (stop is None or d < stop.at)]


def resumed_deadline(initial: Deadline, paused_working_days: int,
                     calendar: WorkingCalendar) -> Deadline:
    """The deadline after pauses: the initial deadline (and warning) moved later by the total
    working days paused, recomputed from the initial one under the current calendar."""
    return Deadline(
        initial.working_days,
        calendar.move_deadline(initial.deadline, paused_working_days),
        None if initial.warn_at is None
        else calendar.move_deadline(initial.warn_at, paused_working_days),
        calendar.version, initial.policy_version)


def deadline_at(deadline: datetime, paused_at: datetime | None, at: datetime,
                calendar: WorkingCalendar) -> datetime:
    """The deadline an action at ``at`` is judged against: while paused, the working days
    paused up to ``at`` do not count against the clock."""
    if paused_at is None or at < paused_at:
        return deadline
    return calendar.move_deadline(deadline, calendar.paused_working_days(paused_at, at))


def auto_close_deadline(started_at: datetime, policy: Policy,
                        calendar: WorkingCalendar) -> Deadline:
    """The reply window: no warning (it is not an SLA the regency can miss)."""
    d = calendar.deadline(started_at, policy.working_days)
    return Deadline(policy.working_days, d, None, calendar.version, policy.version)


def auto_close_timers(deadline: Deadline, now: datetime,
                      stop: ClockStop | None) -> list[TimerPlan]:
    """The reply window elapses at its deadline unless a stop came first. A stop after the
    deadline (processed late) does not undo the elapse: it fires at once."""
    if stop is not None and stop.at <= deadline.deadline:
        return []
    return [TimerPlan("elapse", deadline.deadline,
                      fire_now=deadline.deadline <= now or stop is not None)]


def resumed_timers(deadline: Deadline, now: datetime, fired: set[str]) -> list[TimerPlan]:
    """Timers of a clock that runs again after DITUNDA: as for a new clock, except that what
    already fired stays fired (a breach is reported once per clock; after it, no warning)."""
    if "breach" in fired:
        return []
    return [p for p in initial_timers(deadline, now, None) if p.kind not in fired]


# -- staff-facing timers: warning points, escalation ladders, quiet hours --------------------
@dataclass(frozen=True)
class LadderStep:
    level: int
    after_working_days: int
    target: EscalationTarget


@dataclass(frozen=True)
class Ladder:
    """An escalation ladder: for a clock kind, optionally one OPD and/or one category."""

    clock: str
    opd_code: str | None
    category: str | None
    steps: tuple[LadderStep, ...]
    version: int


def ladder_for(ladders: tuple[Ladder, ...], clock: str, opd_code: str | None,
               category: str | None) -> Ladder | None:
    """The most specific ladder of ``clock`` that applies: OPD and category, then OPD, then
    category, then the clock's default; a ladder scoped to an OPD (category) applies to that
    one only."""
    best: tuple[int, Ladder] | None = None
    for ladder in ladders:
        if ladder.clock != clock:
            continue
        if ladder.opd_code is not None and ladder.opd_code != opd_code:
            continue
        if ladder.category is not None and ladder.category != category:
            continue
        rank = 2 * (ladder.opd_code is not None) + (ladder.category is not None)
        if best is None or rank > best[0]:
            best = (rank, ladder)
    return best[1] if best else None


def escalation_point(step: LadderStep, version: int) -> str:
    """How an escalation timer names its step (``level:target:after:ladder version``)."""
    return f"{step.level}:{step.target}:{step.after_working_days}:{version}"


def parse_escalation_point(point: str) -> tuple[int, EscalationTarget, int, int]:
    level, target, after, version = point.split(":")
    return int(level), target, int(after), int(version)  # type: ignore[return-value]  # stored from a LadderStep


@dataclass(frozen=True)
class OfficeHours:
    """When staff read alerts: working days (the calendar's), from ``opens`` to ``closes``
    local time. A staff-facing alert due outside is emitted at the next opening."""

    opens: time
    closes: time

    def next_opening(self, at: datetime, calendar: WorkingCalendar) -> datetime:
        local = at.astimezone(calendar.tz)
        day = local.date()
        if calendar.is_working_day(day) and self.opens <= local.time() < self.closes:
            return at
        if not (calendar.is_working_day(day) and local.time() < self.opens):
            day = calendar.nth_working_day_after(day, 1)
        return datetime.combine(day, self.opens, tzinfo=calendar.tz)


def warning_instants(started_at: datetime, deadline: datetime, points: tuple[str, ...],
                     calendar: WorkingCalendar) -> list[tuple[str, datetime]]:
    """The instants of a clock's warning points: ``"<n>hk"`` is the end of the working day n
    working days before the deadline's; ``"<p>%"`` is when p % of the clock's time elapsed.
    Points not after the start are dropped (they would only repeat the start)."""
    out: list[tuple[str, datetime]] = []
    for point in points:
        if point.endswith("hk"):
            n = int(point[:-2])
            day = calendar.local_date(deadline)
            for _ in range(n):
                day -= timedelta(days=1)
                while not calendar.is_working_day(day):
                    day -= timedelta(days=1)
            instant = calendar.end_of_day(day)
        elif point.endswith("%"):
            instant = started_at + (deadline - started_at) * (float(point[:-1]) / 100)
        else:
            raise ValueError(f"warning point {point!r}: use '<n>hk' or '<p>%'")
        if started_at < instant < deadline:
            out.append((point, instant))
    return sorted(out, key=lambda p: p[1])


def validate_points(points: tuple[str, ...]) -> tuple[str, ...]:
    for p in points:
        body = p[:-2] if p.endswith("hk") else p[:-1] if p.endswith("%") else ""
        try:
            ok = float(body) > 0 and (not p.endswith("%") or float(body) < 100)
        except ValueError:
            ok = False
        if not ok or (p.endswith("hk") and not body.isdigit()):
            raise ValueError(f"warning point {p!r}: use '<n>hk' (n ≥ 1) or '<p>%' (0 < p < 100)")
    return points
