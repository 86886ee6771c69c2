"""The kinerja report without I/O: the definitions and the counting rule (``reports.domain``),
working days, the use case's scope with the in-memory unit of work, the route's formats and
refusals on a bare app, the XLSX rekap and the gauges."""

from __future__ import annotations

import csv
import dataclasses
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from openpyxl import load_workbook
from prometheus_client import CollectorRegistry, generate_latest

from services.cli.report import render_table
from services.intake.context import IntakeContext
from services.intake.domain.complaint import Actor, OutOfScope
from services.intake.errors import install_error_handlers
from services.intake.metrics import IntakeMetrics
from services.intake.reports.api import negotiate
from services.intake.reports.api import router as report_router
from services.intake.reports.context import ReportsConfig, ReportsContext
from services.intake.reports.domain import build_rows, duration_stats, month_range
from services.intake.reports.export import to_csv, to_json, to_xlsx
from services.intake.reports.metrics import KinerjaMetrics, refresh
from services.intake.reports.model import ComplaintFacts, ReportQuery
from services.intake.reports.usecases import kinerja_report, scoped_query
from services.intake.reports.workdays import WorkCalendar
from services.intake.usecases import IntakeConfig
from tests.unit.fakes import FakeUnitOfWork
from tests.unit.test_intake_routes import FakeAuthenticator

TZ = ZoneInfo("Asia/Pontianak")
CAL = WorkCalendar(TZ)
# Monday 2 November 2026, 08:00 local.
R = datetime(2026, 11, 2, 8, tzinfo=TZ)
NOW = datetime(2026, 12, 15, 12, tzinfo=TZ)
NOV = ReportQuery(date(2026, 11, 1), date(2026, 11, 30))


def facts(**over: object) -> ComplaintFacts:
    """A complaint received R, disposed to dinkes an hour later, answered the next day within
    the OPD's 5 HK, closed two days later within the 14-HK completion clock."""
    base = dict(
        id=uuid.uuid4(), tracking_id="SKD-1", source="portal", classification="pengaduan",
        category="kesehatan", kecamatan="Sekadau Hilir", status="SELESAI", received_at=R,
        opd_code="dinkes", opd_name="Dinas Kesehatan", hop=1,
        first_disposed_at=R + timedelta(hours=1), disposed_at=R + timedelta(hours=1),
        first_response_at=R + timedelta(days=1), final_response_at=R + timedelta(days=1),
        response_deadline=R + timedelta(days=7), completion_deadline=R + timedelta(days=18),
        completion_breached=False, first_closed_at=R + timedelta(days=3),
        closed_at=R + timedelta(days=3), reopen_count=0)
    base.update(over)
    return ComplaintFacts(**base)  # type: ignore[arg-type]  # test data, fields by name


def open_(**over: object) -> ComplaintFacts:
    return facts(**{"status": "DITINDAKLANJUTI", "closed_at": None, "first_closed_at": None, **over})


def test_rates_and_the_counting_rule():
    rows, t, overdue = build_rows([
        facts(), facts(),
        facts(first_response_at=R + timedelta(days=9)),            # late tindak lanjut
        facts(final_response_at=R + timedelta(days=30)),           # completed late
        open_(),                                                   # open past the deadline
        facts(status="TERDISPOSISI", first_response_at=None, final_response_at=None,
              closed_at=None, completion_deadline=NOW + timedelta(days=3)),  # open, not overdue
        facts(status="DIARSIPKAN", opd_code=None, hop=0, first_disposed_at=None, disposed_at=None),
        facts(status="DILIMPAHKAN", opd_code=None, hop=0, first_disposed_at=None, disposed_at=None),
        facts(status="DIKEMBALIKAN", opd_code="dpupr"),            # returned: counts against no OPD
        facts(opd_code="dpupr", opd_name="Dinas PUPR"),
    ], NOV, CAL, NOW)
    assert [r.key for r in rows] == ["dinkes", "dpupr", "-"]
    dinkes = rows[0]
    assert (dinkes.disposed, dinkes.followed_up, dinkes.completed, dinkes.response_on_time,
            dinkes.completed_on_time, dinkes.open, dinkes.open_overdue) == (6, 5, 4, 4, 3, 2, 1)
    assert dinkes.completion_rate == pytest.approx(100 * 4 / 6)
    assert dinkes.follow_up_rate == pytest.approx(100 * 5 / 6)
    assert dinkes.response_on_time_rate == pytest.approx(100 * 4 / 6)
    assert dinkes.completion_on_time_rate == pytest.approx(100 * 3 / (4 + 1))
    assert rows[2].disposed == 0 and rows[2].received == 3
    assert (rows[2].archived, rows[2].forwarded, rows[2].returned_waiting) == (1, 1, 1)
    assert (t.received, t.disposed, t.completed) == (10, 7, 5)
    assert [o.opd_code for o in overdue] == ["dinkes"]
    assert overdue[0].working_days_late == 17  # the deadline 20 Nov → 15 Dec


def test_a_returned_hop_counts_for_the_opd_that_finally_holds_it():
    # Disposed to dpupr (hop 1), returned, re-disposed to dinkes (hop 2) a week later.
    f = facts(hop=2, disposed_at=R + timedelta(days=7), first_response_at=R + timedelta(days=8),
              final_response_at=R + timedelta(days=8), response_deadline=R + timedelta(days=14))
    rows, t, _ = build_rows([f], NOV, CAL, NOW)
    assert [(r.key, r.disposed, r.response_on_time) for r in rows] == [("dinkes", 1, 1)]
    assert t.days_to_disposition.median == 0.0      # received → the first disposition
    assert t.days_to_first_response.median == 1.0   # disposed (to dinkes) → its tindak lanjut


def test_a_reopened_complaint_counts_completed_only_when_closed_again():
    reopened_open = open_(reopen_count=1, first_closed_at=R + timedelta(days=3),
                          completion_deadline=NOW + timedelta(days=10))
    closed_again = facts(reopen_count=1, final_response_at=NOW - timedelta(days=1),
                         completion_deadline=NOW + timedelta(days=10))
    rows, t, _ = build_rows([reopened_open, closed_again], NOV, CAL, NOW)
    assert (t.completed, t.completed_on_time, t.open, t.open_overdue, t.reopened) == (1, 1, 1, 0, 2)


def test_cohort_and_event_attribution():
    # Received in October, disposed in November.
    f = facts(received_at=R - timedelta(days=20))
    assert build_rows([f], NOV, CAL, NOW)[1].disposed == 1
    cohort = dataclasses.replace(NOV, attribution="cohort")
    _, t, _ = build_rows([f], cohort, CAL, NOW)
    assert (t.disposed, t.received) == (0, 0)
    oct_cohort = ReportQuery(date(2026, 10, 1), date(2026, 10, 31), attribution="cohort")
    assert build_rows([f], oct_cohort, CAL, NOW)[1].disposed == 1


def test_group_by_and_one_opd():
    fs = [facts(), facts(kecamatan="Belitang"), facts(opd_code="dpupr", kecamatan=None)]
    rows, _, _ = build_rows(fs, dataclasses.replace(NOV, group_by="kecamatan"), CAL, NOW)
    assert [(r.key, r.disposed) for r in rows] == [("Belitang", 1), ("Sekadau Hilir", 1), ("-", 1)]
    rows, t, _ = build_rows(fs, dataclasses.replace(NOV, opd="dpupr"), CAL, NOW)
    assert [r.key for r in rows] == ["dpupr"] and t.disposed == 1


def test_no_denominator_no_rate():
    rows, t, _ = build_rows([], NOV, CAL, NOW)
    assert rows == [] and t.completion_rate is None and t.completion_on_time_rate is None


def test_durations_median_and_p90():
    assert duration_stats([]).median is None
    assert duration_stats([4]).p90 == 4.0
    s = duration_stats(list(range(1, 11)))
    assert (s.count, s.median) == (10, 5.5) and s.p90 == pytest.approx(9.1)


def test_working_days():
    mon = datetime(2026, 11, 2, 9, tzinfo=TZ)
    assert CAL.days_between(mon, mon + timedelta(hours=5)) == 0
    assert CAL.days_between(mon, mon + timedelta(days=7)) == 5       # a weekend in between
    assert CAL.days_between(mon, mon - timedelta(days=1)) == 0
    # 25 December (Natal) and the cuti bersama around it are holidays; the year boundary counts.
    dec = datetime(2026, 12, 21, 9, tzinfo=TZ)
    assert CAL.days_between(dec, datetime(2027, 1, 4, 9, tzinfo=TZ)) < 10
    assert month_range("2026-12") == (date(2026, 12, 1), date(2026, 12, 31))
    assert month_range("2026-02") == (date(2026, 2, 1), date(2026, 2, 28))


class FakeReportRepository:
    def __init__(self, *fs: ComplaintFacts) -> None:
        self.facts = list(fs)
        self.asked: list[tuple[datetime, datetime, str | None]] = []

    async def complaint_facts(self, start: datetime, end: datetime, *, opd: str | None = None
                              ) -> list[ComplaintFacts]:
        self.asked.append((start, end, opd))
        return [f for f in self.facts if opd is None or f.opd_code == opd]

    async def open_by_opd(self, now: datetime) -> dict[str, tuple[int, int]]:
        return {"dinkes": (3, 1)}


async def test_use_case_scope():
    repo = FakeReportRepository(facts(), facts(opd_code="dpupr"))
    uow = FakeUnitOfWork(repo)
    rep = await kinerja_report(uow, NOV, Actor("admin_koordinator"), calendar=CAL, now=NOW)
    assert [r.key for r in rep.rows] == ["dinkes", "dpupr"]
    assert repo.asked[-1] == (datetime(2026, 11, 1, tzinfo=TZ), datetime(2026, 12, 1, tzinfo=TZ), None)
    rep = await kinerja_report(uow, NOV, Actor("opd", opd_code="dpupr"), calendar=CAL, now=NOW)
    assert [r.key for r in rep.rows] == ["dpupr"] and rep.query.opd == "dpupr"
    with pytest.raises(OutOfScope):
        scoped_query(Actor("opd", opd_code="dpupr"), dataclasses.replace(NOV, opd="dinkes"))
    with pytest.raises(OutOfScope):
        scoped_query(Actor("portal", source="portal"), NOV)


def app_with(*fs: ComplaintFacts) -> httpx.AsyncClient:
    app = FastAPI()
    metrics = IntakeMetrics(CollectorRegistry())
    app.state.intake = IntakeContext(
        cfg=IntakeConfig(region_code="SKD", tz=TZ, reporter_ref_key="k", hop_cap=3),
        metrics=metrics, uow=None, authenticator=FakeAuthenticator(), pool=lambda: None)  # type: ignore[arg-type]  # the report route uses only the authenticator
    app.state.reports = ReportsContext(
        uow=FakeUnitOfWork(FakeReportRepository(*fs)), calendar=CAL,
        cfg=ReportsConfig(target_on_time_rate=90.0, refresh_s=60, window_days=30, region_name="Kab. Uji"))
    install_error_handlers(app, metrics)
    app.include_router(report_router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_route_formats_and_refusals():
    async with app_with(facts(), open_()) as c:
        admin = {"x-api-key": "admin"}
        r = await c.get("/v1/reports/kinerja?month=2026-11", headers=admin)
        assert r.status_code == 200 and r.json()["totals"]["disposed"] == 2
        assert r.json()["query"]["from"] == "2026-11-01"
        r = await c.get("/v1/reports/kinerja?from=2026-11-01&to=2026-11-30&format=csv", headers=admin)
        assert r.headers["content-type"].startswith("text/csv")
        lines = list(csv.reader(io.StringIO(r.text)))
        assert lines[0][0] == "opd" and lines[-1][0] == "total"
        r = await c.get("/v1/reports/kinerja?month=2026-11", headers={
            **admin, "accept": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
        assert r.content[:2] == b"PK" and "attachment" in r.headers["content-disposition"]
        r = await c.get("/v1/reports/kinerja", headers=admin)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert {e["field"] for e in r.json()["errors"]} == {"from", "to"}
        r = await c.get("/v1/reports/kinerja?from=2026-11-30&to=2026-11-01", headers=admin)
        assert r.status_code == 422
        r = await c.get("/v1/reports/kinerja?month=2026-11&group_by=nope", headers=admin)
        assert r.status_code == 422
        r = await c.get("/v1/reports/kinerja?month=2026-11", headers={"x-api-key": "portal"})
        assert r.status_code == 403 and r.json()["type"] == "urn:sp4n:problem:forbidden"
        assert "field" not in r.json()
        r = await c.get("/v1/reports/kinerja?month=2026-11&opd=dpupr", headers={"x-api-key": "dinkes"})
        assert r.status_code == 403 and r.json()["field"] == "opd"
        r = await c.get("/v1/reports/kinerja?month=2026-11", headers={"x-api-key": "dinkes"})
        assert [row["key"] for row in r.json()["rows"]] == ["dinkes"]
        assert (await c.get("/v1/reports/kinerja?month=2026-11")).status_code == 401


def test_negotiation():
    assert negotiate(None, "text/csv") == "csv"
    assert negotiate("json", "text/csv") == "json"
    assert negotiate(None, "*/*") == "json"


async def report_of(*fs: ComplaintFacts):
    return await kinerja_report(FakeUnitOfWork(FakeReportRepository(*fs)), NOV,
                                Actor("admin_koordinator"), calendar=CAL, now=NOW)


async def test_xlsx_rekap_layout_csv_json_and_table():
    rep = await report_of(*[facts()] * 7, open_(), facts(opd_code="dpupr", opd_name="Dinas PUPR"))
    ws = load_workbook(io.BytesIO(to_xlsx(rep, "Kabupaten Sekadau")))["Rekap"]
    rows = list(ws.iter_rows(values_only=True))
    assert "Kabupaten Sekadau" in rows[0][0] and "01-11-2026 s.d. 30-11-2026" in rows[1][0]
    header = rows[4]
    assert header[:8] == ("No", "OPD", "Masuk", "Terdisposisi", "Ditindaklanjuti", "Selesai",
                          "Tepat Waktu", "Selesai Tepat Waktu")
    dinkes = rows[5]
    assert dinkes[1] == "Dinas Kesehatan" and dinkes[3] == 8 and dinkes[5] == 7
    assert dinkes[header.index("Persentase Penyelesaian (%)")] == 87.5
    assert rows[-1][1] == "JUMLAH" and rows[-1][header.index("Persentase Penyelesaian (%)")] == 88.9
    assert to_csv(rep).splitlines()[-1].startswith("total,Total,9,9,9,8")
    assert to_json(rep)["totals"]["completed"] == 8
    table = render_table(rep)
    assert "Dinas Kesehatan" in table and "88.9%" in table and "persentase" not in table


async def test_gauges_from_the_report():
    registry = CollectorRegistry()
    gauges = KinerjaMetrics(registry, 30)
    recent = NOW - timedelta(days=3)
    ctx = ReportsContext(
        uow=FakeUnitOfWork(FakeReportRepository(
            facts(received_at=recent, first_disposed_at=recent, disposed_at=recent))),
        calendar=CAL, cfg=ReportsConfig(90.0, 60, 30, "x"))
    await refresh(ctx, gauges, NOW.astimezone(UTC))
    text = generate_latest(registry).decode()
    assert 'sp4n_kinerja_completion_ratio{opd="dinkes"} 1.0' in text
    assert 'sp4n_kinerja_disposed_window{opd="dinkes"} 1.0' in text
    assert 'sp4n_kinerja_open{opd="dinkes"} 3.0' in text
    assert 'sp4n_kinerja_open_overdue{opd="dinkes"} 1.0' in text
    assert 'sp4n_kinerja_target_on_time_ratio 0.9' in text
    assert 'sp4n_kinerja_working_days{opd="dinkes",quantile="0.5",stage="disposition"} 0.0' in text


def test_dashboards_and_alerts_name_only_gauges_that_exist():
    import json
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "deploy"
    registry = CollectorRegistry()
    KinerjaMetrics(registry, 30)
    known = {m.name for m in registry.collect()}
    texts = [(root / "prometheus" / "alerts.yml").read_text()]
    for name in ("sp4n.json", "sp4n-kinerja-opd.json"):
        dash = json.loads((root / "grafana" / "dashboards" / name).read_text())
        assert any(v["name"] == "opd" for v in dash["templating"]["list"])
        texts.append(json.dumps(dash))
    used = {n for t in texts for n in re.findall(r"sp4n_kinerja_[a-z_0-9]+", t)}
    assert used and used <= known, used - known
    rules = {r["alert"] for g in yaml.safe_load(texts[0])["groups"] for r in g["rules"]}
    assert {"SP4NBreachSpike", "SP4NOpdBelowOnTimeTarget", "SP4NOverdueComplaintsGrowing"} <= rules


def test_without_a_mirrored_opd_clock_the_default_five_working_days_apply():
    # Disposed Monday 2 Nov: the 5th working day after is Monday 9 Nov.
    ok = facts(response_deadline=None, first_response_at=datetime(2026, 11, 9, 23, tzinfo=TZ))
    late = facts(response_deadline=None, first_response_at=datetime(2026, 11, 10, 8, tzinfo=TZ))
    _, t, _ = build_rows([ok, late], NOV, CAL, NOW)
    assert t.response_on_time == 1
    assert CAL.deadline_after(R, 5).date() == date(2026, 11, 9)
    assert CAL.deadline_after(datetime(2026, 12, 23, 9, tzinfo=TZ), 1).date() > date(2026, 12, 24)


def test_sp4n_report_needs_a_period():
    from services.cli import main

    assert main(["report"]) == 2
    assert main(["report", "--month", "2026-13"]) == 2
    assert main(["report", "--from", "2026-11-01"]) == 2
