"""intake in process against real PostgreSQL and RabbitMQ: HTTP contract, idempotency,
authentication, the inbound broker path and the status timeline."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import aio_pika
import asyncpg
import pytest

from services.intake.apikeys import create_api_key
from services.intake.errors import Problem
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
    assert r.json()["conflicting_fields"] == ["location.desa", "title"]


async def test_invalid_input_is_422_naming_each_field(intake, keys):
    _, client = intake
    r = await client.post("/v1/complaints", headers=auth(keys["portal"]),
                          json=body(description="x" * 4001, classification="keluhan"))
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"description", "classification"}
    r = await client.post("/v1/complaints", content=b"{not json",
                          headers={**auth(keys["portal"]), "content-type": "application/json"})
    assert r.status_code == 422
    # The body as a whole is at fault, where in it is in the reason (not a byte offset as field).
    assert r.json()["errors"] == [{
        "field": "(body)",
        "reason": "invalid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"}]


async def test_missing_or_wrong_key_is_401_and_foreign_source_403(intake, keys):
    _, client = intake
    assert (await client.post("/v1/complaints", json=body())).status_code == 401
    r = await client.post("/v1/complaints", json=body(), headers=auth("sp4n_deadbeef_nope"))
    assert r.status_code == 401
    r = await client.post("/v1/complaints", json=body(), headers=auth(keys["other"]))
    assert r.status_code == 403 and r.json()["field"] == "source"


async def test_status_shows_routing_and_deadlines_from_events(intake, keys, settings):
    app, client = intake
    accepted = (await client.post("/v1/complaints", json=body(), headers=auth(keys["portal"]))).json()
    cid = uuid.UUID(accepted["complaint_id"])
    runtime = app.state.runtime
    now = datetime.now(UTC)
    await publish_event(runtime.broker, settings.namespace, make_event("sp4n/sla", SlaClockStarted(
        complaint_id=cid, clock="verification", hop=0, started_at=now, working_days=3,
        deadline=datetime(2026, 3, 27, 16, 59, 59, tzinfo=UTC), warn_at=None,
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
        # Only a reference to the encrypted copy intake keeps, never the body (the identity).
        ref = json.loads(msg.body)
        assert set(ref) == {"failed_submission_id", "reason"} and "description" in ref["reason"]
        assert "description" in msg.headers["x-sp4n-error"]
        assert bad["external_id"].encode() not in msg.body
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


def assert_problem(r, status: int, code: str | None) -> dict:
    """An RFC 9457 problem: its media type, its members, and this API's problem type."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    p = r.json()
    Problem.model_validate(p)
    assert p["status"] == status and p["title"] and isinstance(p["detail"], str)
    assert p["type"] == (f"urn:sp4n:problem:{code}" if code else "about:blank")
    assert p["instance"] == r.request.url.path
    assert "error" not in p and "message" not in p  # no envelope but the problem itself
    for e in p.get("errors", ()):
        assert set(e) == {"field", "reason"}
    return p


async def test_every_native_4xx_is_a_problem(intake, keys):
    _, client = intake
    missing = await client.post("/v1/complaints", json=body())
    p = assert_problem(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer" and "X-API-Key" in p["detail"]
    bad_key = await client.get("/v1/complaints", headers={"X-API-Key": "sp4n_deadbeef_nope"})
    assert_problem(bad_key, 401, "unauthorized")
    foreign = await client.post("/v1/complaints", json=body(), headers=auth(keys["other"]))
    assert assert_problem(foreign, 403, "forbidden")["field"] == "source"

    b = body()
    first = (await client.post("/v1/complaints", json=b, headers=auth(keys["portal"]))).json()
    r = await client.post("/v1/complaints", json={**b, "title": "Judul lain"}, headers=auth(keys["portal"]))
    p = assert_problem(r, 409, "conflict")
    assert p["conflicting_fields"] == ["title"]
    assert (p["complaint_id"], p["tracking_id"]) == (first["complaint_id"], first["tracking_id"])

    invalid = await client.post("/v1/complaints", json=body(title="x"), headers=auth(keys["portal"]))
    p = assert_problem(invalid, 422, "validation_failed")
    assert [e["field"] for e in p["errors"]] == ["title"]
    query = await client.get("/v1/complaints", params={"limit": 0}, headers=auth(keys["portal"]))
    assert [e["field"] for e in assert_problem(query, 422, "validation_failed")["errors"]] == ["limit"]
    unknown = await client.get("/v1/complaints/SKD-000000-NOPE00", headers=auth(keys["portal"]))
    assert assert_problem(unknown, 404, "not_found")["field"] == "key"
    assert_problem(await client.get("/v1/nothing-here"), 404, None)
    # Outside the native API FastAPI's own answers stay as they were.
    elsewhere = await client.get("/nothing-here")
    assert elsewhere.status_code == 404 and elsewhere.json() == {"detail": "Not Found"}


async def test_unreadable_bodies_are_400_problems_naming_the_body(intake, keys):
    _, client = intake
    headers = {**auth(keys["portal"]), "content-type": "application/json"}

    async def post(content: bytes) -> dict:
        r = await client.post("/v1/complaints", content=content, headers=headers)
        p = assert_problem(r, 400, "invalid_body")
        [error] = p["errors"]
        assert error["field"] == "(body)"
        return error

    not_utf8 = await post(json.dumps(body()).encode().replace(b"Jalan rusak", b"Jalan \xffrusak"))
    assert "not valid UTF-8" in not_utf8["reason"] and "line 1, column" in not_utf8["reason"]
    assert "nested deeper than 32" in (await post(b"[" * 2000 + b"]" * 2000))["reason"]
    deep = body(title=json.loads("[" * 40 + "]" * 40))
    assert "nested deeper than 32" in (await post(json.dumps(deep).encode()))["reason"]
    # Brackets inside strings are text, not nesting.
    ok = await client.post("/v1/complaints", headers=headers, content=json.dumps(
        body(description="[" * 100 + " kurung siku " + "{" * 100)).encode())
    assert ok.status_code == 202, ok.text


async def test_openapi_documents_problems_and_the_open311_facade(intake):
    _, client = intake
    doc = (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert {"Problem", "FieldError"} <= set(schemas) and "HTTPValidationError" not in schemas
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for code, response in op["responses"].items():
                if not code.startswith("4"):
                    continue
                if path.startswith("/v1"):
                    assert response["content"] == {"application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}}}, (method, path, code)
                else:
                    assert path.startswith("/open311/v2") and code != "422", (method, path, code)
                    assert "application/json" in response["content"]
    submit_op = doc["paths"]["/v1/complaints"]["post"]["responses"]
    assert {"400", "401", "403", "409", "422"} <= set(submit_op)
    o311 = doc["paths"]["/open311/v2/requests.{fmt}"]
    fmt = next(p for p in o311["get"]["parameters"] if p["name"] == "fmt")
    assert schemas[fmt["schema"]["$ref"].rsplit("/", 1)[1]]["enum"] == ["xml", "json"]
    assert {"400", "403"} <= set(o311["get"]["responses"]) and "404" not in o311["get"]["responses"]
    assert {"status", "start_date", "service_request_id"} <= {p["name"] for p in o311["get"]["parameters"]}
    form = o311["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert "lat and long are sent together" in form["description"]
    assert {"attribute[anonim]", "lat", "long"} <= set(form["properties"])
