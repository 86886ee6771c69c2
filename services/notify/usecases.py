"""Use cases of the notify service. Each takes the unit of work (``NotifyUnitOfWork``: a
transaction with the ``NotifyRepository`` on it) and its collaborators (the HTTP sender, the
clock, the limits from settings) as arguments; none opens a transaction itself, touches a
pool or knows about the broker."""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from services.notify.domain import Outcome, complaint_id_of, decide
from services.notify.model import ClaimedDelivery, NewDelivery
from services.notify.signing import signed_headers, webhook_id
from services.notify.subscriptions import Subscription, matching
from shared.events import (
    CloudEvent,
    NotificationDeadLettered,
    NotificationDelivered,
    make_event,
)
from shared.uow import Tx

log = logging.getLogger(__name__)
SOURCE = "sp4n/notify"
CONTENT_TYPE = "application/cloudevents+json"
# How much of a receiver's error answer goes into the error text (before max_error_chars):
# a short excerpt only, so a webhook cannot be used to read a target's pages back (SSRF
# read-back); control characters and runs of whitespace are folded to one space.
ANSWER_EXCERPT_CHARS = 120
_UNPRINTABLE = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029\u200b-\u200f\ufeff]+")


def answer_excerpt(text: str, limit: int = ANSWER_EXCERPT_CHARS) -> str:
    return _UNPRINTABLE.sub(" ", text).strip()[:limit]


class NotifyRepo(Protocol):
    """What the use cases need of the repository (``repository.NotifyRepository``; an
    in-memory fake in the unit tests)."""

    async def upsert_subscriptions(self, subs: Sequence[Subscription]) -> None: ...

    async def seal_plaintext_secrets(self) -> int: ...
    async def fetch_subscriptions(self, *, enabled_only: bool = False) -> list[Subscription]: ...
    async def insert_deliveries(self, deliveries: Sequence[NewDelivery]) -> list[str]: ...
    async def wake_dispatchers(self) -> None: ...
    async def claim_due(self, *, limit: int, lease_s: float,
                        lease_token: uuid.UUID) -> list[ClaimedDelivery]: ...
    async def insert_attempt(self, *, delivery_id: int, round: int, attempt: int,
                             started_at: datetime, duration_ms: int, status_code: int | None,
                             error: str | None) -> None: ...
    async def finish_delivered(self, d: ClaimedDelivery, status_code: int | None) -> bool: ...
    async def schedule_retry(self, d: ClaimedDelivery, *, delay_s: float, status_code: int | None,
                             error: str) -> bool: ...
    async def finish_dead_lettered(self, d: ClaimedDelivery, *, status_code: int | None,
                                   error: str) -> bool: ...
    async def count_pending(self) -> int: ...


class NotifyUnitOfWork(Protocol):
    """``async with uow(event) as tx``: ``shared.uow.PgUnitOfWork`` or ``FakeUnitOfWork``."""

    def __call__(self, event: CloudEvent | None = None, *, single_statement: bool = False
                 ) -> contextlib.AbstractAsyncContextManager[Tx[NotifyRepo]]: ...


# --- intake of events ------------------------------------------------------------------

async def accept_event(uow: NotifyUnitOfWork, event: CloudEvent) -> list[str]:
    """Record one delivery per matching subscription, exactly once per event.

    Returns the names of the subscriptions that got a new delivery (empty on a redelivery).
    The inbox row and the deliveries commit together; the (event, subscription) key is a
    second guard: an event never gets two deliveries for one subscription.

    Most events match no subscription (notify's queue binds every complaint.* and sla.* event
    so that any subscriber can ask for any of them): those cost one read and no transaction,
    and leave no inbox row — with no effect, a redelivery has nothing to repeat.
    """
    async with uow(single_statement=True) as probe:
        if not matching(await probe.repo.fetch_subscriptions(enabled_only=True),
                        event.event_name, event.data):
            return []
    async with uow(event) as tx:
        if not await tx.claim():
            return []
        subs = await tx.repo.fetch_subscriptions(enabled_only=True)
        body = event.model_dump_json()
        complaint_id = complaint_id_of(event)
        created = await tx.repo.insert_deliveries([NewDelivery(
            event_id=event.id, event_type=event.type, event_name=event.event_name,
            event_time=event.time, complaint_id=complaint_id, subscription=sub.name,
            webhook_id=webhook_id(event.id, sub.name), body=body,
        ) for sub in matching(subs, event.event_name, event.data)])
        if created:
            await tx.repo.wake_dispatchers()
    return created


async def sync_subscriptions(uow: NotifyUnitOfWork, subs: Sequence[Subscription]) -> int:
    """At start-up: seal secrets stored before encryption at rest, then upsert the
    subscriptions file's entries. Returns how many secrets were sealed."""
    async with uow() as tx:
        sealed = await tx.repo.seal_plaintext_secrets()
        if subs:
            await tx.repo.upsert_subscriptions(subs)
    return sealed


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


def utc_now() -> datetime:
    return datetime.now(UTC)


async def claim_due(uow: NotifyUnitOfWork, *, limit: int, lease_s: float,
                    new_token: Callable[[], uuid.UUID] = uuid.uuid4) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due deliveries to this caller (one fresh lease token per claim).

    One statement, atomic by itself: no transaction around it."""
    async with uow(single_statement=True) as tx:
        return await tx.repo.claim_due(limit=limit, lease_s=lease_s, lease_token=new_token())


async def count_pending(uow: NotifyUnitOfWork) -> int:
    async with uow(single_statement=True) as tx:
        return await tx.repo.count_pending()


async def send(delivery: ClaimedDelivery, post: Post, clock: Callable[[], datetime] = utc_now, *,
               max_error_chars: int, excerpt_chars: int = ANSWER_EXCERPT_CHARS) -> AttemptResult:
    """One signed HTTP attempt; never raises for receiver or network faults."""
    body = delivery.body.encode()
    started_at = clock()
    headers = signed_headers(delivery.secrets, delivery.webhook_id, int(started_at.timestamp()),
                             body, CONTENT_TYPE)
    t0 = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        answer = await post(delivery.url, headers, body)
        status_code = answer.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
            excerpt = answer_excerpt(answer.text, excerpt_chars)
            if excerpt:
                error += f": {excerpt}"
    except Exception as exc:  # noqa: BLE001 - every failure of the receiver is a failed attempt
        error = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    duration_ms = int((time.perf_counter() - t0) * 1000)
    return AttemptResult(started_at, duration_ms, status_code,
                         error[:max_error_chars] if error else None)


async def record(uow: NotifyUnitOfWork, delivery: ClaimedDelivery, result: AttemptResult, *,
                 max_attempts: int, backoff_base_s: float) -> Outcome | None:
    """Store the attempt and the delivery's next state with its event, in one transaction.

    Returns None if the lease was lost meanwhile (the attempt is still logged; the state is
    left to the lease's owner, so one delivery never gets two outcomes).
    """
    decision = decide(delivery.attempt, result.status_code,
                      max_attempts=max_attempts, backoff_base_s=backoff_base_s)
    async with uow() as tx:
        await tx.repo.insert_attempt(
            delivery_id=delivery.id, round=delivery.round, attempt=delivery.attempt,
            started_at=result.started_at, duration_ms=result.duration_ms,
            status_code=result.status_code, error=result.error)
        if decision.outcome is Outcome.DELIVERED:
            ok = await tx.repo.finish_delivered(delivery, result.status_code)
            if ok and delivery.complaint_id:
                tx.stage(make_event(SOURCE, NotificationDelivered(
                    complaint_id=delivery.complaint_id, subscription=delivery.subscription,
                    notified_event_id=delivery.event_id, notified_event_type=delivery.event_type,
                    attempts=delivery.attempt)))
        elif decision.outcome is Outcome.RETRY_SCHEDULED:
            assert decision.retry_in_s is not None
            ok = await tx.repo.schedule_retry(delivery, delay_s=decision.retry_in_s,
                                              status_code=result.status_code, error=result.error or "")
        else:
            ok = await tx.repo.finish_dead_lettered(delivery, status_code=result.status_code,
                                                    error=result.error or "")
            if ok and delivery.complaint_id:
                tx.stage(dead_lettered_event(
                    delivery.complaint_id, delivery.subscription, delivery.event_id,
                    delivery.event_type, delivery.attempt, result.error or ""))
    return decision.outcome if ok else None


async def attempt(uow: NotifyUnitOfWork, delivery: ClaimedDelivery, post: Post, *,
                  max_attempts: int, backoff_base_s: float, max_error_chars: int,
                  excerpt_chars: int = ANSWER_EXCERPT_CHARS,
                  clock: Callable[[], datetime] = utc_now) -> tuple[AttemptResult, Outcome | None]:
    """Send one claimed delivery (outside any transaction) and record what followed."""
    result = await send(delivery, post, clock, max_error_chars=max_error_chars,
                        excerpt_chars=excerpt_chars)
    outcome = await record(uow, delivery, result, max_attempts=max_attempts,
                           backoff_base_s=backoff_base_s)
    return result, outcome


def dead_lettered_event(complaint_id: uuid.UUID, subscription: str, event_id: str,
                        event_type: str, attempts: int, last_error: str) -> CloudEvent:
    """``last_error``: an attempt's error (``send`` already cut it to ``max_error_chars``) or
    the operator's reason."""
    return make_event(SOURCE, NotificationDeadLettered(
        complaint_id=complaint_id, subscription=subscription, notified_event_id=event_id,
        notified_event_type=event_type, attempts=attempts, last_error=last_error))
