"""intake in process against real PostgreSQL and RabbitMQ: HTTP contract, idempotency,
authentication, the inbound broker path and the status timeline."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

import aio_pika
import asyncpg
import pytest

from services.intake.apikeys import create_api_key
from shared.broker import publish_event
from shared.events import ComplaintRouted, SlaClockStarted, make_event
from shared.topology import INTAKE_SUBMISSIONS, SUBMISSION_ROUTING_KEY, inbound_exchange
from tests.infra import next_message

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def keys(settings, intake):
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        _, portal = await create_api_key(conn, "portal-test", "portal", "portal-sekadau")
        _, other = await create_api_key(conn, "wa-bot", "portal", "wa-bot")
    finally:
        await conn.close()
    return {"portal": portal, "other": other}


def body(**over):
    b = {
        "source": "portal-sekadau", "external_id": f"ext-{uuid.uuid4().hex[:8]}",
        "received_at": "2026-03-17T09:00:00+07:00", "classification": "pengaduan",
        "category": "infrastruktur_jalan", "title": "Jalan rusak di Sungai Ayak",
        "description": "Jalan desa berlubang besar di depan sekolah dasar.",
        "location": {"kecamatan": "Belitang Hilir", "desa": "Sungai Ayak"},
        "reporter": {"name": "Budi Santoso", "phone": "+6281234567890", "nik": "6109011234567890"},
    }
    b.update(over)
    return b


def auth(key):
    return {"Authorization": f"Bearer {key}"}


async def test_submit_then_retry_returns_same_ids(intake, keys, settings):
    _, client = intake
    b = body()
    first = await client.post("/v1/complaints", json=b, headers=auth(keys["portal"]))
    assert first.status_code == 202, first.text
    accepted = first.json()
    assert accepted["status"] == "DITERIMA"
    assert accepted["tracking_id"].startswith("SKD-")
    assert accepted["status_url"].endswith(f"/v1/complaints/{accepted['tracking_id']}")
    again = await client.post("/v1/complaints", json=b, headers=auth(keys["portal"]))
    assert again.status_code == 200
    assert again.json() == accepted
    conn = await asyncpg.connect(settings.database_url)
    try:
        n = await conn.fetchval("SELECT count(*) FROM intake.complaints WHERE external_id = $1",
                                b["external_id"])
        events = await conn.fetch(
            "SELECT payload FROM intake.outbox WHERE routing_key = 'complaint.submitted'"
            " AND payload->>'subject' = $1", accepted["complaint_id"])
    finally:
        await conn.close()
    assert n == 1
    assert len(events) == 1
    payload = json.dumps(events[0]["payload"])
    for pii in ("Budi", "6281234567890", "6109011234567890", "berlubang"):
        assert pii not in payload


async def test_concurrent_retries_create_one_complaint(intake, keys):
    _, client = intake
    b = body()
    answers = await asyncio.gather(*(client.post("/v1/complaints", json=b, headers=auth(keys["portal"]))
                                     for _ in range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 7 + [202]
    assert len({a.json()["complaint_id"] for a in answers}) == 1


async def test_same_external_id_with_other_content_is_409_naming_fields(intake, keys):
    _, client = intake
    b = body()
    assert (await client.post("/v1/complaints", json=b, headers=auth(keys["portal"]))).status_code == 202
    changed = {**b, "title": "Judul lain", "location": {**b["location"], "desa": "Lain"}}
    r = await client.post("/v1/complaints", json=changed, headers=auth(keys["portal"]))
    assert r.status_code == 409
    assert r.json()["detail"]["conflicting_fields"] == ["location.desa", "title"]


async def test_invalid_input_is_422_naming_each_field(intake, keys):
    _, client = intake
    r = await client.post("/v1/complaints", headers=auth(keys["portal"]),
                          json=body(description="x" * 4001, classification="keluhan"))
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"description", "classification"}
    r = await client.post("/v1/complaints", headers={**auth(keys["portal"]), "content-type": "application/json"},
                          content=b"{not json")
    assert r.status_code == 422


async def test_missing_or_wrong_key_is_401_and_foreign_source_403(intake, keys):
    _, client = intake
    assert (await client.post("/v1/complaints", json=body())).status_code == 401
    r = await client.post("/v1/complaints", json=body(), headers=auth("sp4n_deadbeef_nope"))
    assert r.status_code == 401
    r = await client.post("/v1/complaints", json=body(), headers=auth(keys["other"]))
    assert r.status_code == 403 and r.json()["detail"]["field"] == "source"


async def test_status_shows_routing_and_deadlines_from_events(intake, keys, settings):
    app, client = intake
    accepted = (await client.post("/v1/complaints", json=body(), headers=auth(keys["portal"]))).json()
    cid = uuid.UUID(accepted["complaint_id"])
    runtime = app.state.runtime
    now = datetime.now(timezone.utc)
    await publish_event(runtime.broker, settings.namespace, make_event("sp4n/sla", SlaClockStarted(
        complaint_id=cid, clock="verification", hop=0, started_at=now, working_days=3,
        deadline=datetime(2026, 3, 27, 16, 59, 59, tzinfo=timezone.utc), warn_at=None,
        calendar_version="holidays-0.109+ovr-0", policy_version=1)))
    await publish_event(runtime.broker, settings.namespace, make_event("sp4n/routing", ComplaintRouted(
        complaint_id=cid, opd_code="PUPR", opd_name="Dinas PUPR", hop=1, rule_id=1,
        rule_version=1, routed_at=now)))
    status = {}
    for _ in range(50):
        status = (await client.get(f"/v1/complaints/{accepted['tracking_id']}",
                                   headers=auth(keys["portal"]))).json()
        if status["opd_code"] and status["clocks"]:
            break
        await asyncio.sleep(0.1)
    assert status["status"] == "TERDISPOSISI" and status["opd_name"] == "Dinas PUPR"
    assert status["clocks"][0]["clock"] == "verification"
    assert status["clocks"][0]["deadline"].startswith("2026-03-27T16:59:59")
    events = [t["event"] for t in status["timeline"]]
    assert events[0] == "complaint.submitted" and "complaint.routed" in events
    by_id = await client.get(f"/v1/complaints/{cid}", headers=auth(keys["portal"]))
    assert by_id.json()["tracking_id"] == accepted["tracking_id"]
    assert "reporter" not in by_id.json()
    other = await client.get(f"/v1/complaints/{cid}", headers=auth(keys["other"]))
    assert other.status_code == 404


async def test_broker_submission_takes_the_same_path_and_invalid_goes_to_dlq(intake, settings):
    app, client = intake
    runtime = app.state.runtime
    good = body(source="wa-bot")
    exchange = inbound_exchange(settings.namespace)
    await runtime.broker.publish(json.dumps(good).encode(), exchange=exchange,
                                 routing_key=SUBMISSION_ROUTING_KEY, persist=True,
                                 content_type="application/json")
    bad = body(source="wa-bot", description="pendek")
    await runtime.broker.publish(json.dumps(bad).encode(), exchange=exchange,
                                 routing_key=SUBMISSION_ROUTING_KEY, persist=True,
                                 content_type="application/json")
    conn = await asyncpg.connect(settings.database_url)
    try:
        for _ in range(50):
            n = await conn.fetchval("SELECT count(*) FROM intake.complaints WHERE external_id = $1",
                                    good["external_id"])
            if n:
                break
            await asyncio.sleep(0.1)
        assert n == 1
    finally:
        await conn.close()
    amqp = await aio_pika.connect(settings.amqp_url)
    try:
        ch = await amqp.channel()
        dlq = await ch.declare_queue(INTAKE_SUBMISSIONS.dlq_name(settings.namespace), durable=True)
        msg = await next_message(dlq, timeout=5)
        assert msg is not None
        await msg.ack()
        assert json.loads(msg.body)["external_id"] == bad["external_id"]
        assert "description" in msg.headers["x-sp4n-error"]
    finally:
        await amqp.close()


async def test_readiness_reports_each_check(intake):
    _, client = intake
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert checks["database"] == "ok" and checks["broker"] == "ok"
    assert checks["consumer:timeline"] == "ok" and checks["consumer:submissions"] == "ok"
    metrics = (await client.get("/metrics")).text
    assert 'sp4n_complaints_received_total{classification="pengaduan",source="portal-sekadau"}' in metrics
