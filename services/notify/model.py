"""The records the notify repository reads and writes (plain dataclasses, no I/O).

A delivery is one (event, subscription) pair: the unique key that makes a redelivered event
never produce a second webhook. ``webhook_id`` and ``body`` are fixed when it is created, so
every attempt (and every replay round) sends the same bytes under the same id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to create for one matching subscription."""

    event_id: str
    event_type: str
    event_name: str
    event_time: datetime
    complaint_id: uuid.UUID | None
    subscription: str
    webhook_id: str
    body: str


@dataclass(frozen=True)
class ClaimedDelivery:
    """A due delivery leased to this replica for one attempt (``lease_token`` proves it)."""

    id: int
    event_id: str
    event_type: str
    event_name: str
    event_time: datetime
    complaint_id: uuid.UUID | None
    subscription: str
    webhook_id: str
    body: str
    attempt: int  # number of this attempt within the round, from 1
    round: int
    url: str
    # Signing secrets, plaintext: the current one, then one being rotated out (if any).
    secrets: tuple[str, ...]
    lease_token: uuid.UUID


@dataclass(frozen=True)
class Delivery:
    """A stored delivery as operators inspect it; ``body`` only when asked for one delivery."""

    id: int
    event_id: str
    event_type: str
    event_name: str
    event_time: datetime
    complaint_id: uuid.UUID | None
    subscription: str
    webhook_id: str
    status: str  # pending | delivered | dead_lettered
    attempts: int
    round: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    dead_lettered_at: datetime | None
    body: str | None = None


@dataclass(frozen=True)
class DeadLetteredDelivery:
    """A dead-lettered delivery as the CLI lists it (ids and errors; no payload)."""

    id: int
    subscription: str
    event_id: str
    event_type: str
    complaint_id: uuid.UUID | None
    webhook_id: str
    attempts: int
    round: int
    last_status_code: int | None
    last_error: str | None
    event_time: datetime
    dead_lettered_at: datetime


@dataclass(frozen=True)
class Attempt:
    """One logged HTTP attempt of a delivery."""

    round: int
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class DroppedDelivery:
    """An unfinished delivery dead-lettered because its subscription was removed."""

    id: int
    event_id: str
    event_type: str
    complaint_id: uuid.UUID | None
    subscription: str
    attempts: int
