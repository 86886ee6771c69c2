"""The Open311 GeoReport v2 facade in process against real PostgreSQL and RabbitMQ, driven
as a GeoReport client would: plain form-encoded POSTs (httpx ``data=``) and GETs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from services.intake.apikeys import create_api_key
from services.intake.reporter_data import open_reporter
from shared.broker import publish_event
from shared.events import ComplaintRouted, SlaClockStarted, make_event

pytestmark = pytest.mark.integration
V2 = "/open311/v2"

# intake.responses belongs to intake's lifecycle migration (0002); the facade reads exactly
# these columns. Created here only if that migration is absent, so this test stands alone.
RESPONSES_FALLBACK = """
CREATE TABLE IF NOT EXISTS intake.responses (
    complaint_id uuid NOT NULL REFERENCES intake.complaints (id) ON DELETE CASCADE,
    opd_code     text NOT NULL,
    hop          integer NOT NULL,
    response_no  integer NOT NULL,
    body         text NOT NULL,
    attachments  jsonb NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL
)"""


@pytest.fixture(scope="module")
async def db(settings, intake):
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    await conn.execute(RESPONSES_FALLBACK)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def keys(db):
    _, portal = await create_api_key(db, "o311-portal", "portal", "portal-sekadau")
    _, unbound = await create_api_key(db, "o311-generic", "portal", "open311")
    try:  # an OPD key may read but not submit
        _, opd = await create_api_key(db, "o311-opd", "opd:dpupr")
    except (ValueError, asyncpg.PostgresError):  # before intake's lifecycle migration
        opd = None
    return {"portal": portal, "unbound": unbound, "opd": opd}


def form(key: str | None, **over) -> dict[str, str]:
    data = {
        "api_key": key, "service_code": "infrastruktur_jalan",
        "lat": "0.0312", "long": "110.9571", "address_string": "Jl. Merdeka depan SDN 3",
        "description": "Jalan desa berlubang besar di depan sekolah dasar, membahayakan anak.",
        "first_name": "Budi", "last_name": "Santoso", "phone": "+6281234567890",
        "email": "budi@example.org", "media_url": "https://foto.example.org/jalan.jpg",
        "attribute[classification]": "pengaduan", "attribute[kecamatan]": "belitang_hilir",
        "attribute[desa]": "Sungai Ayak",
    }
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


async def submit(client, key, **over) -> str:
    r = await client.post(f"{V2}/requests.json", data=form(key, **over))
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == 1
    return body[0]["service_request_id"]


def assert_spec_error(r: httpx.Response, status: int, *fields: str) -> list[dict]:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body, list) and body
    for e in body:
        assert set(e) == {"code", "description"} and isinstance(e["code"], int)
    named = {e["description"].split(":", 1)[0] for e in body}
    assert set(fields) <= named, body
    return body


async def verified(db, *tracking_ids: str) -> None:
    """What the admin koordinator's verification does to the row, as far as public reads
    care: only verified complaints are public."""
    await db.execute("UPDATE complaints SET status = 'TERVERIFIKASI' WHERE tracking_id = ANY($1)"
                     " AND status = 'DITERIMA'", list(tracking_ids))


async def eventually(fetch, ready, tries=60):
    value = None
    for _ in range(tries):
        value = await fetch()
        if ready(value):
            return value
        await asyncio.sleep(0.1)
    return value


async def test_services_list_and_definition(intake):
    _, client = intake
    r = await client.get(f"{V2}/services.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    services = {s["service_code"]: s for s in r.json()}
    jalan = services["infrastruktur_jalan"]
    assert jalan["service_name"] == "Jalan dan Jembatan" and jalan["group"] == "infrastruktur"
    assert jalan["metadata"] is True and jalan["type"] == "realtime"
    assert "jembatan" in jalan["keywords"].split(", ")
    assert {"pendidikan", "kesehatan", "bencana", "lainnya"} <= set(services)

    d = (await client.get(f"{V2}/services/infrastruktur_jalan.json")).json()
    assert d["service_code"] == "infrastruktur_jalan"
    attrs = {a["code"]: a for a in d["attributes"]}
    assert {"classification", "berkadar_pengawasan", "kecamatan", "desa"} <= set(attrs)
    assert len(attrs["kecamatan"]["values"]) == 7
    assert {v["key"] for v in attrs["berkadar_pengawasan"]["values"]} == {"true", "false"}

    missing = await client.get(f"{V2}/services/graffiti.json")
    assert_spec_error(missing, 404, "service_code")
    assert missing.json()[0]["code"] == 404

    disc = (await client.get(f"{V2}/discovery.json")).json()
    assert disc["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert disc["endpoints"][0]["url"].endswith("/open311/v2")


async def test_post_creates_a_complaint_through_the_same_use_case(intake, keys, db):
    _, client = intake
    r = await client.post(f"{V2}/requests.json", data=form(keys["portal"], account_id="acc-1"))
    assert r.status_code == 200, r.text
    [answer] = r.json()
    tracking = answer["service_request_id"]
    assert tracking.startswith("SKD-") and tracking in answer["service_notice"]
    assert "diterima" in answer["service_notice"] and answer["account_id"] == "acc-1"
    row = await db.fetchrow("SELECT * FROM complaints WHERE tracking_id = $1", tracking)
    assert row["source"] == "portal-sekadau" and row["category"] == "infrastruktur_jalan"
    assert row["kecamatan"] == "Belitang Hilir" and row["desa"] == "Sungai Ayak"
    assert row["title"].startswith("Jalan desa berlubang")
    ctx = intake[0].state.intake
    async with ctx.uow.read() as repo:
        stored = await repo.reporter_of(row["id"])
    reporter = open_reporter(ctx.cfg.keyring, row["id"], stored)  # stored sealed
    assert reporter.name == "Budi Santoso" and reporter.email == "budi@example.org"
    n = await db.fetchval("SELECT count(*) FROM outbox WHERE routing_key = 'complaint.submitted'"
                          " AND payload->>'subject' = $1", str(row["id"]))
    assert n == 1

    # A key bound to source "open311" (the facade's default for keys without a source).
    other = await submit(client, keys["unbound"])
    assert await db.fetchval("SELECT source FROM complaints WHERE tracking_id = $1", other) == "open311"


async def test_retries_are_idempotent_only_with_an_external_id(intake, keys, db):
    _, client = intake
    ext = f"app-{uuid.uuid4().hex[:8]}"
    first = await submit(client, keys["portal"], **{"attribute[external_id]": ext})
    again = await submit(client, keys["portal"], **{"attribute[external_id]": ext})
    assert first == again
    assert await db.fetchval("SELECT count(*) FROM complaints WHERE external_id = $1", ext) == 1
    a = await submit(client, keys["portal"])
    b = await submit(client, keys["portal"])
    assert a != b
    changed = await client.post(f"{V2}/requests.json", data=form(
        keys["portal"], **{"attribute[external_id]": ext, "attribute[desa]": "Lain"}))
    body = assert_spec_error(changed, 400, "attribute[external_id]")
    assert body[0]["code"] == 409 and first in body[0]["description"]


async def test_get_request_shows_routing_deadline_and_latest_response(intake, keys, db, settings):
    app, client = intake
    tracking = await submit(client, keys["portal"], **{
        "attribute[received_at]": "2026-11-02T08:30:00+07:00"})
    cid = await db.fetchval("SELECT id FROM complaints WHERE tracking_id = $1", tracking)
    await verified(db, tracking)
    runtime = app.state.runtime
    now = datetime.now(UTC)
    deadline = datetime(2026, 11, 20, 16, 59, 59, tzinfo=UTC)
    await publish_event(runtime.broker, settings.namespace, make_event("sp4n/routing", ComplaintRouted(
        complaint_id=cid, opd_code="dpupr", opd_name="Dinas Pekerjaan Umum dan Penataan Ruang",
        hop=1, rule_id=1, rule_version=1, routed_at=now)))
    await publish_event(runtime.broker, settings.namespace, make_event("sp4n/sla", SlaClockStarted(
        complaint_id=cid, clock="completion", hop=0, started_at=now, working_days=14,
        deadline=deadline, warn_at=None, calendar_version="holidays-0.109+ovr-0", policy_version=1)))

    async def fetch():
        return (await client.get(f"{V2}/requests/{tracking}.json")).json()

    body = await eventually(fetch, lambda b: b[0]["agency_responsible"] and b[0]["expected_datetime"])
    assert isinstance(body, list) and len(body) == 1
    req = body[0]
    assert req["service_request_id"] == tracking and req["status"] == "open"
    assert req["agency_responsible"] == "Dinas Pekerjaan Umum dan Penataan Ruang"
    assert req["expected_datetime"] == "2026-11-20T23:59:59+07:00"
    assert req["requested_datetime"] == "2026-11-02T08:30:00+07:00"
    assert req["updated_datetime"].endswith("+07:00")
    assert req["service_code"] == "infrastruktur_jalan" and req["service_name"] == "Jalan dan Jembatan"
    assert req["description"].startswith("Jalan desa berlubang")
    assert (req["lat"], req["long"]) == (0.0312, 110.9571)
    assert req["media_url"] == "https://foto.example.org/jalan.jpg"
    assert req["address"] == "Jl. Merdeka depan SDN 3, Sungai Ayak, Belitang Hilir, Kabupaten Sekadau"
    assert req["status_notes"] is None
    assert set(req) == {"service_request_id", "status", "status_notes", "service_name",
                        "service_code", "description", "agency_responsible", "service_notice",
                        "requested_datetime", "updated_datetime", "expected_datetime", "address",
                        "address_id", "zipcode", "lat", "long", "media_url"}

    for no, (text, at) in enumerate([("Sudah disurvei.", now - timedelta(hours=2)),
                                     ("Perbaikan dijadwalkan pekan depan.", now)], start=1):
        await db.execute(
            "INSERT INTO responses (complaint_id, opd_code, hop, response_no, body, created_at)"
            " VALUES ($1, 'dpupr', 1, $2, $3, $4)", cid, no, text, at)
    again = (await client.get(f"{V2}/requests/{tracking.lower()}.json")).json()
    assert again[0]["status_notes"] == "Perbaikan dijadwalkan pekan depan."

    text = (await client.get(f"{V2}/requests.json", params={"service_request_id": tracking})).text
    for pii in ("Budi", "Santoso", "6281234567890", "budi@example.org"):
        assert pii not in text


async def test_rahasia_is_never_listed_nor_retrievable(intake, keys, db):
    _, client = intake
    secret = await submit(client, keys["portal"], **{"attribute[rahasia]": "true"})
    public = await submit(client, keys["portal"])
    await verified(db, secret, public)
    assert_spec_error(await client.get(f"{V2}/requests/{secret}.json"), 404, "service_request_id")
    listed = (await client.get(f"{V2}/requests.json")).json()
    ids = {r["service_request_id"] for r in listed}
    assert public in ids and secret not in ids
    by_id = (await client.get(f"{V2}/requests.json",
                              params={"service_request_id": f"{secret},{public}"})).json()
    assert [r["service_request_id"] for r in by_id] == [public]


async def test_anonim_complaint_is_listed_without_reporter_and_with_a_coarse_location(intake, keys, db):
    _, client = intake
    anon = await submit(client, keys["portal"], first_name=None, last_name=None, phone=None,
                        email=None, lat="0.03127", long="110.95714",
                        **{"attribute[anonim]": "true"})
    await verified(db, anon)
    [req] = (await client.get(f"{V2}/requests/{anon}.json")).json()
    assert req["service_request_id"] == anon and "first_name" not in req
    # ~110 m: three decimals; no street address (desa and kecamatan stay)
    assert (req["lat"], req["long"]) == (0.031, 110.957)
    assert req["address"] == "Sungai Ayak, Belitang Hilir, Kabupaten Sekadau"
    listed = (await client.get(f"{V2}/requests.json", params={"service_request_id": anon})).text
    assert "Jl. Merdeka" not in listed and "0.03127" not in listed

    # The admin koordinator may make the location public (reclassify location_public).
    await db.execute("UPDATE complaints SET location_public = true WHERE tracking_id = $1", anon)
    [req] = (await client.get(f"{V2}/requests/{anon}.json")).json()
    assert (req["lat"], req["long"]) == (0.03127, 110.95714)
    assert req["address"].startswith("Jl. Merdeka depan SDN 3, ")


async def test_only_verified_and_not_archived_complaints_are_public(intake, keys, db):
    _, client = intake
    fresh = await submit(client, keys["portal"])          # DITERIMA: not verified yet
    deferred = await submit(client, keys["portal"])
    archived = await submit(client, keys["portal"])
    shown = await submit(client, keys["portal"])
    await db.execute("UPDATE complaints SET status = 'DITUNDA' WHERE tracking_id = $1", deferred)
    await db.execute("UPDATE complaints SET status = 'DIARSIPKAN' WHERE tracking_id = $1", archived)
    await db.execute("UPDATE complaints SET status = 'TERDISPOSISI' WHERE tracking_id = $1", shown)
    for hidden in (fresh, deferred, archived):
        assert_spec_error(await client.get(f"{V2}/requests/{hidden}.json"), 404, "service_request_id")
    listed = {r["service_request_id"] for r in (await client.get(f"{V2}/requests.json")).json()}
    assert shown in listed and not listed & {fresh, deferred, archived}
    ids = ",".join((fresh, deferred, archived, shown))
    by_id = (await client.get(f"{V2}/requests.json", params={"service_request_id": ids})).json()
    assert [r["service_request_id"] for r in by_id] == [shown]


async def test_filters_status_service_code_dates_and_ids(intake, keys, db):
    _, client = intake
    now = datetime.now(UTC)
    old_at = (now - timedelta(days=150)).replace(microsecond=0)
    old = await submit(client, keys["portal"], service_code="bencana",
                       description="Banjir merendam rumah warga di tepi Sungai Sekadau.",
                       **{"attribute[received_at]": old_at.isoformat()})
    later = await submit(client, keys["portal"], service_code="bencana",
                         description="Longsor menutup jalan menuju desa setelah hujan deras.",
                         **{"attribute[received_at]": (old_at + timedelta(days=40)).isoformat()})
    fresh_closed = await submit(client, keys["portal"], service_code="pendidikan",
                                description="Atap ruang kelas sekolah dasar bocor saat hujan turun.")
    fresh_open = await submit(client, keys["portal"], service_code="pendidikan",
                              description="Guru honorer belum menerima honor selama tiga bulan.")
    await verified(db, old, later, fresh_open)
    await db.execute("UPDATE complaints SET status = 'SELESAI', updated_at = now()"
                     " WHERE tracking_id = $1", fresh_closed)
    mine = {old, later, fresh_closed, fresh_open}

    async def ids(**params) -> set[str]:
        r = await client.get(f"{V2}/requests.json", params=params)
        assert r.status_code == 200, r.text
        return {x["service_request_id"] for x in r.json()} & mine

    assert await ids() == {fresh_closed, fresh_open}  # default: the most recent 90 days
    assert await ids(status="closed") == {fresh_closed}
    assert await ids(status="open") == {fresh_open}
    assert await ids(status="open,closed", service_code="bencana") == set()
    window = {"start_date": (old_at - timedelta(days=1)).isoformat(),
              "end_date": (old_at + timedelta(days=1)).isoformat()}
    assert await ids(**window) == {old}
    assert await ids(**window, service_code="pendidikan") == set()
    assert await ids(start_date=(old_at - timedelta(days=1)).isoformat()) == {old, later}
    assert await ids(service_request_id=f"{old},{fresh_closed}", status="open") == {old, fresh_closed}
    [closed] = (await client.get(f"{V2}/requests/{fresh_closed}.json")).json()
    assert closed["status"] == "closed"


async def test_errors_use_the_spec_shape(intake, keys):
    _, client = intake
    url = f"{V2}/requests.json"
    assert_spec_error(await client.post(url, data=form(None)), 403, "api_key")
    assert_spec_error(await client.post(url, data=form("sp4n_deadbeef_nope")), 403, "api_key")
    if keys["opd"]:
        assert_spec_error(await client.post(url, data=form(keys["opd"])), 403, "api_key")
    bad = await client.post(url, data=form(keys["portal"], long=None, description="pendek",
                                           phone=None, email=None,
                                           **{"attribute[classification]": "keluhan"}))
    body = assert_spec_error(bad, 400, "long", "description", "first_name",
                             "attribute[classification]")
    assert all(e["code"] == 400 for e in body)
    assert_spec_error(await client.post(url, data=form(keys["portal"], service_code="graffiti")),
                      404, "service_code")
    assert_spec_error(await client.post(url, data=form(keys["portal"], service_code=None)),
                      400, "service_code")
    as_json = await client.post(url, json=form(keys["portal"]))
    assert_spec_error(as_json, 400, "Content-Type")
    assert_spec_error(await client.get(f"{V2}/requests/SKD-000000-NOPE00.json"), 404,
                      "service_request_id")
    assert_spec_error(await client.get(url, params={"start_date": "2026-01-01T00:00:00Z",
                                                    "end_date": "2026-06-01T00:00:00Z"}),
                      400, "end_date")
    assert_spec_error(await client.get(url, params={"status": "pending"}), 400, "status")
    assert_spec_error(await client.get(url, params={"api_key": "sp4n_deadbeef_nope"}), 403, "api_key")
    assert_spec_error(await client.get(f"{V2}/services.csv"), 400, "format")
    assert_spec_error(await client.get(f"{V2}/tokens/123.json"), 404, "path")


async def test_submissions_are_counted_by_source(intake, keys):
    _, client = intake
    await submit(client, keys["unbound"], **{"attribute[classification]": "aspirasi"})
    metrics = (await client.get("/metrics")).text
    assert 'sp4n_complaints_received_total{classification="aspirasi",source="open311"}' in metrics
