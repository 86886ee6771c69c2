"""All four services as real processes: intake → routing → sla → notify, with a local
webhook receiver as the notification consumer."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook

from tests.e2e import system as sp4n
from tests.e2e.conftest import EventTap
from tests.e2e.receiver import WebhookReceiver

pytestmark = pytest.mark.e2e
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


@pytest.fixture(scope="module")
async def receiver():
    async with WebhookReceiver(fail_first={"/flaky": 2}) as r:
        yield r


@pytest.fixture(scope="module")
def running(settings, receiver, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    subs = tmp / "subscriptions.json"
    subs.write_text(json.dumps([
        {"name": "ops-chat", "url": receiver.url("/ok"), "secret": SECRET,
         "event_types": ["complaint.routed", "sla.warning", "sla.breached"]},
        {"name": "flaky-gateway", "url": receiver.url("/flaky"), "secret": SECRET,
         "event_types": ["sla.breached"]},
    ]))
    system = sp4n.start(settings, ["intake", "routing", "sla", "notify"], tmp,
                        notify_subscriptions_file=subs, notify_backoff_base_s=0.3,
                        notify_max_attempts=4)
    yield system
    system.stop()
    # Later modules share this database: leave no subscription pointing at a closed receiver.
    asyncio.run(_drop_subscriptions(settings, ["ops-chat", "flaky-gateway"]))


async def _drop_subscriptions(settings, names: list[str]) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("DELETE FROM notify.delivery_attempts WHERE delivery_id IN"
                           " (SELECT id FROM notify.deliveries WHERE subscription = ANY($1))", names)
        await conn.execute("DELETE FROM notify.deliveries WHERE subscription = ANY($1)", names)
        await conn.execute("DELETE FROM notify.subscriptions WHERE name = ANY($1)", names)
    finally:
        await conn.close()


def complaint(received_at: datetime, **over):
    body = {
        "source": "portal-sekadau", "external_id": f"e2e-{uuid.uuid4().hex[:10]}",
        "received_at": received_at.isoformat(), "classification": "pengaduan",
        "category": "kesehatan", "title": "Puskesmas tutup pada jam layanan",
        "description": "Puskesmas tidak buka pukul 08.00 sesuai jadwal; warga menunggu lama.",
        "location": {"kecamatan": "Nanga Taman", "desa": "Nanga Taman"},
        "reporter": {"name": "Yohanes", "phone": "+6281200001111"},
    }
    body.update(over)
    return body


async def submit(running, key, body) -> dict:
    async with httpx.AsyncClient(base_url=running.url("intake"),
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        r = await client.post("/v1/complaints", json=body)
        assert r.status_code == 202, r.text
        return r.json()


async def status_until(running, key, cid, done, timeout=15.0) -> dict:
    async with httpx.AsyncClient(base_url=running.url("intake"),
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        status = {}
        for _ in range(int(timeout / 0.1)):
            status = (await client.get(f"/v1/complaints/{cid}")).json()
            if done(status):
                return status
            await asyncio.sleep(0.1)
    raise AssertionError(f"status never reached the expected state: {status}")


def verify_signature(req) -> dict:
    return Webhook(SECRET).verify(req.body, {k: req.headers[k] for k in
                                             ("webhook-id", "webhook-timestamp", "webhook-signature")})


async def test_fresh_complaint_is_routed_and_its_clocks_show_on_status(running, receiver, portal_key,
                                                                       settings):
    accepted = await submit(running, portal_key, complaint(datetime.now(UTC)))
    cid = accepted["complaint_id"]

    def clocks_set(s):
        wanted = {"verification", "completion", "opd_response"}
        return s["opd_code"] and {c["clock"] for c in s["clocks"]} >= wanted

    status = await status_until(running, portal_key, cid, clocks_set)
    assert status["status"] == "TERDISPOSISI" and status["opd_code"] == "dinkes"
    clocks = {c["clock"]: c for c in status["clocks"]}
    assert clocks["completion"]["working_days"] == 14 and clocks["completion"]["state"] == "berjalan"
    assert clocks["opd_response"]["working_days"] == 5 and clocks["opd_response"]["hop"] == 1
    assert clocks["opd_response"]["opd_code"] == "dinkes"
    for c in clocks.values():
        assert datetime.fromisoformat(c["deadline"]) > datetime.now(UTC)
        assert c["calendar_version"].startswith("holidays-") and c["policy_version"] >= 1
    # The verification clock stops when routed (on time); sla says so asynchronously.
    status = await status_until(running, portal_key, cid,
                                lambda s: any(c["clock"] == "verification" and c["state"] == "selesai"
                                              for c in s["clocks"]))
    # notify delivered complaint.routed to the subscriber, signed.
    for _ in range(100):
        routed = [r for r in receiver.to("/ok") if r.json["subject"] == cid]
        if routed:
            break
        await asyncio.sleep(0.1)
    assert len(routed) == 1 and routed[0].json["type"].endswith("complaint.routed.v1")
    assert verify_signature(routed[0])["subject"] == cid


async def test_backdated_complaint_breaches_and_is_delivered_signed(running, receiver, portal_key, settings):
    received = datetime.now(UTC) - timedelta(days=40)  # ≥ 20 working days ago
    async with EventTap(settings.amqp_url, settings.namespace, ("sla.*",)) as tap:
        accepted = await submit(running, portal_key, complaint(received))
        cid = accepted["complaint_id"]
        breaches = await tap.wait_for("sla.breached", cid, count=2, timeout=10)
        await asyncio.sleep(1.0)  # any duplicate would have arrived by now
        breaches = tap.of("sla.breached", cid)
    assert sorted(b["data"]["clock"] for b in breaches) == ["completion", "verification"]
    for b in breaches:
        assert datetime.fromisoformat(b["data"]["deadline"]) < datetime.now(UTC)
        assert b["data"]["calendar_version"] and b["data"]["policy_version"] >= 1

    # Each breach reaches the healthy subscriber once, with a valid Standard Webhooks signature.
    for _ in range(100):
        got = [r for r in receiver.to("/ok") if r.json["subject"] == cid
               and r.json["type"].endswith("sla.breached.v1")]
        if len(got) >= 2:
            break
        await asyncio.sleep(0.1)
    assert sorted(verify_signature(r)["data"]["clock"] for r in got) == ["completion", "verification"]
    assert len({r.headers["webhook-id"] for r in got}) == 2

    # The flaky receiver fails twice per delivery, then succeeds: exactly one success each.
    for _ in range(150):
        flaky = [r for r in receiver.to("/flaky") if r.json["subject"] == cid]
        if sum(r.status == 200 for r in flaky) >= 2:
            break
        await asyncio.sleep(0.1)
    by_id: dict[str, list[int]] = {}
    for r in flaky:
        verify_signature(r)
        by_id.setdefault(r.headers["webhook-id"], []).append(r.status)
    assert len(by_id) == 2
    assert all(statuses == [500, 500, 200] for statuses in by_id.values()), by_id
    await asyncio.sleep(1.0)
    assert len([r for r in receiver.to("/flaky") if r.json["subject"] == cid]) == 6

    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT d.status, count(*) AS n FROM notify.deliveries d"
            " WHERE d.subscription = 'flaky-gateway' AND d.payload->>'subject' = $1 GROUP BY d.status",
            cid)
    finally:
        await conn.close()
    assert {r["status"]: r["n"] for r in rows} == {"delivered": 2}
