"""What follows a webhook attempt, and which complaint an event is about (pure: no I/O).

A 2xx answer delivers; any other answer or none (timeout, connection error) is retried
after ``backoff_base_s`` × 2ⁿ⁻¹ until ``max_attempts`` attempts were made in the round, then
the delivery is dead-lettered (an operator may replay it: a new round, same webhook-id).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from shared.events import CloudEvent


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    retry_in_s: float | None = None


def retry_delay(attempt: int, backoff_base_s: float) -> float:
    """Wait after failed attempt number ``attempt`` (1-based): base, 2·base, 4·base, …"""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    return backoff_base_s * 2.0 ** (attempt - 1)


def decide(attempt: int, status_code: int | None, *, max_attempts: int,
           backoff_base_s: float) -> Decision:
    """What follows attempt number ``attempt`` that answered ``status_code`` (None: no answer)."""
    if status_code is not None and 200 <= status_code < 300:
        return Decision(Outcome.DELIVERED)
    if attempt < max_attempts:
        return Decision(Outcome.RETRY_SCHEDULED, retry_delay(attempt, backoff_base_s))
    return Decision(Outcome.DEAD_LETTERED)


def complaint_id_of(event: CloudEvent) -> uuid.UUID | None:
    for candidate in (event.subject, event.data.get("complaint_id")):
        try:
            return uuid.UUID(str(candidate))
        except (TypeError, ValueError):
            continue
    return None
