"""``/kinerja`` in process (real PostgreSQL): sign-in with a key into a session cookie, CSRF
tokens on every form, portal keys refused, an OPD key sees only its OPD, a revoked key's
session ends, the reporter's identity never appears, sign-out."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from services.intake.apikeys import create_api_key, revoke_api_key
from shared.connect import service_connection
from shared.settings import Settings

pytestmark = pytest.mark.integration
TAG = uuid.uuid4().hex[:6]
SOURCE = f"web-{TAG}"


@pytest.fixture(scope="module")
async def keys(settings: Settings,
               intake: tuple[FastAPI, httpx.AsyncClient]) -> AsyncIterator[dict[str, tuple[int, str]]]:
    tag = TAG
    out = {}
    async with service_connection(settings, "intake") as conn:
        for name, role, source, opd in (("admin", "admin_koordinator", None, None),
                                        ("dinkes", "opd", None, "dinkes"), ("rsud", "opd", None, "rsud"),
                                        ("portal", "portal", SOURCE, None),
                                        ("revoked", "admin_koordinator", None, None)):
            key, raw = await create_api_key(conn, f"web-{name}-{tag}", role, source, opd)
            out[name] = (key.id, raw)
    yield out


def browser(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake",
                             follow_redirects=False)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m[1]


async def sign_in(c: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await c.get("/kinerja/masuk")
    return await c.post("/kinerja/masuk", data={"kunci": key, "csrf": csrf_of(form.text)})


async def test_sign_in_session_scope_and_sign_out(
        intake: tuple[FastAPI, httpx.AsyncClient], keys: dict[str, tuple[int, str]],
        settings: Settings) -> None:
    app, api = intake
    admin, dinkes = keys["admin"][1], keys["dinkes"][1]
    # one complaint disposed to dinkes, with a named reporter who must never show
    received = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = await api.post("/v1/complaints", headers={"Authorization": f"Bearer {keys['portal'][1]}"}, json={
        "source": SOURCE, "external_id": uuid.uuid4().hex, "received_at": received,
        "classification": "pengaduan", "category": "kesehatan", "title": "Obat puskesmas habis",
        "description": "Obat di puskesmas sering habis sejak bulan lalu.",
        "reporter": {"name": "Siti Rahasia Aminah", "phone": "+6281299990000"}})
    assert r.status_code == 202, r.text
    tid = r.json()["tracking_id"]
    r = await api.post(f"/v1/complaints/{tid}/dispose", headers={"Authorization": f"Bearer {admin}"},
                       json={"opd_code": "dinkes"})
    assert r.status_code == 200, r.text

    async with browser(app) as c:
        assert (await c.get("/kinerja")).headers["location"] == "/kinerja/masuk"
        wrong = await sign_in(c, "sp4n_00000000_salah")
        assert wrong.status_code == 401 and "Kunci API salah" in wrong.text
        assert "sp4n_kinerja" not in wrong.headers.get("set-cookie", "")
        portal = await sign_in(c, keys["portal"][1])
        assert portal.status_code == 403 and "Kunci portal" in portal.text
        forged = await c.post("/kinerja/masuk", data={"kunci": admin, "csrf": "x.y"})
        assert forged.status_code == 400 and "set-cookie" not in forged.headers

        ok = await sign_in(c, admin)
        assert ok.status_code == 303 and ok.headers["location"] == "/kinerja"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/kinerja" in cookie
        assert admin not in ok.headers["set-cookie"]  # the key itself is never in the cookie
        page = await c.get("/kinerja")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        html = page.text
        assert "Tingkat tindak lanjut" in html and "<svg" in html and 'data-opd="dinkes"' in html
        assert "Siti" not in html and "6281299990000" not in html
        api_report = (await api.get("/v1/reports/kinerja", headers={"Authorization": f"Bearer {admin}"},
                                    params={"from": str(datetime.now(settings.tz).date().replace(day=1)),
                                            "to": str(datetime.now(settings.tz).date())})).json()
        disposed = api_report["totals"]["disposed"]
        assert re.search(rf"dari {disposed} laporan terdisposisi", html)
        # sorting by a column
        by_name = await c.get("/kinerja", params={"sort": "opd", "dir": "asc"})
        assert by_name.status_code == 200 and "OPD ▲" in by_name.text
        # sign-out needs the session's own form token
        assert (await c.post("/kinerja/keluar", data={"csrf": "x"})).headers["location"] == "/kinerja"
        assert (await c.get("/kinerja")).status_code == 200  # still signed in
        out = await c.post("/kinerja/keluar", data={"csrf": csrf_of(html)})
        assert out.headers["location"] == "/kinerja/masuk" and 'sp4n_kinerja=""' in out.headers["set-cookie"]
        c.cookies.clear()
        assert (await c.get("/kinerja")).status_code == 303

    async with browser(app) as c:
        assert (await sign_in(c, dinkes)).status_code == 303
        html = (await c.get("/kinerja", params={"opd": "rsud"})).text  # asks for another OPD: ignored
        assert 'data-opd="dinkes"' in html and 'data-opd="rsud"' not in html
        assert 'name="opd"' not in html  # no OPD filter for an OPD key

    async with browser(app) as c:
        assert (await sign_in(c, keys["revoked"][1])).status_code == 303
        assert (await c.get("/kinerja")).status_code == 200
        async with service_connection(settings, "intake") as conn:
            await revoke_api_key(conn, keys["revoked"][0])
        assert (await c.get("/kinerja")).headers["location"] == "/kinerja/masuk"
