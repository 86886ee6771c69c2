"""Driving ``/kinerja`` in a real browser: Debian's headless Chromium through Playwright
(``playwright install`` cannot download browsers here; ``scripts/test`` installs Debian's
``chromium`` package when it is missing and it may).
What the helpers read is what a person sees: texts of the page, not its data."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from services.intake.reports.model import NO_GROUP
from services.intake.web.view import NO_GROUP_LABEL

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        reason = f"no browser at {CHROMIUM}: install Debian's chromium package"
        if os.environ.get("SP4N_REQUIRE_INFRA") == "1":  # CI: skipping would test nothing
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/kinerja")
    assert page.url.endswith("/kinerja/masuk"), page.url  # not signed in: the sign-in page
    await page.fill("#kunci", key)
    await page.click("button[type=submit]")


def pct(value: float | None) -> str:
    """The API's number as the page writes it (one decimal)."""
    return "-" if value is None else f"{value:.1f}%"


async def headline(page: Page) -> dict[str, str]:
    """The three big numbers at the top."""
    return {name: (await page.locator(f"[data-testid={name}] .nilai").inner_text()).strip()
            for name in ("tingkat-tindak-lanjut", "tingkat-penyelesaian", "ketepatan-waktu")}


async def table(page: Page) -> dict[str, dict[str, str]]:
    """The per-OPD table as people read it: {OPD name: {column title: cell text}}."""
    titles = [t.strip().rstrip("▲▼ ").strip()
              for t in await page.locator("[data-testid=tabel-opd] thead th").all_inner_texts()]
    out: dict[str, dict[str, str]] = {}
    for row in await page.locator("[data-testid=tabel-opd] tbody tr").all():
        cells = [c.strip() for c in await row.locator("td").all_inner_texts()]
        if len(cells) == len(titles):
            out[cells[0]] = dict(zip(titles, cells, strict=True))
    return out


async def assert_matches_api(page: Page, report: dict[str, Any]) -> None:
    """The page shows the API's rates, totals and rows (to one decimal), the chart and the
    overdue list."""
    t = report["totals"]
    assert await headline(page) == {"tingkat-tindak-lanjut": pct(t["follow_up_rate"]),
                                    "tingkat-penyelesaian": pct(t["completion_rate"]),
                                    "ketepatan-waktu": pct(t["response_on_time_rate"])}
    shown = await table(page)
    for row in report["rows"]:
        if row["disposed"] == 0 and row["received"] == 0:
            continue
        cells = shown[NO_GROUP_LABEL if row["key"] == NO_GROUP else row["label"]]
        assert cells["Terdisposisi"] == str(row["disposed"]), (row["label"], cells)
        assert cells["Selesai"] == str(row["completed"]), (row["label"], cells)
        assert cells["Tingkat tindak lanjut"] == pct(row["follow_up_rate"]), (row["label"], cells)
        assert cells["Tingkat penyelesaian"] == pct(row["completion_rate"]), (row["label"], cells)
        assert cells["Ketepatan waktu"] == pct(row["response_on_time_rate"]), (row["label"], cells)
    assert await page.locator("svg[data-testid=grafik]").is_visible()
    assert await page.locator("svg[data-testid=grafik] rect").count() > 3
    assert await page.locator("[data-testid=garis-target]").count() == 1
    overdue = await page.locator("[data-testid=tabel-terlambat] tbody").inner_text()
    for o in report["overdue"][:20]:
        assert o["tracking_id"] in overdue


async def screenshot(page: Page, name: str) -> Path:
    """One screenshot per run, kept under ``test-artifacts/`` (git-ignored)."""
    ARTEFACTS.mkdir(exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def assert_page_shows(base: str, admin_key: str, report: dict[str, Any], shot: str) -> Path:
    """Sign in as the admin koordinator, open the API report's period and check the page
    shows its numbers; returns the screenshot."""
    q = report["query"]
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await sign_in(page, base, admin_key)
        await page.goto(f"{base}/kinerja?from={q['from']}&to={q['to']}")
        await assert_matches_api(page, report)
        return await screenshot(page, shot)
