"""Issue 10's deadline engine against real PostgreSQL: withdrawal, DITUNDA expiry, the
reclassification, escalation ladders, calendar changes (recompute or keep) and coverage."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from services.sla import usecases
from services.sla.app import MIGRATIONS, build_app
from services.sla.calendar import WorkingCalendar
from services.sla.calendars import CalendarSource
from services.sla.repository import PgSlaRepository, list_ladders
from shared.db import create_pool, migrate
from shared.events import (
    ComplaintDeferred,
    ComplaintReclassified,
    ComplaintWithdrawn,
    make_event,
)
from shared.uow import PgUnitOfWork
from tests.integration.test_sla_usecases import routed_event, submitted_event

pytestmark = pytest.mark.integration
SCHEMA = "sla_engine_test"
WIB = ZoneInfo("Asia/Pontianak")
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=WIB)  # Mon
CAL = WorkingCalendar(WIB)


@pytest.fixture(scope="module")
async def pool(settings):
    await migrate(settings.database_url, SCHEMA, MIGRATIONS)
    pool = await create_pool(settings.database_url, schema=SCHEMA, min_size=1, max_size=4)
    yield pool
    await pool.close()


def uow_of(pool):
    return PgUnitOfWork(lambda: pool, PgSlaRepository)


async def apply(pool, data_or_event, now, calendars=None):
    event = data_or_event if hasattr(data_or_event, "specversion") else make_event("test", data_or_event)
    return await usecases.on_complaint_event(event, uow=uow_of(pool),
                                             calendars=calendars or CalendarSource(WIB), now=now)


async def clocks_of(pool, cid):
    rows = await pool.fetch("SELECT * FROM clocks WHERE complaint_id = $1", cid)
    return {(r["clock"], r["hop"], r["instance"]): r for r in rows}


async def outbox_of(pool, cid, name=None):
    rows = await pool.fetch("SELECT routing_key, payload FROM outbox WHERE payload->>'subject' = $1"
                            " ORDER BY id", str(cid))
    return [r["payload"]["data"] for r in rows if name is None or r["routing_key"] == name]


async def test_withdrawal_cancels_the_hop_and_starts_the_redisposition_clock(pool):
    cid = uuid.uuid4()
    await apply(pool, submitted_event(cid, received_at=T0), T0)
    await apply(pool, routed_event(cid, T0 + timedelta(hours=1)), T0)
    at = T0 + timedelta(days=1)
    await apply(pool, ComplaintWithdrawn(complaint_id=cid, opd_code="PUPR", hop=1,
                                         withdrawn_at=at), at)
    clocks = await clocks_of(pool, cid)
    assert (clocks[("opd_response", 1, 0)]["stop_reason"],
            clocks[("opd_response", 1, 0)]["stopped_at"]) == ("cancelled", at)
    r = clocks[("redisposition", 1, 0)]
    assert (r["started_at"], r["stopped_at"], r["deadline"]) == (at, None, CAL.deadline(at, 3))
    await apply(pool, routed_event(cid, at + timedelta(hours=2), hop=2, opd="DINKES"), at)
    assert (await clocks_of(pool, cid))[("redisposition", 1, 0)]["stop_reason"] == "stopped"


async def test_ditunda_expires_by_the_scanner_into_deferral_expired_once(pool):
    cid = uuid.uuid4()
    now = datetime.now(UTC)
    deferred_at = now - timedelta(days=30)
    await apply(pool, submitted_event(cid, received_at=deferred_at - timedelta(hours=1)),
                deferred_at)
    await apply(pool, ComplaintDeferred(complaint_id=cid, deferred_at=deferred_at), deferred_at)
    first = await usecases.fire_due_timers(10_000, uow=uow_of(pool))
    again = await usecases.fire_due_timers(10_000, uow=uow_of(pool))
    expired = await outbox_of(pool, cid, "sla.deferral_expired")
    assert len(expired) == 1 and datetime.fromisoformat(expired[0]["deferred_at"]) == deferred_at
    assert [a.kind for a in first.alerts if a.clock == "deferral"] == ["expired"]
    assert not [a for a in again.alerts if a.clock == "deferral"]
    d = (await clocks_of(pool, cid))[("deferral", 0, 0)]
    assert (d["stopped_at"], d["stop_reason"]) == (d["deadline"], "stopped")


async def test_reclassification_moves_the_completion_clock_to_60_hk_and_says_why(pool):
    cid = uuid.uuid4()
    await apply(pool, submitted_event(cid, received_at=T0), T0)
    at = T0 + timedelta(days=1)
    await apply(pool, ComplaintReclassified(
        complaint_id=cid, reclassified_at=at, classification="pengaduan", berkadar_pengawasan=True,
        category="jalan", anonymous=False, confidential=False, changed_fields=["berkadar_pengawasan"],
        reason="Dugaan penyimpangan", changed_by="admin-diskominfo"), at)
    c = (await clocks_of(pool, cid))[("completion", 0, 0)]
    assert (c["policy_key"], c["working_days"], c["deadline"]) == (
        "completion_pengaduan_pengawasan", 60, CAL.deadline(T0, 60))
    [changed] = await outbox_of(pool, cid, "sla.deadline_changed")
    assert (changed["reason"], changed["note"], changed["changed_by"]) == (
        "reclassified", "Dugaan penyimpangan", "admin-diskominfo")
    assert datetime.fromisoformat(changed["old_deadline"]) == CAL.deadline(T0, 14)
    breach = await pool.fetchval(
        "SELECT t.due_at FROM timers t WHERE t.clock_id = $1 AND t.kind = 'breach'"
        " AND t.cancelled_at IS NULL", c["id"])
    assert breach == CAL.deadline(T0, 60)


async def test_a_seeded_ladder_escalates_a_backdated_opd_clock_once_per_level(pool):
    async with pool.acquire() as conn:
        [opd] = [x for x in await list_ladders(conn) if x.clock == "opd_response" and not x.opd_code]
    assert [(s.level, s.after_working_days, s.target) for s in opd.steps] == [
        (1, 0, "pejabat_penghubung"), (2, 2, "kepala_opd"), (3, 5, "admin_koordinator"),
        (4, 10, "sekda")]
    cid = uuid.uuid4()
    now = datetime.now(UTC)
    routed_at = now
    while CAL.working_days_between(routed_at, now) < 12:  # 5 HK + 7 HK late
        routed_at -= timedelta(days=1)
    await apply(pool, routed_event(cid, routed_at), now)
    await usecases.fire_due_timers(10_000, uow=uow_of(pool))
    await usecases.fire_due_timers(10_000, uow=uow_of(pool))
    levels = sorted((d["level"], d["target_role"], d["working_days_late"])
                    for d in await outbox_of(pool, cid, "sla.escalated"))
    assert levels == [(1, "pejabat_penghubung", 0), (2, "kepala_opd", 2),
                      (3, "admin_koordinator", 5)]


async def test_a_closure_inside_an_open_window_moves_it_by_one_day_unless_kept(pool):
    calendars = CalendarSource(WIB)
    kept, moved = uuid.uuid4(), uuid.uuid4()
    now = T0
    for cid in (kept, moved):
        await apply(pool, routed_event(cid, T0), now, calendars)
    before = CAL.deadline(T0, 5)  # Mon 9 Nov
    closed = date(2026, 11, 4)
    out = await usecases.change_calendar(closed, False, "Banjir: kantor tutup", "operator-1",
                                         keep_deadlines=True, uow=uow_of(pool),
                                         calendars=calendars, now=now)
    assert out.moved == 0
    assert (await clocks_of(pool, kept))[("opd_response", 1, 0)]["deadline"] == before
    # The same day again, now recomputing: every open clock the day can move does move.
    await usecases.change_calendar(closed, None, "dibatalkan", "operator-1", keep_deadlines=True,
                                   uow=uow_of(pool), calendars=calendars, now=now)
    out = await usecases.change_calendar(closed, False, "Banjir: kantor tutup", "operator-1",
                                         keep_deadlines=False, uow=uow_of(pool),
                                         calendars=calendars, now=now)
    assert out.moved >= 2
    for cid in (kept, moved):
        c = (await clocks_of(pool, cid))[("opd_response", 1, 0)]
        assert c["deadline"] == CAL.move_deadline(before, 1)
        assert c["calendar_version"].endswith(f"+ovr-{out.revision}")
        [changed] = await outbox_of(pool, cid, "sla.deadline_changed")
        assert (changed["reason"], changed["note"], changed["changed_by"]) == (
            "calendar_changed", "Banjir: kantor tutup", "operator-1")
    history = await pool.fetch("SELECT revision, day, working, changed_by, keep_deadlines"
                               " FROM calendar_changes WHERE day = $1 ORDER BY revision", closed)
    assert [(h["working"], h["keep_deadlines"]) for h in history] == [
        (False, True), (None, True), (False, False)]
    await usecases.change_calendar(closed, None, "selesai", "operator-1", keep_deadlines=True,
                                   uow=uow_of(pool), calendars=calendars, now=now)


async def test_deadlines_past_the_coverage_are_flagged_until_the_year_is_confirmed(pool, settings):
    calendars = CalendarSource(WIB)
    late_2027 = datetime(2027, 11, 15, 9, tzinfo=WIB)
    flagged = uuid.uuid4()
    await apply(pool, submitted_event(flagged, received_at=late_2027, berkadar=True), late_2027,
                calendars)
    started = {d["clock"]: d for d in await outbox_of(pool, flagged, "sla.clock_started")}
    assert started["completion"]["beyond_calendar_coverage"] is True  # 60 HK → 2028
    assert started["verification"]["beyond_calendar_coverage"] is False
    assert await usecases.clocks_beyond_coverage(uow=uow_of(pool), calendars=calendars) >= 1
    revision = await usecases.confirm_calendar_year(2028, "operator-1", uow=uow_of(pool))
    assert revision > 0
    again = uuid.uuid4()
    await apply(pool, submitted_event(again, received_at=late_2027, berkadar=True), late_2027,
                calendars)
    started = {d["clock"]: d for d in await outbox_of(pool, again, "sla.clock_started")}
    assert started["completion"]["beyond_calendar_coverage"] is False
    assert await usecases.clocks_beyond_coverage(uow=uow_of(pool), calendars=calendars) == 0
    await pool.execute("DELETE FROM calendar_confirmed_years WHERE year = 2028")


async def test_the_read_only_admin_api(settings):
    app = build_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sla") as client:
        ladders = (await client.get("/v1/ladders")).json()
        assert {x["clock"] for x in ladders} >= {"opd_response", "completion"}
        coverage = (await client.get("/v1/calendar/coverage")).json()
        assert coverage["holidays_package_through"] == 2027
        assert (await client.get("/v1/policies")).status_code == 200
        assert (await client.get("/v1/calendar/changes")).status_code == 200
        assert (await client.post("/v1/ladders", json={})).status_code == 405
        text = (await client.get("/metrics")).text
        assert "sp4n_sla_clocks_beyond_calendar_coverage" in text


async def test_the_operator_commands(settings, monkeypatch, capsys):
    """sp4n ladder list|set|remove, policy set --warn-points, calendar confirm|history, on the
    real sla schema (the service's own, migrated by the command)."""
    import asyncio

    from tests.integration.test_cli_admin import run_cli

    def cli(*argv):
        return run_cli(settings, monkeypatch, capsys, *argv)

    code, out = await asyncio.to_thread(cli, "ladder", "list")
    assert code == 0 and "opd_response" in out and "L4 +10 HK sekda" in out
    code, out = await asyncio.to_thread(
        cli, "ladder", "set", "opd_response", "--opd", "dinkes", "--steps",
        "0:kepala_opd,3:sekda", "--reason", "Perbup 12/2026", "--by", "op")
    assert code == 0 and "version 1" in out
    code, out = await asyncio.to_thread(
        cli, "ladder", "set", "opd_response", "--opd", "dinkes", "--steps",
        "0:kepala_opd,2:sekda", "--reason", "Perbup 13/2026", "--by", "op")
    assert code == 0 and "version 2" in out
    code, _ = await asyncio.to_thread(cli, "ladder", "set", "opd_response", "--steps",
                                      "0:lurah", "--reason", "x")
    assert code == 2  # not a target role
    code, out = await asyncio.to_thread(cli, "ladder", "remove", "opd_response", "--opd", "dinkes")
    assert code == 0 and "removed" in out
    code, out = await asyncio.to_thread(cli, "policy", "set", "opd_response", "5",
                                        "--warn-points", "2hk,50%")
    assert code == 0 and "2hk, 50%" in out
    code, _ = await asyncio.to_thread(cli, "policy", "set", "opd_response", "5",
                                      "--warn-points", "")
    assert code == 0
    code, _ = await asyncio.to_thread(cli, "policy", "set", "opd_response", "5",
                                      "--warn-points", "150%")
    assert code == 2
    code, out = await asyncio.to_thread(cli, "calendar", "confirm", "2029", "--by", "op")
    assert code == 0 and "2029: cuti bersama dikonfirmasi" in out
    code, out = await asyncio.to_thread(cli, "calendar", "history")
    assert code == 0 and "tahun 2029 dikonfirmasi  oleh op" in out
    code, out = await asyncio.to_thread(cli, "calendar", "list", "--year", "2027")
    assert "cuti bersama diketahui sampai: 2027" in out  # 2028 unconfirmed: 2029 does not count
    db = await asyncpg.connect(settings.database_url)
    try:
        await db.execute("DELETE FROM sla.calendar_confirmed_years WHERE year = 2029")
    finally:
        await db.close()
