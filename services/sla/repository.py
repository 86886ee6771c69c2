"""All SQL of the sla service. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import asyncpg

from services.sla.calendar import WorkingCalendar
from services.sla.clocks import ClockStart, Deadline, Fact, TimerKind
from services.sla.policy import Policy
from shared.inbox import INBOX_INSERT
from shared.outbox import OUTBOX_INSERT_ARRAYS, outbox_arrays, staged_on

# Per-complaint advisory locks live in their own (classid, objid) key space.
_COMPLAINT_LOCK_CLASS = 0x5F4E


@dataclass(frozen=True)
class ClockRow:
    id: int
    complaint_id: uuid.UUID
    clock: str
    hop: int
    opd_code: str | None
    started_at: datetime
    deadline: datetime
    stopped_at: datetime | None
    working_days: int
    warn_at: datetime | None
    calendar_version: str
    policy_version: int
    instance: int = 0
    initial_deadline: datetime | None = None
    initial_warn_at: datetime | None = None
    paused_working_days: int = 0
    paused_at: datetime | None = None
    policy_key: str = ""
    stop_reason: str | None = None

    def deadline_record(self) -> Deadline:
        return Deadline(self.working_days, self.deadline, self.warn_at, self.calendar_version,
                        self.policy_version)

    def initial_deadline_record(self) -> Deadline:
        return Deadline(self.working_days, self.initial_deadline or self.deadline,
                        self.initial_warn_at, self.calendar_version, self.policy_version)


@dataclass(frozen=True)
class DueTimer:
    timer_id: int
    kind: TimerKind
    due_at: datetime
    lag_s: float  # fire time − max(due time, creation time)
    complaint_id: uuid.UUID
    clock: str
    hop: int
    opd_code: str | None
    deadline: datetime
    calendar_version: str
    policy_version: int
    clock_id: int = 0
    started_at: datetime | None = None


def _clock(r: asyncpg.Record) -> ClockRow:
    return ClockRow(r["id"], r["complaint_id"], r["clock"], r["hop"], r["opd_code"],
                    r["started_at"], r["deadline"], r["stopped_at"], r["working_days"],
                    r["warn_at"], r["calendar_version"], r["policy_version"], r["instance"],
                    r["initial_deadline"], r["initial_warn_at"], r["paused_working_days"],
                    r["paused_at"], r["policy_key"], r["stop_reason"])


_CLOCK_COLS = ("id, complaint_id, clock, hop, opd_code, started_at, deadline, stopped_at,"
               " working_days, warn_at, calendar_version, policy_version, instance,"
               " initial_deadline, initial_warn_at, paused_working_days, paused_at, policy_key,"
               " stop_reason")


# -- policy and calendar -------------------------------------------------------------------
async def load_policies(conn: asyncpg.Connection) -> dict[str, Policy]:
    rows = await conn.fetch(
        "SELECT clock, working_days, warn_before_working_days, version FROM policies")
    return {r["clock"]: Policy(r["clock"], r["working_days"], r["warn_before_working_days"],
                               r["version"]) for r in rows}


async def set_policy(conn: asyncpg.Connection, key: str, working_days: int,
                     warn_before_working_days: int | None = None) -> Policy:
    """Edit (or add) a policy row; an edit bumps its version. Applies to clocks started later."""
    r = await conn.fetchrow(
        "INSERT INTO policies (clock, working_days, warn_before_working_days)"
        " VALUES ($1, $2, coalesce($3, 1))"
        " ON CONFLICT (clock) DO UPDATE SET working_days = EXCLUDED.working_days,"
        "  warn_before_working_days = coalesce($3, policies.warn_before_working_days)"
        " RETURNING clock, working_days, warn_before_working_days, version",
        key, working_days, warn_before_working_days)
    return Policy(r["clock"], r["working_days"], r["warn_before_working_days"], r["version"])


async def calendar_revision(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT revision FROM calendar_revision")


async def list_calendar_overrides(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT day, working, reason, updated_at FROM calendar_overrides ORDER BY day")


async def set_calendar_override(conn: asyncpg.Connection, day: date, working: bool,
                                reason: str) -> int:
    """Add or change an override; returns the new calendar revision."""
    await conn.execute(
        "INSERT INTO calendar_overrides (day, working, reason) VALUES ($1, $2, $3)"
        " ON CONFLICT (day) DO UPDATE SET working = EXCLUDED.working,"
        "  reason = EXCLUDED.reason, updated_at = now()",
        day, working, reason)
    return await calendar_revision(conn)


async def delete_calendar_override(conn: asyncpg.Connection, day: date) -> int:
    await conn.execute("DELETE FROM calendar_overrides WHERE day = $1", day)
    return await calendar_revision(conn)


class CalendarSource:
    """The current calendar and policies, cached in process and rebuilt only when they changed.

    Freshness without a TTL: ``load_clocks`` reads the calendar revision and the policy rows in
    the same statement as the complaint's clocks (after the complaint lock), so an operator's
    edit applies to the very next message, on every replica, and costs no extra round trip;
    the override table is re-read (one statement) only when its revision moved.
    """

    def __init__(self, tz: ZoneInfo | str) -> None:
        self._tz = tz
        self._cached: WorkingCalendar | None = None
        self._policy_rows: tuple | None = None
        self._policies: dict[str, Policy] = {}

    async def current(self, conn: asyncpg.Connection) -> WorkingCalendar:
        # Revision and overrides are read in one statement, so they always match.
        row = await conn.fetchrow(
            "SELECT r.revision, coalesce(jsonb_object_agg(o.day::text, o.working)"
            "  FILTER (WHERE o.day IS NOT NULL), '{}'::jsonb) AS overrides"
            " FROM calendar_revision r LEFT JOIN calendar_overrides o ON true"
            " GROUP BY r.revision")
        revision = row["revision"]
        if self._cached is None or self._cached.override_revision != revision:
            overrides = {date.fromisoformat(k): v for k, v in row["overrides"].items()}
            self._cached = WorkingCalendar(self._tz, overrides, override_revision=revision)
        return self._cached

    async def at_revision(self, conn: asyncpg.Connection, revision: int) -> WorkingCalendar:
        """The calendar of override ``revision`` (read by the caller): the cached one, or the
        current one re-read when the revision moved."""
        cached = self._cached
        if cached is not None and cached.override_revision == revision:
            return cached
        return await self.current(conn)

    def policies(self, rows: tuple) -> dict[str, Policy]:
        """The policies of ``rows`` ((key, working_days, warn_before, version), … as
        ``load_clocks`` reads them), rebuilt only when a row changed."""
        if rows != self._policy_rows:
            self._policies = {k: Policy(k, n, w, v) for k, n, w, v in rows}
            self._policy_rows = rows
        return self._policies


# -- clocks --------------------------------------------------------------------------------
async def insert_clock(conn: asyncpg.Connection, complaint_id: uuid.UUID, start: ClockStart,
                       deadline: Deadline) -> int | None:
    """The new clock's id, or None when this (complaint, clock, hop, instance) already exists."""
    return await conn.fetchval(
        "INSERT INTO clocks (complaint_id, clock, hop, instance, policy_key, opd_code, started_at,"
        " working_days, deadline, warn_at, initial_deadline, initial_warn_at, calendar_version,"
        " policy_version)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9, $10, $11, $12)"
        " ON CONFLICT (complaint_id, clock, hop, instance) DO NOTHING RETURNING id",
        complaint_id, start.clock, start.hop, start.instance, start.policy_key, start.opd_code,
        start.started_at, deadline.working_days, deadline.deadline, deadline.warn_at,
        deadline.calendar_version, deadline.policy_version)


async def open_clocks(conn: asyncpg.Connection, complaint_id: uuid.UUID) -> list[ClockRow]:
    """The complaint's running clocks, locked (clock rows before timer rows, as everywhere)."""
    rows = await conn.fetch(
        f"SELECT {_CLOCK_COLS} FROM clocks WHERE complaint_id = $1 AND stopped_at IS NULL"
        " ORDER BY id FOR UPDATE", complaint_id)
    return [_clock(r) for r in rows]


async def clocks_of_kind(conn: asyncpg.Connection, complaint_id: uuid.UUID,
                         clock: str) -> list[ClockRow]:
    rows = await conn.fetch(
        f"SELECT {_CLOCK_COLS} FROM clocks WHERE complaint_id = $1 AND clock = $2"
        " ORDER BY hop, instance", complaint_id, clock)
    return [_clock(r) for r in rows]


async def set_paused(conn: asyncpg.Connection, clock_id: int, at: datetime | None) -> None:
    await conn.execute("UPDATE clocks SET paused_at = $2 WHERE id = $1", clock_id, at)


async def pause_applied(conn: asyncpg.Connection, clock_id: int, deferred_at: datetime) -> bool:
    return bool(await conn.fetchval(
        "SELECT 1 FROM clock_pauses WHERE clock_id = $1 AND deferred_at = $2",
        clock_id, deferred_at))


async def record_pause(conn: asyncpg.Connection, clock_id: int, deferred_at: datetime,
                       resumed_at: datetime, working_days: int, deadline_before: datetime,
                       deadline_after: Deadline) -> None:
    """Remember a DITUNDA period applied to a clock (idempotency and history)."""
    await conn.execute(
        "INSERT INTO clock_pauses (clock_id, deferred_at, resumed_at, working_days,"
        " deadline_before, deadline_after, calendar_version) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        clock_id, deferred_at, resumed_at, working_days, deadline_before,
        deadline_after.deadline, deadline_after.calendar_version)


async def set_recomputed_deadline(conn: asyncpg.Connection, clock_id: int, deadline: Deadline,
                                  paused_working_days: int, paused_at: datetime | None) -> None:
    """Store the deadline recomputed from the initial one and the total paused working days."""
    await conn.execute(
        "UPDATE clocks SET deadline = $2, warn_at = $3, calendar_version = $4,"
        " paused_working_days = $5, paused_at = $6 WHERE id = $1",
        clock_id, deadline.deadline, deadline.warn_at, deadline.calendar_version,
        paused_working_days, paused_at)


async def mark_stopped(conn: asyncpg.Connection, clock_id: int, at: datetime, reason: str) -> None:
    await conn.execute(
        "UPDATE clocks SET stopped_at = $2, stop_reason = $3 WHERE id = $1 AND stopped_at IS NULL",
        clock_id, at, reason)


async def open_clock_counts(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT clock, count(*) AS n FROM clocks WHERE stopped_at IS NULL GROUP BY clock")
    return {r["clock"]: r["n"] for r in rows}


# -- timers --------------------------------------------------------------------------------
async def insert_timer(conn: asyncpg.Connection, clock_id: int, kind: TimerKind, due_at: datetime,
                       *, fired_at: datetime | None = None) -> int:
    return await conn.fetchval(
        "INSERT INTO timers (clock_id, kind, due_at, fired_at) VALUES ($1, $2, $3, $4)"
        " RETURNING id", clock_id, kind, due_at, fired_at)


async def live_timer_kinds(conn: asyncpg.Connection, clock_id: int) -> tuple[set[str], set[str]]:
    """(pending, fired) timer kinds of a clock, locked: waits for a scanner firing one now."""
    rows = await conn.fetch(
        "SELECT kind, fired_at IS NOT NULL AS fired FROM timers WHERE clock_id = $1"
        " AND cancelled_at IS NULL FOR UPDATE", clock_id)
    return ({r["kind"] for r in rows if not r["fired"]}, {r["kind"] for r in rows if r["fired"]})


async def fire_timer(conn: asyncpg.Connection, clock_id: int, kind: str, at: datetime) -> bool:
    status = await conn.execute(
        "UPDATE timers SET fired_at = $3 WHERE clock_id = $1 AND kind = $2"
        " AND fired_at IS NULL AND cancelled_at IS NULL", clock_id, kind, at)
    return status.endswith(" 1")


async def cancel_pending_timers(conn: asyncpg.Connection, clock_id: int, at: datetime) -> None:
    await conn.execute(
        "UPDATE timers SET cancelled_at = $2 WHERE clock_id = $1 AND fired_at IS NULL"
        " AND cancelled_at IS NULL", clock_id, at)


async def claim_due_timers(conn: asyncpg.Connection, limit: int) -> list[DueTimer]:
    """Claim up to ``limit`` due timers and mark them fired, in the caller's transaction.

    ``FOR UPDATE OF t, c SKIP LOCKED``: concurrent scanners claim disjoint rows, and a row
    being fired or a clock being changed elsewhere is skipped rather than waited for (the
    next scan takes it), so a handler (clock row, then its timers) never deadlocks with a
    scanner, and the scanner may stop an elapsed reply-window clock.
    A warning whose deadline has already passed is cancelled, not fired: after the
    breach, a warning is noise.
    """
    rows = await conn.fetch(
        "SELECT t.id, t.kind, t.due_at, c.complaint_id, c.clock, c.hop, c.opd_code,"
        "  c.deadline, c.calendar_version, c.policy_version, c.id AS clock_id, c.started_at,"
        "  now() AS now"
        " FROM timers t JOIN clocks c ON c.id = t.clock_id"
        " WHERE t.fired_at IS NULL AND t.cancelled_at IS NULL AND t.due_at <= now()"
        " ORDER BY t.due_at LIMIT $1 FOR UPDATE OF t, c SKIP LOCKED", limit)
    if not rows:
        return []
    stale = [r["id"] for r in rows if r["kind"] == "warning" and r["deadline"] <= r["now"]]
    if stale:
        await conn.execute("UPDATE timers SET cancelled_at = now() WHERE id = ANY($1::bigint[])",
                           stale)
    fire_ids = [r["id"] for r in rows if r["id"] not in stale]
    lags = {r["id"]: r["lag"] for r in await conn.fetch(
        "UPDATE timers SET fired_at = clock_timestamp() WHERE id = ANY($1::bigint[])"
        " RETURNING id, extract(epoch FROM fired_at - greatest(due_at, created_at))::float8 AS lag",
        fire_ids)}
    return [DueTimer(r["id"], r["kind"], r["due_at"], lags[r["id"]], r["complaint_id"],
                     r["clock"], r["hop"], r["opd_code"], r["deadline"], r["calendar_version"],
                     r["policy_version"], r["clock_id"], r["started_at"])
            for r in rows if r["id"] in lags]


# -- one message: claim, load, change in memory, save ---------------------------------------
# A lifecycle event costs four statements besides BEGIN/COMMIT (five when a resume replaces
# cancelled timers): ``claim_event`` (inbox + complaint lock), ``load_clocks`` (fact + every
# clock, live timer and fact of the complaint + calendar revision + policies),
# ``ComplaintClocks.save`` (every clock, timer, pause and outbox row the event changed).

async def claim_event(conn: asyncpg.Connection, event_id: str, event_type: str,
                      complaint_id: uuid.UUID) -> bool:
    """Record the event in the inbox and, on its first delivery only, take the complaint's lock
    (``lock_complaint``); False for a redelivery (nothing else to do)."""
    return await conn.fetchrow(
        f"WITH first AS ({INBOX_INSERT})"
        " SELECT pg_advisory_xact_lock($3, hashtext($4)) FROM first",
        event_id, event_type, _COMPLAINT_LOCK_CLASS, str(complaint_id)) is not None


@dataclass
class _Timer:
    id: int | None  # None: created by this message
    clock_id: int  # < 0: a clock created by this message (see ``ComplaintClocks``)
    kind: str
    due_at: datetime | None = None
    fired_at: datetime | None = None
    cancelled_at: datetime | None = None
    changed: bool = False

    @property
    def pending(self) -> bool:
        return self.fired_at is None and self.cancelled_at is None


# Locks: the clock rows (all of the complaint's, so a row a scanner changes while we wait is
# read in its committed version, never missed), then the live timers of the running ones (FOR
# UPDATE returns their committed version too: a breach the scanner fired meanwhile is seen as
# fired). Facts, pauses, calendar and policies are only written under the complaint lock or by
# an operator: the statement's snapshot, taken after the lock, is current for them.
_LOAD = f"""
WITH new_fact AS (
    INSERT INTO facts (complaint_id, kind, at, hop, deferred_at, event_id)
    SELECT $1, $2, $3, $4, $5, $6 WHERE $2::text IS NOT NULL
    ON CONFLICT DO NOTHING
), c AS MATERIALIZED (
    SELECT {_CLOCK_COLS} FROM clocks WHERE complaint_id = $1 ORDER BY id FOR UPDATE
), t AS MATERIALIZED (
    SELECT id, clock_id, kind, fired_at FROM timers
    WHERE clock_id IN (SELECT id FROM c WHERE stopped_at IS NULL) AND cancelled_at IS NULL
    ORDER BY id FOR UPDATE
)
SELECT (SELECT array_agg(ROW({_CLOCK_COLS}) ORDER BY id) FROM c) AS clocks,
       (SELECT array_agg(ROW(id, clock_id, kind, fired_at) ORDER BY id) FROM t) AS timers,
       (SELECT array_agg(ROW(kind, at, hop, deferred_at) ORDER BY at) FROM facts
         WHERE complaint_id = $1) AS facts,
       (SELECT array_agg(ROW(clock_id, deferred_at)) FROM clock_pauses
         WHERE $7 AND clock_id IN (SELECT id FROM c WHERE stopped_at IS NULL)) AS pauses,
       (SELECT revision FROM calendar_revision) AS calendar_revision,
       (SELECT array_agg(ROW(clock, working_days, warn_before_working_days, version)
                         ORDER BY clock) FROM policies) AS policies
"""


async def load_clocks(conn: asyncpg.Connection, complaint_id: uuid.UUID, fact: Fact | None,
                      event_id: str, *, with_pauses: bool) -> ComplaintClocks:
    """Keep ``fact`` (as ``record_fact``) and read, locked, what the complaint's clocks are now.
    Call under the complaint lock (``claim_event``)."""
    r = await conn.fetchrow(
        _LOAD, complaint_id, fact and fact.kind, fact and fact.at, fact.hop if fact else 0,
        fact and fact.deferred_at, event_id, with_pauses)
    facts = [Fact(*f) for f in r["facts"] or ()]
    if fact is not None and not any((f.kind, f.at, f.hop) == (fact.kind, fact.at, fact.hop)
                                    for f in facts):
        # As read back from the table (UTC), so events carry the instants as before.
        facts.append(replace(fact, at=fact.at.astimezone(timezone.utc),
                             deferred_at=fact.deferred_at and fact.deferred_at.astimezone(timezone.utc)))
        facts.sort(key=lambda f: f.at)
    return ComplaintClocks(
        complaint_id, [ClockRow(*c) for c in r["clocks"] or ()],
        [_Timer(t[0], t[1], t[2], fired_at=t[3]) for t in r["timers"] or ()],
        facts, {(p[0], p[1]) for p in r["pauses"] or ()}, r["calendar_revision"],
        tuple(tuple(p) for p in r["policies"] or ()))


class ComplaintClocks:
    """One complaint's clocks, live timers, facts and applied pauses as one message sees and
    changes them: read by ``load_clocks``, changed in memory through the operations below (the
    same as the statement-per-change functions above), written back by ``save``.

    A clock this message creates gets a provisional negative id (−1, −2, … in creation order)
    until ``save`` inserts it; its timers and pauses refer to it by that id.
    """

    def __init__(self, complaint_id: uuid.UUID, clocks: list[ClockRow], timers: list[_Timer],
                 facts: list[Fact], pauses: set[tuple[int, datetime]], calendar_revision: int,
                 policy_rows: tuple) -> None:
        self.complaint_id = complaint_id
        self.facts = facts
        self.calendar_revision = calendar_revision
        self.policy_rows = policy_rows
        self._clocks: dict[int, ClockRow] = {c.id: c for c in clocks}  # existing by id, then new
        self._loaded = dict(self._clocks)
        self._timers = timers
        self._pauses = set(pauses)
        self._new_pauses: list[tuple] = []

    # -- reads -------------------------------------------------------------------------------
    def open_clocks(self) -> list[ClockRow]:
        """The running clocks, oldest first (as ``open_clocks``)."""
        return [c for c in self._clocks.values() if c.stopped_at is None]

    def clocks_of_kind(self, clock: str) -> list[ClockRow]:
        return sorted((c for c in self._clocks.values() if c.clock == clock),
                      key=lambda c: (c.hop, c.instance))

    def pause_applied(self, clock_id: int, deferred_at: datetime) -> bool:
        return (clock_id, deferred_at) in self._pauses

    def live_timer_kinds(self, clock_id: int) -> tuple[set[str], set[str]]:
        live = [t for t in self._timers if t.clock_id == clock_id and t.cancelled_at is None]
        return ({t.kind for t in live if t.fired_at is None},
                {t.kind for t in live if t.fired_at is not None})

    # -- changes -----------------------------------------------------------------------------
    def insert_clock(self, start: ClockStart, deadline: Deadline) -> int | None:
        """The new clock's (provisional) id, or None when it already exists."""
        key = (start.clock, start.hop, start.instance)
        if any((c.clock, c.hop, c.instance) == key for c in self._clocks.values()):
            return None
        clock_id = -1 - sum(1 for i in self._clocks if i < 0)
        self._clocks[clock_id] = ClockRow(
            clock_id, self.complaint_id, start.clock, start.hop, start.opd_code, start.started_at,
            deadline.deadline, None, deadline.working_days, deadline.warn_at,
            deadline.calendar_version, deadline.policy_version, start.instance,
            deadline.deadline, deadline.warn_at, 0, None, start.policy_key)
        return clock_id

    def _change(self, clock_id: int, **values) -> None:
        self._clocks[clock_id] = replace(self._clocks[clock_id], **values)

    def set_paused(self, clock_id: int, at: datetime | None) -> None:
        self._change(clock_id, paused_at=at)

    def record_pause(self, clock_id: int, deferred_at: datetime, resumed_at: datetime,
                     working_days: int, deadline_before: datetime,
                     deadline_after: Deadline) -> None:
        self._pauses.add((clock_id, deferred_at))
        self._new_pauses.append((clock_id, deferred_at, resumed_at, working_days,
                                 deadline_before, deadline_after.deadline,
                                 deadline_after.calendar_version))

    def set_recomputed_deadline(self, clock_id: int, deadline: Deadline,
                                paused_working_days: int, paused_at: datetime | None) -> None:
        self._change(clock_id, deadline=deadline.deadline, warn_at=deadline.warn_at,
                     calendar_version=deadline.calendar_version,
                     paused_working_days=paused_working_days, paused_at=paused_at)

    def mark_stopped(self, clock_id: int, at: datetime, reason: str) -> None:
        if self._clocks[clock_id].stopped_at is None:
            self._change(clock_id, stopped_at=at, stop_reason=reason)

    def insert_timer(self, clock_id: int, kind: TimerKind, due_at: datetime, *,
                     fired_at: datetime | None = None) -> None:
        self._timers.append(_Timer(None, clock_id, kind, due_at, fired_at))

    def fire_timer(self, clock_id: int, kind: str, at: datetime) -> bool:
        for t in self._timers:
            if t.clock_id == clock_id and t.kind == kind and t.pending:
                t.fired_at, t.changed = at, True
                return True
        return False

    def cancel_pending_timers(self, clock_id: int, at: datetime) -> None:
        for t in self._timers:
            if t.clock_id == clock_id and t.pending:
                t.cancelled_at, t.changed = at, True

    # -- write back --------------------------------------------------------------------------
    async def save(self, conn: asyncpg.Connection, events: list) -> None:
        """Write every change and stage ``events`` in the outbox: one statement, or two when a
        timer replaces a cancelled one of the same clock and kind (the cancellation must come
        first for the one-live-timer-per-kind index)."""
        new = [c for i, c in self._clocks.items() if i < 0]
        changed = [c for i, c in self._clocks.items() if i > 0 and c != self._loaded[i]]
        timer_updates = [t for t in self._timers if t.id is not None and t.changed]
        timer_inserts = [t for t in self._timers if t.id is None]
        if not (new or changed or timer_updates or timer_inserts or self._new_pauses or events):
            return
        updates = _save_args(self.complaint_id, [], changed, timer_updates, [], [], [])
        replaced = {(t.clock_id, t.kind) for t in timer_updates}
        if any((t.clock_id, t.kind) in replaced for t in timer_inserts):
            await _save(conn, updates, 0, len(changed))
            changed, timer_updates = [], []
        await _save(conn, _save_args(self.complaint_id, new, changed, timer_updates, timer_inserts,
                                     self._new_pauses, events), len(new), len(changed))
        if events:
            staged_on(conn)


_SAVE = f"""
WITH nc AS (
    INSERT INTO clocks (complaint_id, clock, hop, instance, policy_key, opd_code, started_at,
        working_days, deadline, warn_at, initial_deadline, initial_warn_at, calendar_version,
        policy_version, paused_working_days, paused_at, stopped_at, stop_reason)
    SELECT $1, n.* FROM unnest($2::text[], $3::int[], $4::int[], $5::text[], $6::text[],
        $7::timestamptz[], $8::int[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
        $12::timestamptz[], $13::text[], $14::int[], $15::int[], $16::timestamptz[],
        $17::timestamptz[], $18::text[]) AS n
    ON CONFLICT (complaint_id, clock, hop, instance) DO NOTHING
    RETURNING id, clock, hop, instance
), ids AS (  -- provisional id (−ordinal) → inserted id
    SELECT -k.ord AS ref, nc.id
    FROM unnest($2::text[], $3::int[], $4::int[]) WITH ORDINALITY AS k(clock, hop, instance, ord)
    JOIN nc USING (clock, hop, instance)
), uc AS (
    UPDATE clocks c SET deadline = u.deadline, warn_at = u.warn_at,
        calendar_version = u.calendar_version, paused_working_days = u.paused_working_days,
        paused_at = u.paused_at, stopped_at = u.stopped_at, stop_reason = u.stop_reason
    FROM unnest($19::bigint[], $20::timestamptz[], $21::timestamptz[], $22::text[], $23::int[],
                $24::timestamptz[], $25::timestamptz[], $26::text[])
        AS u(id, deadline, warn_at, calendar_version, paused_working_days, paused_at, stopped_at,
             stop_reason)
    WHERE c.id = u.id
    RETURNING 1
), ut AS (
    UPDATE timers t SET fired_at = u.fired_at, cancelled_at = u.cancelled_at
    FROM unnest($27::bigint[], $28::timestamptz[], $29::timestamptz[]) AS u(id, fired_at, cancelled_at)
    WHERE t.id = u.id
), nt AS (
    INSERT INTO timers (clock_id, kind, due_at, fired_at, cancelled_at)
    SELECT coalesce(ids.id, n.ref), n.kind, n.due_at, n.fired_at, n.cancelled_at
    FROM unnest($30::bigint[], $31::text[], $32::timestamptz[], $33::timestamptz[],
                $34::timestamptz[]) WITH ORDINALITY AS n(ref, kind, due_at, fired_at, cancelled_at, ord)
    LEFT JOIN ids ON ids.ref = n.ref
    WHERE n.ref > 0 OR ids.id IS NOT NULL
    ORDER BY n.ord
), np AS (
    INSERT INTO clock_pauses (clock_id, deferred_at, resumed_at, working_days, deadline_before,
        deadline_after, calendar_version)
    SELECT coalesce(ids.id, n.ref), n.deferred_at, n.resumed_at, n.working_days,
        n.deadline_before, n.deadline_after, n.calendar_version
    FROM unnest($35::bigint[], $36::timestamptz[], $37::timestamptz[], $38::int[],
                $39::timestamptz[], $40::timestamptz[], $41::text[])
        AS n(ref, deferred_at, resumed_at, working_days, deadline_before, deadline_after,
             calendar_version)
    LEFT JOIN ids ON ids.ref = n.ref
    WHERE n.ref > 0 OR ids.id IS NOT NULL
), o AS ({OUTBOX_INSERT_ARRAYS.format(ids=42, keys=43, payloads=44)})
SELECT (SELECT count(*) FROM nc) AS inserted, (SELECT count(*) FROM uc) AS updated
"""


def _save_args(complaint_id: uuid.UUID, new: list[ClockRow], changed: list[ClockRow],
               timer_updates: list[_Timer], timer_inserts: list[_Timer], pauses: list[tuple],
               events: list) -> list:
    def cols(rows, *names):
        return [[getattr(r, n) for r in rows] for n in names]

    return [
        complaint_id,
        *cols(new, "clock", "hop", "instance", "policy_key", "opd_code", "started_at",
              "working_days", "deadline", "warn_at", "initial_deadline", "initial_warn_at",
              "calendar_version", "policy_version", "paused_working_days", "paused_at",
              "stopped_at", "stop_reason"),
        *cols(changed, "id", "deadline", "warn_at", "calendar_version", "paused_working_days",
              "paused_at", "stopped_at", "stop_reason"),
        *cols(timer_updates, "id", "fired_at", "cancelled_at"),
        *cols(timer_inserts, "clock_id", "kind", "due_at", "fired_at", "cancelled_at"),
        *([list(col) for col in zip(*pauses)] if pauses else [[]] * 7),
        *outbox_arrays(events),
    ]


async def _save(conn: asyncpg.Connection, args: list, inserted: int, updated: int) -> None:
    r = await conn.fetchrow(_SAVE, *args)
    if (r["inserted"], r["updated"]) != (inserted, updated):
        # Impossible under the complaint lock (every clock of the complaint was read locked);
        # rather than stage events for rows not written, fail: the message is redelivered.
        raise RuntimeError(f"clocks changed under the complaint lock: wrote {tuple(r)}, "
                           f"expected ({inserted}, {updated})")
