"""Which clocks start and stop on which event, their deadlines and their timers. Pure.

A clock is identified by (complaint, clock kind, hop). ``hop`` is 0 for the clocks of the
complaint as a whole (verification, completion) and the routing hop (1, 2, …) for the
per-OPD ``opd_response`` clock.

Invariants:
- A deadline is a pure function of (start instant, policy, calendar): recomputed, never
  edited in place. It carries the calendar version and policy version that produced it.
- A clock stopped after its deadline is a breach: if its breach has not fired yet, the stop
  fires it (a late stop is a breach, not silence).
- A clock whose deadline has already passed when it is created fires its breach at once and
  never warns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.sla.calendar import WorkingCalendar
from services.sla.policy import (
    OPD_RESPONSE,
    VERIFICATION,
    Policy,
    completion_policy_key,
)
from shared.events import ClockKind, ComplaintRouted, ComplaintSubmitted

StopReason = Literal["stopped", "cancelled"]
TimerKind = Literal["warning", "breach"]


@dataclass(frozen=True)
class ClockStart:
    """A clock to start: what, for which hop/OPD, from when, under which policy row."""

    clock: ClockKind
    hop: int
    policy_key: str
    started_at: datetime
    opd_code: str | None = None


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


@dataclass(frozen=True)
class StopDecision:
    on_time: bool
    fire_breach: bool


@dataclass(frozen=True)
class RoutingPlan:
    stop_verification: ClockStop
    cancel_previous_hops_at: datetime  # open opd_response clocks with a lower hop are cancelled
    start: ClockStart


def starts_on_submission(event: ComplaintSubmitted) -> list[ClockStart]:
    """complaint.submitted starts verification and completion, both from ``received_at``
    (the moment the complaint reached the first portal, so a late import may be overdue)."""
    return [
        ClockStart("verification", 0, VERIFICATION, event.received_at),
        ClockStart("completion", 0,
                   completion_policy_key(event.classification, event.berkadar_pengawasan),
                   event.received_at),
    ]


def plan_routing(event: ComplaintRouted) -> RoutingPlan:
    """complaint.routed stops verification, cancels earlier hops' OPD clocks (a re-route) and
    starts this hop's opd_response clock, all at ``routed_at``."""
    return RoutingPlan(
        stop_verification=ClockStop("verification", 0, event.routed_at, "stopped"),
        cancel_previous_hops_at=event.routed_at,
        start=ClockStart("opd_response", event.hop, OPD_RESPONSE, event.routed_at,
                         opd_code=event.opd_code),
    )


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
