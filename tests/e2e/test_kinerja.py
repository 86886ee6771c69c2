"""The meeting's figure as a test (issue 11): a month of complaints with known outcomes, built
through the real HTTP API with all four services running (backdated ``received_at`` and
``occurred_at``), and the same rates in the report API (JSON, CSV, XLSX), in ``sp4n report``'s
XLSX rekap and in intake's Prometheus gauges — 125 disposed, 111 completed: tingkat
penyelesaian 88.8%.

The month is the one three months back (every late date then lies in the past). The OPD codes
are this test's own, so other e2e modules sharing the database do not touch its numbers."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest
from openpyxl import load_workbook

from services.sla.calendar import WorkingCalendar
from tests.e2e import kinerja_page
from tests.e2e import system as sp4n
from tests.e2e.conftest import create_keys

pytestmark = pytest.mark.e2e
DINKES, DPUPR = "bkpsdm", "disnaker"  # OPDs no other e2e test uses
UNROUTED = "kategori_uji_kinerja"  # no routing rule: only the admin disposes


def report_month(today: date) -> date:
    """Three months back: every late date lies in the past, and no other e2e test's backdated
    complaint (40 days at most) falls in it."""
    first = today.replace(day=1)
    return (first - timedelta(days=65)).replace(day=1)


@dataclass(frozen=True)
class Plan:
    """One complaint's story. ``respond``: None (no tindak lanjut), "ok" (the same day),
    "late" (the 7th working day: past the OPD's 5 HK, within the 14-HK completion), "very_late"
    (the 17th working day: past both).

    A backdated tindak lanjut's 10-HK reply window has long elapsed, so sla closes it at once
    (closed by the system); the admin's close may come first or get 409 SELESAI — both are
    completions. A complaint that stays open after its tindak lanjut is one answered today
    (``close=False``: its window runs), so that response is late. A reopen happens today:
    its new completion clock has not run out."""

    opd: str | None
    respond: str | None = "ok"
    close: bool = True
    reopen: str | None = None      # "closed_again" | "open"
    returned_first: bool = False   # disposed to DPUPR first, returned as bukan wewenang
    end: str | None = None         # "archive" | "forward" | "returned": outside every rate


def plans() -> list[Plan]:
    p: list[Plan] = []
    # DINKES: 80 disposed, 80 followed up, 75 completed (69 on time), 16 late responses, 5 overdue.
    p += [Plan(DINKES, returned_first=True)] * 5
    p += [Plan(DINKES, reopen="closed_again")] * 4
    p += [Plan(DINKES, respond="late")] * 5
    p += [Plan(DINKES, respond="very_late")] * 6
    p += [Plan(DINKES, close=False)] * 5
    p += [Plan(DINKES)] * 55
    # DPUPR: 45 disposed, 40 followed up, 36 completed (34 on time), 5 late responses, 7 overdue.
    p += [Plan(DPUPR, respond="very_late")] * 2
    p += [Plan(DPUPR, respond="late")] * 1
    p += [Plan(DPUPR, reopen="open")] * 2
    p += [Plan(DPUPR, close=False)] * 2
    p += [Plan(DPUPR, respond=None, close=False)] * 5
    p += [Plan(DPUPR)] * 33
    # Received in the month, outside every denominator.
    p += [Plan(None, end="archive")] * 3 + [Plan(None, end="forward")] * 2
    p += [Plan(None, end="returned")] * 2
    return p


EXPECTED_TOTALS = {"received": 132, "disposed": 125, "followed_up": 120, "completed": 111,
                   "response_on_time": 99, "completed_on_time": 103, "open": 14, "open_overdue": 12,
                   "archived": 3, "forwarded": 2, "returned_waiting": 2, "reopened": 6}
EXPECTED_RATES = {"completion_rate": "88.8", "follow_up_rate": "96.0",
                  "response_on_time_rate": "79.2", "completion_on_time_rate": "83.7"}
EXPECTED_OPD = {DINKES: {"disposed": 80, "completed": 75, "completion_rate": "93.8"},
                DPUPR: {"disposed": 45, "completed": 36, "completion_rate": "80.0"}}


@pytest.fixture(scope="module")
def running(settings, tmp_path_factory):
    intake = {**settings.intake.model_dump(), "kinerja_metrics_refresh_s": 0.5,
              "kinerja_window_days": 150}
    system = sp4n.start(settings, ["intake", "routing", "sla", "notify"],
                        tmp_path_factory.mktemp("kinerja"), intake=intake)
    yield system
    system.stop()


@pytest.fixture(scope="module")
async def keys(settings, running, portal_key):
    return await create_keys(settings, portal_key, "e2e-kin", [
        ("admin", "admin_koordinator", None, None), (DINKES, "opd", None, DINKES),
        (DPUPR, "opd", None, DPUPR)], backdate=(DINKES, DPUPR))


class Api:
    def __init__(self, base: str, keys: dict[str, str]) -> None:
        self.c = httpx.AsyncClient(base_url=base, timeout=30)
        self.keys = keys

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def act(self, who: str, cid: str, action: str, at: datetime | None, **body: object) -> None:
        """``at`` None: now."""
        when = {} if at is None else {"occurred_at": at.isoformat()}
        r = await self.c.post(f"/v1/complaints/{cid}/{action}", headers=self.h(who), json={**body, **when})
        if action == "close" and r.status_code == 409 and r.json()["current_state"] == "SELESAI":
            return  # sla's reply window closed it first (closed by the system)
        assert r.status_code == 200, (action, r.text)

    async def until_closed(self, cid: str) -> None:
        for _ in range(200):
            r = await self.c.get(f"/v1/complaints/{cid}", headers=self.h("admin"))
            if r.json()["status"] == "SELESAI":
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{cid} not closed")


async def build(api: Api, plan: Plan, received: datetime, cal: WorkingCalendar) -> None:
    r = await api.c.post("/v1/complaints", headers=api.h("portal"), json={
        "source": "portal-sekadau", "external_id": f"kin-{uuid.uuid4().hex[:12]}",
        "received_at": received.isoformat(), "classification": "pengaduan",
        "category": UNROUTED, "title": "Laporan uji kinerja OPD",
        "description": "Laporan untuk menguji angka kinerja OPD bulan ini.",
        "location": {"kecamatan": "Sekadau Hilir"}, "anonymous": True})
    assert r.status_code == 202, r.text
    cid = r.json()["complaint_id"]
    at = received + timedelta(hours=1)

    def later(hours: float = 1) -> datetime:
        nonlocal at
        at = at + timedelta(hours=hours)
        return at

    if plan.end == "archive":
        return await api.act("admin", cid, "archive", later(), reason="terlalu_umum")
    if plan.end == "forward":
        return await api.act("admin", cid, "forward", later(), instansi="Kantor Pertanahan")
    if plan.returned_first or plan.end == "returned":
        await api.act("admin", cid, "dispose", later(), opd_code=DPUPR, opd_name=f"Uji {DPUPR}")
        await api.act(DPUPR, cid, "return", later(), reason="Bukan wewenang kami")
        if plan.end == "returned":
            return None
    assert plan.opd is not None
    await api.act("admin", cid, "dispose", later(), opd_code=plan.opd, opd_name=f"Uji {plan.opd}")
    if plan.respond is None:
        return None
    day = cal.local_date(received)
    if plan.respond != "ok":
        n = 7 if plan.respond == "late" else 17
        at = datetime.combine(cal.nth_working_day_after(day, n), time(10), cal.tz)
    await api.act(plan.opd, cid, "respond", later() if plan.close else None,
                  body="Sudah ditindaklanjuti oleh tim.")
    if not plan.close:
        return None
    await api.act("admin", cid, "close", later())
    if plan.reopen:
        await api.until_closed(cid)
        await api.act("admin", cid, "reopen", None, reason="Belum tuntas")
        if plan.reopen == "closed_again":
            await api.act(plan.opd, cid, "respond", None, body="Perbaikan susulan selesai.")
            await api.act("admin", cid, "close", None)
    return None


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def metric(text: str, name: str, opd: str) -> float | None:
    m = re.search(rf'^{name}\{{opd="{re.escape(opd)}"\}} (\S+)$', text, re.M)
    return None if m is None else float(m.group(1))


async def test_the_meetings_figure_in_api_xlsx_cli_and_metrics(settings, running, keys, tmp_path):
    cal = WorkingCalendar(settings.tz)
    month = report_month(datetime.now(settings.tz).date())
    days = [d for d in (month + timedelta(days=i) for i in range(20)) if cal.is_working_day(d)][:7]
    api = Api(running.url("intake"), keys)
    sem = asyncio.Semaphore(8)

    async def one(i: int, plan: Plan) -> None:
        async with sem:
            await build(api, plan, datetime.combine(days[i % len(days)], time(8), cal.tz), cal)

    await asyncio.gather(*(one(i, p) for i, p in enumerate(plans())))
    ym = f"{month:%Y-%m}"

    # The API (JSON), once sla's clocks have reached intake's mirror.
    report: dict = {}
    for _ in range(240):
        r = await api.c.get("/v1/reports/kinerja", params={"month": ym}, headers=api.h("admin"))
        assert r.status_code == 200, r.text
        report = r.json()
        t = report["totals"]
        if all(t[k] == v for k, v in EXPECTED_TOTALS.items()):
            break
        await asyncio.sleep(0.5)
    t = report["totals"]
    assert {k: t[k] for k in EXPECTED_TOTALS} == EXPECTED_TOTALS
    assert {k: pct(t[k]) for k in EXPECTED_RATES} == EXPECTED_RATES
    rows = {row["key"]: row for row in report["rows"]}
    for opd, want in EXPECTED_OPD.items():
        assert rows[opd]["disposed"] == want["disposed"] and rows[opd]["completed"] == want["completed"]
        assert pct(rows[opd]["completion_rate"]) == want["completion_rate"]
    assert rows["-"]["disposed"] == 0 and rows["-"]["received"] == 7  # outside every rate
    assert len([o for o in report["overdue"] if o["opd_code"] in (DINKES, DPUPR)]) == 12
    assert all(o["working_days_late"] > 0 for o in report["overdue"])
    assert t["days_to_disposition"]["median"] == 0.0  # disposed on the day of receipt
    cohort = (await api.c.get("/v1/reports/kinerja", params={"month": ym, "attribution": "cohort"},
                              headers=api.h("admin"))).json()
    assert pct(cohort["totals"]["completion_rate"]) == "88.8"

    # CSV and XLSX of the same report.
    r = await api.c.get("/v1/reports/kinerja", params={"month": ym, "format": "csv"}, headers=api.h("admin"))
    assert r.headers["content-type"].startswith("text/csv")
    total_line = r.text.strip().splitlines()[-1].split(",")
    assert total_line[0] == "total" and "88.8" in total_line
    r = await api.c.get("/v1/reports/kinerja", params={"month": ym}, headers={
        **api.h("admin"), "Accept": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
    assert r.status_code == 200 and r.content[:2] == b"PK"
    assert xlsx_total(r.content, "Persentase Penyelesaian (%)") == 88.8

    # Scope: an OPD key sees its own OPD only; another OPD's is 403; portals get 403.
    r = await api.c.get("/v1/reports/kinerja", params={"month": ym}, headers=api.h(DPUPR))
    own = r.json()
    assert [row["key"] for row in own["rows"]] == [DPUPR] and own["totals"]["disposed"] == 45
    r = await api.c.get("/v1/reports/kinerja", params={"month": ym, "opd": DINKES}, headers=api.h(DPUPR))
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    r = await api.c.get("/v1/reports/kinerja", params={"month": ym}, headers=api.h("portal"))
    assert r.status_code == 403

    # sp4n report: the terminal table, the XLSX rekap and the PNG chart.
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "report", "--month", ym, "--out", str(tmp_path)],
        env=sp4n.settings_env(settings), cwd=sp4n.ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "tingkat penyelesaian 88.8%" in out.stdout
    assert re.search(rf"^Uji {DINKES}\s+80\s+80\s+80\s+75\s", out.stdout, re.M), out.stdout
    stem = tmp_path / f"kinerja-{month:%Y%m%d}-{report['query']['to'].replace('-', '')}"
    xlsx = stem.with_suffix(".xlsx").read_bytes()
    assert xlsx_total(xlsx, "Persentase Penyelesaian (%)") == 88.8
    assert xlsx_total(xlsx, "Terdisposisi") == 125 and xlsx_total(xlsx, "Selesai") == 111
    assert xlsx_row(xlsx, f"Uji {DINKES}", "Persentase Penyelesaian (%)") == 93.8
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The gauges (every replica computes them from the read model): the same rates.
    text = ""
    for _ in range(60):
        text = (await api.c.get("/metrics")).text
        if metric(text, "sp4n_kinerja_completed_window", DINKES) == 75 and \
                metric(text, "sp4n_kinerja_completed_window", DPUPR) == 36:
            break
        await asyncio.sleep(0.5)
    done = sum(metric(text, "sp4n_kinerja_completed_window", o) or 0 for o in (DINKES, DPUPR))
    disposed = sum(metric(text, "sp4n_kinerja_disposed_window", o) or 0 for o in (DINKES, DPUPR))
    assert (done, disposed) == (111, 125)
    assert f"{100 * done / disposed:.1f}" == "88.8"
    assert f"{100 * metric(text, 'sp4n_kinerja_completion_ratio', DINKES):.1f}" == "93.8"
    assert metric(text, "sp4n_kinerja_open_overdue", DPUPR) == 7
    assert metric(text, "sp4n_kinerja_open_overdue", DINKES) == 5

    # The page (/kinerja) in a real browser: the same rates as the API, to one decimal.
    await kinerja_page.assert_page_shows(running.url("intake"), keys["admin"], report, "kinerja-rapat")
    await api.c.aclose()


def _sheet_rows(content: bytes) -> tuple[list[str], list[tuple]]:
    ws = load_workbook(io.BytesIO(content), read_only=True)["Rekap"]
    rows = list(ws.iter_rows(values_only=True))
    header_at = next(i for i, r in enumerate(rows) if r and r[0] == "No")
    return [str(h) for h in rows[header_at]], rows[header_at + 1:]


def xlsx_row(content: bytes, label: str, column: str) -> object:
    header, rows = _sheet_rows(content)
    row = next(r for r in rows if r[1] == label)
    return row[header.index(column)]


def xlsx_total(content: bytes, column: str) -> object:
    return xlsx_row(content, "JUMLAH", column)


def test_report_month_lies_three_months_back() -> None:
    assert report_month(date(2026, 12, 1)) == date(2026, 9, 1)
    assert report_month(date(2026, 12, 31)) == date(2026, 9, 1)
    assert report_month(date(2027, 1, 31)) == date(2026, 10, 1)
    today = datetime.now(UTC).date()
    # the month's last late date (~17 HK after its 9th day) lies 40+ days back; the window covers it
    assert report_month(today) + timedelta(days=45) < today - timedelta(days=40)
    assert today - timedelta(days=150) < report_month(today)
