"""An accepted complaint is never lost: services killed mid-flight (SIGKILL, no graceful
shutdown) and restarted still route every complaint exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from tests.e2e import system as sp4n
from tests.e2e.conftest import EventTap

pytestmark = pytest.mark.e2e


def complaint(i: int) -> dict:
    return {
        "source": "portal-sekadau", "external_id": f"crash-{uuid.uuid4().hex[:10]}",
        "received_at": datetime.now(UTC).isoformat(), "classification": "aspirasi",
        "category": "pendidikan", "title": f"Usulan perbaikan sekolah {i}",
        "description": "Mohon atap ruang kelas diperbaiki sebelum musim hujan tiba.",
        "location": {"kecamatan": "Sekadau Hulu", "desa": f"Desa {uuid.uuid4().hex[:6]}"},
        "anonymous": True,
    }


@pytest.fixture(scope="module")
def running(settings, tmp_path_factory):
    system = sp4n.start(settings, ["intake", "routing"], tmp_path_factory.mktemp("crash"))
    yield system
    system.stop()


async def test_killed_consumer_and_killed_publisher_lose_nothing(running, settings, portal_key):
    headers = {"Authorization": f"Bearer {portal_key}"}
    async with EventTap(settings.amqp_url, settings.namespace, ("complaint.routed",)) as tap:
        # 1. routing is dead while complaints arrive: they wait, durable, in its queue.
        running.kill("routing")
        async with httpx.AsyncClient(base_url=running.url("intake"), headers=headers) as client:
            first = [(await client.post("/v1/complaints", json=complaint(i))).json()["complaint_id"]
                     for i in range(20)]
        await asyncio.sleep(0.5)
        assert tap.of("complaint.routed") == []
        await asyncio.to_thread(running.restart, "routing")
        for cid in first:
            await tap.wait_for("complaint.routed", cid, timeout=20)

        # 2. intake is killed while it is still publishing from its outbox: whatever it had
        # accepted (answered 202) is published after its restart.
        async with httpx.AsyncClient(base_url=running.url("intake"), headers=headers) as client:
            answers = await asyncio.gather(*(client.post("/v1/complaints", json=complaint(i))
                                             for i in range(40)))
        running.kill("intake")
        second = [a.json()["complaint_id"] for a in answers if a.status_code == 202]
        assert len(second) == 40
        await asyncio.to_thread(running.restart, "intake")
        for cid in second:
            await tap.wait_for("complaint.routed", cid, timeout=20)

        # 3. routing is killed while it works through a backlog; redelivered events have no
        # second effect.
        async with httpx.AsyncClient(base_url=running.url("intake"), headers=headers) as client:
            third = [(await client.post("/v1/complaints", json=complaint(i))).json()["complaint_id"]
                     for i in range(40)]
        await asyncio.sleep(0.2)
        running.kill("routing")
        await asyncio.to_thread(running.restart, "routing")
        for cid in third:
            await tap.wait_for("complaint.routed", cid, timeout=20)
        await asyncio.sleep(1.0)
        for cid in first + second + third:
            assert len(tap.of("complaint.routed", cid)) >= 1

    conn = await asyncpg.connect(settings.database_url)
    try:
        decisions = await conn.fetch(
            "SELECT complaint_id, count(*) AS n FROM routing.decisions"
            " WHERE complaint_id = ANY($1::uuid[]) GROUP BY complaint_id",
            [uuid.UUID(c) for c in first + second + third])
        # A killed relay's last batch may have been confirmed but not marked sent: it stays
        # leased and is published again once the lease is over (SP4N_OUTBOX_LEASE_S).
        deadline = time.monotonic() + settings.outbox_lease_s + 30
        while (unsent := await conn.fetchval(
                "SELECT count(*) FROM intake.outbox WHERE sent_at IS NULL")) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    assert len(decisions) == 100 and all(r["n"] == 1 for r in decisions)
    assert unsent == 0
