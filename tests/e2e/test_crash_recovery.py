"""An accepted complaint is never lost: services killed mid-flight (SIGKILL, no graceful
shutdown) and restarted still route every complaint exactly once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
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


def restart(system: sp4n.RunningSystem, service: str) -> None:
    """Start ``service`` again on its port, as the process supervisor would."""
    old = system.procs[service]
    env = sp4n.settings_env(system.settings, **{f"{s}_port": p for s, p in system.ports.items()})
    env["SP4N_HOST"] = "127.0.0.1"
    system.procs[service] = subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"], env=env, cwd=sp4n.ROOT,
        stdout=system.logs[service].open("ab"), stderr=subprocess.STDOUT)
    assert old.poll() is not None
    for _ in range(200):
        try:
            if httpx.get(f"{system.url(service)}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if system.procs[service].poll() is not None:
            raise AssertionError(system.log_tail(service))
        time.sleep(0.1)
    raise AssertionError(f"{service} not ready after restart:\n{system.log_tail(service)}")


def kill(system: sp4n.RunningSystem, service: str) -> None:
    system.procs[service].send_signal(signal.SIGKILL)
    system.procs[service].wait(timeout=10)


@pytest.fixture(scope="module")
def running(settings, tmp_path_factory):
    system = sp4n.start(settings, ["intake", "routing"], tmp_path_factory.mktemp("crash"))
    yield system
    system.stop()


async def test_killed_consumer_and_killed_publisher_lose_nothing(running, settings, portal_key):
    headers = {"Authorization": f"Bearer {portal_key}"}
    async with EventTap(settings.amqp_url, settings.namespace, ("complaint.routed",)) as tap:
        # 1. routing is dead while complaints arrive: they wait, durable, in its queue.
        kill(running, "routing")
        async with httpx.AsyncClient(base_url=running.url("intake"), headers=headers) as client:
            first = [(await client.post("/v1/complaints", json=complaint(i))).json()["complaint_id"]
                     for i in range(20)]
        await asyncio.sleep(0.5)
        assert tap.of("complaint.routed") == []
        await asyncio.to_thread(restart, running, "routing")
        for cid in first:
            await tap.wait_for("complaint.routed", cid, timeout=20)

        # 2. intake is killed while it is still publishing from its outbox: whatever it had
        # accepted (answered 202) is published after its restart.
        async with httpx.AsyncClient(base_url=running.url("intake"), headers=headers) as client:
            answers = await asyncio.gather(*(client.post("/v1/complaints", json=complaint(i))
                                             for i in range(40)))
        kill(running, "intake")
        second = [a.json()["complaint_id"] for a in answers if a.status_code == 202]
        assert len(second) == 40
        await asyncio.to_thread(restart, running, "intake")
        for cid in second:
            await tap.wait_for("complaint.routed", cid, timeout=20)

        # 3. routing is killed while it works through a backlog; redelivered events have no
        # second effect.
        async with httpx.AsyncClient(base_url=running.url("intake"), headers=headers) as client:
            third = [(await client.post("/v1/complaints", json=complaint(i))).json()["complaint_id"]
                     for i in range(40)]
        await asyncio.sleep(0.2)
        kill(running, "routing")
        await asyncio.to_thread(restart, running, "routing")
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
