"""An in-memory notify repository (``services.notify.usecases.NotifyRepo``) for use-case and
dispatcher unit tests, with the same invariants as the SQL: one delivery per (event,
subscription), due deliveries of enabled subscriptions are leased to one claimer at a time,
and an outcome is written only while the claimer's lease holds.

Time is the fake's ``now`` (advance it with ``tick``); ``now()`` in the SQL is that clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from services.notify.model import ClaimedDelivery, NewDelivery
from services.notify.subscriptions import Subscription


@dataclass
class StoredDelivery:
    id: int
    new: NewDelivery
    status: str = "pending"
    attempts: int = 0
    round: int = 1
    next_attempt_at: datetime = datetime.min.replace(tzinfo=UTC)
    locked_until: datetime | None = None
    lease_token: uuid.UUID | None = None
    last_status_code: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class LoggedAttempt:
    delivery_id: int
    round: int
    attempt: int
    status_code: int | None
    error: str | None


class FakeNotifyRepository:
    def __init__(self, subscriptions: Sequence[Subscription] = (),
                 now: datetime = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)) -> None:
        self.subscriptions = {s.name: s for s in subscriptions}
        self.deliveries: dict[int, StoredDelivery] = {}
        self.attempts: list[LoggedAttempt] = []
        self.wakes = 0
        self.now = now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def delivery_of(self, event_id: str, subscription: str) -> StoredDelivery:
        [d] = [d for d in self.deliveries.values()
               if (d.new.event_id, d.new.subscription) == (event_id, subscription)]
        return d

    # --- NotifyRepo -----------------------------------------------------------------------

    async def upsert_subscriptions(self, subs: Sequence[Subscription]) -> None:
        self.subscriptions.update((s.name, s) for s in subs)

    async def seal_plaintext_secrets(self) -> int:
        return 0  # the fake keeps secrets in memory only

    async def fetch_subscriptions(self, *, enabled_only: bool = False) -> list[Subscription]:
        return [s for _, s in sorted(self.subscriptions.items()) if s.enabled or not enabled_only]

    async def insert_deliveries(self, deliveries: Sequence[NewDelivery]) -> list[str]:
        created = []
        for new in deliveries:
            if any((d.new.event_id, d.new.subscription) == (new.event_id, new.subscription)
                   for d in self.deliveries.values()):
                continue
            delivery_id = len(self.deliveries) + 1
            self.deliveries[delivery_id] = StoredDelivery(delivery_id, new, next_attempt_at=self.now)
            created.append(new.subscription)
        return created

    async def wake_dispatchers(self) -> None:
        self.wakes += 1

    async def claim_due(self, *, limit: int, lease_s: float,
                        lease_token: uuid.UUID) -> list[ClaimedDelivery]:
        due = sorted(
            (d for d in self.deliveries.values()
             if d.status == "pending" and d.next_attempt_at <= self.now
             and (d.locked_until is None or d.locked_until <= self.now)
             and d.new.subscription in self.subscriptions
             and self.subscriptions[d.new.subscription].enabled),
            key=lambda d: (d.next_attempt_at, d.id))[:limit]
        claimed = []
        for d in due:
            d.attempts += 1
            d.lease_token = lease_token
            d.locked_until = self.now + timedelta(seconds=lease_s)
            sub = self.subscriptions[d.new.subscription]
            n = d.new
            claimed.append(ClaimedDelivery(
                id=d.id, event_id=n.event_id, event_type=n.event_type, event_name=n.event_name,
                event_time=n.event_time, complaint_id=n.complaint_id, subscription=n.subscription,
                webhook_id=n.webhook_id, body=n.body, attempt=d.attempts, round=d.round,
                url=sub.url, secrets=(sub.secret,), lease_token=lease_token))
        return claimed

    async def insert_attempt(self, *, delivery_id: int, round: int, attempt: int,
                             started_at: datetime, duration_ms: int, status_code: int | None,
                             error: str | None) -> None:
        if not any((a.delivery_id, a.round, a.attempt) == (delivery_id, round, attempt)
                   for a in self.attempts):
            self.attempts.append(LoggedAttempt(delivery_id, round, attempt, status_code, error))

    def _leased(self, d: ClaimedDelivery) -> StoredDelivery | None:
        stored = self.deliveries.get(d.id)
        if stored is None or stored.lease_token != d.lease_token or stored.status != "pending":
            return None
        return stored

    def _finish(self, stored: StoredDelivery, **changes: object) -> None:
        self.deliveries[stored.id] = replace(stored, locked_until=None, lease_token=None, **changes)

    async def finish_delivered(self, d: ClaimedDelivery, status_code: int | None) -> bool:
        stored = self._leased(d)
        if stored is None:
            return False
        self._finish(stored, status="delivered", last_status_code=status_code, last_error=None)
        return True

    async def schedule_retry(self, d: ClaimedDelivery, *, delay_s: float, status_code: int | None,
                             error: str) -> bool:
        stored = self._leased(d)
        if stored is None:
            return False
        self._finish(stored, next_attempt_at=self.now + timedelta(seconds=delay_s),
                     last_status_code=status_code, last_error=error)
        return True

    async def finish_dead_lettered(self, d: ClaimedDelivery, *, status_code: int | None,
                                   error: str) -> bool:
        stored = self._leased(d)
        if stored is None:
            return False
        self._finish(stored, status="dead_lettered", last_status_code=status_code, last_error=error)
        return True

    async def count_pending(self) -> int:
        return sum(d.status == "pending" for d in self.deliveries.values())
