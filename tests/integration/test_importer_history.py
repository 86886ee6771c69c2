"""LAPOR! history through intake's real API (PostgreSQL, RabbitMQ): closed rows land as
history in their final state with their dates, open rows as running complaints; only a
'lapor' key may send history; an unknown OPD is refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.importer.command import EXIT_REJECTED, import_lapor
from services.intake.apikeys import create_api_key
from shared.connect import service_connection
from shared.settings import Settings
from tests.unit.test_importer_history import FULL, row
from tests.unit.test_importer_lapor import build_export

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def keys(settings: Settings,
               intake: tuple[FastAPI, httpx.AsyncClient]) -> AsyncIterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    async with service_connection(settings, "intake") as conn:
        _, lapor = await create_api_key(conn, f"lapor-history-{tag}", "importer", "lapor")
        _, portal = await create_api_key(conn, f"portal-history-{tag}", "portal", "portal-history")
    yield {"lapor": lapor, "portal": portal}


def client(app: FastAPI, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake",
                             headers={"Authorization": f"Bearer {key}"})


async def test_a_lapor_export_lands_as_history_and_open_complaints(
        intake: tuple[FastAPI, httpx.AsyncClient], keys: dict[str, str], settings: Settings,
        tmp_path: Path) -> None:
    app, _ = intake
    p = f"H{uuid.uuid4().hex[:8]}"
    d = (datetime(2026, 3, 3, 9), datetime(2026, 3, 4, 10), datetime(2026, 3, 9, 11),
         datetime(2026, 3, 12, 12))
    rows = [
        row(f"{p}-A", "Ditutup oleh Admin", "Dinas Kesehatan", dates=d, rating="4"),
        row(f"{p}-B", "Ditutup oleh Sistem", "Dinkes", dates=(None, d[1], d[2], d[3])),
        row(f"{p}-C", "Diarsipkan oleh Admin", None, dates=(None, None, None, d[0]), alasan="duplikat"),
        row(f"{p}-D", "Terdisposisi", "RSUD Sekadau", dates=(d[0], d[1], None, None)),
        row(f"{p}-E", "Ditindaklanjuti", "Kantor Antah Berantah"),
        row(f"{p}-F", "Ditanggapi oleh Pelapor", "dinkes", dates=d[:3] + (None,), nama="Budi"),
        row(f"{p}-G", "Belum Diverifikasi", None, kategori="Kategori Baru Sekali"),
    ]
    path = build_export(tmp_path / "lapor-maret.xlsx", rows, FULL)
    async with client(app, keys["lapor"]) as http:
        report = await import_lapor(path, url="http://intake", api_key=None, tz=settings.tz,
                                    client=http, concurrency=3, progress=False)
        again = await import_lapor(path, url="http://intake", api_key=None, tz=settings.tz,
                                   client=http, concurrency=3, progress=False)
    assert (report.imported, report.present, report.failed) == (6, 0, [])
    assert [o.row_number for o in report.rejected] == [9]  # E: instansi not in the table
    assert report.exit_code == EXIT_REJECTED
    assert (again.imported, again.present) == (0, 6)
    text = report.render()
    assert "2  SELESAI (riwayat)" in text and "1  DIARSIPKAN (riwayat)" in text
    assert "1  DITANGGAPI_PELAPOR" in text and "1  DITERIMA" in text
    # disposed A B D F; followed up A B F; completed A B
    assert "tingkat tindak lanjut      :  75.0%" in text
    assert "tingkat penyelesaian       :  50.0%" in text

    conn = await asyncpg.connect(settings.database_url)
    try:
        got = {r["external_id"].removeprefix(f"{p}-"): r for r in await conn.fetch(
            """SELECT external_id, status, opd_code, hop, closed_by, closed_at, rating, archive_reason,
                      anonymous, last_responded_at, submission->'history'->'lapor' AS lapor,
                      (SELECT count(*) FROM intake.responses s WHERE s.complaint_id = c.id) AS responses,
                      (SELECT array_agg(t.event_type ORDER BY t.id) FROM intake.timeline t
                        WHERE t.complaint_id = c.id) AS timeline,
                      (SELECT (o.payload->'data'->>'historical')::boolean FROM intake.outbox o
                        WHERE o.payload->>'subject' = c.id::text
                          AND o.routing_key = 'complaint.submitted') AS historical
               FROM intake.complaints c WHERE source = 'lapor' AND external_id LIKE $1""", f"{p}-%")}
        # Each replayed history is in the audit trail, by the importer's key (once: the
        # re-import changed nothing).
        audited = await conn.fetch(
            """SELECT a.complaint_id, a.role, a.key_name FROM intake.audit_log a
               JOIN intake.complaints c ON c.id = a.complaint_id
               WHERE a.action = 'import_history' AND c.external_id LIKE $1""", f"{p}-%")
    finally:
        await conn.close()
    assert sorted(got) == list("ABCDFG")
    assert len(audited) == len({r["complaint_id"] for r in audited}) == 6
    assert {(r["role"], r["key_name"].startswith("lapor-history-")) for r in audited} == {("importer", True)}
    a = got["A"]
    assert (a["status"], a["opd_code"], a["hop"], a["closed_by"], a["rating"], a["historical"]) == (
        "SELESAI", "dinkes", 1, "admin_koordinator", 4, True)
    assert a["closed_at"] == d[3].replace(tzinfo=settings.tz)
    assert a["responses"] == 1 and a["last_responded_at"] == d[2].replace(tzinfo=settings.tz)
    names = [e.removeprefix("id.go.sp4n.").removesuffix(".v1") for e in a["timeline"]]
    assert names[:6] == ["complaint.submitted", "complaint.verified", "complaint.routed",
                         "complaint.responded", "complaint.rated", "complaint.closed"]
    assert (got["B"]["status"], got["B"]["closed_by"]) == ("SELESAI", "system")
    assert (got["C"]["status"], got["C"]["archive_reason"], got["C"]["historical"]) == (
        "DIARSIPKAN", "lainnya", True)
    assert (got["D"]["status"], got["D"]["opd_code"], got["D"]["historical"]) == (
        "TERDISPOSISI", "rsud", False)
    assert (got["F"]["status"], got["F"]["anonymous"]) == ("DITANGGAPI_PELAPOR", False)
    assert got["G"]["status"] == "DITERIMA"
    assert json.loads(got["G"]["lapor"])["category_label"] == "Kategori Baru Sekali"


async def test_history_only_from_a_lapor_key_and_to_a_known_opd(
        intake: tuple[FastAPI, httpx.AsyncClient], keys: dict[str, str]) -> None:
    app, _ = intake
    body = {"external_id": f"X{uuid.uuid4().hex[:8]}", "received_at": "2026-03-02T08:00:00+07:00",
            "classification": "pengaduan", "category": "kesehatan", "title": "Obat habis",
            "description": "Obat di puskesmas sering habis.", "anonymous": True,
            "history": {"state": "TERDISPOSISI", "opd_code": "dinkes",
                        "verified_at": "2026-03-03T08:00:00+07:00",
                        "disposed_at": "2026-03-04T08:00:00+07:00"}}
    async with client(app, keys["portal"]) as http:
        r = await http.post("/v1/complaints", json={**body, "source": "portal-history"})
    assert r.status_code == 403, r.text
    assert "history" in r.text
    async with client(app, keys["lapor"]) as http:
        unknown = {**body, "source": "lapor", "history": {**body["history"], "opd_code": "dinas_fiktif"}}
        r = await http.post("/v1/complaints", json=unknown)
        assert r.status_code == 422, r.text
        assert "history.opd_code" in r.text
        disordered = {**body, "source": "lapor",
                      "history": {**body["history"], "disposed_at": "2026-03-02T09:00:00+07:00"}}
        r = await http.post("/v1/complaints", json=disordered)
        assert r.status_code == 422 and "disposed_at must not be before verified_at" in r.text
        early = {**body, "source": "lapor", "history": {**body["history"],
                                                         "verified_at": "2026-03-01T08:00:00+07:00"}}
        r = await http.post("/v1/complaints", json=early)
        assert r.status_code == 422 and "before received_at" in r.text
        r = await http.post("/v1/complaints", json={**body, "source": "lapor"})
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "TERDISPOSISI"


async def test_a_later_export_takes_the_steps_since(
        intake: tuple[FastAPI, httpx.AsyncClient], keys: dict[str, str], settings: Settings,
        tmp_path: Path) -> None:
    """November's export: open (disposed); December's: closed. The second import closes it
    (no 409); importing either again changes nothing."""
    app, _ = intake
    tid = f"ADV{uuid.uuid4().hex[:8]}"
    d = (datetime(2026, 3, 3, 9), datetime(2026, 3, 4, 10), datetime(2026, 3, 9, 11),
         datetime(2026, 3, 12, 12))
    november = build_export(tmp_path / "nov.xlsx",
                            [row(tid, "Terdisposisi", "dinkes", dates=d[:2] + (None, None))], FULL)
    december = build_export(tmp_path / "des.xlsx", [row(tid, "Ditutup oleh Admin", "dinkes", dates=d,
                                                        rating="5")], FULL)

    async def status() -> tuple[str, int | None, int]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            r = await conn.fetchrow(
                "SELECT status, rating,"
                " (SELECT count(*) FROM intake.timeline t WHERE t.complaint_id = c.id) AS n"
                " FROM intake.complaints c WHERE source = 'lapor' AND external_id = $1", tid)
        finally:
            await conn.close()
        return r["status"], r["rating"], r["n"]

    async with client(app, keys["lapor"]) as http:
        async def run(path: Path) -> None:
            report = await import_lapor(path, url="http://intake", api_key=None, tz=settings.tz,
                                        client=http, progress=False)
            assert report.rejected == [] and report.failed == [], report.render()

        await run(november)
        assert (await status())[:2] == ("TERDISPOSISI", None)
        await run(december)
        closed = await status()
        assert closed[:2] == ("SELESAI", 5)
        await run(december)
        await run(november)
        assert await status() == closed  # nothing taken twice, nothing undone
