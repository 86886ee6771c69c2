"""A complaint travels intake → routing as real processes over real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from tests.e2e import system as sp4n
from tests.e2e.conftest import EventTap

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running(settings, tmp_path_factory):
    system = sp4n.start(settings, ["intake", "routing"], tmp_path_factory.mktemp("logs"))
    yield system
    system.stop()


def complaint(**over):
    body = {
        "source": "portal-sekadau", "external_id": f"e2e-{uuid.uuid4().hex[:10]}",
        "received_at": datetime.now(UTC).isoformat(), "classification": "pengaduan",
        "category": "infrastruktur_jalan", "title": "Jalan berlubang di Sungai Ayak",
        "description": "Jalan desa berlubang besar di depan SD, membahayakan anak sekolah.",
        "location": {"kecamatan": "Belitang Hilir", "desa": "Sungai Ayak"},
        "reporter": {"name": "Siti Aminah", "phone": "+6281234500000"},
    }
    body.update(over)
    return body


async def test_complaint_is_routed_to_the_right_opd_and_status_shows_it(running, settings, portal_key):
    headers = {"Authorization": f"Bearer {portal_key}"}
    async with EventTap(settings.amqp_url, settings.namespace, ("complaint.*",)) as tap, \
            httpx.AsyncClient(base_url=running.url("intake"), headers=headers) as client:
        body = complaint()
        r = await client.post("/v1/complaints", json=body)
        assert r.status_code == 202, r.text
        accepted = r.json()
        cid = accepted["complaint_id"]
        routed = (await tap.wait_for("complaint.routed", cid))[0]
        assert routed["data"]["opd_code"] == "dpupr"
        assert routed["data"]["hop"] == 1 and routed["data"]["rule_id"] is not None
        assert routed["source"] == "sp4n/routing" and routed["specversion"] == "1.0"

        status = {}
        for _ in range(100):
            status = (await client.get(accepted["status_url"])).json()
            if status["status"] == "TERDISPOSISI":
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "TERDISPOSISI" and status["opd_code"] == "dpupr"
        assert [t["event"] for t in status["timeline"]][:2] == ["complaint.submitted", "complaint.routed"]

        # The same complaint again: same ids, still one complaint, no second routing.
        again = await client.post("/v1/complaints", json=body)
        assert again.status_code == 200 and again.json()["complaint_id"] == cid
        await asyncio.sleep(0.5)
        assert len(tap.of("complaint.submitted", cid)) == 1
        assert len(tap.of("complaint.routed", cid)) == 1
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval(
            "SELECT count(*) FROM intake.complaints WHERE external_id = $1", body["external_id"]) == 1
    finally:
        await conn.close()


async def test_unroutable_complaint_goes_to_triage(running, settings, portal_key):
    headers = {"Authorization": f"Bearer {portal_key}"}
    async with EventTap(settings.amqp_url, settings.namespace, ("complaint.*",)) as tap, \
            httpx.AsyncClient(base_url=running.url("intake"), headers=headers) as client:
        r = await client.post("/v1/complaints", json=complaint(category="kategori_belum_dikenal",
                                                               anonymous=True, reporter=None))
        assert r.status_code == 202, r.text
        cid = r.json()["complaint_id"]
        triage = (await tap.wait_for("complaint.triage_required", cid))[0]
        assert triage["data"]["category"] == "kategori_belum_dikenal"
        assert tap.of("complaint.routed", cid) == []
        for _ in range(100):
            status = (await client.get(f"/v1/complaints/{cid}")).json()
            if status["needs_triage"]:
                break
            await asyncio.sleep(0.05)
        assert status["needs_triage"] and status["status"] == "DITERIMA"


async def test_every_service_is_ready_and_exposes_metrics(running):
    async with httpx.AsyncClient() as client:
        for svc in ("intake", "routing"):
            ready = await client.get(f"{running.url(svc)}/readyz")
            assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
            metrics = (await client.get(f"{running.url(svc)}/metrics")).text
            assert "sp4n_outbox_published_total" in metrics
        routing_metrics = (await client.get(f"{running.url('routing')}/metrics")).text
        assert 'sp4n_complaints_routed_total{opd="dpupr"}' in routing_metrics
        asyncapi = (await client.get(f"{running.url('routing')}/asyncapi.json")).json()
        assert any(ch.endswith(".routing.submitted.v1") for ch in asyncapi["channels"])
        schemas = (await client.get(f"{running.url('intake')}/events.schema.json")).json()
        assert schemas["complaint.submitted"]["type"] == "id.go.sp4n.complaint.submitted.v1"
        assert "reporter_ref" in schemas["complaint.submitted"]["data"]["properties"]
