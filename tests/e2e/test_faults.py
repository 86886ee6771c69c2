"""Infrastructure faults while complaints flow: nothing lost, nothing stuck, nothing done
twice, and no repair by hand.

Two replicas of every service run throughout, each reaching PostgreSQL and RabbitMQ only
through a fault proxy (tests/faults/proxy.py); two webhook receivers are subscribed (one
fails each first attempt). Each scenario submits complaints at a steady rate (over HTTP,
alternating between the two intake replicas, and every fifth over the AMQP inbound
exchange), injects its fault in the middle, and then runs the checker
(tests/faults/checker.py) over the complaints it submitted: every one decided once, each
clock started once, each due alert fired once, every webhook delivered under one
webhook-id, 0 messages in any DLQ, 0 unsent outbox rows — after a bounded wait for the
system to become quiet. The scenarios share one cluster (its start-up is the slow part);
each one checks only its own complaints, and DLQs are emptied after each check so that a
failure is reported by the scenario that caused it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest

from services.cli import migrations_of
from services.intake.apikeys import create_api_key
from shared.db import migrate
from shared.settings import NotifySettings, Settings
from tests.e2e.receiver import WebhookReceiver
from tests.faults.checker import Checker, Report, Sink, purge_dlqs, retry_delays_of
from tests.faults.cluster import SERVICES, Cluster, start_cluster
from tests.faults.load import Load, LoadResult, warm_up
from tests.faults.proxy import ProxyProcess, target_of, through
from tests.infra import create_database, delete_namespace, drop_database, run, unique_suffix, with_database

pytestmark = pytest.mark.e2e
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
RATE = 4.0  # complaints per second, HTTP and AMQP together
QUIET_TIMEOUT_S = 120.0
CHECKED = ("complaint.routed", "complaint.triage_required", "sla.clock_started", "sla.warning",
           "sla.breached")


@dataclass
class FaultSystem:
    settings: Settings  # direct URLs: what the test and the checker use
    cluster: Cluster
    pg: ProxyProcess
    amqp: ProxyProcess
    api_key: str
    checker: Checker


@pytest.fixture(scope="module")
def fault_settings(infra):
    """A database and namespace of this module's own: the checker sees only its traffic."""
    suffix = unique_suffix()
    database, namespace = f"sp4n_faults_{suffix}", f"sp4nfaults-{suffix}"
    run(create_database(infra.postgres_admin_url, database))
    try:
        yield Settings(
            database_url=with_database(infra.postgres_admin_url, database),
            amqp_url=infra.amqp_url, namespace=namespace,
            # 8 processes share one PostgreSQL with other test runs: small pools.
            db_pool_min=1, db_pool_max=3,
            outbox_poll_interval_s=0.2,
            notify_backoff_base_s=0.2, notify_max_attempts=8, notify_timeout_s=5,
            notify_poll_interval_s=0.1,
            # A killed notify replica's claimed deliveries are taken over after timeout + margin.
            notify=NotifySettings(lease_margin_s=2.0, allowed_targets=["127.0.0.1/32"]),
            # A killed relay's leased outbox rows are republished when the lease ends (the
            # lease stays well above the publish timeout, as the setting requires).
            outbox_lease_s=10.0, outbox_publish_timeout_s=3.0,
        )
    finally:
        run(delete_namespace(infra.amqp_url, namespace))
        run(drop_database(infra.postgres_admin_url, database))


@pytest.fixture(scope="module")
async def sinks():
    async with WebhookReceiver() as ops, WebhookReceiver(fail_first={"/flaky": 1}) as gateway:
        yield [Sink("fault-ops", ops, "/all", CHECKED),
               Sink("fault-gateway", gateway, "/flaky", ("sla.breached",))]


async def _portal_key(settings: Settings) -> str:
    await migrate(settings.database_url, "intake", migrations_of("intake"))
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        return (await create_api_key(conn, "faults-portal", "portal", "portal-sekadau"))[1]
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def system(fault_settings, sinks, tmp_path_factory):
    s = fault_settings
    api_key = await _portal_key(s)
    tmp = tmp_path_factory.mktemp("faults")
    subs = tmp / "subscriptions.json"
    subs.write_text(json.dumps([sink.spec(SECRET) for sink in sinks]))
    pg = ProxyProcess(*target_of(s.database_url, 5432))
    amqp = ProxyProcess(*target_of(s.amqp_url, 5672))
    cluster = None
    try:
        proxied = s.model_copy(update={"database_url": through(s.database_url, pg.port),
                                       "amqp_url": through(s.amqp_url, amqp.port),
                                       "notify_subscriptions_file": str(subs)})
        cluster = await asyncio.to_thread(start_cluster, proxied, tmp, replicas=2)
        await warm_up(cluster.urls("intake"), api_key, [sink.receiver for sink in sinks])
        yield FaultSystem(s, cluster, pg, amqp, api_key,
                          Checker(s.database_url, s.amqp_url, s.namespace, sinks,
                                  retry_delays_s=retry_delays_of(s)))
    finally:
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        pg.close()
        amqp.close()


async def healthy(system: FaultSystem) -> None:
    """Before a scenario: proxies forwarding, every replica running and ready (a replica that
    died in an earlier scenario is started again, so one failure does not cascade)."""
    for proxy in (system.pg, system.amqp):
        if proxy.mode != "normal":
            await asyncio.to_thread(proxy.restore)
    for replica, alive in system.cluster.alive().items():
        if not alive:
            await asyncio.to_thread(system.cluster.restart, replica)
    await asyncio.to_thread(system.cluster.wait_ready, list(system.cluster.ports))


async def scenario(system: FaultSystem, fault: Callable[[], Awaitable[None]],
                   lead_s: float = 3.0, tail_s: float = 3.0) -> tuple[LoadResult, Report, list[str]]:
    """Complaints at RATE from ``lead_s`` before the fault until ``tail_s`` after it, then
    the checker. Returns the load's outcome, the checker's report and replicas that died."""
    await healthy(system)
    load = Load(system.cluster.urls("intake"), system.api_key, system.settings.amqp_url,
                system.settings.namespace, source="portal-sekadau", inbound_source="wa-bot")
    flowing = asyncio.create_task(load.run(RATE))
    try:
        await asyncio.sleep(lead_s)
        await fault()
        await asyncio.sleep(tail_s)
    finally:
        load.stop()
        result = await flowing
    try:
        report = await system.checker.check(result.accepted, result.inbound, timeout=QUIET_TIMEOUT_S)
    finally:
        await purge_dlqs(system.settings.amqp_url, system.settings.namespace)
    dead = [r for r, alive in system.cluster.alive().items() if not alive]
    print(f"\nload: {result.total} accepted, answers {dict(result.statuses)}\n{report.text()}")
    return result, report, dead


def verdict(result: LoadResult, report: Report, dead: list[str], system: FaultSystem) -> None:
    problems = []
    if result.failures:
        problems.append(f"{len(result.failures)} submissions failed: {result.failures[:3]}")
    if dead:
        tails = "\n".join(f"--- {r}\n{system.cluster.log_tail(r, 15)}" for r in dead)
        problems.append(f"replicas died: {dead}\n{tails}")
    assert result.total > 0
    assert report.ok and not problems, "\n".join([report.text(), *problems])


async def test_broker_link_cut_for_10s(system):
    async def fault() -> None:
        await asyncio.to_thread(system.amqp.cut)
        await asyncio.sleep(10)
        await asyncio.to_thread(system.amqp.restore)

    verdict(*await scenario(system, fault), system)


async def test_database_link_cut_for_10s(system):
    async def fault() -> None:
        await asyncio.to_thread(system.pg.cut)
        await asyncio.sleep(10)
        await asyncio.to_thread(system.pg.restore)

    verdict(*await scenario(system, fault), system)


async def test_database_latency_500ms_for_20s(system):
    async def fault() -> None:
        await asyncio.to_thread(system.pg.latency, 250)  # each way: 500 ms per round trip
        await asyncio.sleep(20)
        await asyncio.to_thread(system.pg.restore)

    verdict(*await scenario(system, fault), system)


async def test_sigkill_of_each_service_in_turn(system):
    async def fault() -> None:
        # One replica of each service in turn, a few seconds apart: SIGKILLed, then started
        # again at once (it comes up while the next one is killed); all ready at the end.
        killed = []
        for n, service in enumerate(SERVICES):
            replica = system.cluster.replicas(service)[n % 2]
            await asyncio.to_thread(system.cluster.kill, replica)
            await asyncio.sleep(1.5)
            system.cluster.launch(replica)
            killed.append(replica)
            await asyncio.sleep(3.0)
        await asyncio.to_thread(system.cluster.wait_ready, killed)

    verdict(*await scenario(system, fault), system)
