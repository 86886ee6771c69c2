"""Transactional outbox and its relay.

Invariant: an event row is inserted in the same transaction as the state change it
describes, so there is no state change without its event and no event without its change.

The relay never holds a transaction while it talks to the broker:
1. claim: one autocommit statement leases a batch of unsent rows (``FOR UPDATE SKIP
   LOCKED`` over rows whose lease is NULL or over, in id order; never "id > last seen":
   transactions commit out of id order), setting ``lease_until = now() + lease`` and
   ``attempts = attempts + 1``;
2. publish each row with publisher confirms, concurrently, each within the publish timeout;
3. mark the confirmed rows sent (``sent_at``) in one statement, and the failed ones with
   their ``last_error`` and a retry time (``lease_until`` = now + backoff).
A relay that dies anywhere in between leaves its rows leased; once the lease is over any
relay claims and republishes them: delivery is at-least-once and consumers deduplicate on the
event id (inbox). Within a batch there is no order (publishes run concurrently), as before.

Failures: a row that fails on its own (its payload is not a valid CloudEvent, or its publish
failed while others in the batch were confirmed) is retried with backoff and, after
``max_attempts`` attempts, set aside (``set_aside_at``; kept, alerted on, never published
again until an operator releases it with ``sp4n outbox retry``). It never blocks the other
rows: they are claimed around it. When every publish of a batch fails, the broker is the
problem, not the rows: the attempt is not counted against them, their lease is released and
the relay backs off (``PublishFailed``).

Wake-up: ``add_to_outbox`` marks its connection; when the pool takes that connection back
(after commit), this process's relays are woken (``shared.db`` calls ``connection_released``).
Rows written by another replica are published by that replica's relay; rows a crashed
process left behind are found by the relay's poll once their lease is over. No
``pg_notify``: PostgreSQL serialises the commits of notifying transactions behind one global
lock.

Shutdown: ``OutboxRelay.stop`` makes ``run`` publish what it can still claim, then return
(the runtime bounds that by a drain timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Gauge
from pydantic import ValidationError

from shared.events import CloudEvent

log = logging.getLogger(__name__)
# Backend pids of pool connections that staged outbox rows in their current transaction.
_staged: set[int] = set()
_relays: set[OutboxRelay] = set()


async def add_to_outbox(conn: asyncpg.Connection, *events: CloudEvent) -> None:
    """Stage events for publishing; call inside the transaction of the state change."""
    if not events:
        return
    await conn.executemany(
        "INSERT INTO outbox (event_id, routing_key, payload) VALUES ($1, $2, $3)",
        [outbox_row(e) for e in events],
    )
    staged_on(conn)


def outbox_row(event: CloudEvent) -> tuple[str, str, dict[str, Any]]:
    """Values of ``outbox (event_id, routing_key, payload)``, for a repository that writes
    its state change and the event in one statement (then calls ``staged_on``)."""
    return event.id, event.event_name, event.model_dump(mode="json")


def staged_on(conn: asyncpg.Connection) -> None:
    """Record that ``conn``'s transaction wrote outbox rows: the relay wakes on release."""
    _staged.add(conn.get_server_pid())


def connection_released(conn: asyncpg.Connection) -> None:
    """The pool took a connection back: its transaction is over; wake relays if it staged rows."""
    if _staged:
        pid = conn.get_server_pid()
        if pid in _staged:
            _staged.discard(pid)
            for relay in _relays:
                relay.wake()


class PublishFailed(Exception):
    """Every publish of a batch failed: the broker is unavailable (the rows were released)."""


@dataclass(frozen=True)
class _Claimed:
    id: int
    payload: Any
    attempts: int


@dataclass(frozen=True)
class _Failure:
    row: _Claimed
    error: str
    own: bool  # the row's own fault (counted against it), not the broker's


_CLAIM = (
    "UPDATE outbox SET lease_until = now() + make_interval(secs => $2), attempts = attempts + 1"
    " WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL AND set_aside_at IS NULL"
    "  AND (lease_until IS NULL OR lease_until <= now())"
    "  ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id, payload, attempts")
_MARK_SENT = ("UPDATE outbox SET sent_at = now(), lease_until = NULL"
              " WHERE id = ANY($1::bigint[]) AND sent_at IS NULL")
# Per failed row: its error; whether the attempt counts (else it is given back and the lease
# released); the retry delay; whether it is set aside now.
_MARK_FAILED = (
    "UPDATE outbox o SET last_error = f.error,"
    " attempts = CASE WHEN f.counts THEN o.attempts ELSE greatest(o.attempts - 1, 0) END,"
    " lease_until = CASE WHEN f.counts THEN now() + make_interval(secs => f.delay) END,"
    " set_aside_at = CASE WHEN f.set_aside THEN now() END"
    " FROM unnest($1::bigint[], $2::text[], $3::boolean[], $4::float8[], $5::boolean[])"
    "  AS f(id, error, counts, delay, set_aside)"
    " WHERE o.id = f.id AND o.sent_at IS NULL")
MAX_ERROR_CHARS = 1000


def _error_text(exc: BaseException) -> str:
    """What is kept of a failure: never the payload (a validation error lists fields only)."""
    if isinstance(exc, ValidationError):
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                           for e in exc.errors(include_input=False, include_url=False))
        return f"invalid CloudEvent: {fields}"[:MAX_ERROR_CHARS]
    if isinstance(exc, TimeoutError):
        return "publish not confirmed within the publish timeout"
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, publish: Callable[[CloudEvent], Awaitable[None]],
                 *, batch_size: int = 200, poll_interval_s: float = 1.0,
                 on_published: Callable[[int], None] | None = None,
                 lease_s: float = 30.0, publish_timeout_s: float = 10.0,
                 max_attempts: int = 10, backoff_s: float = 1.0, backoff_max_s: float = 30.0,
                 on_set_aside: Callable[[int], None] | None = None) -> None:
        self._pool = pool
        self._publish = publish
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._on_published = on_published
        self._on_set_aside = on_set_aside
        self._lease_s = lease_s
        self._publish_timeout_s = publish_timeout_s
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones (doubling, capped)."""
        return float(min(self._backoff_max_s, self._backoff_s * 2 ** max(0, attempts - 1)))

    async def relay_once(self) -> int:
        """Claim one batch of unsent events, publish it, record the outcome; returns how many
        rows were claimed. Raises ``PublishFailed`` when every publish failed."""
        records = await self._pool.fetch(_CLAIM, self._batch_size, self._lease_s)
        if not records:
            return 0
        rows = [_Claimed(r["id"], r["payload"], r["attempts"]) for r in records]
        outcomes = await asyncio.gather(*(self._publish_row(row) for row in rows))
        sent = [row.id for row, error in zip(rows, outcomes, strict=True) if error is None]
        failed = [(row, error) for row, error in zip(rows, outcomes, strict=True)
                  if error is not None]
        if sent:
            await self._pool.execute(_MARK_SENT, sent)
            if self._on_published:
                self._on_published(len(sent))
        if failed:
            # Without a single confirm in the batch a publish error is the broker's, not the row's.
            failures = [_Failure(row, _error_text(exc), bool(sent) or isinstance(exc, ValidationError))
                        for row, exc in failed]
            await self._record_failures(failures)
            broker_faults = [(f, exc) for f, (_row, exc) in zip(failures, failed, strict=True)
                             if not f.own]
            if broker_faults:
                raise PublishFailed(broker_faults[0][0].error) from broker_faults[0][1]
        return len(rows)

    async def _publish_row(self, row: _Claimed) -> BaseException | None:
        try:
            event = CloudEvent.model_validate(row.payload)
            async with asyncio.timeout(self._publish_timeout_s):  # no extra task per publish
                await self._publish(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded with the row
            return exc
        return None

    async def _record_failures(self, failures: list[_Failure]) -> None:
        set_aside = [f.own and f.row.attempts >= self._max_attempts for f in failures]
        await self._pool.execute(
            _MARK_FAILED, [f.row.id for f in failures], [f.error for f in failures],
            [f.own for f in failures], [self.backoff(f.row.attempts) for f in failures], set_aside)
        for f, aside in zip(failures, set_aside, strict=True):
            if not f.own:
                continue  # the broker's fault: ``run`` logs it once for the batch
            if aside:
                log.error("outbox row set aside after %d attempts", f.row.attempts, extra={
                    "outbox_id": f.row.id, "error": f.error})
            else:
                log.warning("outbox row not published; retrying", extra={
                    "outbox_id": f.row.id, "attempts": f.row.attempts, "error": f.error})
        if self._on_set_aside and any(set_aside):
            self._on_set_aside(sum(set_aside))

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Make ``run`` publish whatever it can still claim, then return (graceful stop)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        _relays.add(self)
        failures = 0
        try:
            while True:
                # Cleared before the claim: a commit woken during the batch is not missed.
                self._wake.clear()
                try:
                    # A full batch means more may be waiting; when stopping, drain to the end.
                    while (n := await self.relay_once()) == self._batch_size or (
                            n and self._stopping.is_set()):
                        pass
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    log.exception("outbox relay failed; retrying")
                    if self._stopping.is_set():
                        return  # nothing to drain into: the next start publishes the rest
                    # Back off while the broker or the database is away; commits do not wake it.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), self.backoff(failures))
                    continue
                if self._stopping.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
        finally:
            _relays.discard(self)


_BACKLOG = (
    "SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL AND set_aside_at IS NULL) AS unsent,"
    " (SELECT extract(epoch FROM now() - created_at)::float8 FROM outbox"
    "   WHERE sent_at IS NULL AND set_aside_at IS NULL ORDER BY id LIMIT 1) AS oldest_age,"
    " (SELECT count(*) FROM outbox WHERE sent_at IS NULL AND set_aside_at IS NOT NULL) AS set_aside")


class OutboxGauges:
    """``sp4n_outbox_unsent``, ``sp4n_outbox_oldest_unsent_age_seconds`` (0 when none) and
    ``sp4n_outbox_set_aside`` of one service, refreshed by ``refresh`` (at scrape: a few
    index lookups on the partial indexes). Set-aside rows are not counted as unsent."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ["service"], registry=registry).labels(service)

        self.unsent = gauge("sp4n_outbox_unsent", "Outbox rows not yet published (set-aside excluded)")
        self.oldest_age = gauge("sp4n_outbox_oldest_unsent_age_seconds",
                                "Age of the oldest outbox row not yet published (0 when none)")
        self.set_aside = gauge("sp4n_outbox_set_aside",
                               "Outbox rows set aside after repeated failures (sp4n outbox list)")

    async def refresh(self, pool: asyncpg.Pool, timeout_s: float = 1.0) -> None:
        """Recompute the gauges; on failure (database away) they keep their last values."""
        try:
            async with asyncio.timeout(timeout_s), pool.acquire() as conn:
                r = await conn.fetchrow(_BACKLOG)
        except Exception:  # noqa: BLE001 - a scrape never fails for this
            log.debug("outbox gauges not refreshed", exc_info=True)
            return
        self.unsent.set(r["unsent"])
        self.oldest_age.set(max(0.0, r["oldest_age"] or 0.0))
        self.set_aside.set(r["set_aside"])


# For a repository that stages events inside a larger statement (as a CTE): inserts the rows of
# three parallel text arrays (event ids, routing keys, JSON payloads; see ``outbox_arrays``) in
# array order. ``{ids}``, ``{keys}``, ``{payloads}``: the statement's parameter numbers. Call
# ``staged_on`` once the statement has run.
OUTBOX_INSERT_ARRAYS = (
    "INSERT INTO outbox (event_id, routing_key, payload)"
    " SELECT e.event_id, e.routing_key, e.payload::jsonb"
    " FROM unnest(${ids}::text[], ${keys}::text[], ${payloads}::text[]) WITH ORDINALITY"
    "  AS e(event_id, routing_key, payload, ord) ORDER BY e.ord")


def outbox_arrays(events: Sequence[CloudEvent]) -> tuple[list[str], list[str], list[str]]:
    """The values of ``OUTBOX_INSERT_ARRAYS`` for ``events`` (the payload as JSON text, encoded as
    the pool's jsonb codec encodes it)."""
    rows = [outbox_row(e) for e in events]
    return [r[0] for r in rows], [r[1] for r in rows], [json.dumps(r[2]) for r in rows]


# Operator functions (``sp4n outbox``), on a pool or connection of one service schema.

@dataclass(frozen=True)
class SetAsideRow:
    id: int
    event_id: str
    routing_key: str
    attempts: int
    created_at: datetime
    set_aside_at: datetime
    last_error: str | None


async def list_set_aside(db: asyncpg.Pool | asyncpg.Connection, *, limit: int = 100) -> list[SetAsideRow]:
    """Rows set aside by the relay, oldest first (no payload: it may name people)."""
    rows = await db.fetch(
        "SELECT id, event_id, routing_key, attempts, created_at, set_aside_at, last_error"
        " FROM outbox WHERE sent_at IS NULL AND set_aside_at IS NOT NULL ORDER BY id LIMIT $1",
        limit)
    return [SetAsideRow(**dict(r)) for r in rows]


async def release_set_aside(db: asyncpg.Pool | asyncpg.Connection,
                            ids: Sequence[int] | None = None) -> int:
    """Give set-aside rows (``ids``, or all when None) back to the relay with fresh attempts;
    returns how many. Running relays pick them up at their next poll."""
    status = await db.execute(
        "UPDATE outbox SET set_aside_at = NULL, attempts = 0, lease_until = NULL"
        " WHERE sent_at IS NULL AND set_aside_at IS NOT NULL"
        " AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))",
        None if ids is None else list(ids))
    return int(status.rsplit(" ", 1)[-1])
