"""All SQL of the sla service. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from services.sla.calendar import WorkingCalendar
from services.sla.clocks import ClockStart, ClockStop, Deadline, Fact, TimerKind
from services.sla.policy import Policy

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
                    r["paused_at"], r["policy_key"])


_CLOCK_COLS = ("id, complaint_id, clock, hop, opd_code, started_at, deadline, stopped_at,"
               " working_days, warn_at, calendar_version, policy_version, instance,"
               " initial_deadline, initial_warn_at, paused_working_days, paused_at, policy_key")


async def lock_complaint(conn: asyncpg.Connection, complaint_id: uuid.UUID) -> None:
    """Serialise this transaction with others touching the same complaint's clocks, so two
    reordered events (submitted, routed) processed at once cannot both miss each other."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                       _COMPLAINT_LOCK_CLASS, str(complaint_id))


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


async def calendar_overrides(conn: asyncpg.Connection) -> dict[date, bool]:
    return {r["day"]: r["working"]
            for r in await conn.fetch("SELECT day, working FROM calendar_overrides")}


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
    """The current calendar, rebuilt only when the override revision changed."""

    def __init__(self, tz: ZoneInfo | str) -> None:
        self._tz = tz
        self._cached: WorkingCalendar | None = None

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


async def record_fact(conn: asyncpg.Connection, complaint_id: uuid.UUID, fact: Fact,
                      event_id: str) -> bool:
    """Keep a lifecycle fact; False when the same fact is already known (re-published)."""
    return await conn.fetchval(
        "INSERT INTO facts (complaint_id, kind, at, hop, deferred_at, event_id)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
        complaint_id, fact.kind, fact.at, fact.hop, fact.deferred_at, event_id) is not None


async def facts(conn: asyncpg.Connection, complaint_id: uuid.UUID) -> list[Fact]:
    rows = await conn.fetch(
        "SELECT kind, at, hop, deferred_at FROM facts WHERE complaint_id = $1 ORDER BY at",
        complaint_id)
    return [Fact(r["kind"], r["at"], r["hop"], r["deferred_at"]) for r in rows]








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


async def pending_timer_kinds(conn: asyncpg.Connection, clock_id: int) -> set[str]:
    """Pending timers of a clock, locked: waits for a scanner that is firing one right now."""
    rows = await conn.fetch(
        "SELECT kind FROM timers WHERE clock_id = $1 AND fired_at IS NULL"
        " AND cancelled_at IS NULL FOR UPDATE", clock_id)
    return {r["kind"] for r in rows}


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
