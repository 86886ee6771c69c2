"""All SQL of the notify service. Functions take an asyncpg connection (or pool) whose
``search_path`` is the notify schema; callers own the transactions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notify.subscriptions import Subscription

WAKE_CHANNEL_PREFIX = "sp4n_notify_deliveries_"

_SUB_COLUMNS = "name, url, secret, event_types, opd_codes, enabled"


def _subscription(row: Any) -> Subscription:
    return Subscription(
        name=row["name"], url=row["url"], secret=row["secret"],
        event_types=tuple(row["event_types"]),
        opd_codes=tuple(row["opd_codes"]) if row["opd_codes"] is not None else None,
        enabled=row["enabled"],
    )


def _sub_args(s: Subscription) -> tuple:
    return (s.name, s.url, s.secret, list(s.event_types),
            list(s.opd_codes) if s.opd_codes is not None else None, s.enabled)


# --- subscriptions ---------------------------------------------------------------------

async def upsert_subscriptions(conn, subs: list[Subscription]) -> None:
    await conn.executemany(
        f"INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret,"
        " event_types = EXCLUDED.event_types, opd_codes = EXCLUDED.opd_codes,"
        " enabled = EXCLUDED.enabled, updated_at = now()"
        " WHERE (subscriptions.url, subscriptions.secret, subscriptions.event_types,"
        "        subscriptions.opd_codes, subscriptions.enabled)"
        "   IS DISTINCT FROM (EXCLUDED.url, EXCLUDED.secret, EXCLUDED.event_types,"
        "        EXCLUDED.opd_codes, EXCLUDED.enabled)",
        [_sub_args(s) for s in subs],
    )


async def insert_subscription(conn, sub: Subscription) -> bool:
    """False if a subscription of that name exists."""
    row = await conn.fetchval(
        f"INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (name) DO NOTHING RETURNING 1",
        *_sub_args(sub),
    )
    return row is not None


async def fetch_subscriptions(conn, *, enabled_only: bool = False) -> list[Subscription]:
    rows = await conn.fetch(
        f"SELECT {_SUB_COLUMNS} FROM subscriptions"
        + (" WHERE enabled" if enabled_only else "") + " ORDER BY name")
    return [_subscription(r) for r in rows]


async def fetch_subscription(conn, name: str) -> Subscription | None:
    row = await conn.fetchrow(f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE name = $1", name)
    return _subscription(row) if row else None


async def delete_subscription(conn, name: str) -> bool:
    return await conn.fetchval("DELETE FROM subscriptions WHERE name = $1 RETURNING 1", name) is not None


async def set_subscription_enabled(conn, name: str, enabled: bool) -> bool:
    return await conn.fetchval(
        "UPDATE subscriptions SET enabled = $2, updated_at = now() WHERE name = $1 RETURNING 1",
        name, enabled) is not None


# --- deliveries ------------------------------------------------------------------------

async def insert_delivery(conn, *, event_id: str, event_type: str, event_name: str,
                          event_time: datetime, complaint_id: uuid.UUID | None,
                          subscription: str, webhook_id: str, body: str) -> int | None:
    """The new delivery's id, or None if this event already has one for the subscription."""
    return await conn.fetchval(
        "INSERT INTO deliveries (event_id, event_type, event_name, event_time, complaint_id,"
        " subscription, webhook_id, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (event_id, subscription) DO NOTHING RETURNING id",
        event_id, event_type, event_name, event_time, complaint_id, subscription, webhook_id, body,
    )


async def wake_dispatchers(conn) -> None:
    """A wake-up hint to every replica's dispatcher, delivered at commit."""
    await conn.execute(f"SELECT pg_notify('{WAKE_CHANNEL_PREFIX}' || current_schema(), '')")


@dataclass(frozen=True)
class ClaimedDelivery:
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
    secret: str
    lease_token: uuid.UUID


async def claim_due(conn, *, limit: int, lease_s: float, lease_token: uuid.UUID) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due deliveries of enabled subscriptions and count the attempt.

    SKIP LOCKED keeps concurrent claimers apart inside the claim transaction; the lease
    (``locked_until``) keeps them apart afterwards, while the HTTP request runs outside any
    transaction. A lease left by a crashed replica expires and the delivery is retried.
    """
    rows = await conn.fetch(
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
        "   d.subscription, d.webhook_id, d.body, d.attempts, d.round, s.url, s.secret",
        limit, float(lease_s), lease_token,
    )
    return [ClaimedDelivery(
        id=r["id"], event_id=r["event_id"], event_type=r["event_type"], event_name=r["event_name"],
        event_time=r["event_time"], complaint_id=r["complaint_id"], subscription=r["subscription"],
        webhook_id=r["webhook_id"], body=r["body"], attempt=r["attempts"], round=r["round"],
        url=r["url"], secret=r["secret"], lease_token=lease_token,
    ) for r in sorted(rows, key=lambda r: r["id"])]


async def insert_attempt(conn, *, delivery_id: int, round: int, attempt: int, started_at: datetime,
                         duration_ms: int, status_code: int | None, error: str | None) -> None:
    await conn.execute(
        "INSERT INTO delivery_attempts (delivery_id, round, attempt, started_at, duration_ms,"
        " status_code, error) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (delivery_id, round, attempt) DO NOTHING",
        delivery_id, round, attempt, started_at, duration_ms, status_code, error,
    )


async def finish_delivered(conn, d: ClaimedDelivery, status_code: int) -> bool:
    """False if the lease was lost (another replica took the delivery over)."""
    return await conn.fetchval(
        "UPDATE deliveries SET status = 'delivered', delivered_at = now(), updated_at = now(),"
        " locked_until = NULL, lease_token = NULL, last_status_code = $3, last_error = NULL"
        " WHERE id = $1 AND lease_token = $2 AND status = 'pending' RETURNING 1",
        d.id, d.lease_token, status_code) is not None


async def schedule_retry(conn, d: ClaimedDelivery, *, delay_s: float, status_code: int | None,
                         error: str) -> bool:
    return await conn.fetchval(
        "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $3),"
        " updated_at = now(), locked_until = NULL, lease_token = NULL,"
        " last_status_code = $4, last_error = $5"
        " WHERE id = $1 AND lease_token = $2 AND status = 'pending' RETURNING 1",
        d.id, d.lease_token, float(delay_s), status_code, error) is not None


async def finish_dead_lettered(conn, d: ClaimedDelivery, *, status_code: int | None, error: str) -> bool:
    return await conn.fetchval(
        "UPDATE deliveries SET status = 'dead_lettered', dead_lettered_at = now(),"
        " updated_at = now(), locked_until = NULL, lease_token = NULL,"
        " last_status_code = $3, last_error = $4"
        " WHERE id = $1 AND lease_token = $2 AND status = 'pending' RETURNING 1",
        d.id, d.lease_token, status_code, error) is not None


async def count_pending(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'")


_DELIVERY_VIEW = (
    "id, event_id, event_type, event_name, event_time, complaint_id, subscription, webhook_id,"
    " status, attempts, round, next_attempt_at, last_status_code, last_error, created_at,"
    " delivered_at, dead_lettered_at"
)


async def fetch_dead_lettered(conn, *, subscription: str | None, limit: int) -> list[dict]:
    rows = await conn.fetch(
        f"SELECT {_DELIVERY_VIEW} FROM deliveries WHERE status = 'dead_lettered'"
        " AND ($1::text IS NULL OR subscription = $1) ORDER BY dead_lettered_at, id LIMIT $2",
        subscription, limit)
    return [dict(r) for r in rows]


async def fetch_delivery(conn, delivery_id: int) -> dict | None:
    row = await conn.fetchrow(f"SELECT {_DELIVERY_VIEW}, body FROM deliveries WHERE id = $1", delivery_id)
    return dict(row) if row else None


async def fetch_attempts(conn, delivery_id: int) -> list[dict]:
    rows = await conn.fetch(
        "SELECT round, attempt, started_at, duration_ms, status_code, error FROM delivery_attempts"
        " WHERE delivery_id = $1 ORDER BY round, attempt", delivery_id)
    return [dict(r) for r in rows]


async def requeue_dead_lettered(conn, delivery_id: int) -> bool:
    """Start a new round of attempts for a dead-lettered delivery (same webhook id, same body)."""
    return await conn.fetchval(
        "UPDATE deliveries SET status = 'pending', round = round + 1, attempts = 0,"
        " next_attempt_at = now(), locked_until = NULL, lease_token = NULL, updated_at = now()"
        " WHERE id = $1 AND status = 'dead_lettered' RETURNING 1", delivery_id) is not None


async def dead_letter_pending_of(conn, subscription: str, error: str) -> list[dict]:
    """Dead-letter a removed subscription's unfinished deliveries (replayable if re-added)."""
    rows = await conn.fetch(
        "UPDATE deliveries SET status = 'dead_lettered', dead_lettered_at = now(),"
        " updated_at = now(), locked_until = NULL, lease_token = NULL, last_error = $2"
        " WHERE subscription = $1 AND status = 'pending'"
        " RETURNING id, event_id, event_type, complaint_id, subscription, attempts",
        subscription, error)
    return [dict(r) for r in rows]
