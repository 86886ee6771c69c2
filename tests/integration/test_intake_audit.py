"""The audit trail's readers (``GET /v1/audit``, ``sp4n audit``), key expiry and scopes in
the CLI, and the batched ``last_used_at`` flush as the running service does it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from services.cli import main as sp4n_main
from services.intake.apikeys import create_api_key
from services.intake.app import build_app
from shared.settings import IntakeSettings, Settings
from tests.e2e.system import settings_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def keys(settings: Settings, intake) -> dict[str, dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        out = {}
        for name, role, source, opd in (("portal", "portal", f"aud-{tag}", None),
                                        ("admin", "admin_koordinator", None, None),
                                        ("dinkes", "opd", None, "dinkes")):
            key, plaintext = await create_api_key(conn, f"aud-{name}-{tag}", role, source, opd)
            out[name] = {"Authorization": f"Bearer {plaintext}", "id": str(key.id),
                         "source": source or ""}
    finally:
        await conn.close()
    return out


def h(key: dict[str, str]) -> dict[str, str]:
    return {"Authorization": key["Authorization"]}


async def new_complaint(client: httpx.AsyncClient, keys) -> str:
    r = await client.post("/v1/complaints", headers=h(keys["portal"]), json={
        "source": keys["portal"]["source"], "external_id": f"aud-{uuid.uuid4().hex[:10]}",
        "received_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
        "classification": "pengaduan", "category": "kesehatan",
        "title": "Puskesmas tutup pada jam layanan", "description": "Tutup sejak pukul 10 pagi.",
        "location": {"kecamatan": "Sekadau Hilir"},
        "reporter": {"name": "Budi", "phone": "+6281234567890"}})
    assert r.status_code == 202, r.text
    cid: str = r.json()["complaint_id"]
    return cid


def run_cli(settings, monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    for key, value in settings_env(settings).items():
        if key.startswith("SP4N_"):
            monkeypatch.setenv(key, value)
    code = sp4n_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_the_audit_api_pages_and_filters(intake, keys):
    _, client = intake
    cid = await new_complaint(client, keys)
    for action, body in (("verify", {}), ("dispose", {"opd_code": "dinkes"})):
        r = await client.post(f"/v1/complaints/{cid}/{action}", json=body, headers=h(keys["admin"]))
        assert r.status_code == 200, r.text
    assert (await client.get(f"/v1/complaints/{cid}", headers=h(keys["dinkes"]))).status_code == 200
    first = (await client.get("/v1/audit", params={"complaint": cid, "limit": 2},
                              headers=h(keys["admin"]))).json()
    assert [i["action"] for i in first["items"]] == ["verify", "dispose"]
    assert first["next_after"] == first["items"][-1]["id"]
    rest = (await client.get("/v1/audit", params={"complaint": cid, "after": first["next_after"]},
                             headers=h(keys["admin"]))).json()
    assert [(i["action"], i["role"]) for i in rest["items"]] == [("read_identity", "opd")]
    assert rest["next_after"] is None
    by_key = (await client.get("/v1/audit", params={"key_id": keys["dinkes"]["id"]},
                               headers=h(keys["admin"]))).json()
    assert {i["complaint_id"] for i in by_key["items"]} >= {cid}
    assert {i["key_id"] for i in by_key["items"]} == {int(keys["dinkes"]["id"])}
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (await client.get("/v1/audit", params={"complaint": cid, "since": later},
                             headers=h(keys["admin"]))).json()["items"] == []
    r = await client.get("/v1/audit", params={"complaint": "SKD-000000-NOPE00"}, headers=h(keys["admin"]))
    assert r.status_code == 404
    r = await client.get("/v1/audit", params={"limit": 0}, headers=h(keys["admin"]))
    assert r.status_code == 422
    assert (await client.get("/v1/audit", headers=h(keys["portal"]))).status_code == 403


async def test_a_refused_action_leaves_no_audit_row(intake, keys, db):
    _, client = intake
    cid = await new_complaint(client, keys)
    r = await client.post(f"/v1/complaints/{cid}/close", json={}, headers=h(keys["admin"]))
    assert r.status_code == 409  # DITERIMA cannot be closed: rolled back, nothing recorded
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE complaint_id = $1",
                             uuid.UUID(cid)) == 0


async def test_sp4n_audit_lists_the_trail(intake, keys, settings, monkeypatch, capsys):
    _, client = intake
    cid = await new_complaint(client, keys)
    r = await client.post(f"/v1/complaints/{cid}/verify", json={},
                          headers={**h(keys["admin"]), "X-Request-ID": "cli-audit-1"})
    assert r.status_code == 200
    code, out, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "audit",
                                           "--complaint", cid, "--since", "1h")
    [line] = out.splitlines()
    assert "verify" in line and "admin_koordinator" in line and "req=cli-audit-1" in line
    assert f"key#{keys['admin']['id']}" in line
    code, out, err = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "audit",
                                             "--key", keys["admin"]["id"], "--since", "2999-01-01")
    assert code == 0 and out == "" and "no audit rows" in err
    code, _, err = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "audit",
                                           "--since", "yesterday")
    assert code == 2 and "--since" in err


async def test_cli_keys_expire_and_show_their_scopes(intake, settings, monkeypatch, capsys):
    _, client = intake
    name = f"cli-exp-{uuid.uuid4().hex[:6]}"
    code, out, err = await asyncio.to_thread(
        run_cli, settings, monkeypatch, capsys, "create-api-key", "--name", name, "--role", "opd",
        "--opd-code", "dinkes", "--scopes", "complaints:read,complaints:respond", "--expires-in", "90d")
    assert code == 0, err
    assert "expires=" in err and "scopes: complaints:read complaints:respond" in err
    plaintext = out.strip()
    assert (await client.get("/v1/complaints", headers={"Authorization": f"Bearer {plaintext}"})
            ).status_code == 200
    code, out, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                           "list-api-keys", "--scopes")
    lines = out.splitlines()
    i = next(n for n, ln in enumerate(lines) if name in ln)
    until = (datetime.now(UTC) + timedelta(days=90)).astimezone(settings.tz)
    assert "until " in lines[i] and lines[i].endswith("active")
    assert until.strftime("%Y") in lines[i]
    assert lines[i + 1].split() == ["scopes:", "complaints:read", "complaints:respond"]
    for bad in (["--expires-in", "soon"], ["--expires-at", "2001-01-01"],
                ["--expires-in", "1d", "--expires-at", "2999-01-01"],
                ["--scopes", "audit:read"]):
        code, out, err = await asyncio.to_thread(
            run_cli, settings, monkeypatch, capsys, "create-api-key", "--name", name, "--role", "opd",
            "--opd-code", "dinkes", *bad)
        assert code == 2 and out == "", bad


async def test_the_running_service_flushes_last_used_at(settings):
    """The flush loop (a short interval here) writes the keys a request used."""
    s = settings.model_copy(update={"intake": IntakeSettings(key_usage_flush_s=0.1)})
    app = build_app(s)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        conn = await asyncpg.connect(s.database_url, server_settings={"search_path": "intake"})
        try:
            key, plaintext = await create_api_key(conn, "flush-loop", "portal", "flush-loop")
            r = await client.get("/v1/complaints", headers={"Authorization": f"Bearer {plaintext}"})
            assert r.status_code == 200
            for _ in range(100):  # wait for the loop, up to ~10 s
                used = await conn.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key.id)
                if used is not None:
                    break
                await asyncio.sleep(0.1)
            assert used is not None
        finally:
            await conn.close()
