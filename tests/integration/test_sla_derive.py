"""Issue 10 item 1 on real PostgreSQL: the rows sla stores for a complaint are what
``domain.derive`` computes from the facts it stores, whatever the delivery order and
duplicates (the unit property in ``tests/unit/test_sla_order.py``, with fewer examples, through
``PgSlaRepository``); and migration 0008 gives facts written before it what derive needs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from services.sla import domain, usecases
from services.sla.app import MIGRATIONS
from services.sla.calendars import CalendarSource
from services.sla.clocks import Fact
from services.sla.domain import ClockRow, Timer
from services.sla.policy import default_policies
from services.sla.repository import PgSlaRepository
from shared.db import create_pool, migrate
from shared.events import CloudEvent, make_event
from shared.uow import PgUnitOfWork
from tests.unit.test_sla_firings import AT_ONCE, LATE
from tests.unit.test_sla_order import clock_rows, deliveries, derived_rows, live_timers
from tests.unit.test_sla_scenarios import day, responded, routed, submitted
from tests.unit.test_sla_usecases import CALENDAR, T0

pytestmark = pytest.mark.integration
SCHEMA = "sla_derive_test"
CID = uuid.UUID(int=10)  # the complaint of ``deliveries``


async def open_sla(settings, schema: str, migrations):
    """The schema migrated, a small pool on it, a unit of work and a calendar source."""
    await migrate(settings.database_url, schema, migrations)
    pool = await create_pool(settings.database_url, schema=schema, min_size=1, max_size=2)
    return pool, PgUnitOfWork(lambda: pool, PgSlaRepository), CalendarSource("Asia/Pontianak")


async def _read(conn: asyncpg.Connection, cid: uuid.UUID) -> tuple[Any, ...]:
    """The complaint's stored rows: clocks by id, all its timers, pauses, facts, firing log."""
    await conn.execute(f'SET search_path TO "{SCHEMA}", public')
    clocks = {r["id"]: ClockRow(*r) for r in await conn.fetch(
        "SELECT id, complaint_id, clock, hop, opd_code, started_at, deadline, stopped_at,"
        " working_days, warn_at, calendar_version, policy_version, instance, initial_deadline,"
        " initial_warn_at, paused_working_days, paused_at, policy_key, stop_reason,"
        " final_response_at, closed_at, category FROM clocks WHERE complaint_id = $1", cid)}
    timers = [Timer(r["id"], r["clock_id"], r["kind"], r["due_at"], r["fired_at"],
                    r["cancelled_at"], point=r["point"], fire_at=r["fire_at"])
              for r in await conn.fetch(
                  "SELECT * FROM timers WHERE clock_id = ANY($1::bigint[])", list(clocks))]
    pauses = [domain.PauseRow(*r) for r in await conn.fetch(
        "SELECT clock_id, deferred_at, resumed_at, working_days, deadline_before,"
        " deadline_after, calendar_version FROM clock_pauses WHERE clock_id = ANY($1::bigint[])",
        list(clocks))]
    facts = [Fact(*r) for r in await conn.fetch(
        "SELECT kind, at, hop, deferred_at, detail, recorded_at FROM facts"
        " WHERE complaint_id = $1 ORDER BY at", cid)]
    log = [domain.Firing(*r) for r in await conn.fetch(
        "SELECT clock, hop, instance, kind, point, due_at, fired_at, fire_at FROM firings"
        " WHERE complaint_id = $1", cid)]
    return clocks, timers, pauses, facts, log


async def _stored(conn: asyncpg.Connection, cid: uuid.UUID) -> tuple[Any, Any, list[Fact]]:
    clocks, timers, _, facts, _ = await _read(conn, cid)
    return clock_rows(list(clocks.values())), live_timers(clocks, timers), facts


def _as(cid: uuid.UUID, event: CloudEvent) -> CloudEvent:
    """The same delivery for another complaint (one complaint per example, one database)."""
    data = event.parse_data().model_copy(update={"complaint_id": cid})
    return event.model_copy(update={"data": data.model_dump(mode="json"), "subject": str(cid)})


@contextlib.asynccontextmanager
async def _delivered(settings: Any, order: list[CloudEvent],
                     now: datetime) -> AsyncIterator[tuple[Any, ...]]:
    """``order`` delivered for a new complaint at ``now`` through ``PgSlaRepository``; yields
    (pool, complaint, unit of work, calendar source, drift of every message)."""
    pool, uow, calendars = await open_sla(settings, SCHEMA, MIGRATIONS)
    try:
        cid, seen, drift = uuid.uuid4(), {}, []
        for event in order:  # a redelivery keeps its id: the same copy
            copy = seen.setdefault(event.id, _as(cid, event))
            drift += (await usecases.on_complaint_event(copy, uow=uow, calendars=calendars,
                                                        now=now)).drift
        yield pool, cid, uow, calendars, drift
    finally:
        await pool.close()


async def _inputs(uow: Any, calendars: CalendarSource, cid: uuid.UUID) -> tuple[Any, ...]:
    """The calendar, policies and ladders the messages read."""
    async with uow() as tx:
        _, stamp = await tx.repo.load(cid, None, "")
        calendar, policies = await calendars.resolve(tx.repo, stamp)
    return calendar, policies, calendars.ladders(stamp.ladder_rows)


@examples(max_examples=int(os.environ.get("SP4N_PG_PROPERTY_EXAMPLES", "15")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=deliveries())
def test_the_stored_rows_equal_derive_from_the_stored_facts(settings, order):
    # A sync test: each example runs its own event loop (and pool) against the one schema.
    async def go() -> None:
        async with _delivered(settings, order, T0) as (pool, cid, uow, calendars, drift):
            assert drift == []
            async with pool.acquire() as conn:
                clocks, timers, facts = await _stored(conn, cid)
            derived_clocks, derived_timers = derived_rows(  # the stored facts, as read back
                facts, *await _inputs(uow, calendars, cid))
            assert {k: replace(v, complaint_id=CID) for k, v in clocks.items()} \
                == derived_clocks
            assert timers == derived_timers

    asyncio.run(go())


def rows_of(clocks: list[ClockRow], timers: list[Timer],
            pauses: list[domain.PauseRow]) -> tuple[Any, ...]:
    """Clocks by (kind, hop, instance); live timers and pauses by their clock's key."""
    by_id = {c.id: c for c in clocks}

    def key(clock_id: int) -> tuple[object, ...]:
        c = by_id[clock_id]
        return (c.clock, c.hop, c.instance)

    return ({k: replace(c, complaint_id=CID) for k, c in clock_rows(clocks).items()},
            {(key(t.clock_id), t.kind, t.point, t.due_at, t.fire_at or t.due_at, t.fired_at)
             for t in timers if t.cancelled_at is None},
            {(key(p.clock_id), p.deferred_at, p.resumed_at, p.working_days, p.deadline_before,
              p.deadline_after) for p in pauses})


@examples(max_examples=int(os.environ.get("SP4N_PG_PROPERTY_EXAMPLES", "15")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=deliveries(), late=st.integers(0, 40), scan=st.booleans())
def test_every_stored_row_equals_derive_from_scratch_over_facts_and_log(settings, order, late,
                                                                        scan):
    """The rows written are derive's by construction (``domain.diff``): after any delivery
    order with duplicates, processed ``late`` days on (clocks created past their deadline and
    late stops fire at once) and then, maybe, scanned until nothing is due (the database's
    time is long after every deadline), every clock, every live timer of every clock (fired
    ones too) and every pause row read back from PostgreSQL equals ``derive`` from scratch over
    the facts and the firing log read back."""
    async def go() -> None:
        now = T0 + timedelta(days=late)
        async with _delivered(settings, order, now) as (pool, cid, uow, calendars, _):
            async with pool.acquire() as conn:
                await conn.execute(f'SET search_path TO "{SCHEMA}", public')
                while scan and await conn.fetchval(
                        "SELECT count(*) FROM timers t JOIN clocks c ON c.id = t.clock_id"
                        " WHERE c.complaint_id = $1 AND t.fired_at IS NULL"
                        " AND t.cancelled_at IS NULL AND t.fire_at <= now()", cid):
                    await usecases.fire_due_timers(100, uow=uow)
                clocks, timers, pauses, facts, log = await _read(conn, cid)
                if scan:
                    now = await conn.fetchval("SELECT now()")
            calendar, policies, ladders = await _inputs(uow, calendars, cid)
            derived = domain.derive(cid, facts, calendar, policies, now, ladders=ladders,
                                    firings=log)
            assert rows_of(list(clocks.values()), timers, pauses) == rows_of(
                derived.all_clocks(), derived.changes().timer_inserts,
                derived.changes().new_pauses)

    asyncio.run(go())


async def test_migration_0008_gives_old_facts_what_derive_needs(settings, tmp_path):
    """Facts written before 0008 (no detail on routings, responses, returns; a submission with
    none) get it from the clocks they started, so derive over them starts the same clocks."""
    schema = "sla_derive_0008_test"
    old = tmp_path / "migrations"
    old.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        # (0009's firing log too: today's code writes it)
        if path.name < "0008" or path.name.startswith("0009"):
            shutil.copy(path, old / path.name)
    pool, uow, calendars = await open_sla(settings, schema, old)
    try:
        cid = uuid.uuid4()
        timeline = [submitted(), routed(day(0, 11)), responded(day(2))]
        for data in timeline:
            moved = data.model_copy(update={"complaint_id": cid})
            await usecases.on_complaint_event(make_event("test", moved), uow=uow,
                                              calendars=calendars, now=T0)
        async with pool.acquire() as conn:
            await conn.execute(f'SET search_path TO "{schema}", public')
            await conn.execute("UPDATE facts SET detail = NULL WHERE complaint_id = $1", cid)
        await migrate(settings.database_url, schema, MIGRATIONS)
        async with pool.acquire() as conn:
            await conn.execute(f'SET search_path TO "{schema}", public')
            facts = [Fact(*r) for r in await conn.fetch(
                "SELECT kind, at, hop, deferred_at, detail FROM facts WHERE complaint_id = $1"
                " ORDER BY at", cid)]
            stored = {(r["clock"], r["hop"], r["instance"], r["opd_code"], r["started_at"])
                      for r in await conn.fetch("SELECT * FROM clocks WHERE complaint_id = $1",
                                                cid)}
        assert all(f.detail for f in facts), facts
        derived = domain.derive(cid, facts, CALENDAR, default_policies(), T0)
        assert {(c.clock, c.hop, c.instance, c.opd_code, c.started_at)
                for c in derived.all_clocks()} == stored
        assert {c.opd_code for c in derived.all_clocks()} >= {"pupr"}
    finally:
        await pool.close()


async def test_each_firing_is_logged_with_its_event_and_derive_reads_the_log(settings):
    """Migration 0009: each breach, warning and escalation step the scanner fires is one
    ``firings`` row, written with the outbox event (a scan rolled back leaves
    neither); derive over the stored facts and log gives the stored live timers, firing
    nothing itself; a rescan fires nothing again."""
    pool, uow, calendars = await open_sla(settings, SCHEMA, MIGRATIONS)
    try:
        cid = uuid.uuid4()
        # The schema is shared with the other tests here: what their complaints have due is
        # fired first, so the scans below see this complaint's timers only.
        while (await usecases.fire_due_timers(500, uow=uow)).events:
            pass
        # Backdated: by the database's now() every deadline and ladder step has passed.
        for data in (submitted(), routed(day(0, 11))):
            moved = data.model_copy(update={"complaint_id": cid})
            await usecases.on_complaint_event(make_event("test", moved), uow=uow,
                                              calendars=calendars, now=T0)

        class Boom(Exception):
            pass

        with pytest.raises(Boom):
            async with uow() as tx:  # a scan that fails before commit
                assert await tx.repo.claim_due_timers(100)
                raise Boom
        async with pool.acquire() as conn:
            await conn.execute(f'SET search_path TO "{SCHEMA}", public')
            assert await conn.fetchval("SELECT count(*) FROM firings WHERE complaint_id = $1",
                                       cid) == 0
        fired = await usecases.fire_due_timers(100, uow=uow)
        assert await usecases.fire_due_timers(100, uow=uow) == usecases.Outcome()  # once
        mine = [e for e in fired.events if e.data.get("complaint_id") == str(cid)
                and e.event_name in ("sla.breached", "sla.warning", "sla.escalated")]
        assert mine
        async with pool.acquire() as conn:
            await conn.execute(f'SET search_path TO "{SCHEMA}", public')
            log = [domain.Firing(*r) for r in await conn.fetch(
                "SELECT clock, hop, instance, kind, point, due_at, fired_at, fire_at"
                " FROM firings WHERE complaint_id = $1", cid)]
            fired_timers = await conn.fetchval(
                "SELECT count(*) FROM timers t JOIN clocks c ON c.id = t.clock_id"
                " WHERE c.complaint_id = $1 AND t.fired_at IS NOT NULL", cid)
            clocks, timers, facts = await _stored(conn, cid)
        assert len(log) == fired_timers == len(mine)
        async with uow() as tx:
            state, stamp = await tx.repo.load(cid, None, "")
            calendar, policies = await calendars.resolve(tx.repo, stamp)
        assert sorted(state.firings, key=lambda f: f.key) == sorted(log, key=lambda f: f.key)
        derived = domain.derive(cid, facts, calendar, policies, T0 + (day(40) - T0),
                                firings=log)
        by_id = {c.id: c for c in derived.all_clocks()}
        assert live_timers(by_id, derived.changes().timer_inserts) == timers
        assert {k: replace(v, complaint_id=cid) for k, v in clock_rows(
            derived.all_clocks()).items()} == clocks
    finally:
        await pool.close()


@pytest.mark.parametrize("row", AT_ONCE, ids=[r.name for r in AT_ONCE])
async def test_a_breach_fired_at_once_is_logged_iff_the_facts_say_it_happened(settings, row):
    """The unit table of at-once breaches (``tests/unit/test_sla_firings.py``) on PostgreSQL:
    the firing log (0009's triggers) has a completion breach exactly when the facts say it
    came due (one that gave way to the new deadline too: a fired timer cancelled at once), no
    message reports a superseded firing or drift, and every row read back equals derive over
    the facts and the log read back."""
    pool, uow, calendars = await open_sla(settings, SCHEMA, MIGRATIONS)
    try:
        cid = uuid.uuid4()
        for data, now in row.steps:
            moved = data.model_copy(update={"complaint_id": cid})
            out = await usecases.on_complaint_event(make_event("test", moved), uow=uow,
                                                    calendars=calendars, now=now)
            assert (out.drift, out.superseded) == ([], [])
        async with pool.acquire() as conn:
            clocks, timers, pauses, facts, log = await _read(conn, cid)
        assert sorted(f.due_at for f in log if f.clock == "completion") == row.breaches
        calendar, policies, ladders = await _inputs(uow, calendars, cid)
        derived = domain.derive(cid, facts, calendar, policies, LATE, ladders=ladders,
                                firings=log)
        assert rows_of(list(clocks.values()), timers, pauses) == rows_of(
            derived.all_clocks(), derived.changes().timer_inserts, derived.changes().new_pauses)
    finally:
        await pool.close()
