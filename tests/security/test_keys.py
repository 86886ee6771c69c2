"""Issue 8, keys and the audit trail: one test per attack, over real HTTP (intake served by
uvicorn on a local port) against real PostgreSQL and RabbitMQ. Each asserts that the attack
fails and that nothing leaked or was recorded as the attacker wanted."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn

from services.cli import main as sp4n_main
from services.intake.apikeys import create_api_key
from services.intake.app import MIGRATIONS, build_app
from shared.db import migrate
from shared.settings import IntakeSettings, Settings
from tests.e2e.system import settings_env
from tests.infra import create_database, drop_database, unique_suffix, with_database

pytestmark = pytest.mark.integration

NAME, PHONE, NIK = "Siti Aminah", "+6281298765432", "6109014404900001"


@pytest.fixture(scope="module")
async def served(settings: Settings) -> AsyncIterator[tuple[str, object]]:
    """intake behind a real socket; the usage flush is left to the tests (a long interval)."""
    s = settings.model_copy(update={"intake": IntakeSettings(key_usage_flush_s=3600)})
    app = build_app(s)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # start-up failed: raise its error
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def db(settings: Settings, served: tuple[str, object]) -> AsyncIterator[asyncpg.Connection]:
    """A connection on intake's schema (migrated by ``served``'s start-up)."""
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def keys(settings: Settings, served: tuple[str, object]) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        out = {}
        for name, role, source, opd in (
                ("portal_a", "portal", f"sec-a-{tag}", None), ("portal_b", "portal", f"sec-b-{tag}", None),
                ("admin", "admin_koordinator", None, None), ("dinkes", "opd", None, "dinkes")):
            _, out[name] = await create_api_key(conn, f"sec-{name}-{tag}", role, source, opd)
    finally:
        await conn.close()
    out["source_a"], out["source_b"] = f"sec-a-{tag}", f"sec-b-{tag}"
    return out


@pytest.fixture
async def http(served: tuple[str, object]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served[0], timeout=10) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def complaint_body(source: str, **over: object) -> dict[str, object]:
    return {"source": source, "external_id": f"sec-{uuid.uuid4().hex[:10]}",
            "received_at": (datetime.now(UTC) - timedelta(days=3)).isoformat(), "classification": "pengaduan",
            "category": "kesehatan", "title": "Puskesmas tutup pada jam layanan",
            "description": "Puskesmas tutup sejak pukul 10 pada hari kerja.",
            "location": {"kecamatan": "Sekadau Hilir"},
            "reporter": {"name": NAME, "phone": PHONE, "nik": NIK}, **over}


async def submit(http: httpx.AsyncClient, key: str, source: str, **over: object) -> str:
    r = await http.post("/v1/complaints", json=complaint_body(source, **over), headers=auth(key))
    assert r.status_code == 202, r.text
    cid: str = r.json()["complaint_id"]
    return cid


async def act(http: httpx.AsyncClient, key: str, cid: str, action: str, **body: object) -> httpx.Response:
    r = await http.post(f"/v1/complaints/{cid}/{action}", json=body, headers=auth(key))
    assert r.status_code == 200, r.text
    return r


def run_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    for key, value in settings_env(settings).items():
        if key.startswith("SP4N_"):
            monkeypatch.setenv(key, value)
    code = sp4n_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- a portal key must be bound to a source ---------------------------------------------------

async def test_cli_refuses_a_portal_key_without_a_source(settings, monkeypatch, capsys, db):
    name = f"sec-unbound-{uuid.uuid4().hex[:6]}"
    for role in ("portal", "importer"):
        code, out, err = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                                 "create-api-key", "--name", name, "--role", role)
        assert code == 2 and "--source" in err and "sp4n_" not in out
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE name = $1", name) == 0


async def test_the_database_refuses_an_unbound_portal_key(db):
    for role in ("portal", "importer"):
        with pytest.raises(asyncpg.CheckViolationError, match="api_keys_source_bound"):
            await db.execute(
                "INSERT INTO api_keys (name, prefix, secret_hash, role, scopes, source)"
                " VALUES ('sneaky', $1, 'x', $2, ARRAY['complaints:read'], NULL)",
                uuid.uuid4().hex[:8], role)
    # Nor can a bound key be unbound afterwards.
    key_id = await db.fetchval(
        "INSERT INTO api_keys (name, prefix, secret_hash, role, scopes, source)"
        " VALUES ('bound', $1, 'x', 'portal', ARRAY['complaints:read'], 'p') RETURNING id",
        uuid.uuid4().hex[:8])
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE api_keys SET source = NULL WHERE id = $1", key_id)


async def test_migration_revokes_existing_unbound_portal_keys_and_says_so(infra, tmp_path: Path):
    """A database from before 0005 with the keys the attack needs: after migrating, the
    unbound portal key is revoked with its reason on its row, the LAPOR! key is an importer."""
    database = f"sp4n_test_mig_{unique_suffix()}"
    await create_database(infra.postgres_admin_url, database)
    url = with_database(infra.postgres_admin_url, database)
    try:
        before = tmp_path / "migrations"
        before.mkdir()
        for p in sorted(MIGRATIONS.glob("000[1-4]_*.sql")):
            shutil.copy(p, before / p.name)
        await migrate(url, "intake", before)
        conn = await asyncpg.connect(url, server_settings={"search_path": "intake"})
        notices: list[str] = []
        conn.add_log_listener(lambda _c, m: notices.append(m.message))
        try:
            for name, source in (("demo", None), ("lapor-import", "lapor"), ("portal-ok", "portal-x")):
                await conn.execute(
                    "INSERT INTO api_keys (name, prefix, secret_hash, role, scopes, source)"
                    " VALUES ($1, $2, 'x', 'portal', ARRAY['complaints:submit','complaints:read'], $3)",
                    name, uuid.uuid4().hex[:8], source)
            # 0005 as the runner applies it, on this connection (to hear its NOTICEs).
            sql = (MIGRATIONS / "0005_keys_audit.sql").read_text()
            async with conn.transaction():
                await conn.execute(sql)
            rows = {r["name"]: r for r in await conn.fetch("SELECT * FROM api_keys")}
        finally:
            await conn.close()
        assert rows["demo"]["revoked_at"] is not None
        assert "without a source" in rows["demo"]["revoked_reason"]
        assert rows["lapor-import"]["role"] == "importer" and rows["lapor-import"]["revoked_at"] is None
        assert "complaints:history" in rows["lapor-import"]["scopes"]
        assert rows["portal-ok"]["revoked_at"] is None and rows["portal-ok"]["role"] == "portal"
        assert any("revoked 1 portal key" in n for n in notices)
        assert any("1 portal key(s) bound to source lapor became importer" in n for n in notices)
    finally:
        await drop_database(infra.postgres_admin_url, database)


async def test_a_portal_key_cannot_read_or_act_on_another_sources_complaint(http, keys, db):
    cid = await submit(http, keys["portal_a"], keys["source_a"])
    tracking = await db.fetchval("SELECT tracking_id FROM complaints WHERE id = $1", uuid.UUID(cid))
    for ref in (cid, tracking):
        r = await http.get(f"/v1/complaints/{ref}", headers=auth(keys["portal_b"]))
        assert r.status_code == 404 and NAME not in r.text  # not even told it exists
    listed = (await http.get("/v1/complaints", params={"limit": 200},
                             headers=auth(keys["portal_b"]))).json()
    assert cid not in {i["complaint_id"] for i in listed["items"]}
    for action, body in (("rate", {"rating": 1}), ("reply", {"body": "palsu"}), ("reopen", {})):
        r = await http.post(f"/v1/complaints/{cid}/{action}", json=body, headers=auth(keys["portal_b"]))
        assert r.status_code in (403, 404), (action, r.text)
    # Submitting for source A with B's key is refused too.
    r = await http.post("/v1/complaints", headers=auth(keys["portal_b"]),
                        json=complaint_body(keys["source_a"]))
    assert r.status_code == 403 and r.json()["field"] == "source"
    assert await db.fetchval("SELECT count(*) FROM timeline WHERE complaint_id = $1", uuid.UUID(cid)) == 1


async def test_an_opd_cannot_backdate_its_response(http, keys, db):
    cid = await submit(http, keys["portal_a"], keys["source_a"])
    disposed = await act(http, keys["admin"], cid, "dispose", opd_code="dinkes")
    assert disposed.json()["status"] == "TERDISPOSISI"
    r = await http.post(f"/v1/complaints/{cid}/respond", headers=auth(keys["dinkes"]),
                        json={"body": "Sudah ditangani.",
                              "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()})
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == "occurred_at" and "occurred_at" in r.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM responses WHERE complaint_id = $1", uuid.UUID(cid)) == 0
    status = (await http.get(f"/v1/complaints/{cid}", headers=auth(keys["admin"]))).json()
    assert status["status"] == "TERDISPOSISI"


async def test_an_expired_key_is_401(http, settings, db):
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        _, expired = await create_api_key(conn, "sec-expired", "portal", "sec-exp",
                                          expires_at=datetime.now(UTC) - timedelta(seconds=1))
        _, live = await create_api_key(conn, "sec-live", "portal", "sec-exp",
                                       expires_at=datetime.now(UTC) + timedelta(days=90))
    finally:
        await conn.close()
    r = await http.get("/v1/complaints", headers=auth(expired))
    assert r.status_code == 401 and "expired API key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert (await http.get("/v1/complaints", headers=auth(live))).status_code == 200
    # Nor does Open311 take it.
    r = await http.post("/open311/v2/requests.json", data={"api_key": expired, "service_code": "x"})
    assert r.status_code == 403


# --- the audit trail ---------------------------------------------------------------------

async def test_an_action_and_an_identity_read_are_audited(http, keys, db):
    cid = await submit(http, keys["portal_a"], keys["source_a"])
    r = await http.post(f"/v1/complaints/{cid}/verify", json={}, headers={
        **auth(keys["admin"]), "X-Request-ID": "sec-verify-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "sec-verify-1"
    read = await http.get(f"/v1/complaints/{cid}", headers=auth(keys["admin"]))
    assert read.json()["reporter"]["nik"] == NIK
    # A portal's read carries no identity: no identity row for it.
    await http.get(f"/v1/complaints/{cid}", headers=auth(keys["portal_a"]))
    rows = await db.fetch("SELECT * FROM audit_log WHERE complaint_id = $1 ORDER BY id", uuid.UUID(cid))
    assert [(r["action"], r["role"]) for r in rows] == [("verify", "admin_koordinator"),
                                                       ("read_identity", "admin_koordinator")]
    admin_key = await db.fetchrow("SELECT id, name FROM api_keys WHERE id = $1", rows[0]["key_id"])
    assert admin_key["name"].startswith("sec-admin-")
    assert rows[0]["request_id"] == "sec-verify-1" and rows[0]["client_addr"] == "127.0.0.1"
    assert rows[1]["request_id"] == read.headers["x-request-id"]
    assert all(NIK not in str(dict(r)) and NAME not in str(dict(r)) for r in rows)  # no PII
    # The timeline says which key acted.
    timeline = read.json()["timeline"]
    verified = next(t for t in timeline if t["event"] == "complaint.verified")
    assert verified["by_role"] == "admin_koordinator" and verified["by_name"] == admin_key["name"]
    # The admin API shows the same rows; an OPD may not read the trail.
    page = (await http.get("/v1/audit", params={"complaint": cid}, headers=auth(keys["admin"]))).json()
    assert [i["action"] for i in page["items"]] == ["verify", "read_identity"]
    r = await http.get("/v1/audit", headers=auth(keys["dinkes"]))
    assert r.status_code == 403 and "audit:read" in r.json()["detail"]


async def test_the_audit_log_refuses_update_and_delete(http, keys, db):
    cid = await submit(http, keys["portal_a"], keys["source_a"])
    await act(http, keys["admin"], cid, "verify")
    row_id = await db.fetchval("SELECT id FROM audit_log WHERE complaint_id = $1", uuid.UUID(cid))
    for statement in ("UPDATE audit_log SET key_name = 'nobody' WHERE id = $1",
                      "DELETE FROM audit_log WHERE id = $1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.execute(statement, row_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.execute("TRUNCATE audit_log")
    assert await db.fetchval("SELECT key_name FROM audit_log WHERE id = $1", row_id) is not None


async def test_last_used_at_is_set_after_a_request_and_a_flush(http, served, settings, db):
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        key, plaintext = await create_api_key(conn, "sec-used", "portal", "sec-used")
    finally:
        await conn.close()
    for _ in range(3):
        assert (await http.get("/v1/complaints", headers=auth(plaintext))).status_code == 200
    assert await db.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key.id) is None
    app = served[1]
    usage = app.state.intake.authenticator.usage  # type: ignore[attr-defined]
    assert key.id in usage.pending
    before = await db.fetchval("SELECT now()")
    await usage.flush(app.state.runtime.pool)  # type: ignore[attr-defined]
    used = await db.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key.id)
    assert used is not None and used >= before - timedelta(seconds=1)


# --- request ids -------------------------------------------------------------------------

async def test_every_response_carries_a_request_id(http):
    for path, headers in (("/healthz", {}), ("/v1/complaints", {}),  # 401 too
                          ("/v1/complaints", {"X-Request-ID": "x" * 129}),  # too long: replaced
                          ("/v1/complaints", {"X-Request-ID": "bad id;drop"})):
        r = await http.get(path, headers=headers)
        rid = r.headers["x-request-id"]
        assert 1 <= len(rid) <= 128 and rid != headers.get("X-Request-ID")
    r = await http.get("/healthz", headers={"X-Request-ID": "abc-123.trace:1"})
    assert r.headers["x-request-id"] == "abc-123.trace:1"
