"""``sp4n import-lapor`` against intake in process (real PostgreSQL and RabbitMQ): the same
HTTP path portals use, twice, without duplicates."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.importer.command import EXIT_REJECTED, ImportReport, import_lapor
from services.intake.apikeys import create_api_key
from shared.connect import service_connection
from shared.settings import Settings
from tests.unit.test_importer_lapor import build_export, sample_rows

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def intake_client(settings: Settings,
                        intake: tuple[FastAPI, httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
    app, _ = intake
    async with service_connection(settings, "intake") as conn:  # intake migrated it
        _, key = await create_api_key(conn, f"lapor-import-{uuid.uuid4().hex[:6]}", "importer", "lapor")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


async def test_import_twice_creates_each_complaint_once(intake_client: httpx.AsyncClient, settings: Settings,
                                                        tmp_path: Path) -> None:
    prefix = f"LPR{uuid.uuid4().hex[:8]}"
    path = build_export(tmp_path / "lapor-sekadau-maret.xlsx", sample_rows(prefix))

    async def run() -> ImportReport:
        return await import_lapor(path, url="http://intake", api_key=None, tz=settings.tz,
                                  client=intake_client, concurrency=4, progress=False)

    first = await run()
    assert (first.imported, first.present, first.failed) == (5, 0, [])
    assert [(o.row_number, o.external_id, o.detail) for o in first.rejected] == [
        (8, f"{prefix}-4", "description: String should have at least 10 characters")]
    assert first.exit_code == EXIT_REJECTED
    assert "baris 8: description: String should have at least 10 characters" in first.render()

    second = await run()
    assert (second.imported, second.present, second.failed) == (0, 5, [])
    assert [o.row_number for o in second.rejected] == [8]
    assert {o.detail for o in second.of("present")} == {o.detail for o in first.of("imported")}

    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = {r["external_id"]: r for r in await conn.fetch(
            "SELECT external_id, received_at, anonymous, confidential, classification, category"
            " FROM intake.complaints WHERE source = 'lapor' AND external_id LIKE $1", f"{prefix}-%")}
        submitted = await conn.fetchval(
            "SELECT payload->'data'->>'received_at' FROM intake.outbox o"
            " JOIN intake.complaints c ON c.id::text = o.payload->>'subject'"
            " WHERE o.routing_key = 'complaint.submitted' AND c.external_id = $1", f"{prefix}-2")
    finally:
        await conn.close()
    assert sorted(rows) == [f"{prefix}-{n}" for n in (1, 2, 3, 5, 6)]
    backdated = rows[f"{prefix}-2"]["received_at"]
    assert backdated == datetime(2026, 3, 17, 9, 15, tzinfo=timezone(timedelta(hours=7)))
    assert backdated.astimezone(settings.tz).isoformat() == "2026-03-17T09:15:00+07:00"
    # the clocks start from the event's received_at, i.e. the original LAPOR! date
    assert datetime.fromisoformat(submitted) == backdated
    secret = rows[f"{prefix}-3"]
    assert secret["confidential"] and secret["anonymous"]
    assert secret["classification"] == "permintaan_informasi"
    assert secret["category"] == "administrasi_kependudukan"
    assert rows[f"{prefix}-6"]["confidential"] and not rows[f"{prefix}-5"]["confidential"]
