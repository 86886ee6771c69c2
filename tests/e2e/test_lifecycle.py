"""The complaint lifecycle across all four services as real processes: the admin koordinator,
the OPDs and the portal act over HTTP on intake; sla follows the events (per-hop OPD clocks,
paused deadlines, the 10-HK reply window) and intake closes when sla says the window elapsed.

Contract with sla (built in parallel): an ``auto_close`` clock starts on complaint.responded
from ``responded_at`` and ``sla.reply_window_elapsed`` is emitted when 10 HK pass without a
reply; complaint.deferred / complaint.resumed pause the clocks that wait on the reporter and
move their deadlines by the paused working days (re-announced as sla.clock_started); every
disposition hop starts its own ``opd_response`` clock.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.sla.calendar import WorkingCalendar
from tests.e2e import system as sp4n
from tests.e2e.conftest import EventTap, act, create_keys, intake_clients, status_until

pytestmark = pytest.mark.e2e
# No routing rule matches this category: the complaint waits for the admin koordinator.
UNROUTED = "kategori_uji_siklus"


@pytest.fixture(scope="module")
def running(settings, tmp_path_factory):
    system = sp4n.start(settings, ["intake", "routing", "sla", "notify"],
                        tmp_path_factory.mktemp("lifecycle"))
    yield system
    system.stop()


@pytest.fixture(scope="module")
async def keys(settings, running, portal_key):
    return await create_keys(settings, portal_key, "e2e-lc", [
        ("admin", "admin_koordinator", None, None), ("dinkes", "opd", None, "dinkes"),
        ("dpupr", "opd", None, "dpupr"), ("disdikbud", "opd", None, "disdikbud")],
        backdate=("dinkes",))


@pytest.fixture
async def api(running, keys):
    async with intake_clients(running, keys) as clients:
        yield clients


def complaint(received_at: datetime, **over) -> dict:
    body = {
        "source": "portal-sekadau", "external_id": f"e2e-lc-{uuid.uuid4().hex[:10]}",
        "received_at": received_at.isoformat(), "classification": "pengaduan",
        "category": UNROUTED, "title": "Puskesmas tutup pada jam layanan",
        "description": "Puskesmas tidak buka pukul 08.00 sesuai jadwal; warga menunggu lama.",
        "location": {"kecamatan": "Nanga Taman", "desa": f"Desa {uuid.uuid4().hex[:6]}"},
        "reporter": {"name": "Yohanes", "phone": "+6281200001111"},
    }
    body.update(over)
    return body


async def submit(api, received_at: datetime) -> str:
    r = await api["portal"].post("/v1/complaints", json=complaint(received_at))
    assert r.status_code == 202, r.text
    return r.json()["complaint_id"]





def clock(status: dict, name: str, hop: int = 0) -> dict | None:
    return next((c for c in status["clocks"] if c["clock"] == name and c["hop"] == hop), None)


async def test_happy_path_ends_with_the_system_closing_after_the_reply_window(api, settings):
    now = datetime.now(UTC)
    received = now - timedelta(days=40)
    responded = now - timedelta(days=20)
    calendar = WorkingCalendar(settings.tz)
    assert calendar.deadline(responded, 10) < now  # the window has already elapsed
    async with EventTap(settings.amqp_url, settings.namespace, ("complaint.*", "sla.*")) as tap:
        cid = await submit(api, received)
        await act(api, "admin", cid, "verify", at=received + timedelta(days=1),
                  title="Puskesmas Nanga Taman tutup pagi hari")
        await act(api, "admin", cid, "dispose", at=received + timedelta(days=2), opd_code="dinkes",
                  opd_name="Dinas Kesehatan")
        r = await act(api, "dinkes", cid, "respond", at=responded,
                      body="Kepala puskesmas sudah ditegur; jadwal layanan dipasang.")
        assert r["status"] == "DITINDAKLANJUTI"

        elapsed = (await tap.wait_for("sla.reply_window_elapsed", cid, timeout=15))[0]
        assert datetime.fromisoformat(elapsed["data"]["responded_at"]) == responded
        closed = (await tap.wait_for("complaint.closed", cid, timeout=10))[0]
        assert closed["data"]["closed_by"] == "system" and closed["source"] == "sp4n/intake"
        await asyncio.sleep(0.5)
        assert len(tap.of("complaint.closed", cid)) == 1

    status = await status_until(api, cid, lambda s: s["status"] == "SELESAI", who="portal")
    assert status["closed_by"] == "system"
    assert any("ditutup otomatis oleh sistem" in t["summary"] for t in status["timeline"])
    assert status["responses"][0]["body"].startswith("Kepala puskesmas")
    admin_view = (await api["admin"].get(f"/v1/complaints/{cid}")).json()
    assert admin_view["original_title"] == "Puskesmas tutup pada jam layanan"
    assert admin_view["allowed_actions"] == ["reopen"]


async def test_bukan_wewenang_then_redisposition_starts_a_new_opd_clock(api, settings):
    cid = await submit(api, datetime.now(UTC) - timedelta(hours=2))
    await act(api, "admin", cid, "dispose", opd_code="dinkes")
    await status_until(api, cid, lambda s: clock(s, "opd_response", 1) is not None)
    r = await act(api, "dinkes", cid, "return", reason="Ini kewenangan Dinas PUPR")
    assert r["status"] == "DIKEMBALIKAN"
    r = await act(api, "admin", cid, "dispose", opd_code="dpupr", opd_name="Dinas PUPR")
    assert r["hop"] == 2 and r["opd_code"] == "dpupr"
    status = await status_until(api, cid, lambda s: clock(s, "opd_response", 2) is not None)
    hop2 = clock(status, "opd_response", 2)
    assert hop2["opd_code"] == "dpupr" and hop2["state"] == "berjalan" and hop2["working_days"] == 5
    assert datetime.fromisoformat(hop2["deadline"]) > datetime.now(UTC)
    # The first hop's clock does not keep running for an OPD that no longer has it.
    status = await status_until(api, cid, lambda s: clock(s, "opd_response", 1)["state"] != "berjalan")
    assert status["status"] == "TERDISPOSISI"


async def test_hop_cap_leaves_it_to_the_admin_koordinator(api, settings):
    cid = await submit(api, datetime.now(UTC) - timedelta(hours=2))
    for opd in ("dinkes", "dpupr", "disdikbud")[: settings.hop_cap]:
        await act(api, "admin", cid, "dispose", opd_code=opd)
        await act(api, opd, cid, "return", reason="Bukan wewenang")
    r = await api["admin"].post(f"/v1/complaints/{cid}/dispose", json={"opd_code": "dinkes"})
    assert r.status_code == 409
    err = r.json()
    assert err["type"] == "urn:sp4n:problem:hop_cap_reached" and err["current_state"] == "DIKEMBALIKAN"
    assert err["allowed_actions"] == ["archive", "forward", "reclassify"]
    assert "admin koordinator" in err["detail"]


async def test_defer_moves_the_completion_deadline_by_the_paused_working_days(api, settings):
    now = datetime.now(UTC)
    received = now - timedelta(days=10)
    deferred = now - timedelta(days=7)
    calendar = WorkingCalendar(settings.tz)
    cid = await submit(api, received)
    status = await status_until(api, cid, lambda s: clock(s, "completion") is not None)
    original = datetime.fromisoformat(clock(status, "completion")["deadline"])
    await act(api, "admin", cid, "defer", at=deferred, reason="Mohon lampirkan foto")
    resumed = (await act(api, "admin", cid, "resume"))
    assert resumed["status"] == "DITERIMA"
    paused = calendar.working_days_between(deferred, datetime.now(UTC))
    assert paused > 0
    expected = calendar.end_of_day(calendar.nth_working_day_after(calendar.local_date(original), paused))

    status = await status_until(
        api, cid, lambda s: datetime.fromisoformat(clock(s, "completion")["deadline"]) != original)
    moved = datetime.fromisoformat(clock(status, "completion")["deadline"])
    assert moved == expected, (original, paused, moved, expected)
    assert calendar.working_days_between(original, moved) == paused


async def test_forbidden_transitions_and_out_of_scope_keys_over_http(api, settings):
    cid = await submit(api, datetime.now(UTC) - timedelta(hours=2))
    r = await api["admin"].post(f"/v1/complaints/{cid}/close", json={})
    assert r.status_code == 409
    assert r.json() | {"detail": ""} == {
        "type": "urn:sp4n:problem:invalid_transition", "status": 409, "detail": "",
        "title": "Aksi tidak dapat dilakukan pada status laporan saat ini", "current_state": "DITERIMA",
        "instance": f"/v1/complaints/{cid}/close",
        "allowed_actions": ["verify", "defer", "archive", "dispose", "forward", "reclassify"]}
    assert (await api["portal"].post(f"/v1/complaints/{cid}/verify", json={})).status_code == 403
    assert (await api["dinkes"].post(f"/v1/complaints/{cid}/respond",
                                     json={"body": "x"})).status_code == 403
    await act(api, "admin", cid, "dispose", opd_code="dinkes")
    r = await api["portal"].post(f"/v1/complaints/{cid}/reply", json={"body": "halo"})
    assert r.status_code == 409 and r.json()["current_state"] == "TERDISPOSISI"
    assert r.json()["allowed_actions"] == []
    assert (await api["dpupr"].post(f"/v1/complaints/{cid}/respond",
                                    json={"body": "x"})).status_code == 403
    assert (await api["dpupr"].get(f"/v1/complaints/{cid}")).status_code == 403
    opd_view = (await api["dinkes"].get(f"/v1/complaints/{cid}")).json()
    assert opd_view["allowed_actions"] == ["respond", "return"]
    assert opd_view["reporter"]["name"] == "Yohanes" and opd_view["reporter"]["nik"] is None
    await act(api, "dinkes", cid, "return", reason="Bukan wewenang")
    assert (await api["dinkes"].post(f"/v1/complaints/{cid}/respond",
                                     json={"body": "x"})).status_code == 403
    r = await api["admin"].post(f"/v1/complaints/{cid}/archive", json={"reason": "duplikat"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "duplicate_of"
    await act(api, "admin", cid, "archive", reason="bukan_pelayanan_publik")
    r = await api["admin"].post(f"/v1/complaints/{cid}/dispose", json={"opd_code": "dinkes"})
    assert r.status_code == 409 and r.json()["current_state"] == "DIARSIPKAN"
    assert r.json()["allowed_actions"] == []
    assert (await api["admin"].post(f"/v1/complaints/{uuid.uuid4()}/verify", json={})).status_code == 404
