"""Use cases of the notify service. Collaborators (the pool, the HTTP sender, the clock)
are arguments; nothing here knows about the broker."""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from services.notify import repository as repo
from services.notify.signing import signed_headers, webhook_id
from services.notify.subscriptions import Subscription, matching
from shared.events import (
    CloudEvent,
    NotificationDeadLettered,
    NotificationDelivered,
    make_event,
)
from shared.inbox import first_delivery
from shared.outbox import add_to_outbox

log = logging.getLogger(__name__)
SOURCE = "sp4n/notify"
CONTENT_TYPE = "application/cloudevents+json"
MAX_ERROR_CHARS = 1000


class Outcome(str, enum.Enum):
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
    return backoff_base_s * 2 ** (attempt - 1)


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


# --- intake of events ------------------------------------------------------------------

async def accept_event(pool, event: CloudEvent) -> list[str]:
    """Record one delivery per matching subscription, exactly once per event.

    Returns the names of the subscriptions that got a new delivery (empty on a redelivery).
    """
    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event):
            return []
        subs = await repo.fetch_subscriptions(conn, enabled_only=True)
        targets = matching(subs, event.event_name, event.data)
        body = event.model_dump_json()
        created = []
        for sub in targets:
            delivery_id = await repo.insert_delivery(
                conn, event_id=event.id, event_type=event.type, event_name=event.event_name,
                event_time=event.time, complaint_id=complaint_id_of(event),
                subscription=sub.name, webhook_id=webhook_id(event.id, sub.name), body=body,
            )
            if delivery_id is not None:
                created.append(sub.name)
        if created:
            await repo.wake_dispatchers(conn)
    return created


async def sync_subscriptions(pool, subs: list[Subscription]) -> None:
    if not subs:
        return
    async with pool.acquire() as conn, conn.transaction():
        await repo.upsert_subscriptions(conn, subs)


# --- delivery --------------------------------------------------------------------------

@dataclass(frozen=True)
class HttpAnswer:
    status_code: int
    text: str = ""


# (url, headers, body) -> the receiver's answer; raises on timeouts and connection errors.
Post = Callable[[str, dict[str, str], bytes], Awaitable[HttpAnswer]]


@dataclass(frozen=True)
class AttemptResult:
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


async def send(delivery: repo.ClaimedDelivery, post: Post,
               clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> AttemptResult:
    """One signed HTTP attempt; never raises for receiver or network faults."""
    body = delivery.body.encode()
    started_at = clock()
    headers = signed_headers(delivery.secret, delivery.webhook_id, int(started_at.timestamp()),
                             body, CONTENT_TYPE)
    t0 = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        answer = await post(delivery.url, headers, body)
        status_code = answer.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
            if answer.text:
                error += f": {answer.text.strip()[:300]}"
    except Exception as exc:  # noqa: BLE001 - every failure of the receiver is a failed attempt
        error = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    duration_ms = int((time.perf_counter() - t0) * 1000)
    return AttemptResult(started_at, duration_ms, status_code,
                         error[:MAX_ERROR_CHARS] if error else None)


async def record(pool, delivery: repo.ClaimedDelivery, result: AttemptResult, *,
                 max_attempts: int, backoff_base_s: float) -> Outcome | None:
    """Store the attempt and the delivery's next state with its event, in one transaction.

    Returns None if the lease was lost meanwhile (the attempt is still logged).
    """
    decision = decide(delivery.attempt, result.status_code,
                      max_attempts=max_attempts, backoff_base_s=backoff_base_s)
    async with pool.acquire() as conn, conn.transaction():
        await repo.insert_attempt(
            conn, delivery_id=delivery.id, round=delivery.round, attempt=delivery.attempt,
            started_at=result.started_at, duration_ms=result.duration_ms,
            status_code=result.status_code, error=result.error)
        if decision.outcome is Outcome.DELIVERED:
            ok = await repo.finish_delivered(conn, delivery, result.status_code)
            if ok and delivery.complaint_id:
                await add_to_outbox(conn, make_event(SOURCE, NotificationDelivered(
                    complaint_id=delivery.complaint_id, subscription=delivery.subscription,
                    notified_event_id=delivery.event_id, notified_event_type=delivery.event_type,
                    attempts=delivery.attempt)))
        elif decision.outcome is Outcome.RETRY_SCHEDULED:
            ok = await repo.schedule_retry(conn, delivery, delay_s=decision.retry_in_s,
                                           status_code=result.status_code, error=result.error or "")
        else:
            ok = await repo.finish_dead_lettered(conn, delivery, status_code=result.status_code,
                                                 error=result.error or "")
            if ok and delivery.complaint_id:
                await add_to_outbox(conn, dead_lettered_event(
                    delivery.complaint_id, delivery.subscription, delivery.event_id,
                    delivery.event_type, delivery.attempt, result.error or ""))
    return decision.outcome if ok else None


def dead_lettered_event(complaint_id: uuid.UUID, subscription: str, event_id: str,
                        event_type: str, attempts: int, last_error: str) -> CloudEvent:
    return make_event(SOURCE, NotificationDeadLettered(
        complaint_id=complaint_id, subscription=subscription, notified_event_id=event_id,
        notified_event_type=event_type, attempts=attempts, last_error=last_error[:MAX_ERROR_CHARS]))
