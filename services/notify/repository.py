"""All SQL of the notify service.

``NotifyRepository`` runs on one unit of work's connection (``shared.uow.PgUnitOfWork(pool,
NotifyRepository)``), whose ``search_path`` is the notify schema; the unit of work owns the
transaction. It returns the dataclasses of ``services.notify.model``, never asyncpg records.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.notify.model import (
    Attempt,
    ClaimedDelivery,
    DeadLetteredDelivery,
    Delivery,
    DroppedDelivery,
    NewDelivery,
)
from services.notify.secretbox import SecretBox
from services.notify.subscriptions import Subscription
from shared.retention import deleted
from shared.uow import PgTx

__all__ = [
    "WAKE_CHANNEL_PREFIX", "Attempt", "ClaimedDelivery", "DeadLetteredDelivery", "Delivery",
    "DroppedDelivery", "NewDelivery", "NotifyRepository",
]

WAKE_CHANNEL_PREFIX = "sp4n_notify_deliveries_"

_SUB_COLUMNS = "name, url, secret, event_types, opd_codes, enabled"

_DELIVERY_VIEW = (
    "id, event_id, event_type, event_name, event_time, complaint_id, subscription, webhook_id,"
    " status, attempts, round, next_attempt_at, last_status_code, last_error, created_at,"
    " delivered_at, dead_lettered_at"
)


def _subscription(row: asyncpg.Record, box: SecretBox) -> Subscription:
    return Subscription(
        name=row["name"], url=row["url"], secret=box.open(row["name"], "secret", row["secret"]),
        event_types=tuple(row["event_types"]),
        opd_codes=tuple(row["opd_codes"]) if row["opd_codes"] is not None else None,
        enabled=row["enabled"],
    )


def _sub_args(s: Subscription, box: SecretBox) -> tuple[Any, ...]:
    return (s.name, s.url, box.seal(s.name, "secret", s.secret), list(s.event_types),
            list(s.opd_codes) if s.opd_codes is not None else None, s.enabled)


def _same(a: Subscription, b: Subscription) -> bool:
    return a.model_dump() == b.model_dump()


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(**dict(row))


class NotifyRepository:
    """The notify schema on one connection: built by the unit of work from its ``PgTx``
    (or, for tooling, from a bare connection)."""

    def __init__(self, tx: PgTx[Any] | asyncpg.Connection, box: SecretBox) -> None:
        self._conn: asyncpg.Connection = tx.conn if isinstance(tx, PgTx) else tx
        # Seals signing secrets on the way in, opens them on the way out: the table holds
        # ciphertext only (services/notify/secretbox.py).
        self._box = box

    # --- subscriptions -----------------------------------------------------------------

    async def upsert_subscriptions(self, subs: Sequence[Subscription]) -> None:
        """Insert or update by name; an unchanged subscription is not written (compared in
        plaintext: each seal of the same secret is a different ciphertext). A changed secret
        replaces the old one at once (no overlap: ``rotate_secret`` is the way to overlap)."""
        existing = {s.name: s for s in await self.fetch_subscriptions()}
        changed = [s for s in subs if s.name not in existing or not _same(existing[s.name], s)]
        await self._conn.executemany(
            f"INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret,"
            " event_types = EXCLUDED.event_types, opd_codes = EXCLUDED.opd_codes,"
            " enabled = EXCLUDED.enabled, updated_at = now()",
            [_sub_args(s, self._box) for s in changed],
        )

    async def rotate_secret(self, name: str, new_secret: str, *, overlap_s: float) -> bool:
        """Make ``new_secret`` current; the current one keeps signing beside it for
        ``overlap_s`` seconds. False if there is no such subscription."""
        row = await self._conn.fetchrow(
            "SELECT secret FROM subscriptions WHERE name = $1 FOR UPDATE", name)
        if row is None:
            return False
        old = self._box.open(name, "secret", row["secret"])
        await self._conn.execute(
            "UPDATE subscriptions SET secret = $2, previous_secret = $3,"
            " previous_secret_until = CASE WHEN $4 > 0 THEN now() + make_interval(secs => $4) END,"
            " updated_at = now() WHERE name = $1",
            name, self._box.seal(name, "secret", new_secret),
            self._box.seal(name, "previous_secret", old) if overlap_s > 0 else None,
            float(overlap_s))
        return True

    async def seal_plaintext_secrets(self) -> int:
        """Encrypt secrets stored before encryption at rest (migration 0002); returns how many."""
        rows = await self._conn.fetch(
            "SELECT name, secret FROM subscriptions WHERE secret NOT LIKE 'enc:v1:%' FOR UPDATE")
        await self._conn.executemany(
            "UPDATE subscriptions SET secret = $2 WHERE name = $1",
            [(r["name"], self._box.seal(r["name"], "secret", r["secret"])) for r in rows])
        return len(rows)

    async def insert_subscription(self, sub: Subscription) -> bool:
        """False if a subscription of that name exists."""
        row = await self._conn.fetchval(
            f"INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (name) DO NOTHING RETURNING 1",
            *_sub_args(sub, self._box),
        )
        return row is not None

    async def fetch_subscriptions(self, *, enabled_only: bool = False) -> list[Subscription]:
        rows = await self._conn.fetch(
            f"SELECT {_SUB_COLUMNS} FROM subscriptions"
            + (" WHERE enabled" if enabled_only else "") + " ORDER BY name")
        return [_subscription(r, self._box) for r in rows]

    async def fetch_subscription(self, name: str) -> Subscription | None:
        row = await self._conn.fetchrow(f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE name = $1", name)
        return _subscription(row, self._box) if row else None

    async def delete_subscription(self, name: str) -> bool:
        return await self._conn.fetchval(
            "DELETE FROM subscriptions WHERE name = $1 RETURNING 1", name) is not None

    async def set_subscription_enabled(self, name: str, enabled: bool) -> bool:
        return await self._conn.fetchval(
            "UPDATE subscriptions SET enabled = $2, updated_at = now() WHERE name = $1 RETURNING 1",
            name, enabled) is not None

    # --- deliveries --------------------------------------------------------------------

    async def insert_deliveries(self, deliveries: Sequence[NewDelivery]) -> list[str]:
        """Create the deliveries in one statement; returns the subscriptions that got a new
        one, in the given order (an event that already has a delivery for a subscription
        gets no second one)."""
        if not deliveries:
            return []
        rows = await self._conn.fetch(
            "INSERT INTO deliveries (event_id, event_type, event_name, event_time, complaint_id,"
            " subscription, webhook_id, body)"
            " SELECT d.event_id, d.event_type, d.event_name, d.event_time, d.complaint_id,"
            "   d.subscription, d.webhook_id, d.body"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::uuid[],"
            "   $6::text[], $7::text[], $8::text[]) WITH ORDINALITY"
            "   AS d(event_id, event_type, event_name, event_time, complaint_id, subscription,"
            "        webhook_id, body, ord)"
            " ORDER BY d.ord"
            " ON CONFLICT (event_id, subscription) DO NOTHING RETURNING subscription",
            [d.event_id for d in deliveries], [d.event_type for d in deliveries],
            [d.event_name for d in deliveries], [d.event_time for d in deliveries],
            [d.complaint_id for d in deliveries], [d.subscription for d in deliveries],
            [d.webhook_id for d in deliveries], [d.body for d in deliveries],
        )
        created = {r["subscription"] for r in rows}
        return [d.subscription for d in deliveries if d.subscription in created]

    async def wake_dispatchers(self) -> None:
        """A wake-up hint to every replica's dispatcher, delivered at commit."""
        await self._conn.execute(f"SELECT pg_notify('{WAKE_CHANNEL_PREFIX}' || current_schema(), '')")

    async def claim_due(self, *, limit: int, lease_s: float,
                        lease_token: uuid.UUID) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries of enabled subscriptions and count the attempt.

        SKIP LOCKED keeps concurrent claimers apart inside the claim statement; the lease
        (``locked_until``) keeps them apart afterwards, while the HTTP request runs outside any
        transaction. A lease left by a crashed replica expires and the delivery is retried.
        """
        rows = await self._conn.fetch(
            "WITH due AS ("
            "  SELECT d.id FROM deliveries d JOIN subscriptions s ON s.name = d.subscription"
            "  WHERE d.status = 'pending' AND s.enabled AND d.next_attempt_at <= now()"
            "    AND (d.locked_until IS NULL OR d.locked_until <= now())"
            "  ORDER BY d.next_attempt_at, d.id LIMIT $1"
            "  FOR UPDATE OF d SKIP LOCKED)"
            " UPDATE deliveries d SET attempts = d.attempts + 1, lease_token = $3,"
            "   locked_until = now() + make_interval(secs => $2), updated_at = now()"
            " FROM due, subscriptions s WHERE d.id = due.id AND s.name = d.subscription"
            " RETURNING d.id, d.event_id, d.event_type, d.event_name, d.event_time, d.complaint_id,"
            "   d.subscription, d.webhook_id, d.body, d.attempts, d.round, s.url, s.secret,"
            "   CASE WHEN s.previous_secret_until > now() THEN s.previous_secret END AS previous",
            limit, float(lease_s), lease_token,
        )
        return [ClaimedDelivery(
            id=r["id"], event_id=r["event_id"], event_type=r["event_type"], event_name=r["event_name"],
            event_time=r["event_time"], complaint_id=r["complaint_id"], subscription=r["subscription"],
            webhook_id=r["webhook_id"], body=r["body"], attempt=r["attempts"], round=r["round"],
            url=r["url"], secrets=self._secrets(r), lease_token=lease_token,
        ) for r in sorted(rows, key=lambda r: r["id"])]

    def _secrets(self, row: asyncpg.Record) -> tuple[str, ...]:
        name = row["subscription"]
        current = self._box.open(name, "secret", row["secret"])
        if row["previous"] is None:
            return (current,)
        return current, self._box.open(name, "previous_secret", row["previous"])

    async def insert_attempt(self, *, delivery_id: int, round: int, attempt: int,
                             started_at: datetime, duration_ms: int, status_code: int | None,
                             error: str | None) -> None:
        await self._conn.execute(
            "INSERT INTO delivery_attempts (delivery_id, round, attempt, started_at, duration_ms,"
            " status_code, error) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (delivery_id, round, attempt) DO NOTHING",
            delivery_id, round, attempt, started_at, duration_ms, status_code, error,
        )

    # The three outcomes below change the delivery only while our lease holds: False if
    # the lease was lost (it expired and another replica took the delivery over).

    async def finish_delivered(self, d: ClaimedDelivery, status_code: int | None) -> bool:
        return await self._conn.fetchval(
            "UPDATE deliveries SET status = 'delivered', delivered_at = now(), updated_at = now(),"
            " locked_until = NULL, lease_token = NULL, last_status_code = $3, last_error = NULL"
            " WHERE id = $1 AND lease_token = $2 AND status = 'pending' RETURNING 1",
            d.id, d.lease_token, status_code) is not None

    async def schedule_retry(self, d: ClaimedDelivery, *, delay_s: float, status_code: int | None,
                             error: str) -> bool:
        return await self._conn.fetchval(
            "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $3),"
            " updated_at = now(), locked_until = NULL, lease_token = NULL,"
            " last_status_code = $4, last_error = $5"
            " WHERE id = $1 AND lease_token = $2 AND status = 'pending' RETURNING 1",
            d.id, d.lease_token, float(delay_s), status_code, error) is not None

    async def finish_dead_lettered(self, d: ClaimedDelivery, *, status_code: int | None,
                                   error: str) -> bool:
        return await self._conn.fetchval(
            "UPDATE deliveries SET status = 'dead_lettered', dead_lettered_at = now(),"
            " updated_at = now(), locked_until = NULL, lease_token = NULL,"
            " last_status_code = $3, last_error = $4"
            " WHERE id = $1 AND lease_token = $2 AND status = 'pending' RETURNING 1",
            d.id, d.lease_token, status_code, error) is not None

    async def count_pending(self) -> int:
        count: int = await self._conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'")
        return count

    # --- inspection and replay (the CLI) -----------------------------------------------

    async def fetch_dead_lettered(self, *, subscription: str | None,
                                  limit: int) -> list[DeadLetteredDelivery]:
        """Dead-lettered deliveries (of one subscription), oldest first."""
        rows = await self._conn.fetch(
            "SELECT id, subscription, event_id, event_type, complaint_id, webhook_id, attempts,"
            " round, last_status_code, last_error, event_time, dead_lettered_at"
            " FROM deliveries WHERE status = 'dead_lettered'"
            " AND ($1::text IS NULL OR subscription = $1) ORDER BY dead_lettered_at, id LIMIT $2",
            subscription, limit)
        return [DeadLetteredDelivery(**dict(r)) for r in rows]

    async def fetch_delivery(self, delivery_id: int) -> Delivery | None:
        row = await self._conn.fetchrow(
            f"SELECT {_DELIVERY_VIEW}, body FROM deliveries WHERE id = $1", delivery_id)
        return _delivery(row) if row else None

    async def fetch_attempts(self, delivery_id: int) -> list[Attempt]:
        rows = await self._conn.fetch(
            "SELECT round, attempt, started_at, duration_ms, status_code, error FROM delivery_attempts"
            " WHERE delivery_id = $1 ORDER BY round, attempt", delivery_id)
        return [Attempt(**dict(r)) for r in rows]

    async def requeue_dead_lettered(self, delivery_id: int) -> bool:
        """Start a new round of attempts for a dead-lettered delivery (same webhook id, same body)."""
        return await self._conn.fetchval(
            "UPDATE deliveries SET status = 'pending', round = round + 1, attempts = 0,"
            " next_attempt_at = now(), locked_until = NULL, lease_token = NULL, updated_at = now()"
            " WHERE id = $1 AND status = 'dead_lettered' RETURNING 1", delivery_id) is not None

    async def dead_letter_pending_of(self, subscription: str, error: str) -> list[DroppedDelivery]:
        """Dead-letter a removed subscription's unfinished deliveries (replayable if re-added)."""
        rows = await self._conn.fetch(
            "UPDATE deliveries SET status = 'dead_lettered', dead_lettered_at = now(),"
            " updated_at = now(), locked_until = NULL, lease_token = NULL, last_error = $2"
            " WHERE subscription = $1 AND status = 'pending'"
            " RETURNING id, event_id, event_type, complaint_id, subscription, attempts",
            subscription, error)
        return [DroppedDelivery(**dict(r)) for r in rows]


# --- retention (``shared.retention``): one bounded statement per call -------------------
# Pending deliveries are never pruned; dead-lettered ones are kept (``sp4n webhook replay``
# needs them), only their attempt log goes.

async def prune_delivery_attempts(pool: asyncpg.Pool, *, delivered_older_than: timedelta,
                                  dead_lettered_older_than: timedelta, limit: int) -> int:
    """At most ``limit`` attempt rows of deliveries delivered, or given up, long enough ago."""
    return deleted(await pool.execute(
        "DELETE FROM delivery_attempts WHERE id IN (SELECT a.id FROM deliveries d"
        " JOIN delivery_attempts a ON a.delivery_id = d.id"
        " WHERE (d.status = 'delivered' AND d.delivered_at < now() - $1::interval)"
        " OR (d.status = 'dead_lettered' AND d.dead_lettered_at < now() - $2::interval)"
        " LIMIT $3 FOR UPDATE OF a SKIP LOCKED)",
        delivered_older_than, dead_lettered_older_than, limit))


async def prune_delivered(pool: asyncpg.Pool, *, older_than: timedelta, limit: int) -> int:
    """At most ``limit`` deliveries delivered longer than ``older_than`` ago (their attempts
    go with them)."""
    return deleted(await pool.execute(
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries"
        " WHERE status = 'delivered' AND delivered_at < now() - $1::interval"
        " ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED)", older_than, limit))
