"""Calendar versions against real PostgreSQL (migration 0011): every revision's content is
stored by the revision trigger, a deadline kept under an older version recomputes equal under
it, ``sp4n calendar verify`` names a tampered one, and the migration rebuilds the older
versions from the change log only when the log provably covers them."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from services.sla import repository, usecases
from services.sla.app import MIGRATIONS
from services.sla.calendar import calendar_version
from services.sla.calendars import CalendarSource
from services.sla.domain import derive
from services.sla.verification import verify_deadlines
from shared.db import create_pool, migrate
from shared.events import ComplaintDeferred, ComplaintResumed, make_event
from tests.infra import drop_schema
from tests.integration.test_cli_admin import run_cli
from tests.integration.test_sla_usecases import T0, WIB, submitted_event, uow_of
from tests.integration.test_sla_usecases import VERIFICATION_DEADLINE as DEADLINE_OPEN

pytestmark = pytest.mark.integration
SCHEMA = "sla_calver_test"
CLOSED = date(2026, 3, 25)  # closing it moves the verification deadline to Mon 30 March
DEADLINE_CLOSED = datetime(2026, 3, 30, 23, 59, 59, 999999, tzinfo=WIB)


@pytest.fixture(scope="module")
async def pool(settings):
    await migrate(settings.database_url, SCHEMA, MIGRATIONS)
    pool = await create_pool(settings.database_url, schema=SCHEMA, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def change(pool, calendars, day, working, *, keep=True):
    return await usecases.change_calendar(day, working, "Banjir: kantor tutup", "operator-1",
                                          keep_deadlines=keep, uow=uow_of(pool),
                                          calendars=calendars, now=T0)


async def test_every_revision_stores_its_content_and_versions_never_change(pool):
    calendars = CalendarSource(WIB)
    async with pool.acquire() as conn:
        before = await repository.calendar_revision(conn)
    set_ = await change(pool, calendars, date(2026, 4, 6), False)
    removed = await change(pool, calendars, date(2026, 4, 6), None)
    confirmed = await usecases.confirm_calendar_year(2031, "operator-1", uow=uow_of(pool))
    async with pool.acquire() as conn:
        # Every revision any statement made is recorded (an upsert makes two), none other.
        assert [r["revision"] for r in await conn.fetch(
            "SELECT revision FROM calendar_versions WHERE revision > $1 ORDER BY revision",
            before)] == list(range(before + 1, confirmed + 1))
        at_set = await repository.read_calendar_version(conn, set_.revision)
        at_removed = await repository.read_calendar_version(conn, removed.revision)
        at_confirmed = await repository.read_calendar_version(conn, confirmed)
        assert at_set is not None and at_set.overrides.get(date(2026, 4, 6)) is False
        assert at_removed is not None and date(2026, 4, 6) not in at_removed.overrides
        assert at_confirmed is not None and 2031 in at_confirmed.confirmed_years
        assert 2031 not in at_removed.confirmed_years
        assert await repository.read_calendar_version(conn, confirmed + 1) is None
        for statement in ("UPDATE calendar_versions SET overrides = '{}' WHERE revision = $1",
                          "DELETE FROM calendar_versions WHERE revision = $1"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(statement, set_.revision)


async def kept_under_a(pool):
    """A complaint submitted under version A (the day closed), then the calendar changed to B
    (the day open again, back to the package's calendar) with --keep-deadlines: its id and
    the two changes."""
    calendars = CalendarSource(WIB)
    a = await change(pool, calendars, CLOSED, False)
    cid = uuid.uuid4()
    try:
        await usecases.on_complaint_event(submitted_event(cid), uow=uow_of(pool),
                                          calendars=calendars, now=T0)
    finally:
        b = await change(pool, calendars, CLOSED, None)
    return cid, a, b


async def test_a_deadline_kept_under_version_a_recomputes_equal_under_a(pool):
    """A clock computed under version A (the day closed), the calendar changed to B (the day
    open again) with --keep-deadlines: the clock keeps A's deadline and version, recomputes
    equal under A (under B it would not), and a row tampered afterwards is named."""
    cid, a, b = await kept_under_a(pool)
    v = await pool.fetchrow("SELECT id, deadline, calendar_version FROM clocks"
                            " WHERE complaint_id = $1 AND clock = 'verification'", cid)
    assert (v["deadline"], v["calendar_version"]) == (DEADLINE_CLOSED, calendar_version(a.revision))
    assert b.moved == 0
    fresh = CalendarSource(WIB)  # another process: nothing cached
    out = await verify_deadlines(uow=uow_of(pool), calendars=fresh, now=T0, complaint_ids=[cid])
    assert (out.complaints, out.compared, out.mismatches, dict(out.not_rebuildable)) == (
        1, 2, [], {})
    # Under the current version B the same facts give another deadline: the comparison
    # against the clock's own version is what makes the check meaningful.
    async with uow_of(pool)() as tx:
        state, stamp = await tx.repo.load(cid, None, "")
        current, policies = await fresh.resolve(tx.repo, stamp)
    assert current.version == calendar_version(b.revision)
    under_b = {c.clock: c.deadline for c in derive(cid, state.facts, current, policies, T0,
                                                    firings=state.firings).all_clocks()}
    assert under_b["verification"] == DEADLINE_OPEN

    await pool.execute("UPDATE clocks SET deadline = deadline + interval '1 day' WHERE id = $1",
                       v["id"])
    out = await verify_deadlines(uow=uow_of(pool), calendars=fresh, now=T0)
    assert [(m.complaint_id, m.clock, m.calendar_version, m.stored, m.recomputed)
            for m in out.mismatches] == [
        (cid, "verification", calendar_version(a.revision), DEADLINE_CLOSED + timedelta(days=1),
         DEADLINE_CLOSED)]
    await pool.execute("UPDATE clocks SET deadline = $2 WHERE id = $1", v["id"], DEADLINE_CLOSED)


async def test_a_message_decides_and_derives_a_kept_clock_under_its_version(pool):
    """A clock kept under version A (the day closed) after the change to B (--keep-deadlines),
    then a DITUNDA period over that day: the resume is decided under A and the rows written
    are derive's under A (2 working days paused, not B's 3), read back from PostgreSQL; no
    drift. A change not kept then moves it to the new version, as derive under it gives."""
    cid, a, b = await kept_under_a(pool)
    deferred_at = datetime(2026, 3, 24, 10, tzinfo=WIB)
    resumed_at = datetime(2026, 3, 27, 10, tzinfo=WIB)
    fresh = CalendarSource(WIB)  # another process: version A is read once, then cached
    for data, now in ((ComplaintDeferred(complaint_id=cid, deferred_at=deferred_at), deferred_at),
                      (ComplaintResumed(complaint_id=cid, deferred_at=deferred_at,
                                        resumed_at=resumed_at), resumed_at)):
        out = await usecases.on_complaint_event(make_event("test", data), uow=uow_of(pool),
                                                calendars=fresh, now=now)
        assert (out.drift, out.superseded) == ([], [])

    async def rows_and_derivations():
        async with uow_of(pool)() as tx:
            state, stamp = await tx.repo.load(cid, None, "")
            current, policies = await fresh.resolve(tx.repo, stamp)
            under = {}
            for version in {c.calendar_version for c in state.all_clocks()}:
                cal = await fresh.at_version(tx.repo, version)
                assert cal is not None
                under[version] = derive(cid, state.facts, cal, policies, resumed_at,
                                        ladders=fresh.ladders(stamp.ladder_rows),
                                        pinned=state.pinned_policies(policies),
                                        firings=state.firings)
        timers = await pool.fetch(
            "SELECT c.clock, t.kind, t.point, t.due_at, t.fired_at FROM timers t"
            " JOIN clocks c ON c.id = t.clock_id WHERE c.complaint_id = $1"
            " AND t.cancelled_at IS NULL", cid)
        return state, under, current, {(r["clock"], r["kind"], r["point"], r["due_at"],
                                        r["fired_at"]) for r in timers}

    state, under, current, timers = await rows_and_derivations()
    stored = {c.clock: c for c in state.all_clocks()}
    assert {stored[k].calendar_version for k in ("verification", "completion")} == {
        calendar_version(a.revision)}
    assert stored["deferral"].calendar_version == current.version == calendar_version(b.revision)
    assert_derived(stored, under, timers)
    assert stored["verification"].paused_working_days == 2  # 26, 27 March (25 closed under A)
    out = await verify_deadlines(uow=uow_of(pool), calendars=fresh, now=T0, complaint_ids=[cid])
    assert (out.compared, out.mismatches) == (3, [])

    # Then a closure not kept, inside the completion window only: completion's deadline moves
    # a working day; verification's stays (1 April), but what it is derived from does (the
    # days paused count 25 March again), so both follow the new version — derive's rows under
    # it — and the stopped DITUNDA clock stays under B.
    closure = date(2026, 4, 7)
    before = stored
    moved = await change(pool, fresh, closure, False, keep=False)
    try:
        assert (moved.drift, moved.superseded) == ([], [])  # (every complaint recomputed)
        assert [e.data["clock"] for e in moved.events if e.event_name == "sla.deadline_changed"
                and str(e.data["complaint_id"]) == str(cid)] == ["completion"]
        state, under, current, timers = await rows_and_derivations()
        assert current.version == calendar_version(moved.revision)
        stored = {c.clock: c for c in state.all_clocks()}
        assert {k: c.calendar_version for k, c in stored.items()} == {
            "verification": current.version, "completion": current.version,
            "deferral": calendar_version(b.revision)}
        assert stored["verification"].deadline == before["verification"].deadline
        assert stored["completion"].deadline > before["completion"].deadline
        assert_derived(stored, under, timers)
    finally:
        await change(pool, fresh, closure, None)


def assert_derived(stored: dict, under: dict, timers: set) -> None:
    """Each stored clock, and its live timers, equal derive's under the version it names."""
    want_timers = set()
    for c in stored.values():
        d = next(x for x in under[c.calendar_version].all_clocks() if x.clock == c.clock)
        assert replace(c, id=0) == replace(d, id=0), c.clock
        want_timers |= {(d.clock, t.kind, t.point, t.due_at, t.fired_at)
                        for t in under[c.calendar_version].changes().timer_inserts
                        if t.clock_id == d.id and t.cancelled_at is None}
    assert timers == want_timers


async def test_calendar_verify_command_names_a_tampered_deadline(settings, monkeypatch, capsys):
    code, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "migrate")
    assert code == 0
    pool = await create_pool(settings.database_url, schema="sla", min_size=1, max_size=2)
    try:
        cid = uuid.uuid4()
        await usecases.on_complaint_event(submitted_event(cid), uow=uow_of(pool),
                                          calendars=CalendarSource(WIB), now=T0)
        code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "calendar",
                                            "verify", "--complaint", str(cid))
        assert code == 0 and "1 pengaduan, 2 tenggat dihitung ulang" in out and "BEDA" not in out
        await pool.execute("UPDATE clocks SET deadline = deadline - interval '1 day'"
                           " WHERE complaint_id = $1 AND clock = 'verification'", cid)
        code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "calendar",
                                            "verify", "--complaint", str(cid))
        assert code == 1
        [line] = [x for x in out.splitlines() if "BEDA" in x]
        assert f"{cid} verification hop 0 #0" in line
        assert "tersimpan 2026-03-26 23:59:59.999999+07:00" in line
        assert "dihitung ulang 2026-03-27 23:59:59.999999+07:00" in line
    finally:
        await pool.execute("DELETE FROM timers WHERE clock_id IN"
                           " (SELECT id FROM clocks WHERE complaint_id = $1)", cid)
        await pool.execute("DELETE FROM clocks WHERE complaint_id = $1", cid)
        await pool.close()


async def _before_0011(settings, schema: str, tmp_path: Path) -> asyncpg.Pool:
    older = tmp_path / schema
    older.mkdir()
    for f in sorted(MIGRATIONS.glob("*.sql")):
        if f.name < "0011":
            shutil.copy(f, older / f.name)
    await migrate(settings.database_url, schema, older)
    return await create_pool(settings.database_url, schema=schema, min_size=1, max_size=2)


async def test_the_migration_rebuilds_older_versions_from_a_complete_change_log(settings, tmp_path):
    schema = f"sla_calver_{uuid.uuid4().hex[:6]}"
    pool = await _before_0011(settings, schema, tmp_path)
    try:
        calendars = CalendarSource(WIB)
        first = await change(pool, calendars, date(2026, 5, 4), False)
        second = await change(pool, calendars, date(2026, 5, 9), True)
        year = await usecases.confirm_calendar_year(2031, "operator-1", uow=uow_of(pool))
        third = await change(pool, calendars, date(2026, 5, 4), None)
        await migrate(settings.database_url, schema, MIGRATIONS)
        rows = {r["revision"]: (r["overrides"], r["confirmed_years"]) for r in await pool.fetch(
            "SELECT revision, overrides, confirmed_years FROM calendar_versions")}
        assert rows == {
            0: ({}, []),
            first.revision: ({"2026-05-04": False}, []),
            second.revision: ({"2026-05-04": False, "2026-05-09": True}, []),
            year: ({"2026-05-04": False, "2026-05-09": True}, [2031]),
            third.revision: ({"2026-05-09": True}, [2031]),
        }
        # New changes are recorded by the trigger from then on.
        fourth = await change(pool, calendars, date(2026, 5, 11), False)
        async with pool.acquire() as conn:
            got = await repository.read_calendar_version(conn, fourth.revision)
        assert got is not None and got.overrides == {date(2026, 5, 9): True,
                                                     date(2026, 5, 11): False}
    finally:
        await pool.close()
        await drop_schema(settings.database_url, schema)


async def test_the_migration_records_only_the_current_version_when_the_log_has_a_gap(
        settings, tmp_path):
    schema = f"sla_calver_{uuid.uuid4().hex[:6]}"
    pool = await _before_0011(settings, schema, tmp_path)
    try:
        calendars = CalendarSource(WIB)
        await change(pool, calendars, date(2026, 5, 4), False)
        async with pool.acquire() as conn:  # an edit that left no change row (psql, old CLI)
            await conn.execute("INSERT INTO calendar_overrides (day, working, reason)"
                               " VALUES ('2026-05-09', true, 'psql')")
        last = await change(pool, calendars, date(2026, 5, 11), False)
        await migrate(settings.database_url, schema, MIGRATIONS)
        rows = {r["revision"]: r["overrides"] for r in await pool.fetch(
            "SELECT revision, overrides FROM calendar_versions")}
        assert rows == {last.revision: {"2026-05-04": False, "2026-05-09": True,
                                        "2026-05-11": False}}
    finally:
        await pool.close()
        await drop_schema(settings.database_url, schema)

