"""The complaint lifecycle on intake, in process against real PostgreSQL and RabbitMQ: every
action's event in the outbox, 409 for every forbidden transition, 403 outside a key's scope,
privacy of the reporter, the events intake consumes (routing, duplicates, reply window)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.intake.apikeys import create_api_key
from services.intake.lifecycle import ACTIONS, TRANSITIONS, State, allowed_actions
from shared.broker import publish_event
from shared.events import (
    ComplaintDuplicateSuspected,
    ComplaintRouted,
    ComplaintRoutingSuggested,
    SlaReplyWindowElapsed,
    make_event,
)
from tests.e2e.system import ROOT, settings_env

pytestmark = pytest.mark.integration
S = State
NAME, PHONE, EMAIL, NIK = "Budi Santoso", "+6281234567890", "budi@example.id", "6109011234567890"


@pytest.fixture(scope="module")
async def keys(settings, intake):
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        out = {}
        for name, role, source, opd in (
                ("portal", "portal", "portal-sekadau", None), ("other_portal", "portal", "wa-bot", None),
                ("admin", "admin_koordinator", None, None), ("dinkes", "opd", None, "dinkes"),
                ("dpupr", "opd", None, "dpupr"), ("disdikbud", "opd:disdikbud", None, None)):
            _, out[name] = await create_api_key(conn, f"lc-{name}", role, source, opd)
    finally:
        await conn.close()
    return {k: {"Authorization": f"Bearer {v}"} for k, v in out.items()}


def body(**over):
    b = {
        "source": "portal-sekadau", "external_id": f"lc-{uuid.uuid4().hex[:10]}",
        "received_at": (datetime.now(UTC) - timedelta(days=3)).isoformat(),
        "classification": "pengaduan", "category": "kesehatan",
        "title": "Puskesmas tutup pada jam layanan",
        "description": "Puskesmas tidak buka pukul 08.00 sesuai jadwal; warga menunggu lama.",
        "location": {"kecamatan": "Nanga Taman", "desa": "Nanga Taman"},
        "reporter": {"name": NAME, "phone": PHONE, "email": EMAIL, "nik": NIK},
    }
    b.update(over)
    return b


# A valid body for every action (validity is not what the state tests are about).
BODIES = {
    "verify": {}, "defer": {"reason": "Mohon lampirkan foto"}, "resume": {},
    "archive": {"reason": "terlalu_umum"}, "dispose": {"opd_code": "dinkes", "opd_name": "Dinas Kesehatan"},
    "forward": {"instansi": "Kementerian Kesehatan"}, "close": {}, "reopen": {"reason": "Belum beres"},
    "respond": {"body": "Puskesmas sudah ditegur dan jadwal diperbaiki."},
    "return": {"reason": "Bukan kewenangan dinas ini"}, "reply": {"body": "Masih tutup pagi ini."},
    "rate": {"rating": 4},
    "reclassify": {"berkadar_pengawasan": True, "reason": "Perlu pemeriksaan lapangan"},
    "withdraw": {"reason": "Salah disposisi"},
}
ROLE_KEY = {"admin_koordinator": "admin", "opd": "dinkes", "portal": "portal"}


async def submit(client, keys, **over) -> dict:
    r = await client.post("/v1/complaints", json=body(**over), headers=keys["portal"])
    assert r.status_code == 202, r.text
    return r.json()


async def act(client, keys, who, cid, action, expect=200, **payload):
    data = payload or BODIES[action]
    r = await client.post(f"/v1/complaints/{cid}/{action}", json=data, headers=keys[who])
    assert r.status_code == expect, (action, who, r.text)
    return r.json()


async def events_of(db, cid, name=None) -> list[dict]:
    rows = await db.fetch(
        "SELECT routing_key, payload FROM outbox WHERE payload->>'subject' = $1 ORDER BY id", str(cid))
    return [r["payload"] for r in rows if name is None or r["routing_key"] == name]


async def reach(client, keys, state: State, **over) -> str:
    """A new complaint driven to ``state`` (disposed to dinkes where an OPD is involved)."""
    cid = (await submit(client, keys, **over))["complaint_id"]
    paths = {
        S.DITERIMA: [], S.TERVERIFIKASI: [("admin", "verify")], S.DITUNDA: [("admin", "defer")],
        S.DIARSIPKAN: [("admin", "archive")], S.DILIMPAHKAN: [("admin", "forward")],
        S.TERDISPOSISI: [("admin", "dispose")],
        S.DIKEMBALIKAN: [("admin", "dispose"), ("dinkes", "return")],
        S.DITINDAKLANJUTI: [("admin", "dispose"), ("dinkes", "respond")],
        S.DITANGGAPI_PELAPOR: [("admin", "dispose"), ("dinkes", "respond"), ("portal", "reply")],
        S.SELESAI: [("admin", "dispose"), ("dinkes", "respond"), ("admin", "close")],
    }
    for who, action in paths[state]:
        await act(client, keys, who, cid, action)
    return cid


async def test_every_action_emits_its_event_with_the_right_data(intake, keys, db):
    _, client = intake
    accepted = await submit(client, keys)
    cid, tid = accepted["complaint_id"], accepted["tracking_id"]

    r = await act(client, keys, "admin", tid, "verify", title="Puskesmas Nanga Taman tutup pagi")
    assert r["status"] == "TERVERIFIKASI" and r["previous_status"] == "DITERIMA"
    assert r["allowed_actions"] == ["defer", "archive", "dispose", "forward", "reclassify"]
    r = await act(client, keys, "admin", cid, "defer")
    assert r["status"] == "DITUNDA" and r["allowed_actions"] == ["verify", "resume", "archive",
                                                                  "reclassify"]
    r = await act(client, keys, "admin", cid, "resume")
    assert r["status"] == "TERVERIFIKASI"  # back where the deferral interrupted it
    r = await act(client, keys, "admin", cid, "dispose")
    assert r["status"] == "TERDISPOSISI" and r["hop"] == 1 and r["opd_code"] == "dinkes"
    r = await act(client, keys, "dinkes", cid, "respond", body="Sudah ditindaklanjuti.",
                  attachments=["https://files.example.id/bukti.jpg"])
    assert r["status"] == "DITINDAKLANJUTI" and r["allowed_actions"] == []
    r = await act(client, keys, "portal", cid, "reply")
    assert r["status"] == "DITANGGAPI_PELAPOR" and r["allowed_actions"] == ["rate"]
    r = await act(client, keys, "dinkes", cid, "respond", body="Jadwal kini dipasang di pintu.")
    assert r["status"] == "DITINDAKLANJUTI"
    r = await act(client, keys, "portal", cid, "rate", rating=4)
    assert r["status"] == "DITINDAKLANJUTI"
    r = await act(client, keys, "admin", cid, "close")
    assert r["status"] == "SELESAI" and r["allowed_actions"] == ["reopen"]
    closed_event_id = r["event_id"]
    r = await act(client, keys, "portal", cid, "reopen")
    assert r["status"] == "TERDISPOSISI" and r["hop"] == 1 and r["opd_code"] == "dinkes"

    names = [e["type"].removeprefix("id.go.sp4n.").removesuffix(".v1") for e in await events_of(db, cid)]
    assert names == ["complaint.submitted", "complaint.verified", "complaint.deferred",
                     "complaint.resumed", "complaint.routed", "complaint.responded",
                     "complaint.reporter_replied", "complaint.responded", "complaint.rated",
                     "complaint.closed", "complaint.reopened"]
    ev = {}
    for e in await events_of(db, cid):
        assert e["source"] in ("sp4n/intake",) and e["subject"] == cid
        ev.setdefault(e["type"].removeprefix("id.go.sp4n.").removesuffix(".v1"), []).append(e["data"])
    assert ev["complaint.verified"][0]["title_edited"] is True
    assert ev["complaint.resumed"][0]["deferred_at"] == ev["complaint.deferred"][0]["deferred_at"]
    routed = ev["complaint.routed"][0]
    assert (routed["opd_code"], routed["opd_name"], routed["hop"], routed["routed_by"]) == (
        "dinkes", "Dinas Kesehatan", 1, "admin")
    assert [(d["response_no"], d["hop"], d["opd_code"]) for d in ev["complaint.responded"]] == [
        (1, 1, "dinkes"), (2, 1, "dinkes")]
    assert ev["complaint.reporter_replied"][0]["opd_code"] == "dinkes"
    assert ev["complaint.rated"][0]["rating"] == 4
    assert ev["complaint.closed"][0]["closed_by"] == "admin_koordinator"
    assert ev["complaint.reopened"][0]["closed_event_id"] == closed_event_id
    assert (ev["complaint.reopened"][0]["opd_code"], ev["complaint.reopened"][0]["hop"]) == ("dinkes", 1)
    # No citizen text and no identity in any event.
    raw = json.dumps(await events_of(db, cid))
    for private in (NAME, PHONE.lstrip("+"), EMAIL, NIK, "Sudah ditindaklanjuti", "Masih tutup"):
        assert private not in raw

    status = (await client.get(f"/v1/complaints/{tid}", headers=keys["admin"])).json()
    assert status["title"] == "Puskesmas Nanga Taman tutup pagi"
    assert status["original_title"] == "Puskesmas tutup pada jam layanan"
    assert status["rating"] == 4 and status["status"] == "TERDISPOSISI"
    assert [x["body"] for x in status["responses"]] == ["Sudah ditindaklanjuti.",
                                                        "Jadwal kini dipasang di pintu."]
    assert status["responses"][0]["attachments"] == ["https://files.example.id/bukti.jpg"]
    assert status["replies"][0]["body"] == "Masih tutup pagi ini."
    assert status["allowed_actions"] == ["reclassify", "withdraw"]  # with the OPD now
    summaries = [t["summary"] for t in status["timeline"]]
    assert any("dibuka kembali" in s for s in summaries)
    assert any("diselesaikan oleh admin koordinator" in s for s in summaries)
    opd_view = (await client.get(f"/v1/complaints/{cid}", headers=keys["dinkes"])).json()
    assert opd_view["allowed_actions"] == ["respond", "return"]
    # The responses table keeps the columns the Open311 facade reads.
    latest = await db.fetchrow("SELECT id, complaint_id, opd_code, hop, response_no, body, attachments,"
                               " created_at FROM responses WHERE complaint_id = $1"
                               " ORDER BY response_no DESC LIMIT 1", uuid.UUID(cid))
    assert latest["response_no"] == 2 and latest["body"] == "Jadwal kini dipasang di pintu."


async def test_defer_then_reporter_reply_resumes(intake, keys, db):
    _, client = intake
    cid = await reach(client, keys, S.DITUNDA)
    r = await act(client, keys, "portal", cid, "reply", body="Foto terlampir.",
                  attachments=["https://files.example.id/foto.jpg"])
    assert r["status"] == "DITERIMA"
    assert len(await events_of(db, cid, "complaint.resumed")) == 1
    assert await events_of(db, cid, "complaint.reporter_replied") == []
    # Verifying straight out of DITUNDA also ends the pause (sla must hear it).
    cid = await reach(client, keys, S.DITUNDA)
    assert (await act(client, keys, "admin", cid, "verify"))["status"] == "TERVERIFIKASI"
    assert len(await events_of(db, cid, "complaint.resumed")) == 1


async def test_return_redispose_up_to_the_hop_cap_then_409(intake, keys, db, settings):
    _, client = intake
    cid = (await submit(client, keys))["complaint_id"]
    opds = ["dinkes", "dpupr", "disdikbud"]
    assert settings.hop_cap == 3
    for hop, opd in enumerate(opds, start=1):
        r = await act(client, keys, "admin", cid, "dispose", opd_code=opd)
        assert r["hop"] == hop and r["opd_code"] == opd
        r = await act(client, keys, opd, cid, "return", reason="Bukan wewenang kami")
        assert r["status"] == "DIKEMBALIKAN"
    returned = [e["data"] for e in await events_of(db, cid, "complaint.returned")]
    assert [(d["opd_code"], d["hop"]) for d in returned] == [("dinkes", 1), ("dpupr", 2), ("disdikbud", 3)]
    r = await client.post(f"/v1/complaints/{cid}/dispose", json={"opd_code": "dinkes"},
                          headers=keys["admin"])
    assert r.status_code == 409
    err = r.json()
    assert err["type"] == "urn:sp4n:problem:hop_cap_reached" and err["current_state"] == "DIKEMBALIKAN"
    assert err["allowed_actions"] == ["archive", "forward", "reclassify"]
    assert "hanya dapat ditangani oleh admin koordinator" in err["detail"]
    status = (await client.get(f"/v1/complaints/{cid}", headers=keys["admin"])).json()
    assert status["allowed_actions"] == ["archive", "forward", "reclassify"] and status["hop"] == 3
    assert status["return_reason"] == "Bukan wewenang kami"
    r = await act(client, keys, "admin", cid, "forward", instansi="Balai Wilayah Sungai Kalimantan I")
    assert r["status"] == "DILIMPAHKAN"
    fwd = (await events_of(db, cid, "complaint.forwarded"))[0]["data"]
    assert fwd["instansi"] == "Balai Wilayah Sungai Kalimantan I"


async def test_archive_as_duplicate_names_an_existing_complaint(intake, keys, db):
    _, client = intake
    original = await submit(client, keys)
    cid = (await submit(client, keys))["complaint_id"]
    r = await client.post(f"/v1/complaints/{cid}/archive", json={"reason": "duplikat"}, headers=keys["admin"])
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["duplicate_of"]
    r = await client.post(f"/v1/complaints/{cid}/archive", headers=keys["admin"],
                          json={"reason": "duplikat", "duplicate_of": "SKD-000000-XXXXXX"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "duplicate_of"
    r = await client.post(f"/v1/complaints/{cid}/archive", headers=keys["admin"],
                          json={"reason": "duplikat", "duplicate_of": cid})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "duplicate_of"
    assert (await client.get(f"/v1/complaints/{cid}", headers=keys["admin"])).json()["status"] == "DITERIMA"
    r = await act(client, keys, "admin", cid, "archive", reason="duplikat",
                  duplicate_of=original["tracking_id"].lower())
    assert r["status"] == "DIARSIPKAN" and r["allowed_actions"] == []
    data = (await events_of(db, cid, "complaint.archived"))[0]["data"]
    assert data == {"complaint_id": cid, "archived_at": data["archived_at"], "reason": "duplikat",
                    "duplicate_of": original["complaint_id"]}
    status = (await client.get(f"/v1/complaints/{cid}", headers=keys["admin"])).json()
    assert status["duplicate_of"] == original["complaint_id"] and status["archive_reason"] == "duplikat"
    assert any(original["tracking_id"] in t["summary"] for t in status["timeline"])


@pytest.mark.parametrize("state", list(State))
async def test_every_forbidden_transition_is_409_with_state_and_allowed_actions(intake, keys, db, state):
    _, client = intake
    cid = await reach(client, keys, state)
    before = len(await events_of(db, cid))
    checked = 0
    for (action, role), table in TRANSITIONS.items():
        if role == "system" or state in table:
            continue
        r = await client.post(f"/v1/complaints/{cid}/{action}", json=BODIES[action],
                              headers=keys[ROLE_KEY[role]])
        if role == "opd" and state not in (S.TERDISPOSISI, S.DITINDAKLANJUTI,
                                           S.DITANGGAPI_PELAPOR, S.SELESAI):
            # Not (or no longer) disposed to the OPD: outside its scope.
            assert r.status_code == 403, (state, action, r.text)
            continue
        assert r.status_code == 409, (state, action, role, r.text)
        err = r.json()
        assert err["type"] == "urn:sp4n:problem:invalid_transition" and err["current_state"] == state.value
        # hop is 0 or 1 here, far from the cap.
        assert err["allowed_actions"] == allowed_actions(state, role)
        assert state.value in err["detail"]
        checked += 1
    assert checked > 0
    # Nothing changed, nothing emitted.
    assert len(await events_of(db, cid)) == before
    assert (await client.get(f"/v1/complaints/{cid}", headers=keys["admin"])).json()["status"] == state.value


async def test_out_of_scope_keys_are_403(intake, keys, db):
    _, client = intake
    cid = await reach(client, keys, S.TERDISPOSISI)
    forbidden = [
        ("dpupr", "respond"),  # another OPD
        ("dpupr", "return"),
        ("portal", "dispose"),  # a portal doing admin actions
        ("portal", "verify"),
        ("portal", "close"),
        ("admin", "respond"),  # the admin koordinator does not write the OPD's response
        ("dinkes", "verify"),  # an OPD doing admin actions
        ("dinkes", "rate"),
        ("other_portal", "reply"),  # another portal's complaint
    ]
    for who, action in forbidden:
        r = await client.post(f"/v1/complaints/{cid}/{action}", json=BODIES[action], headers=keys[who])
        assert r.status_code == 403, (who, action, r.text)
        assert r.json()["type"] == "urn:sp4n:problem:forbidden"
    # Reading: another OPD may not; another portal does not even learn it exists.
    assert (await client.get(f"/v1/complaints/{cid}", headers=keys["dpupr"])).status_code == 403
    assert (await client.get(f"/v1/complaints/{cid}", headers=keys["other_portal"])).status_code == 404
    # Once returned, the complaint is no longer the OPD's.
    await act(client, keys, "dinkes", cid, "return")
    r = await client.post(f"/v1/complaints/{cid}/respond", json=BODIES["respond"], headers=keys["dinkes"])
    assert r.status_code == 403
    assert (await client.get(f"/v1/complaints/{cid}", headers=keys["dinkes"])).status_code == 403
    # Another portal's reply on an answered complaint.
    cid2 = await reach(client, keys, S.DITINDAKLANJUTI)
    r = await client.post(f"/v1/complaints/{cid2}/reply", json=BODIES["reply"], headers=keys["other_portal"])
    assert r.status_code == 403
    assert len(await events_of(db, cid2, "complaint.reporter_replied")) == 0
    # Unknown complaint: 404; no key: 401.
    r = await client.post(f"/v1/complaints/{uuid.uuid4()}/verify", json={}, headers=keys["admin"])
    assert r.status_code == 404 and r.json()["type"] == "urn:sp4n:problem:not_found"
    assert (await client.post(f"/v1/complaints/{cid}/verify", json={})).status_code == 401
    unknown = await client.post(f"/v1/complaints/{cid}/approve", json={}, headers=keys["admin"])
    assert unknown.status_code == 404


async def test_invalid_action_bodies_are_422_naming_fields(intake, keys):
    _, client = intake
    cid = await reach(client, keys, S.TERDISPOSISI)

    async def fields(who, action, payload):
        r = await client.post(f"/v1/complaints/{cid}/{action}", json=payload, headers=keys[who])
        assert r.status_code == 422, r.text
        return {e["field"] for e in r.json()["errors"]}

    assert await fields("dinkes", "respond", {"body": "x" * 4001}) == {"body"}
    not_a_url = {"body": "ok", "attachments": ["not a url"]}
    assert await fields("dinkes", "respond", not_a_url) == {"attachments.0"}
    assert await fields("dinkes", "respond", {}) == {"body"}
    assert await fields("dinkes", "return", {"reason": ""}) == {"reason"}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await fields("dinkes", "respond", {"body": "ok", "occurred_at": future}) == {"occurred_at"}
    naive = {"body": "ok", "occurred_at": "2026-01-01T10:00:00"}
    assert await fields("dinkes", "respond", naive) == {"occurred_at"}
    # Before the complaint's latest transition (the disposition a moment ago): only a key that
    # may date its actions (admin koordinator, importer) gets that far; an OPD is refused.
    earlier = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert await fields("admin", "withdraw", {"reason": "salah", "occurred_at": earlier}) == {"occurred_at"}
    r = await client.post(f"/v1/complaints/{cid}/respond", headers=keys["dinkes"],
                          json={"body": "ok", "occurred_at": earlier})
    assert r.status_code == 403 and r.json()["field"] == "occurred_at"
    assert await fields("admin", "dispose", {"opd_code": "Dinas Kesehatan!"}) == {"opd_code"}
    assert await fields("admin", "archive", {"reason": "bosan"}) == {"reason"}
    assert await fields("portal", "rate", {"rating": 6}) == {"rating"}
    assert await fields("portal", "rate", {"rating": 3, "stars": 3}) == {"stars"}


async def test_occurred_at_backdates_the_event(intake, keys, db):
    _, client = intake
    received = datetime.now(UTC) - timedelta(days=30)
    cid = (await submit(client, keys, received_at=received.isoformat()))["complaint_id"]
    t1, t2 = received + timedelta(days=2), received + timedelta(days=3)
    await act(client, keys, "admin", cid, "dispose", opd_code="dinkes", occurred_at=t1.isoformat())
    routed = (await events_of(db, cid, "complaint.routed"))[0]
    assert datetime.fromisoformat(routed["data"]["routed_at"]) == t1
    assert datetime.fromisoformat(routed["time"]) == t1
    # The OPD may not date its own response (it would be "tepat waktu" after a breach).
    r = await client.post(f"/v1/complaints/{cid}/respond", headers=keys["dinkes"],
                          json={"body": "Sudah.", "occurred_at": t2.isoformat()})
    assert r.status_code == 403 and r.json()["field"] == "occurred_at"
    assert await events_of(db, cid, "complaint.responded") == []
    before = datetime.now(UTC)
    await act(client, keys, "dinkes", cid, "respond", body="Sudah.")
    responded = (await events_of(db, cid, "complaint.responded"))[0]
    assert datetime.fromisoformat(responded["data"]["responded_at"]) >= before
    r = await client.post(f"/v1/complaints/{cid}/reply", headers=keys["portal"],
                          json={"body": "x", "occurred_at": t1.isoformat()})
    assert r.status_code == 403 and r.json()["field"] == "occurred_at"


async def test_reporter_identity_by_role(intake, keys, db):
    _, client = intake
    named = await reach(client, keys, S.TERDISPOSISI)
    anonim = await reach(client, keys, S.TERDISPOSISI, anonymous=True, reporter=None)
    anonim_with_contact = await reach(client, keys, S.TERDISPOSISI, anonymous=True,
                                      reporter={"name": NAME, "phone": PHONE})

    def get(cid, who):
        return client.get(f"/v1/complaints/{cid}", headers=keys[who])

    admin_view = (await get(named, "admin")).json()
    assert admin_view["reporter"] == {"name": NAME, "phone": PHONE, "email": EMAIL, "nik": NIK}
    opd_view = (await get(named, "dinkes")).json()
    assert opd_view["reporter"] == {"name": NAME, "phone": PHONE, "email": EMAIL, "nik": None}
    assert "reporter" not in (await get(named, "portal")).json()
    for cid in (anonim, anonim_with_contact):
        for who in ("dinkes", "admin", "portal"):
            r = await get(cid, who)
            assert r.status_code == 200
            assert "reporter" not in r.json() and NAME not in r.text and PHONE not in r.text
    listing = await client.get("/v1/complaints?limit=200", headers=keys["dinkes"])
    assert NAME not in listing.text and PHONE not in listing.text
    raw = json.dumps([await events_of(db, c) for c in (named, anonim, anonim_with_contact)])
    assert NAME not in raw and PHONE.lstrip("+") not in raw and NIK not in raw


async def test_listing_is_scoped_by_role(intake, keys):
    _, client = intake
    at_dinkes = await reach(client, keys, S.TERDISPOSISI)
    returned = await reach(client, keys, S.DIKEMBALIKAN)
    waiting = await reach(client, keys, S.DITERIMA)
    foreign = await submit(client, {"portal": keys["other_portal"]}, source="wa-bot")

    async def ids(who, query=""):
        r = await client.get(f"/v1/complaints?limit=200{query}", headers=keys[who])
        assert r.status_code == 200, r.text
        return {i["complaint_id"] for i in r.json()["items"]}, r.json()

    admin_all, page = await ids("admin")
    assert {at_dinkes, returned, waiting, foreign["complaint_id"]} <= admin_all
    assert page["total"] >= len(admin_all) and page["limit"] == 200
    dinkes, _ = await ids("dinkes")
    assert at_dinkes in dinkes and returned not in dinkes and waiting not in dinkes
    assert (await ids("dpupr"))[0].isdisjoint({at_dinkes, returned})
    portal, _ = await ids("portal")
    assert {at_dinkes, waiting} <= portal and foreign["complaint_id"] not in portal
    other, _ = await ids("other_portal")
    assert foreign["complaint_id"] in other and at_dinkes not in other
    returned_only, _ = await ids("admin", "&status=DIKEMBALIKAN")
    assert returned in returned_only and at_dinkes not in returned_only
    by_opd, _ = await ids("admin", "&opd=dinkes&status=TERDISPOSISI")
    assert at_dinkes in by_opd and waiting not in by_opd
    assert (await client.get("/v1/complaints?opd=dpupr", headers=keys["dinkes"])).status_code == 403
    r = await client.get("/v1/complaints?status=DIBUANG", headers=keys["admin"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status"
    r = await client.get("/v1/complaints?limit=0", headers=keys["admin"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit"
    first = (await client.get("/v1/complaints?limit=1&offset=0", headers=keys["admin"])).json()
    second = (await client.get("/v1/complaints?limit=1&offset=1", headers=keys["admin"])).json()
    assert len(first["items"]) == 1 and first["items"][0] != second["items"][0]


async def wait_for(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.1)):
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def test_reply_window_elapsed_closes_once_with_closed_by_system(intake, keys, db, settings):
    app, client = intake
    runtime = app.state.runtime
    cid = await reach(client, keys, S.DITINDAKLANJUTI)
    responded = (await events_of(db, cid, "complaint.responded"))[0]["data"]
    now = datetime.now(UTC)
    elapsed = make_event("sp4n/sla", SlaReplyWindowElapsed(
        complaint_id=uuid.UUID(cid), responded_at=datetime.fromisoformat(responded["responded_at"]),
        deadline=now, opd_code="dinkes", hop=1, calendar_version="holidays-x+ovr-0", policy_version=1))
    # Delivered twice (same id), and re-emitted under a new id: one close.
    again = make_event("sp4n/sla", SlaReplyWindowElapsed.model_validate(elapsed.data))
    for e in (elapsed, elapsed, again):
        await publish_event(runtime.broker, settings.namespace, e)

    async def settled():
        n = await db.fetchval("SELECT count(*) FROM timeline WHERE complaint_id = $1"
                              " AND event_type = 'sla.reply_window_elapsed'", uuid.UUID(cid))
        return n == 2
    await wait_for(settled)
    closed = await events_of(db, cid, "complaint.closed")
    assert len(closed) == 1
    assert closed[0]["data"]["closed_by"] == "system" and closed[0]["source"] == "sp4n/intake"
    assert (closed[0]["data"]["opd_code"], closed[0]["data"]["hop"]) == ("dinkes", 1)
    status = (await client.get(f"/v1/complaints/{cid}", headers=keys["portal"])).json()
    assert status["status"] == "SELESAI" and status["closed_by"] == "system"
    assert status["allowed_actions"] == ["reopen", "rate"]
    assert any("ditutup otomatis oleh sistem" in t["summary"] for t in status["timeline"])
    assert any("tidak ditutup" in t["summary"] for t in status["timeline"])


async def test_reply_window_after_a_reply_does_not_close(intake, keys, db, settings):
    app, client = intake
    cid = await reach(client, keys, S.DITINDAKLANJUTI)
    responded = (await events_of(db, cid, "complaint.responded"))[0]["data"]
    await act(client, keys, "portal", cid, "reply")
    await act(client, keys, "dinkes", cid, "respond", body="Tanggapan kedua.")
    # The window of the FIRST response elapses late: a newer response exists, no close.
    broker = app.state.runtime.broker
    await publish_event(broker, settings.namespace, make_event("sp4n/sla", SlaReplyWindowElapsed(
        complaint_id=uuid.UUID(cid), responded_at=datetime.fromisoformat(responded["responded_at"]),
        deadline=datetime.now(UTC), opd_code="dinkes", hop=1,
        calendar_version="holidays-x+ovr-0", policy_version=1)))

    async def noted():
        return await db.fetchval("SELECT count(*) FROM timeline WHERE complaint_id = $1"
                                 " AND event_type = 'sla.reply_window_elapsed'", uuid.UUID(cid))
    await wait_for(noted)
    assert await events_of(db, cid, "complaint.closed") == []
    status = (await client.get(f"/v1/complaints/{cid}", headers=keys["admin"])).json()["status"]
    assert status == "DITINDAKLANJUTI"


async def test_routing_events_respect_the_admins_decisions(intake, keys, db, settings):
    app, client = intake
    broker = app.state.runtime.broker
    now = datetime.now(UTC)
    disposed = await reach(client, keys, S.TERDISPOSISI)
    waiting = await reach(client, keys, S.DITERIMA)
    deferred = await reach(client, keys, S.DITUNDA)
    earlier = await submit(client, keys)
    for cid in (disposed, waiting, deferred):
        await publish_event(broker, settings.namespace, make_event("sp4n/routing", ComplaintRouted(
            complaint_id=uuid.UUID(cid), opd_code="dpupr", opd_name="Dinas PUPR", hop=1, rule_id=7,
            rule_version=1, routed_at=now, routed_by="rule")))
    await publish_event(broker, settings.namespace, make_event("sp4n/routing", ComplaintRoutingSuggested(
        complaint_id=uuid.UUID(deferred), opd_code="dinkes", opd_name="Dinas Kesehatan", rule_id=3,
        rule_version=2, suggested_at=now)))
    await publish_event(broker, settings.namespace, make_event("sp4n/routing", ComplaintDuplicateSuspected(
        complaint_id=uuid.UUID(waiting), candidate_ids=[uuid.UUID(earlier["complaint_id"])],
        category="kesehatan", desa="Nanga Taman", window_days=7)))

    async def all_noted():
        n = await db.fetchval("SELECT count(*) FROM timeline WHERE complaint_id = ANY($1::uuid[])"
                              " AND event_type IN ('complaint.routed', 'complaint.routing_suggested',"
                              " 'complaint.duplicate_suspected') AND event_id NOT IN"
                              " (SELECT event_id FROM outbox)",
                              [uuid.UUID(c) for c in (disposed, waiting, deferred)])
        return n == 5
    await wait_for(all_noted)

    d = (await client.get(f"/v1/complaints/{disposed}", headers=keys["admin"])).json()
    assert d["opd_code"] == "dinkes" and d["status"] == "TERDISPOSISI"  # the admin's choice stands
    assert any("diabaikan" in t["summary"] for t in d["timeline"])
    w = (await client.get(f"/v1/complaints/{waiting}", headers=keys["admin"])).json()
    assert w["status"] == "TERDISPOSISI" and w["opd_code"] == "dpupr" and w["hop"] == 1
    assert w["duplicate_candidates"] == [{"complaint_id": earlier["complaint_id"],
                                          "tracking_id": earlier["tracking_id"], "status": "DITERIMA"}]
    x = (await client.get(f"/v1/complaints/{deferred}", headers=keys["admin"])).json()
    assert x["status"] == "DITUNDA" and x["opd_code"] is None
    assert x["suggestion"]["opd_code"] == "dinkes" and x["suggestion"]["rule_id"] == 3
    assert x["needs_triage"] is True
    # The portal sees neither the suggestion nor the candidates.
    p = (await client.get(f"/v1/complaints/{deferred}", headers=keys["portal"])).json()
    assert p["suggestion"] is None
    p = (await client.get(f"/v1/complaints/{waiting}", headers=keys["portal"])).json()
    assert p["duplicate_candidates"] == []
    # Accepting the suggestion takes its OPD name.
    await act(client, keys, "admin", deferred, "resume")
    r = await act(client, keys, "admin", deferred, "dispose", opd_code="dinkes")
    assert r["opd_code"] == "dinkes"
    routed = (await events_of(db, deferred, "complaint.routed"))[0]["data"]
    assert routed["opd_name"] == "Dinas Kesehatan" and routed["routed_by"] == "admin"


async def test_concurrent_actions_serialise_on_the_complaint(intake, keys, db):
    _, client = intake
    cid = await reach(client, keys, S.TERVERIFIKASI)
    answers = await asyncio.gather(*(client.post(
        f"/v1/complaints/{cid}/dispose", json={"opd_code": opd}, headers=keys["admin"])
        for opd in ("dinkes", "dpupr", "disdikbud", "dinkes")))
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    assert len(await events_of(db, cid, "complaint.routed")) == 1


async def run_cli(settings, *args) -> tuple[int, str, str]:
    env = settings_env(settings)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_cli_creates_lists_and_revokes_opd_keys(intake, settings):
    _, client = intake
    code, out, err = await run_cli(settings, "create-api-key", "--name", "pp-dinkes",
                                   "--role", "opd", "--opd-code", "dinkes")
    assert code == 0, err
    plaintext = out.strip()
    assert "role=opd opd=dinkes" in err
    r = await client.get("/v1/complaints", headers={"Authorization": f"Bearer {plaintext}"})
    assert r.status_code == 200
    code, out, _ = await run_cli(settings, "list-api-keys")
    line = next(ln for ln in out.splitlines() if "pp-dinkes" in ln)
    assert "opd" in line and "opd=dinkes" in line and "active" in line
    key_id = line.split()[0].lstrip("#")
    code, _, err = await run_cli(settings, "create-api-key", "--name", "x", "--role", "opd")
    assert code == 2 and "--opd-code" in err
    code, _, err = await run_cli(settings, "create-api-key", "--name", "x", "--role", "portal",
                                 "--opd-code", "dinkes")
    assert code == 2
    code, _, _ = await run_cli(settings, "revoke-api-key", key_id)
    assert code == 0
    code, out, _ = await run_cli(settings, "list-api-keys")
    assert "revoked" in next(ln for ln in out.splitlines() if "pp-dinkes" in ln)


def test_actions_cover_the_table():
    assert {a for a, _ in TRANSITIONS} == set(ACTIONS) and set(BODIES) == set(ACTIONS)


async def test_dispose_to_an_unknown_opd_is_422_naming_opd_code(intake, keys):
    _, client = intake
    cid = (await submit(client, keys))["complaint_id"]
    r = await client.post(f"/v1/complaints/{cid}/dispose", json={"opd_code": "dinkess"},
                          headers=keys["admin"])
    assert r.status_code == 422
    body = r.json()
    assert "opd_code" in json.dumps(body) and "dinkess" in json.dumps(body)
    r = await client.post(f"/v1/complaints/{cid}/dispose", json={"opd_code": "inspektorat"},
                          headers=keys["admin"])
    assert r.status_code == 200 and r.json()["opd_code"] == "inspektorat"
    detail = (await client.get(f"/v1/complaints/{cid}", headers=keys["admin"])).json()
    assert detail["opd_name"] == "Inspektorat Daerah Kabupaten Sekadau"
