"""All SQL of the sla service. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from services.sla.calendar import WorkingCalendar
from services.sla.clocks import ClockStart, ClockStop, Deadline, TimerKind
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

    def deadline_record(self) -> Deadline:
        return Deadline(self.working_days, self.deadline, self.warn_at, self.calendar_version,
                        self.policy_version)


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


def _clock(r: asyncpg.Record) -> ClockRow:
    return ClockRow(r["id"], r["complaint_id"], r["clock"], r["hop"], r["opd_code"],
                    r["started_at"], r["deadline"], r["stopped_at"], r["working_days"],
                    r["warn_at"], r["calendar_version"], r["policy_version"])


_CLOCK_COLS = ("id, complaint_id, clock, hop, opd_code, started_at, deadline, stopped_at,"
               " working_days, warn_at, calendar_version, policy_version")


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
    """The new clock's id, or None when this (complaint, clock, hop) already exists."""
    return await conn.fetchval(
        "INSERT INTO clocks (complaint_id, clock, hop, policy_key, opd_code, started_at,"
        " working_days, deadline, warn_at, calendar_version, policy_version)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        " ON CONFLICT (complaint_id, clock, hop) DO NOTHING RETURNING id",
        complaint_id, start.clock, start.hop, start.policy_key, start.opd_code,
        start.started_at, deadline.working_days, deadline.deadline, deadline.warn_at,
        deadline.calendar_version, deadline.policy_version)


async def clock_for_update(conn: asyncpg.Connection, complaint_id: uuid.UUID, clock: str,
                           hop: int) -> ClockRow | None:
    r = await conn.fetchrow(
        f"SELECT {_CLOCK_COLS} FROM clocks WHERE complaint_id = $1 AND clock = $2 AND hop = $3"
        " FOR UPDATE", complaint_id, clock, hop)
    return _clock(r) if r else None


async def open_clocks_before_hop(conn: asyncpg.Connection, complaint_id: uuid.UUID, clock: str,
                                 hop: int) -> list[ClockRow]:
    rows = await conn.fetch(
        f"SELECT {_CLOCK_COLS} FROM clocks WHERE complaint_id = $1 AND clock = $2 AND hop < $3"
        " AND stopped_at IS NULL ORDER BY hop FOR UPDATE", complaint_id, clock, hop)
    return [_clock(r) for r in rows]


async def first_start_after_hop(conn: asyncpg.Connection, complaint_id: uuid.UUID, clock: str,
                                hop: int) -> datetime | None:
    """When the earliest later hop of this clock started (it supersedes this hop)."""
    return await conn.fetchval(
        "SELECT min(started_at) FROM clocks WHERE complaint_id = $1 AND clock = $2 AND hop > $3",
        complaint_id, clock, hop)


async def mark_stopped(conn: asyncpg.Connection, clock_id: int, at: datetime, reason: str) -> None:
    await conn.execute(
        "UPDATE clocks SET stopped_at = $2, stop_reason = $3 WHERE id = $1 AND stopped_at IS NULL",
        clock_id, at, reason)


async def record_early_stop(conn: asyncpg.Connection, complaint_id: uuid.UUID, stop: ClockStop) -> None:
    """Remember a stop for a clock that does not exist yet; the earliest stop wins."""
    await conn.execute(
        "INSERT INTO early_stops (complaint_id, clock, hop, stopped_at, reason)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (complaint_id, clock, hop) DO UPDATE"
        " SET stopped_at = EXCLUDED.stopped_at, reason = EXCLUDED.reason"
        " WHERE EXCLUDED.stopped_at < early_stops.stopped_at",
        complaint_id, stop.clock, stop.hop, stop.at, stop.reason)


async def early_stop(conn: asyncpg.Connection, complaint_id: uuid.UUID, clock: str,
                     hop: int) -> ClockStop | None:
    r = await conn.fetchrow(
        "SELECT stopped_at, reason FROM early_stops WHERE complaint_id = $1 AND clock = $2"
        " AND hop = $3", complaint_id, clock, hop)
    return ClockStop(clock, hop, r["stopped_at"], r["reason"]) if r else None  # type: ignore[arg-type]


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

    ``FOR UPDATE OF t SKIP LOCKED``: concurrent scanners claim disjoint rows, and a row being
    fired elsewhere is skipped rather than waited for; clock rows are not locked, so a
    handler stopping a clock (clock row, then its timers) cannot deadlock with a scanner.
    A warning whose deadline has already passed is cancelled, not fired: after the
    breach, a warning is noise.
    """
    rows = await conn.fetch(
        "SELECT t.id, t.kind, t.due_at, c.complaint_id, c.clock, c.hop, c.opd_code,"
        "  c.deadline, c.calendar_version, c.policy_version, now() AS now"
        " FROM timers t JOIN clocks c ON c.id = t.clock_id"
        " WHERE t.fired_at IS NULL AND t.cancelled_at IS NULL AND t.due_at <= now()"
        " ORDER BY t.due_at LIMIT $1 FOR UPDATE OF t SKIP LOCKED", limit)
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
                     r["policy_version"])
            for r in rows if r["id"] in lags]
