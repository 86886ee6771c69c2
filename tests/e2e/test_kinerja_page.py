"""``/kinerja`` in a real browser (issue 11 item 5): intake and sla running as processes, a
handful of complaints built through the real API (backdated) plus a LAPOR! history row, then
headless Chromium: the sign-in fails with a wrong key, the admin koordinator's page shows the
API's numbers, the chart and the overdue list, a column sorts, an OPD key sees only its OPD,
sign-out ends the session. One screenshot per run in ``test-artifacts/``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, time, timedelta
from pathlib import Path

import httpx
import pytest

from services.importer.command import import_lapor
from services.sla.calendar import WorkingCalendar
from tests.e2e import kinerja_page as web
from tests.e2e import system as sp4n
from tests.e2e.conftest import create_keys
from tests.unit.test_importer_history import FULL, row
from tests.unit.test_importer_lapor import build_export

pytestmark = pytest.mark.e2e
DLH, DISTAN = "dlh", "distan"  # OPDs no other e2e test uses
CATEGORY = "kategori_uji_halaman"  # no routing rule


@pytest.fixture(scope="module")
def running(settings, tmp_path_factory):
    system = sp4n.start(settings, ["intake", "sla"], tmp_path_factory.mktemp("kinerja-page"))
    yield system
    system.stop()


@pytest.fixture(scope="module")
async def keys(settings, running, portal_key):
    return await create_keys(settings, portal_key, f"e2e-page-{uuid.uuid4().hex[:6]}", [
        ("admin", "admin_koordinator", None, None), (DLH, "opd", None, DLH),
        (DISTAN, "opd", None, DISTAN), ("lapor", "importer", "lapor", None)], backdate=(DLH, DISTAN))


async def test_the_page_in_a_browser_shows_what_the_api_reports(settings, running, keys, tmp_path: Path):
    cal = WorkingCalendar(settings.tz)
    today = datetime.now(settings.tz).date()
    start = today - timedelta(days=40)
    while not cal.is_working_day(start):
        start += timedelta(days=1)
    received = datetime.combine(start, time(8), settings.tz)
    base = running.url("intake")
    c = httpx.AsyncClient(base_url=base, timeout=30)

    def h(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[who]}"}

    async def act(who: str, tid: str, action: str, at: datetime, **body: object) -> None:
        r = await c.post(f"/v1/complaints/{tid}/{action}", headers=h(who),
                         json={**body, "occurred_at": at.isoformat()})
        assert r.status_code == 200, (action, r.text)

    async def complaint(opd: str, respond_day: int | None, close: bool) -> str:
        r = await c.post("/v1/complaints", headers=h("portal"), json={
            "source": "portal-sekadau", "external_id": f"page-{uuid.uuid4().hex[:12]}",
            "received_at": received.isoformat(), "classification": "pengaduan", "category": CATEGORY,
            "title": "Sampah menumpuk di pasar", "description": "Sampah menumpuk di pasar sejak seminggu.",
            "reporter": {"name": "Budi Pelapor Santoso", "phone": "+6281211112222"}})
        assert r.status_code == 202, r.text
        tid = r.json()["tracking_id"]
        await act("admin", tid, "dispose", received + timedelta(hours=1), opd_code=opd)
        if respond_day is not None:
            at = datetime.combine(cal.nth_working_day_after(start, respond_day), time(10), settings.tz) \
                if respond_day else received + timedelta(hours=2)
            await act(opd, tid, "respond", at, body="Sampah sudah diangkut petugas.")
            if close:
                await act("admin", tid, "close", at + timedelta(hours=1))
        return tid

    await complaint(DLH, 0, True)          # on time, completed
    await complaint(DLH, 8, True)          # late tindak lanjut (> 5 HK), completed
    overdue = await complaint(DLH, None, False)  # never answered: past its 14-HK completion
    await complaint(DISTAN, 0, True)
    local = received.replace(tzinfo=None)  # Excel has no zones: local time
    lapor = build_export(tmp_path / "lapor.xlsx", [row(
        f"PG{uuid.uuid4().hex[:8]}", "Ditutup oleh Admin", "Dinas Lingkungan Hidup", received=local,
        dates=(local + timedelta(hours=1), local + timedelta(hours=2),
               local + timedelta(days=1), local + timedelta(days=2)))], FULL)
    async with httpx.AsyncClient(base_url=base, headers=h("lapor"), timeout=30) as lc:
        imported = await import_lapor(lapor, url=base, api_key=None, tz=settings.tz, client=lc,
                                      progress=False)
    assert imported.imported == 1, imported.render()

    period = {"from": str(start), "to": str(today)}
    report: dict = {}
    for _ in range(120):  # until sla's clocks have reached intake's mirror
        r = await c.get("/v1/reports/kinerja", params={**period, "opd": DLH}, headers=h("admin"))
        report = r.json()
        t = report["totals"]
        if (t["disposed"], t["completed"]) == (4, 3) and t["response_on_time"] >= 1 and any(
                o["tracking_id"] == overdue for o in report["overdue"]):
            break
        await asyncio.sleep(0.25)
    t = report["totals"]
    assert (t["disposed"], t["followed_up"], t["completed"]) == (4, 3, 3)
    # The first is on time, the second late; whether the LAPOR! row's tindak lanjut counts on
    # time depends on sla keeping a clock for imported history: the page must say what the API says.
    assert t["response_on_time"] >= 1
    every = (await c.get("/v1/reports/kinerja", params=period, headers=h("admin"))).json()

    async with web.chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="id-ID")
        await web.sign_in(page, base, "sp4n_00000000_bukan-kunci")
        assert page.url.endswith("/kinerja/masuk")
        assert "Kunci API salah" in await page.locator("[role=alert]").inner_text()
        await page.fill("#kunci", keys["portal"])
        await page.click("button[type=submit]")
        assert "Kunci portal" in await page.locator("[role=alert]").inner_text()

        await page.fill("#kunci", keys["admin"])
        await page.click("button[type=submit]")
        await page.goto(f"{base}/kinerja?from={start}&to={today}")
        every = (await c.get("/v1/reports/kinerja", params=period, headers=h("admin"))).json()
        assert await page.title() == f"Kinerja pengelolaan pengaduan — {settings.region_name}"
        await web.assert_matches_api(page, every)
        shown = await web.table(page)
        dlh = next(r for r in every["rows"] if r["key"] == DLH)
        assert shown[dlh["label"]]["Terdisposisi"] == "4" and shown[dlh["label"]]["Selesai"] == "3"
        assert shown[dlh["label"]]["Tingkat penyelesaian"] == "75.0%"
        late = next(o for o in every["overdue"] if o["tracking_id"] == overdue)
        overdue_row = page.locator("[data-testid=tabel-terlambat] tr", has_text=overdue)
        cells = [x.strip() for x in await overdue_row.locator("td").all_inner_texts()]
        assert cells[1] == dlh["label"] and cells[-1] == str(late["working_days_late"])
        text = await page.locator("main").inner_text()
        assert "Budi" not in text and "6281211112222" not in text  # no reporter identity
        shot = await web.screenshot(page, "kinerja")
        assert shot.stat().st_size > 10_000

        # sorting: by tingkat penyelesaian, ascending, then descending
        await page.click("[data-testid=tabel-opd] th >> text=Tingkat penyelesaian")
        assert "sort=penyelesaian" in page.url
        first = [rate(v) for v in (await web.table(page)).values() if v["Tingkat penyelesaian"] != "-"]
        await page.click("[data-testid=tabel-opd] th >> text=Tingkat penyelesaian")
        second = [rate(v) for v in (await web.table(page)).values() if v["Tingkat penyelesaian"] != "-"]
        assert sorted(first, reverse=True) == first and sorted(second) == second and len(first) >= 2

        # the OPD filter: the headline becomes that OPD's
        await page.select_option("select[name=opd]", DLH)
        await page.click("form.saring button")
        mine = (await c.get("/v1/reports/kinerja", params={**period, "opd": DLH}, headers=h("admin"))).json()
        assert (await web.headline(page))["tingkat-penyelesaian"] == "75.0%"
        await web.assert_matches_api(page, mine)
        await page.click("header button")  # Keluar
        assert page.url.endswith("/kinerja/masuk")
        await page.goto(f"{base}/kinerja")
        assert page.url.endswith("/kinerja/masuk")

        opd_page = await browser.new_page()
        theirs = (await c.get("/v1/reports/kinerja", params=period, headers=h(DISTAN))).json()
        await web.sign_in(opd_page, base, keys[DISTAN])
        await opd_page.goto(f"{base}/kinerja?from={start}&to={today}&opd={DLH}")  # another OPD: ignored
        distan = next(r["label"] for r in every["rows"] if r["key"] == DISTAN)
        assert list(await web.table(opd_page)) == [distan]
        assert await opd_page.locator("select[name=opd]").count() == 0
        await web.assert_matches_api(opd_page, theirs)
        assert (await web.headline(opd_page))["tingkat-penyelesaian"] == "100.0%"
    await c.aclose()


def rate(cells: dict[str, str]) -> float:
    return float(cells["Tingkat penyelesaian"].removesuffix("%"))
