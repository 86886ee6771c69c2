"""The deadline engine (issue 10) across all four services as real processes, with a local
webhook receiver: the admin koordinator's corrections and withdrawals on intake, sla
following them, notify delivering what staff must see.

Contracts with sla (``shared/events.py``; sla's side is built in parallel):
- complaint.reclassified → the clocks that depend on it are recomputed and each change is
  announced as ``sla.deadline_changed`` (old, new, reason ``reclassified``, who); intake shows
  the new deadline and a timeline entry.
- A breached clock climbs its escalation ladder: one ``sla.escalated`` per level, once each;
  notify delivers each to a subscriber of ``sla.escalated``.
- DITUNDA for the policy's working days: ``sla.deferral_expired`` for that ``deferred_at``;
  intake archives by the system (``tidak_ada_tanggapan_pelapor``).
- complaint.withdrawn cancels that hop's OPD clock; a progress update (``final: false``)
  stops nothing.

The ladder test backdates the complaint by 60 days, so every step of Sekadau's default
opd_response ladder (breach +0, +2, +5, +10 working days) is long past and none is held back
by quiet hours.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from standardwebhooks import Webhook

from services.sla.calendar import WorkingCalendar
from tests.e2e import system as sp4n
from tests.e2e.conftest import EventTap, act, create_keys, intake_clients, status_until
from tests.e2e.receiver import WebhookReceiver

pytestmark = pytest.mark.e2e
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
# No routing rule matches this category: the complaint waits for the admin koordinator.
UNROUTED = "kategori_uji_tenggat"
SUBSCRIBED = ["sla.escalated", "sla.deadline_changed", "complaint.reclassified",
              "complaint.withdrawn", "complaint.archived"]


@pytest.fixture(scope="module")
async def receiver():
    async with WebhookReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def running(settings, receiver, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deadline_engine")
    subs = tmp / "subscriptions.json"
    subs.write_text(json.dumps([{"name": "e2e-tenggat", "url": receiver.url("/tenggat"),
                                 "secret": SECRET, "event_types": SUBSCRIBED}]))
    system = sp4n.start(settings, ["intake", "routing", "sla", "notify"], tmp,
                        notify_subscriptions_file=subs, notify_backoff_base_s=0.3)
    yield system
    system.stop()
    # Later modules share this database: leave no subscription pointing at a closed receiver.
    asyncio.run(_drop_subscription(settings, "e2e-tenggat"))


async def _drop_subscription(settings, name: str) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("DELETE FROM notify.delivery_attempts WHERE delivery_id IN"
                           " (SELECT id FROM notify.deliveries WHERE subscription = $1)", name)
        await conn.execute("DELETE FROM notify.deliveries WHERE subscription = $1", name)
        await conn.execute("DELETE FROM notify.subscriptions WHERE name = $1", name)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def keys(settings, running, portal_key):
    return await create_keys(settings, portal_key, "e2e-dl", [
        ("admin", "admin_koordinator", None, None), ("dinkes", "opd", None, "dinkes"),
        ("dpupr", "opd", None, "dpupr")])


@pytest.fixture
async def api(running, keys):
    async with intake_clients(running, keys) as clients:
        yield clients


async def submit(api, received_at: datetime, **over) -> str:
    body = {
        "source": "portal-sekadau", "external_id": f"e2e-dl-{uuid.uuid4().hex[:10]}",
        "received_at": received_at.isoformat(), "classification": "pengaduan",
        "category": UNROUTED, "title": "Jembatan desa rusak berat",
        "description": "Jembatan penghubung dua dusun rusak; anak sekolah memutar jauh.",
        "location": {"kecamatan": "Nanga Taman", "desa": f"Desa {uuid.uuid4().hex[:6]}"},
        "reporter": {"name": "Yohanes", "phone": "+6281200001111"}, **over}
    r = await api["portal"].post("/v1/complaints", json=body)
    assert r.status_code == 202, r.text
    return r.json()["complaint_id"]





def clock(status: dict, name: str, hop: int = 0, instance: int | None = None) -> dict | None:
    found = [c for c in status["clocks"] if c["clock"] == name and c["hop"] == hop
             and (instance is None or c["instance"] == instance)]
    return max(found, key=lambda c: c["instance"]) if found else None


async def delivered(receiver, cid: str, event: str, count: int, timeout: float = 15.0) -> list:
    got: list = []
    for _ in range(int(timeout / 0.1)):
        got = [r for r in receiver.to("/tenggat") if r.status == 200 and r.json["subject"] == cid
               and r.json["type"] == f"id.go.sp4n.{event}.v1"]
        if len(got) >= count:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(got)} of {count} × {event} delivered for {cid}")


def verified(req) -> dict:
    return Webhook(SECRET).verify(req.body, {k: req.headers[k] for k in
                                             ("webhook-id", "webhook-timestamp", "webhook-signature")})


# --- passes on intake's side alone --------------------------------------------------------

async def test_corrections_and_withdrawal_reach_subscribers_and_the_status(api, receiver, settings):
    """intake's new actions, sla's real clocks in the status answer, notify's webhooks."""
    received = datetime.now(UTC) - timedelta(hours=3)
    cid = await submit(api, received)
    status = await status_until(api, cid, lambda s: clock(s, "completion") is not None)
    completion = clock(status, "completion")
    assert completion["label"] == "penyelesaian" and completion["instance"] == 0
    assert completion["working_days"] == 14 and completion["deadline_local"].endswith("WIB")
    assert completion["calendar_days_left"] >= 14 and completion["escalation_level"] == 0

    r = await act(api, "admin", cid, "reclassify", confidential=True,
                  reason="Pelapor meminta laporan dirahasiakan")
    assert r["status"] == "DITERIMA"
    [hook] = await delivered(receiver, cid, "complaint.reclassified", 1)
    data = verified(hook)["data"]
    assert data["changed_fields"] == ["confidential"] and data["changed_by"] == "e2e-dl-admin"
    assert data["reason"] == "Pelapor meminta laporan dirahasiakan"
    # Rahasia takes effect on the public facade at once.
    tracking = (await api["admin"].get(f"/v1/complaints/{cid}")).json()["tracking_id"]
    r = await api["admin"].get(f"/open311/v2/requests/{tracking}.json")
    assert r.status_code == 404

    await act(api, "admin", cid, "dispose", opd_code="dinkes")
    await status_until(api, cid, lambda s: clock(s, "opd_response", 1) is not None)
    r = await act(api, "admin", cid, "withdraw", reason="Salah disposisi: urusan PUPR")
    assert (r["status"], r["hop"]) == ("TERVERIFIKASI", 1)
    [hook] = await delivered(receiver, cid, "complaint.withdrawn", 1)
    assert {k: verified(hook)["data"][k] for k in ("opd_code", "hop")} == {"opd_code": "dinkes", "hop": 1}
    assert (await api["dinkes"].get(f"/v1/complaints/{cid}")).status_code == 403
    r = await act(api, "admin", cid, "dispose", opd_code="dpupr")
    assert (r["hop"], r["opd_code"]) == (2, "dpupr")
    status = await status_until(
        api, cid, lambda s: clock(s, "opd_response", 2) is not None
        and clock(s, "opd_response", 1)["state"] != "berjalan")
    assert clock(status, "opd_response", 2)["opd_code"] == "dpupr"
    # The withdrawn hop's clock ends cancelled, neither met nor breached.
    assert clock(status, "opd_response", 1)["state"] == "dibatalkan"
    assert any(t["summary"].startswith("Ditarik kembali oleh admin koordinator") for t in status["timeline"])


# --- need sla's side of issue 10 ------------------------------------------------------------

async def test_reclassification_to_berkadar_pengawasan_moves_the_completion_deadline_to_60_hk(
        api, receiver, settings):
    received = datetime.now(UTC) - timedelta(hours=2)
    calendar = WorkingCalendar(settings.tz)
    async with EventTap(settings.amqp_url, settings.namespace, ("complaint.*", "sla.*")) as tap:
        cid = await submit(api, received)
        status = await status_until(api, cid, lambda s: clock(s, "completion") is not None)
        before = datetime.fromisoformat(clock(status, "completion")["deadline"])
        assert before == calendar.deadline(received, 14)
        await act(api, "admin", cid, "verify", berkadar_pengawasan=True,
                  reason="Perlu pemeriksaan lapangan oleh inspektorat")
        [reclassified] = await tap.wait_for("complaint.reclassified", cid)
        assert reclassified["data"]["changed_fields"] == ["berkadar_pengawasan"]

        [changed] = await tap.wait_for("sla.deadline_changed", cid, timeout=15)
        d = changed["data"]
        assert (d["clock"], d["reason"], d["changed_by"]) == ("completion", "reclassified", "e2e-dl-admin")
        expected = calendar.deadline(received, 60)
        assert datetime.fromisoformat(d["old_deadline"]) == before
        assert datetime.fromisoformat(d["new_deadline"]) == expected
        await asyncio.sleep(0.5)
        assert len(tap.of("sla.deadline_changed", cid)) == 1  # the only clock it changes

    status = await status_until(
        api, cid, lambda s: datetime.fromisoformat(clock(s, "completion")["deadline"]) == expected)
    assert status["berkadar_pengawasan"] is True
    assert any(t["summary"].startswith("Tenggat penyelesaian berubah dari ")
               and "klasifikasi laporan dikoreksi" in t["summary"] for t in status["timeline"])
    [hook] = await delivered(receiver, cid, "sla.deadline_changed", 1)
    assert verified(hook)["data"]["new_deadline"] == d["new_deadline"]


async def test_an_escalation_ladder_fires_levels_1_to_3_once_each_by_webhook(api, receiver, settings):
    received = datetime.now(UTC) - timedelta(days=60)  # ≥ 35 working days ago
    async with EventTap(settings.amqp_url, settings.namespace, ("sla.*",)) as tap:
        cid = await submit(api, received)
        await act(api, "admin", cid, "dispose", opd_code="dinkes", at=received + timedelta(days=1))
        await tap.wait_for("sla.escalated", cid, count=3, timeout=20)
        await asyncio.sleep(2.0)  # any duplicate would have arrived by now
        ladder = [e["data"] for e in tap.of("sla.escalated", cid)
                  if (e["data"]["clock"], e["data"]["hop"]) == ("opd_response", 1)]
    levels = sorted(d["level"] for d in ladder)
    assert levels[:3] == [1, 2, 3] and len(levels) == len(set(levels)), levels  # each once
    for d in ladder:
        assert d["opd_code"] == "dinkes" and d["working_days_late"] >= 0
        # Level 1 is due at the breach itself (offset 0), each later level after the one before.
        assert datetime.fromisoformat(d["due_at"]) >= datetime.fromisoformat(d["deadline"])
    due = [datetime.fromisoformat(d["due_at"]) for d in sorted(ladder, key=lambda d: d["level"])]
    assert due == sorted(due) and len(set(due)) == len(due)

    hooks = await delivered(receiver, cid, "sla.escalated", len(tap.of("sla.escalated", cid)))
    mine = [verified(h)["data"] for h in hooks]
    by_level = sorted(d["level"] for d in mine if (d["clock"], d["hop"]) == ("opd_response", 1))
    assert by_level == levels  # every step delivered, none twice
    assert len({h.headers["webhook-id"] for h in hooks}) == len(hooks)

    status = await status_until(
        api, cid, lambda s: (clock(s, "opd_response", 1) or {}).get("escalation_level", 0) >= max(levels))
    opd = clock(status, "opd_response", 1)
    assert opd["state"] == "terlambat" and opd["working_days_late"] >= 0
    for level in (1, 2, 3):
        assert any(t["summary"].startswith(f"Eskalasi tingkat {level} ke ") for t in status["timeline"])


async def test_a_deferral_that_expires_is_archived_by_the_system(api, receiver, settings):
    received = datetime.now(UTC) - timedelta(days=60)
    deferred = received + timedelta(days=1)
    async with EventTap(settings.amqp_url, settings.namespace, ("complaint.*", "sla.*")) as tap:
        cid = await submit(api, received)
        await act(api, "admin", cid, "defer", at=deferred, reason="Mohon lampirkan foto jembatan")
        [expired] = await tap.wait_for("sla.deferral_expired", cid, timeout=20)
        assert datetime.fromisoformat(expired["data"]["deferred_at"]) == deferred
        [archived] = await tap.wait_for("complaint.archived", cid, timeout=10)
        assert archived["source"] == "sp4n/intake"
        assert archived["data"]["reason"] == "tidak_ada_tanggapan_pelapor"
        await asyncio.sleep(0.5)
        assert len(tap.of("complaint.archived", cid)) == 1

    status = await status_until(api, cid, lambda s: s["status"] == "DIARSIPKAN", who="portal")
    assert (status["archive_reason"], status["archived_by"]) == ("tidak_ada_tanggapan_pelapor", "system")
    assert status["allowed_actions"] == []
    assert any(t["summary"].startswith("Diarsipkan oleh sistem: tidak ada tanggapan dari pelapor")
               for t in status["timeline"])
    [hook] = await delivered(receiver, cid, "complaint.archived", 1)
    assert verified(hook)["data"]["reason"] == "tidak_ada_tanggapan_pelapor"


async def test_a_withdrawal_cancels_at_once_and_a_progress_update_stops_nothing(api, settings):
    cid = await submit(api, datetime.now(UTC) - timedelta(hours=2))
    await act(api, "admin", cid, "dispose", opd_code="dinkes")
    await status_until(api, cid, lambda s: clock(s, "opd_response", 1) is not None)
    await act(api, "admin", cid, "withdraw", reason="Salah disposisi")
    # Cancelled by the withdrawal itself, before any re-disposition.
    status = await status_until(api, cid, lambda s: clock(s, "opd_response", 1)["state"] != "berjalan")
    assert clock(status, "opd_response", 1)["state"] == "dibatalkan"
    await act(api, "admin", cid, "dispose", opd_code="dpupr")
    await status_until(api, cid, lambda s: clock(s, "opd_response", 2) is not None)
    r = await act(api, "dpupr", cid, "respond", body="Survei lokasi dijadwalkan.", final=False)
    assert r["status"] == "TERDISPOSISI"
    await asyncio.sleep(2.0)  # sla has had time to (wrongly) stop it
    status = (await api["admin"].get(f"/v1/complaints/{cid}")).json()
    assert clock(status, "opd_response", 2)["state"] == "berjalan"
    assert clock(status, "completion")["state"] == "berjalan"
    assert clock(status, "auto_close", 2) is None  # no reply window for a progress update
