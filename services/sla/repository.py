"""All SQL of the sla service: the PostgreSQL mapper of ``domain.ComplaintClocks``, the
scanner's timer claims, and the operator's calendar and policy rows.

``PgSlaRepository`` works on a unit of work's transaction (``shared.uow.PgTx``); the operator
functions at the end take a connection and run in the caller's transaction. Everything returned
is a dataclass of ``domain``, ``calendars`` or ``policy``, never a row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from services.sla.calendars import CalendarSnapshot, CalendarStamp, parse_ladder
from services.sla.clocks import Fact, LadderStep, StopReason
from services.sla.domain import (
    ClockChanges,
    ClockRow,
    ComplaintClocks,
    DueTimer,
    Firing,
    PauseRow,
    Timer,
)
from services.sla.policy import Policy
from shared.events import CloudEvent
from shared.outbox import OUTBOX_INSERT_ARRAYS, outbox_arrays
from shared.uow import INBOX_INSERT, PgTx

# Per-complaint advisory locks live in their own (classid, objid) key space.
_COMPLAINT_LOCK_CLASS = 0x5F4E

_CLOCK_COLS = ("id, complaint_id, clock, hop, opd_code, started_at, deadline, stopped_at,"
               " working_days, warn_at, calendar_version, policy_version, instance,"
               " initial_deadline, initial_warn_at, paused_working_days, paused_at, policy_key,"
               " stop_reason, final_response_at, closed_at, category")

# Every timer marked fired (here by the scanner, or in ``_SAVE`` by a message) is copied into
# the firing log by the ``timers`` triggers of migration 0009, in the same statement.

# A lifecycle event costs three statements besides BEGIN/COMMIT (four when a timer replaces
# one of the same clock, kind and point: a moved deadline): ``claim`` (inbox + complaint lock),
# ``load`` (fact + every clock, live timer, pause, fact and firing of the complaint + calendar
# revision + policies), ``save`` (the difference between the rows loaded and the rows derived
# from the facts, ``domain.diff``, and the outbox rows). A redelivery costs ``claim`` alone.

_CLAIM = (f"WITH first AS ({INBOX_INSERT})"
          " SELECT pg_advisory_xact_lock($3, hashtext($4)) FROM first")

# Locks: the clock rows (all of the complaint's, so a row a scanner changes while we wait is
# read in its committed version, never missed), then their live (not cancelled) timers (FOR
# UPDATE returns their committed version too: a breach the scanner fired meanwhile is seen as
# fired). Every clock's, running or not: ``domain.diff`` compares them all with derive's.
# Facts, pauses, calendar and policies are only written under the complaint lock or by an
# operator: the statement's snapshot, taken after the lock, is current for them.
_LOAD = f"""
WITH new_fact AS (
    INSERT INTO facts (complaint_id, kind, at, hop, deferred_at, event_id, detail, recorded_at)
    SELECT $1, $2, $3, $4, $5, $6, $8, coalesce($7, now()) WHERE $2::text IS NOT NULL
    ON CONFLICT DO NOTHING
), c AS MATERIALIZED (
    SELECT {_CLOCK_COLS} FROM clocks WHERE complaint_id = $1 ORDER BY id FOR UPDATE
), t AS MATERIALIZED (
    SELECT id, clock_id, kind, due_at, fired_at, point, fire_at FROM timers
    WHERE clock_id IN (SELECT id FROM c) AND cancelled_at IS NULL
    ORDER BY id FOR UPDATE
)
SELECT (SELECT array_agg(ROW({_CLOCK_COLS}) ORDER BY id) FROM c) AS clocks,
       (SELECT array_agg(ROW(id, clock_id, kind, due_at, fired_at, point, fire_at) ORDER BY id)
          FROM t) AS timers,
       (SELECT array_agg(ROW(kind, at, hop, deferred_at, detail, recorded_at) ORDER BY at)
          FROM facts WHERE complaint_id = $1) AS facts,
       (SELECT array_agg(ROW(clock, hop, instance, kind, point, due_at, fired_at, fire_at)
                         ORDER BY fired_at) FROM firings
         WHERE complaint_id = $1) AS firings,
       (SELECT array_agg(ROW(clock_id, deferred_at, resumed_at, working_days, deadline_before,
                             deadline_after, calendar_version)) FROM clock_pauses
         WHERE clock_id IN (SELECT id FROM c)) AS pauses,
       (SELECT revision FROM calendar_revision) AS calendar_revision,
       (SELECT array_agg(ROW(clock, working_days, warn_before_working_days, version,
                             coalesce(warn_points, ARRAY[]::text[])) ORDER BY clock)
          FROM policies) AS policies,
       (SELECT array_agg(ROW(clock, opd_code, category, steps::text, version) ORDER BY id)
          FROM escalation_ladders) AS ladders
"""


_READ_CALENDAR = (
    "SELECT r.revision, coalesce(jsonb_object_agg(o.day::text, o.working)"
    "  FILTER (WHERE o.day IS NOT NULL), '{}'::jsonb) AS overrides,"
    " (SELECT coalesce(array_agg(year), '{}') FROM calendar_confirmed_years) AS confirmed"
    " FROM calendar_revision r LEFT JOIN calendar_overrides o ON true"
    " GROUP BY r.revision")


# The scanner's claim, in two steps so that its cost does not depend on the backlog:
# ``due`` reads the first ``$1`` due timers in fire order straight off ``timers_pending_fire``
# (the partial index of pending timers on ``fire_at``: an ordered index scan that stops after
# ``$1`` unlocked rows), then ``c`` locks only their clocks, by primary key. The bound is
# ``(SELECT now())``, an init-plan parameter: the planner cannot estimate how many timers are
# due from it, so it keeps the ordered scan (with ``now()`` itself it estimated the backlog
# from statistics, and under-estimating it chose a bitmap scan + sort of every due timer).
# The clocks likewise come by ``id = ANY (ARRAY(…))``, an index lookup per id (``IN (SELECT
# …)`` let the planner hash-join a sequential scan of every clock).
# A due timer whose clock is locked elsewhere is left pending (its lock ends with the
# transaction) for the next scan.
CLAIM_DUE = """
WITH due AS MATERIALIZED (
    SELECT id, clock_id, kind, due_at, point, fire_at FROM timers
    WHERE fired_at IS NULL AND cancelled_at IS NULL AND fire_at <= (SELECT now())
    ORDER BY fire_at LIMIT $1 FOR UPDATE SKIP LOCKED
), c AS MATERIALIZED (
    SELECT id, complaint_id, clock, hop, instance, opd_code, deadline, calendar_version,
           policy_version, started_at FROM clocks
    WHERE id = ANY (ARRAY(SELECT clock_id FROM due)) FOR UPDATE SKIP LOCKED
)
SELECT due.id, due.kind, due.due_at, due.point, c.complaint_id, c.clock, c.hop, c.instance,
       c.opd_code, c.deadline, c.calendar_version, c.policy_version, c.id AS clock_id,
       c.started_at, now() AS now
FROM due JOIN c ON c.id = due.clock_id ORDER BY due.fire_at, due.id
"""


class PgSlaRepository:
    """The sla repository on one unit of work (``PgUnitOfWork(pool, PgSlaRepository)``)."""

    def __init__(self, tx: PgTx[PgSlaRepository]) -> None:
        self._tx = tx
        self._conn: asyncpg.Connection = tx.conn

    # -- one message: claim, load, change in memory, save -----------------------------------
    async def claim(self, complaint_id: uuid.UUID) -> bool:
        """Record the unit of work's event in the inbox and, on its first delivery only, take
        the complaint's lock (one statement); False for a redelivery (nothing else to do)."""
        event = self._tx.event
        if event is None:
            raise RuntimeError("claim() needs the unit of work's event")
        first = await self._conn.fetchrow(_CLAIM, event.id, event.type, _COMPLAINT_LOCK_CLASS,
                                          str(complaint_id)) is not None
        self._tx.set_claimed(first)
        return first

    async def load(self, complaint_id: uuid.UUID, fact: Fact | None,
                   event_id: str) -> tuple[ComplaintClocks, CalendarStamp]:
        """Keep ``fact`` (recorded at its ``recorded_at``, else the transaction's time) and
        read, locked, what the complaint's clocks are now, with the calendar revision and the
        policy rows. Call under the complaint lock (``claim``)."""
        r = await self._conn.fetchrow(
            _LOAD, complaint_id, fact and fact.kind, fact and fact.at, fact.hop if fact else 0,
            fact and fact.deferred_at, event_id, fact and fact.recorded_at,
            fact and fact.detail)
        state = ComplaintClocks(
            complaint_id, [ClockRow(*c) for c in r["clocks"] or ()],
            [Timer(t[0], t[1], t[2], t[3], t[4], point=t[5], fire_at=t[6])
             for t in r["timers"] or ()],
            [Fact(*f) for f in r["facts"] or ()], [PauseRow(*p) for p in r["pauses"] or ()],
            [Firing(*f) for f in r["firings"] or ()])
        if fact is not None:
            state.record_fact(fact)  # not in the statement's snapshot when it inserted it
        return state, CalendarStamp(
            r["calendar_revision"],
            tuple((p[0], p[1], p[2], p[3], tuple(p[4])) for p in r["policies"] or ()),
            tuple((x[0], x[1], x[2], x[3], x[4]) for x in r["ladders"] or ()))

    async def save(self, state: ComplaintClocks, changes: ClockChanges | None = None) -> None:
        """Write ``changes`` (by default ``state.changes()``, the aggregate's own) and the
        events staged on the unit of work: one statement, or two when a timer replaces a
        cancelled one of the same clock, kind and point (the cancellation must come first for
        the one-live-timer-per-(clock, kind, point) index)."""
        c = state.changes() if changes is None else changes
        if not c and not self._tx.has_staged:
            return
        events = self._tx.take_staged()
        new, changed, timer_updates = c.new_clocks, c.changed_clocks, c.timer_updates
        replaced = {(t.clock_id, t.kind, t.point) for t in timer_updates}
        if any((t.clock_id, t.kind, t.point) in replaced for t in c.timer_inserts):
            await self._save(_save_args(state.complaint_id, [], changed, timer_updates, [], [], []),
                             0, len(changed))
            changed, timer_updates = [], []
        await self._save(_save_args(state.complaint_id, new, changed, timer_updates,
                                    c.timer_inserts, c.new_pauses, events, c.deleted_clocks,
                                    c.deleted_pauses),
                         len(new), len(changed), len(c.deleted_clocks))

    async def _save(self, args: list[Any], inserted: int, updated: int, deleted: int = 0) -> None:
        r = await self._conn.fetchrow(_SAVE, *args)
        if (r["inserted"], r["updated"], r["deleted"]) != (inserted, updated, deleted):
            # Impossible under the complaint lock (every clock of the complaint was read
            # locked); rather than stage events for rows not written, fail: the message is
            # redelivered.
            raise RuntimeError(f"clocks changed under the complaint lock: wrote {tuple(r)}, "
                               f"expected ({inserted}, {updated}, {deleted})")

    async def lock(self, complaint_id: uuid.UUID) -> None:
        """The complaint's lock for a change no event brings (an operator's calendar edit)."""
        await self._conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                                 _COMPLAINT_LOCK_CLASS, str(complaint_id))

    async def change_override(self, day: date, working: bool | None, reason: str,
                              changed_by: str, keep_deadlines: bool) -> int:
        """Set (``working`` True/False) or remove (None) the override of ``day`` and record the
        change with who and why; returns the new calendar revision."""
        if working is None:
            await self._conn.execute("DELETE FROM calendar_overrides WHERE day = $1", day)
        else:
            await set_calendar_override(self._conn, day, working, reason)
        revision: int = await self._conn.fetchval(
            "INSERT INTO calendar_changes (revision, day, working, reason, changed_by,"
            " keep_deadlines) SELECT revision, $1, $2, $3, $4, $5 FROM calendar_revision"
            " RETURNING revision", day, working, reason, changed_by, keep_deadlines)
        return revision

    async def confirm_year(self, year: int, changed_by: str) -> int:
        await self._conn.execute(
            "INSERT INTO calendar_confirmed_years (year, confirmed_by) VALUES ($1, $2)"
            " ON CONFLICT (year) DO UPDATE SET confirmed_by = EXCLUDED.confirmed_by,"
            " confirmed_at = now()", year, changed_by)
        revision: int = await self._conn.fetchval(
            "INSERT INTO calendar_changes (revision, confirmed_year, reason, changed_by)"
            " SELECT revision, $1, 'cuti bersama dikonfirmasi', $2 FROM calendar_revision"
            " RETURNING revision", year, changed_by)
        return revision

    async def complaints_with_open_clocks(self, since: datetime) -> list[uuid.UUID]:
        """Complaints with a running clock whose deadline is not before ``since`` (a calendar
        change of a day can only move those)."""
        rows = await self._conn.fetch(
            "SELECT DISTINCT complaint_id FROM clocks WHERE stopped_at IS NULL"
            " AND deadline >= $1", since)
        return [r["complaint_id"] for r in rows]

    async def complaints_with_clocks(self, *, open_only: bool, after: uuid.UUID | None,
                                     limit: int) -> list[uuid.UUID]:
        """One page of the complaints with a clock (a running one if ``open_only``), in id
        order after ``after`` (verification walks them all). A plain ``complaint_id > $2``
        (the nil UUID, never a complaint's, for the first page) keeps each page an ordered
        range scan of the clocks' unique index, however many pages there are."""
        rows = await self._conn.fetch(
            "SELECT DISTINCT complaint_id FROM clocks WHERE (NOT $1 OR stopped_at IS NULL)"
            " AND complaint_id > $2 ORDER BY complaint_id LIMIT $3",
            open_only, after or uuid.UUID(int=0), limit)
        return [r["complaint_id"] for r in rows]

    # -- calendar (``calendars.CalendarVersionStore``) --------------------------------------
    async def read_calendar(self) -> CalendarSnapshot:
        return await read_calendar(self._conn)

    async def read_calendar_version(self, revision: int) -> CalendarSnapshot | None:
        return await read_calendar_version(self._conn, revision)

    # -- the scanner -------------------------------------------------------------------------
    async def claim_due_timers(self, limit: int) -> list[DueTimer]:
        """Claim up to ``limit`` due timers and mark them fired, in the unit of work
        (``CLAIM_DUE``: the due timers first, then their clocks).

        ``SKIP LOCKED`` on both: concurrent scanners claim disjoint rows, and a timer being
        fired or a clock being changed elsewhere is skipped rather than waited for (the next
        scan takes it), so a handler (clock row, then its timers) never deadlocks with a
        scanner, and the scanner may stop an elapsed reply-window clock.
        A warning whose deadline has already passed is cancelled, not fired: after the
        breach, a warning is noise.
        """
        conn = self._conn
        rows = await conn.fetch(CLAIM_DUE, limit)
        if not rows:
            return []
        stale = [r["id"] for r in rows if r["kind"] == "warning" and r["deadline"] <= r["now"]]
        if stale:
            await conn.execute(
                "UPDATE timers SET cancelled_at = now() WHERE id = ANY($1::bigint[])", stale)
        fire_ids = [r["id"] for r in rows if r["id"] not in stale]
        lags = {r["id"]: r["lag"] for r in await conn.fetch(
            "UPDATE timers SET fired_at = clock_timestamp() WHERE id = ANY($1::bigint[])"
            " RETURNING id,"
            "  extract(epoch FROM fired_at - greatest(fire_at, created_at))::float8 AS lag",
            fire_ids)}
        return [DueTimer(r["id"], r["kind"], r["due_at"], lags[r["id"]], r["complaint_id"],
                         r["clock"], r["hop"], r["opd_code"], r["deadline"],
                         r["calendar_version"], r["policy_version"], r["clock_id"],
                         r["started_at"], r["point"], r["instance"])
                for r in rows if r["id"] in lags]

    async def mark_stopped(self, clock_id: int, at: datetime, reason: StopReason) -> None:
        await self._conn.execute(
            "UPDATE clocks SET stopped_at = $2, stop_reason = $3"
            " WHERE id = $1 AND stopped_at IS NULL", clock_id, at, reason)

    async def open_clock_counts(self) -> dict[str, int]:
        rows = await self._conn.fetch(
            "SELECT clock, count(*) AS n FROM clocks WHERE stopped_at IS NULL GROUP BY clock")
        return {r["clock"]: r["n"] for r in rows}

    async def clocks_beyond(self, boundary: datetime) -> int:
        """Running clocks whose deadline is at or after ``boundary`` (calendar coverage)."""
        n: int = await self._conn.fetchval(
            "SELECT count(*) FROM clocks WHERE stopped_at IS NULL AND deadline >= $1", boundary)
        return n


_SAVE = f"""
WITH nc AS (
    INSERT INTO clocks (complaint_id, clock, hop, instance, policy_key, opd_code, started_at,
        working_days, deadline, warn_at, initial_deadline, initial_warn_at, calendar_version,
        policy_version, paused_working_days, paused_at, stopped_at, stop_reason,
        final_response_at, closed_at, category)
    SELECT $1, n.* FROM unnest($2::text[], $3::int[], $4::int[], $5::text[], $6::text[],
        $7::timestamptz[], $8::int[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
        $12::timestamptz[], $13::text[], $14::int[], $15::int[], $16::timestamptz[],
        $17::timestamptz[], $18::text[], $19::timestamptz[], $20::timestamptz[],
        $54::text[]) AS n
    ON CONFLICT (complaint_id, clock, hop, instance) DO NOTHING
    RETURNING id, clock, hop, instance
), ids AS (  -- provisional id (−ordinal) → inserted id
    SELECT -k.ord AS ref, nc.id
    FROM unnest($2::text[], $3::int[], $4::int[]) WITH ORDINALITY AS k(clock, hop, instance, ord)
    JOIN nc USING (clock, hop, instance)
), uc AS (
    UPDATE clocks c SET deadline = u.deadline, warn_at = u.warn_at,
        calendar_version = u.calendar_version, paused_working_days = u.paused_working_days,
        paused_at = u.paused_at, stopped_at = u.stopped_at, stop_reason = u.stop_reason,
        policy_key = u.policy_key, working_days = u.working_days,
        policy_version = u.policy_version, initial_deadline = u.initial_deadline,
        initial_warn_at = u.initial_warn_at, final_response_at = u.final_response_at,
        closed_at = u.closed_at, category = u.category
    FROM unnest($21::bigint[], $22::timestamptz[], $23::timestamptz[], $24::text[], $25::int[],
                $26::timestamptz[], $27::timestamptz[], $28::text[], $29::text[], $30::int[],
                $31::int[], $32::timestamptz[], $33::timestamptz[], $34::timestamptz[],
                $35::timestamptz[], $55::text[])
        AS u(id, deadline, warn_at, calendar_version, paused_working_days, paused_at, stopped_at,
             stop_reason, policy_key, working_days, policy_version, initial_deadline,
             initial_warn_at, final_response_at, closed_at, category)
    WHERE c.id = u.id
    RETURNING 1
), ut AS (
    UPDATE timers t SET fired_at = u.fired_at, cancelled_at = u.cancelled_at
    FROM unnest($36::bigint[], $37::timestamptz[], $38::timestamptz[]) AS u(id, fired_at, cancelled_at)
    WHERE t.id = u.id
), nt AS (
    INSERT INTO timers (clock_id, kind, due_at, fired_at, cancelled_at, point, fire_at)
    SELECT coalesce(ids.id, n.ref), n.kind, n.due_at, n.fired_at, n.cancelled_at, n.point,
        coalesce(n.fire_at, n.due_at)
    FROM unnest($39::bigint[], $40::text[], $41::timestamptz[], $42::timestamptz[],
                $43::timestamptz[], $56::text[], $57::timestamptz[])
        WITH ORDINALITY AS n(ref, kind, due_at, fired_at, cancelled_at, point, fire_at, ord)
    LEFT JOIN ids ON ids.ref = n.ref
    WHERE n.ref > 0 OR ids.id IS NOT NULL
    ORDER BY n.ord
), np AS (  -- a period the clock has stored already is rewritten as derived
    INSERT INTO clock_pauses (clock_id, deferred_at, resumed_at, working_days, deadline_before,
        deadline_after, calendar_version)
    SELECT coalesce(ids.id, n.ref), n.deferred_at, n.resumed_at, n.working_days,
        n.deadline_before, n.deadline_after, n.calendar_version
    FROM unnest($44::bigint[], $45::timestamptz[], $46::timestamptz[], $47::int[],
                $48::timestamptz[], $49::timestamptz[], $50::text[])
        AS n(ref, deferred_at, resumed_at, working_days, deadline_before, deadline_after,
             calendar_version)
    LEFT JOIN ids ON ids.ref = n.ref
    WHERE n.ref > 0 OR ids.id IS NOT NULL
    ON CONFLICT (clock_id, deferred_at) DO UPDATE SET resumed_at = EXCLUDED.resumed_at,
        working_days = EXCLUDED.working_days, deadline_before = EXCLUDED.deadline_before,
        deadline_after = EXCLUDED.deadline_after, calendar_version = EXCLUDED.calendar_version
), xp AS (  -- periods a kept clock no longer has
    DELETE FROM clock_pauses p
    USING unnest($59::bigint[], $60::timestamptz[]) AS x(clock_id, deferred_at)
    WHERE p.clock_id = x.clock_id AND p.deferred_at = x.deferred_at
), dt AS (  -- a clock the facts no longer call for goes with its timers and pauses (the
            -- foreign keys are checked at the end of the statement, after all three)
    DELETE FROM timers WHERE clock_id = ANY($58::bigint[])
), dp AS (
    DELETE FROM clock_pauses WHERE clock_id = ANY($58::bigint[])
), dc AS (
    DELETE FROM clocks WHERE id = ANY($58::bigint[]) AND complaint_id = $1 RETURNING 1
), o AS ({OUTBOX_INSERT_ARRAYS.format(ids=51, keys=52, payloads=53)})
SELECT (SELECT count(*) FROM nc) AS inserted, (SELECT count(*) FROM uc) AS updated,
       (SELECT count(*) FROM dc) AS deleted
"""


def _cols(rows: list[Any], *names: str) -> list[list[Any]]:
    return [[getattr(r, n) for r in rows] for n in names]


def _save_args(complaint_id: uuid.UUID, new: list[ClockRow], changed: list[ClockRow],
               timer_updates: list[Timer], timer_inserts: list[Timer], pauses: list[PauseRow],
               events: list[CloudEvent], deleted: list[int] | None = None,
               deleted_pauses: list[tuple[int, datetime]] | None = None) -> list[Any]:
    return [
        complaint_id,
        *_cols(new, "clock", "hop", "instance", "policy_key", "opd_code", "started_at",
               "working_days", "deadline", "warn_at", "initial_deadline", "initial_warn_at",
               "calendar_version", "policy_version", "paused_working_days", "paused_at",
               "stopped_at", "stop_reason", "final_response_at", "closed_at"),
        *_cols(changed, "id", "deadline", "warn_at", "calendar_version", "paused_working_days",
               "paused_at", "stopped_at", "stop_reason", "policy_key", "working_days",
               "policy_version", "initial_deadline", "initial_warn_at", "final_response_at",
               "closed_at"),
        *_cols(timer_updates, "id", "fired_at", "cancelled_at"),
        *_cols(timer_inserts, "clock_id", "kind", "due_at", "fired_at", "cancelled_at"),
        *_cols(pauses, "clock_id", "deferred_at", "resumed_at", "working_days",
               "deadline_before", "deadline_after", "calendar_version"),
        *outbox_arrays(events),
        [r.category for r in new], [r.category for r in changed],
        *_cols(timer_inserts, "point", "fire_at"),
        deleted or [],
        [p[0] for p in deleted_pauses or ()], [p[1] for p in deleted_pauses or ()],
    ]


# -- operator: calendar overrides and policies (the CLI calls these) -----------------------
@dataclass(frozen=True)
class CalendarOverride:
    day: date
    working: bool
    reason: str
    updated_at: datetime


async def read_calendar(conn: asyncpg.Connection) -> CalendarSnapshot:
    """The override table and its revision (one statement, so they always match)."""
    row = await conn.fetchrow(_READ_CALENDAR)
    return CalendarSnapshot(row["revision"],
                            {date.fromisoformat(k): v for k, v in row["overrides"].items()},
                            frozenset(row["confirmed"]))


async def read_calendar_version(conn: asyncpg.Connection, revision: int) -> CalendarSnapshot | None:
    """The override table and confirmed years as they were at ``revision`` (migration 0011)."""
    row = await conn.fetchrow(
        "SELECT overrides, confirmed_years FROM calendar_versions"
        " WHERE revision = $1", revision)
    if row is None:
        return None
    return CalendarSnapshot(revision, {date.fromisoformat(k): v
                                       for k, v in row["overrides"].items()},
                            frozenset(row["confirmed_years"]))


async def load_policies(conn: asyncpg.Connection) -> dict[str, Policy]:
    rows = await conn.fetch(
        "SELECT clock, working_days, warn_before_working_days, version,"
        " coalesce(warn_points, ARRAY[]::text[]) AS points FROM policies")
    return {r["clock"]: Policy(r["clock"], r["working_days"], r["warn_before_working_days"],
                               r["version"], tuple(r["points"])) for r in rows}


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
    revision: int = await conn.fetchval("SELECT revision FROM calendar_revision")
    return revision


async def list_calendar_overrides(conn: asyncpg.Connection) -> list[CalendarOverride]:
    rows = await conn.fetch(
        "SELECT day, working, reason, updated_at FROM calendar_overrides ORDER BY day")
    return [CalendarOverride(r["day"], r["working"], r["reason"], r["updated_at"]) for r in rows]


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


# -- operator: escalation ladders -----------------------------------------------------------
@dataclass(frozen=True)
class LadderListing:
    clock: str
    opd_code: str | None
    category: str | None
    steps: tuple[LadderStep, ...]
    version: int
    updated_by: str
    reason: str
    updated_at: datetime


async def list_ladders(conn: asyncpg.Connection) -> list[LadderListing]:
    rows = await conn.fetch(
        "SELECT clock, opd_code, category, steps::text AS steps, version, updated_by, reason,"
        " updated_at FROM escalation_ladders ORDER BY clock, opd_code NULLS FIRST,"
        " category NULLS FIRST")
    return [LadderListing(r["clock"], r["opd_code"], r["category"],
                          parse_ladder(r["clock"], r["opd_code"], r["category"], r["steps"],
                                       r["version"]).steps,
                          r["version"], r["updated_by"], r["reason"], r["updated_at"])
            for r in rows]


async def set_ladder(conn: asyncpg.Connection, clock: str, opd_code: str | None,
                     category: str | None, steps: tuple[LadderStep, ...], updated_by: str,
                     reason: str) -> int:
    """Add or replace a ladder; an edit bumps its version. Returns the version. Applies to
    clocks started (or recomputed) from then on."""
    # The connection's jsonb codec encodes the list (shared.db).
    body = [{"level": s.level, "after_working_days": s.after_working_days, "target": s.target}
            for s in steps]
    version: int = await conn.fetchval(
        "INSERT INTO escalation_ladders (clock, opd_code, category, steps, updated_by, reason)"
        " VALUES ($1, $2, $3, $4::jsonb, $5, $6)"
        " ON CONFLICT (clock, coalesce(opd_code, ''), coalesce(category, ''))"
        " DO UPDATE SET steps = EXCLUDED.steps, updated_by = EXCLUDED.updated_by,"
        "  reason = EXCLUDED.reason RETURNING version",
        clock, opd_code, category, body, updated_by, reason)
    return version


async def remove_ladder(conn: asyncpg.Connection, clock: str, opd_code: str | None,
                        category: str | None) -> bool:
    status = await conn.execute(
        "DELETE FROM escalation_ladders WHERE clock = $1 AND opd_code IS NOT DISTINCT FROM $2"
        " AND category IS NOT DISTINCT FROM $3", clock, opd_code, category)
    return bool(status.endswith(" 1"))


@dataclass(frozen=True)
class CalendarChangeRow:
    revision: int
    day: date | None
    working: bool | None
    confirmed_year: int | None
    reason: str
    changed_by: str
    keep_deadlines: bool
    changed_at: datetime


async def list_calendar_changes(conn: asyncpg.Connection, limit: int = 50) -> list[CalendarChangeRow]:
    rows = await conn.fetch(
        "SELECT revision, day, working, confirmed_year, reason, changed_by, keep_deadlines,"
        " changed_at FROM calendar_changes ORDER BY changed_at DESC, revision DESC LIMIT $1",
        limit)
    return [CalendarChangeRow(*r) for r in rows]


async def set_policy_points(conn: asyncpg.Connection, key: str, points: tuple[str, ...]) -> None:
    """The policy's warning points (empty: back to its single warn_before_working_days)."""
    await conn.execute("UPDATE policies SET warn_points = $2 WHERE clock = $1", key,
                       list(points) or None)
