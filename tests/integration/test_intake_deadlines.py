"""intake's side of the deadline engine (issue 10) in process against real PostgreSQL and
RabbitMQ: progress updates, corrections (verify, reclassify) and their effect on every read
path, withdraw and re-dispose, the system's archive when sla says a deferral expired, and
what sla's recomputed deadlines and escalations do to the status answer."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.intake.apikeys import create_api_key
from shared.broker import publish_event
from shared.events import (
    SlaBreached,
    SlaClockStarted,
    SlaClockStopped,
    SlaDeadlineChanged,
    SlaDeferralExpired,
    SlaEscalated,
    make_event,
)

pytestmark = pytest.mark.integration
NAME, PHONE = "Budi Santoso", "+6281234567890"
VERSIONS = {"calendar_version": "holidays-0.109+ovr-0", "policy_version": 1}


@pytest.fixture(scope="module")
async def keys(settings, intake):
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        out = {}
        for name, role, source, opd in (
                ("portal", "portal", "portal-sekadau", None), ("admin", "admin_koordinator", None, None),
                ("dinkes", "opd", None, "dinkes"), ("dpupr", "opd", None, "dpupr")):
            _, out[name] = await create_api_key(conn, f"dl-{name}", role, source, opd)
    finally:
        await conn.close()
    return {k: {"Authorization": f"Bearer {v}"} for k, v in out.items()}


async def submit(client, keys, **over) -> dict:
    body = {
        "source": "portal-sekadau", "external_id": f"dl-{uuid.uuid4().hex[:10]}",
        "received_at": (datetime.now(UTC) - timedelta(days=3)).isoformat(),
        "classification": "pengaduan", "category": "kesehatan",
        "title": "Puskesmas tutup pada jam layanan",
        "description": "Puskesmas tidak buka pukul 08.00 sesuai jadwal; warga menunggu lama.",
        "location": {"kecamatan": "Nanga Taman", "desa": "Nanga Taman"},
        "reporter": {"name": NAME, "phone": PHONE}, **over}
    r = await client.post("/v1/complaints", json=body, headers=keys["portal"])
    assert r.status_code == 202, r.text
    return r.json()


async def act(client, keys, who, cid, action, expect=200, **payload) -> dict:
    r = await client.post(f"/v1/complaints/{cid}/{action}", json=payload, headers=keys[who])
    assert r.status_code == expect, (action, who, r.text)
    return r.json()


async def status(client, keys, cid, who="admin") -> dict:
    r = await client.get(f"/v1/complaints/{cid}", headers=keys[who])
    assert r.status_code == 200, r.text
    return r.json()


async def events_of(db, cid, name=None) -> list[dict]:
    rows = await db.fetch(
        "SELECT routing_key, payload FROM outbox WHERE payload->>'subject' = $1 ORDER BY id", str(cid))
    return [r["payload"] for r in rows if name is None or r["routing_key"] == name]


async def wait_for(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.1)):
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def publish_and_wait(app, settings, db, cid: str, *events) -> None:
    """Publish sla's events to intake's queue and wait until intake consumed every one."""
    for e in events:
        await publish_event(app.state.runtime.broker, settings.namespace, e)
    ids = list({e.id for e in events})

    async def consumed():
        return await db.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::text[])",
                                 ids) == len(ids)
    await wait_for(consumed)


async def test_progress_updates_then_the_final_tindak_lanjut(intake, keys, db):
    _, client = intake
    cid = (await submit(client, keys))["complaint_id"]
    await act(client, keys, "admin", cid, "dispose", opd_code="dinkes")
    r = await act(client, keys, "dinkes", cid, "respond", body="Tim dijadwalkan turun Senin.", final=False)
    assert r["status"] == "TERDISPOSISI" and r["allowed_actions"] == ["respond", "return"]
    r = await act(client, keys, "dinkes", cid, "respond", body="Sudah dibuka sesuai jadwal.")
    assert r["status"] == "DITINDAKLANJUTI"
    responded = [e["data"] for e in await events_of(db, cid, "complaint.responded")]
    assert [(d["response_no"], d["final"]) for d in responded] == [(1, False), (2, True)]
    s = await status(client, keys, cid)
    assert [(x["response_no"], x["final"]) for x in s["responses"]] == [(1, False), (2, True)]
    texts = [t["summary"] for t in s["timeline"]]
    assert any(t.startswith("Perkembangan tindak lanjut dari Dinas Kesehatan") for t in texts)
    assert any(t.startswith("Tindak lanjut akhir dari Dinas Kesehatan") for t in texts)
    row = await db.fetchrow("SELECT last_responded_at FROM complaints WHERE id = $1", uuid.UUID(cid))
    assert row["last_responded_at"] == datetime.fromisoformat(responded[1]["responded_at"])
    r = await client.post(f"/v1/complaints/{cid}/respond", headers=keys["dinkes"],
                          json={"body": "Tambahan", "final": False})
    assert r.status_code == 409 and r.json()["current_state"] == "DITINDAKLANJUTI"


async def test_reclassify_updates_columns_and_every_read_path_at_once(intake, keys, db):
    _, client = intake
    accepted = await submit(client, keys)
    cid, tid = accepted["complaint_id"], accepted["tracking_id"]
    await act(client, keys, "admin", cid, "dispose", opd_code="dinkes")
    assert (await status(client, keys, cid, "dinkes"))["reporter"]["name"] == NAME
    assert (await client.get(f"/open311/v2/requests/{tid}.json")).status_code == 200

    r = await act(client, keys, "admin", cid, "reclassify", berkadar_pengawasan=True,
                  anonymous=True, confidential=True, reason="Perlu pemeriksaan; pelapor minta dirahasiakan")
    assert r["status"] == "TERDISPOSISI"
    [event] = await events_of(db, cid, "complaint.reclassified")
    assert event["data"]["changed_fields"] == ["berkadar_pengawasan", "anonymous", "confidential"]
    assert event["data"]["changed_by"] == "dl-admin" and event["source"] == "sp4n/intake"
    row = await db.fetchrow("SELECT berkadar_pengawasan, anonymous, confidential FROM complaints"
                            " WHERE id = $1", uuid.UUID(cid))
    assert tuple(row) == (True, True, True)
    # Anonim: the OPD no longer sees the reporter; rahasia: Open311 no longer shows it.
    opd_view = await client.get(f"/v1/complaints/{cid}", headers=keys["dinkes"])
    assert "reporter" not in opd_view.json() and NAME not in opd_view.text
    assert (await client.get(f"/open311/v2/requests/{tid}.json")).status_code == 404
    s = await status(client, keys, cid)
    assert (s["berkadar_pengawasan"], s["anonymous"], s["confidential"]) == (True, True, True)
    assert any(t["summary"].startswith("Data laporan dikoreksi oleh admin koordinator: "
                                       "berkadar pengawasan tidak → ya") for t in s["timeline"])

    # Nothing to change: 422; an impossible combination: 422 naming the field.
    r = await client.post(f"/v1/complaints/{cid}/reclassify", headers=keys["admin"],
                          json={"berkadar_pengawasan": True, "reason": "cek ulang"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "(body)"
    r = await client.post(f"/v1/complaints/{cid}/reclassify", headers=keys["admin"],
                          json={"classification": "aspirasi", "berkadar_pengawasan": True,
                                "reason": "cek ulang"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "berkadar_pengawasan"
    r = await client.post(f"/v1/complaints/{cid}/reclassify", headers=keys["admin"],
                          json={"anonymous": False})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = await client.post(f"/v1/complaints/{cid}/reclassify", headers=keys["dinkes"],
                          json={"anonymous": False, "reason": "kami perlu kontak"})
    assert r.status_code == 403
    assert len(await events_of(db, cid, "complaint.reclassified")) == 1

    await act(client, keys, "dinkes", cid, "respond", body="Sudah ditangani.")
    await act(client, keys, "admin", cid, "close")
    r = await client.post(f"/v1/complaints/{cid}/reclassify", headers=keys["admin"],
                          json={"anonymous": False, "reason": "koreksi"})
    assert r.status_code == 409 and r.json()["current_state"] == "SELESAI"


async def test_verify_with_corrections_and_the_submitted_berkadar_pengawasan(intake, keys, db):
    _, client = intake
    cid = (await submit(client, keys, classification="aspirasi"))["complaint_id"]
    r = await client.post(f"/v1/complaints/{cid}/verify", headers=keys["admin"],
                          json={"classification": "pengaduan"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    await act(client, keys, "admin", cid, "verify", classification="pengaduan",
              berkadar_pengawasan=True, reason="Ini pengaduan yang perlu pemeriksaan")
    names = [e["type"].removeprefix("id.go.sp4n.").removesuffix(".v1") for e in await events_of(db, cid)]
    assert names == ["complaint.submitted", "complaint.verified", "complaint.reclassified"]
    data = (await events_of(db, cid, "complaint.reclassified"))[0]["data"]
    assert (data["classification"], data["berkadar_pengawasan"]) == ("pengaduan", True)
    assert data["changed_fields"] == ["classification", "berkadar_pengawasan"]
    # Berkadar pengawasan as submitted is a column too (sla and the status read it).
    sent = (await submit(client, keys, berkadar_pengawasan=True))["complaint_id"]
    assert (await status(client, keys, sent))["berkadar_pengawasan"] is True


async def test_withdraw_and_redispose_the_next_hop(intake, keys, db):
    _, client = intake
    cid = (await submit(client, keys))["complaint_id"]
    await act(client, keys, "admin", cid, "dispose", opd_code="dinkes")
    await act(client, keys, "dinkes", cid, "respond", body="Sedang kami pelajari.", final=False)
    r = await act(client, keys, "admin", cid, "withdraw", reason="Salah disposisi: urusan PUPR")
    assert (r["status"], r["previous_status"], r["hop"]) == ("TERVERIFIKASI", "TERDISPOSISI", 1)
    assert "dispose" in r["allowed_actions"] and "withdraw" not in r["allowed_actions"]
    [withdrawn] = await events_of(db, cid, "complaint.withdrawn")
    assert {k: withdrawn["data"][k] for k in ("opd_code", "hop")} == {"opd_code": "dinkes", "hop": 1}
    # The OPD has lost it; a second withdrawal is a state error.
    assert (await client.get(f"/v1/complaints/{cid}", headers=keys["dinkes"])).status_code == 403
    r = await client.post(f"/v1/complaints/{cid}/withdraw", json={"reason": "lagi"}, headers=keys["admin"])
    assert r.status_code == 409 and r.json()["current_state"] == "TERVERIFIKASI"
    r = await act(client, keys, "admin", cid, "dispose", opd_code="dpupr")
    assert (r["hop"], r["opd_code"]) == (2, "dpupr")
    assert (await status(client, keys, cid, "dpupr"))["status"] == "TERDISPOSISI"
    s = await status(client, keys, cid)
    assert any(t["summary"].startswith("Ditarik kembali oleh admin koordinator dari Dinas Kesehatan")
               for t in s["timeline"])


async def test_withdrawals_do_not_use_up_the_hop_cap(intake, keys, db, settings):
    _, client = intake
    cid = (await submit(client, keys))["complaint_id"]
    assert settings.hop_cap == 3
    for opd in ("dinkes", "dpupr", "dinkes", "dpupr"):
        await act(client, keys, "admin", cid, "dispose", opd_code=opd)
        await act(client, keys, "admin", cid, "withdraw", reason="Salah disposisi")
    r = await act(client, keys, "admin", cid, "dispose", opd_code="dinkes")
    assert r["hop"] == 5


async def test_an_expired_deferral_is_archived_by_the_system_once(intake, keys, db, settings):
    app, client = intake
    cid = (await submit(client, keys))["complaint_id"]
    await act(client, keys, "admin", cid, "defer", reason="Mohon lampirkan foto lokasi")
    deferred = (await events_of(db, cid, "complaint.deferred"))[0]["data"]["deferred_at"]
    expired = make_event("sp4n/sla", SlaDeferralExpired(
        complaint_id=uuid.UUID(cid), deferred_at=datetime.fromisoformat(deferred),
        deadline=datetime.now(UTC), **VERSIONS))
    again = make_event("sp4n/sla", SlaDeferralExpired.model_validate(expired.data))
    await publish_and_wait(app, settings, db, cid, expired, expired, again)
    archived = await events_of(db, cid, "complaint.archived")
    assert len(archived) == 1
    assert archived[0]["data"]["reason"] == "tidak_ada_tanggapan_pelapor"
    assert archived[0]["source"] == "sp4n/intake"
    s = await status(client, keys, cid, "portal")
    assert (s["status"], s["archive_reason"], s["archived_by"]) == (
        "DIARSIPKAN", "tidak_ada_tanggapan_pelapor", "system")
    texts = [t["summary"] for t in s["timeline"]]
    assert any(t.startswith("Diarsipkan oleh sistem: tidak ada tanggapan dari pelapor") for t in texts)
    assert any("tidak diarsipkan" in t for t in texts)  # the re-emitted one, under a new id

    # A complaint the reporter answered in time is not archived.
    answered = (await submit(client, keys))["complaint_id"]
    await act(client, keys, "admin", answered, "defer")
    d = (await events_of(db, answered, "complaint.deferred"))[0]["data"]["deferred_at"]
    await act(client, keys, "portal", answered, "reply", body="Foto terlampir.")
    late = make_event("sp4n/sla", SlaDeferralExpired(
        complaint_id=uuid.UUID(answered), deferred_at=datetime.fromisoformat(d),
        deadline=datetime.now(UTC), **VERSIONS))
    await publish_and_wait(app, settings, db, answered, late)
    assert await events_of(db, answered, "complaint.archived") == []
    assert (await status(client, keys, answered))["status"] == "DITERIMA"


async def test_recomputed_deadlines_and_escalations_in_the_status(intake, keys, db, settings):
    app, client = intake
    cid = (await submit(client, keys))["complaint_id"]
    await act(client, keys, "admin", cid, "dispose", opd_code="dinkes")
    now = datetime.now(UTC)
    c = uuid.UUID(cid)
    old, new = now + timedelta(days=20), now + timedelta(days=85)
    start = make_event("sp4n/sla", SlaClockStarted(
        complaint_id=c, clock="completion", started_at=now - timedelta(days=3), working_days=14,
        deadline=old, warn_at=None, paused_working_days=1, **VERSIONS), time=now)
    change = make_event("sp4n/sla", SlaDeadlineChanged(
        complaint_id=c, clock="completion", old_deadline=old, new_deadline=new, reason="reclassified",
        note="Perlu pemeriksaan lapangan", changed_by="dl-admin", calendar_version="holidays-0.109+ovr-0",
        policy_version=2), time=now + timedelta(seconds=1))
    # The recomputation arrives before the start it recomputes: the start does not undo it.
    await publish_and_wait(app, settings, db, cid, change)
    await publish_and_wait(app, settings, db, cid, start)
    opd = {"clock": "opd_response", "hop": 1, "opd_code": "dinkes"}
    due = now - timedelta(days=8)
    opd_start = make_event("sp4n/sla", SlaClockStarted(
        **opd, complaint_id=c, started_at=now - timedelta(days=15), working_days=5, deadline=due,
        warn_at=None, beyond_calendar_coverage=True, **VERSIONS))
    breach = make_event("sp4n/sla", SlaBreached(**opd, complaint_id=c, deadline=due, due_at=due, **VERSIONS))
    ladder = [make_event("sp4n/sla", SlaEscalated(
        **opd, complaint_id=c, deadline=due, due_at=due + timedelta(days=level), level=level,
        target_role=target, working_days_late=late, ladder_version=1, **VERSIONS))
        for level, target, late in ((2, "kepala_opd", 3), (1, "pejabat_penghubung", 1))]
    again = make_event("sp4n/sla", SlaClockStarted(
        **opd, complaint_id=c, instance=1, started_at=now, working_days=5, deadline=now + timedelta(days=7),
        warn_at=None, **VERSIONS))
    await publish_and_wait(app, settings, db, cid, opd_start, breach, *ladder, again)

    s = await status(client, keys, cid)
    clocks = {(k["clock"], k["hop"], k["instance"]): k for k in s["clocks"]}
    completion = clocks[("completion", 0, 0)]
    assert datetime.fromisoformat(completion["deadline"]) == new
    assert (completion["policy_version"], completion["paused_working_days"]) == (2, 1)
    assert completion["label"] == "penyelesaian" and completion["calendar_days_left"] in (84, 85, 86)
    assert completion["deadline_local"].endswith("WIB")
    first = clocks[("opd_response", 1, 0)]
    assert (first["state"], first["escalation_level"], first["escalated_to"], first["working_days_late"]) \
        == ("terlambat", 2, "kepala_opd", 3)
    assert first["beyond_calendar_coverage"] is True
    second = clocks[("opd_response", 1, 1)]
    assert (second["state"], second["escalation_level"], second["breached"]) == ("berjalan", 0, False)
    texts = [t["summary"] for t in s["timeline"]]
    assert any(t.startswith("Tenggat penyelesaian berubah dari ") and "(klasifikasi laporan dikoreksi: "
               "Perlu pemeriksaan lapangan; oleh dl-admin)" in t for t in texts)
    assert any(t.startswith("Eskalasi tingkat 2 ke kepala OPD (dinkes): tenggat tindak lanjut OPD")
               for t in texts)
    assert any(t.startswith("Eskalasi tingkat 1 ke pejabat penghubung (dinkes)") for t in texts)

    # A withdrawal's cancelled clock is neither met nor late.
    cancel = make_event("sp4n/sla", SlaClockStopped(
        **opd, complaint_id=c, instance=1, stopped_at=now, deadline=now + timedelta(days=7),
        on_time=True, reason="cancelled"))
    await publish_and_wait(app, settings, db, cid, cancel)
    s = await status(client, keys, cid)
    second = next(k for k in s["clocks"] if (k["clock"], k["hop"], k["instance"]) == ("opd_response", 1, 1))
    assert second["state"] == "dibatalkan" and second["calendar_days_left"] is None
    assert "Tenggat tindak lanjut OPD dibatalkan" in [t["summary"] for t in s["timeline"]]
