"""sp4n chaos run: N complaints through all four services (two replicas each) while faults
are injected at random, then the fault scenarios' checker (tests/faults/checker.py).

Every service reaches PostgreSQL and RabbitMQ through a fault proxy (tests/faults/proxy.py);
every few seconds one fault is injected for a few seconds: a cut, a blackhole or added
latency on either link, or a SIGKILL of a random replica (restarted after). With
``--real-restarts`` RabbitMQ itself (``rabbitmqctl stop_app``/``start_app``) and PostgreSQL
itself (``pg_ctlcluster … restart``) are restarted too — this disturbs everything else on the
machine, so run it alone. Whatever happens, both are brought back at the end (in a finally,
with the machine's own start script, ``SP4N_START_SERVICES`` if set, as the last resort).

Prints the faults injected, the counts checked, the time to full recovery after the last
fault, throughput and the command. Exit status 0 only if the checker found nothing.

    .venv/bin/python bench/chaos.py --n 300                    # proxy faults only, small
    .venv/bin/python bench/chaos.py --real-restarts            # 10,000 complaints, run alone
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.cli import migrations_of  # noqa: E402
from services.intake.apikeys import create_api_key  # noqa: E402
from shared.db import migrate  # noqa: E402
from shared.settings import NotifySettings, Settings  # noqa: E402
from tests.e2e.receiver import WebhookReceiver  # noqa: E402
from tests.faults.checker import Checker, Sink, retry_delays_of  # noqa: E402
from tests.faults.cluster import Cluster, start_cluster  # noqa: E402
from tests.faults.load import Load, warm_up  # noqa: E402
from tests.faults.proxy import ProxyProcess, target_of, through  # noqa: E402
from tests.infra import (  # noqa: E402
    create_database,
    delete_namespace,
    drop_database,
    unique_suffix,
    with_database,
)

# This machine's script that (re)starts PostgreSQL and RabbitMQ, if it has one.
START_SERVICES = Path(os.environ.get("SP4N_START_SERVICES", "/nonexistent"))
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
CHECKED = ("complaint.routed", "complaint.triage_required", "sla.clock_started", "sla.warning",
           "sla.breached")


@dataclass
class Fault:
    kind: str
    target: str
    started: float  # seconds since the run started
    seconds: float
    note: str = ""


@dataclass
class Chaos:
    cluster: Cluster
    pg: ProxyProcess
    amqp: ProxyProcess
    real_restarts: bool
    rng: random.Random
    t0: float
    faults: list[Fault] = field(default_factory=list)
    last_fault_end: float | None = None

    def kinds(self) -> list[str]:
        kinds = ["cut:pg", "cut:amqp", "blackhole:pg", "blackhole:amqp", "latency:pg",
                 "latency:amqp", "sigkill"]
        if self.real_restarts:
            kinds += ["restart:rabbitmq", "restart:postgresql"]
        return kinds

    async def inject(self, kind: str, seconds: float) -> Fault:
        fault = Fault(kind.split(":")[0], kind.split(":")[-1], time.monotonic() - self.t0, seconds)
        self.faults.append(fault)
        print(f"[chaos] t={fault.started:6.1f}s {kind} for {seconds:.1f}s", flush=True)
        if fault.kind in ("cut", "blackhole", "latency"):
            proxy = self.pg if fault.target == "pg" else self.amqp
            if fault.kind == "latency":
                ms = self.rng.choice([100, 250, 500])
                fault.note = f"{ms} ms each way"
                await asyncio.to_thread(proxy.latency, ms)
            else:
                await asyncio.to_thread(getattr(proxy, fault.kind))
            await asyncio.sleep(seconds)
            await asyncio.to_thread(proxy.restore)
        elif fault.kind == "sigkill":
            replica = self.rng.choice(sorted(self.cluster.ports))
            fault.target = replica
            await asyncio.to_thread(self.cluster.kill, replica)
            await asyncio.sleep(seconds)
            try:
                await asyncio.to_thread(self.cluster.restart, replica, 120)
            except RuntimeError as exc:
                fault.note = f"restart failed: {str(exc)[:200]}"
        elif fault.target == "rabbitmq":
            await asyncio.to_thread(sh, "rabbitmqctl", "stop_app")
            await asyncio.sleep(seconds)
            await asyncio.to_thread(sh, "rabbitmqctl", "start_app")
        elif fault.target == "postgresql":
            fault.seconds, fault.note = 0.0, "pg_ctlcluster restart (fast shutdown, then start)"
            await asyncio.to_thread(sh, "pg_ctlcluster", "--skip-systemctl-redirect",
                                    *pg_cluster(), "restart")
        self.last_fault_end = time.monotonic()
        return fault

    async def run(self, every: tuple[float, float], lasting: tuple[float, float],
                  stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.rng.uniform(*every))
                return
            except TimeoutError:
                pass
            kind = self.rng.choice(self.kinds())
            try:
                await self.inject(kind, self.rng.uniform(*lasting))
            except Exception as exc:  # noqa: BLE001 - reported; the run goes on with the next fault
                self.faults[-1].note = f"FAILED to inject or undo: {exc}"
                print(f"[chaos] {kind} failed: {exc}", flush=True)


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=120)


def pg_cluster() -> tuple[str, str]:
    """(version, name) of the local PostgreSQL cluster on port 5432, from ``pg_lsclusters``."""
    out = subprocess.run(["pg_lsclusters", "--no-header"], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        version, name, port, *_ = line.split()
        if port == "5432":
            return version, name
    raise RuntimeError(f"no PostgreSQL cluster on port 5432 in pg_lsclusters:\n{out}")


def bring_back_infrastructure() -> None:
    """After real restarts: RabbitMQ's app and PostgreSQL running again, whatever happened
    (both commands are no-ops when already running)."""
    try:
        subprocess.run(["rabbitmqctl", "start_app"], stdout=subprocess.DEVNULL, timeout=120)
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *pg_cluster(), "start"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    except Exception as exc:  # noqa: BLE001 - the last resort below still runs
        print(f"[chaos] bringing RabbitMQ/PostgreSQL back failed: {exc}", flush=True)
    pg_up = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]).returncode == 0
    amqp_up = subprocess.run(["rabbitmqctl", "-q", "await_startup", "--timeout", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    if not (pg_up and amqp_up) and START_SERVICES.exists():
        print(f"[chaos] still down (PostgreSQL up: {pg_up}, RabbitMQ up: {amqp_up}): "
              f"running {START_SERVICES}", flush=True)
        subprocess.run(["bash", str(START_SERVICES)], timeout=180)


async def portal_key(settings: Settings) -> str:
    await migrate(settings.database_url, "intake", migrations_of("intake"))
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        return (await create_api_key(conn, "chaos-portal", "portal", "portal-sekadau"))[1]
    finally:
        await conn.close()


async def chaos(args: argparse.Namespace, admin_url: str, amqp_url: str) -> int:
    suffix = unique_suffix()
    database, ns = f"sp4n_chaos_{suffix}", f"sp4nchaos-{suffix}"
    await create_database(admin_url, database)
    settings = Settings(
        database_url=with_database(admin_url, database), amqp_url=amqp_url, namespace=ns,
        db_pool_min=1, db_pool_max=args.pool, outbox_poll_interval_s=0.2,
        notify_backoff_base_s=0.2, notify_max_attempts=10, notify_timeout_s=5,
        notify_poll_interval_s=0.1,
        notify=NotifySettings(lease_margin_s=2.0, allowed_targets=["127.0.0.1/32"]))
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="sp4n-chaos-"))
    pg = ProxyProcess(*target_of(admin_url, 5432))
    amqp = ProxyProcess(*target_of(amqp_url, 5672))
    cluster: Cluster | None = None
    keep = False  # a failed check keeps the database (the evidence) unless --drop-on-failure
    try:
        key = await portal_key(settings)
        async with WebhookReceiver() as ops, WebhookReceiver(fail_first={"/flaky": 1}) as gateway:
            sinks = [Sink("chaos-ops", ops, "/all", CHECKED),
                     Sink("chaos-gateway", gateway, "/flaky", ("sla.breached",))]
            subs = tmp / "subscriptions.json"
            subs.write_text(json.dumps([s.spec(SECRET) for s in sinks]))
            proxied = settings.model_copy(update={
                "database_url": through(settings.database_url, pg.port),
                "amqp_url": through(amqp_url, amqp.port), "notify_subscriptions_file": str(subs)})
            print(f"[chaos] starting {args.replicas} replicas of each service (logs in {tmp})", flush=True)
            cluster = await asyncio.to_thread(start_cluster, proxied, tmp, replicas=args.replicas)
            await warm_up(cluster.urls("intake"), key, [ops, gateway])
            t0 = time.monotonic()
            injector = Chaos(cluster, pg, amqp, args.real_restarts, rng, t0)
            load = Load(cluster.urls("intake"), key, amqp_url, ns, source="portal-sekadau",
                        inbound_source="wa-bot", give_up_after_s=300)
            stop = asyncio.Event()
            faults = asyncio.create_task(injector.run((args.every_min, args.every_max),
                                                      (args.fault_min, args.fault_max), stop))
            result = await load.run(args.rate, count=args.n)
            submitted_s = time.monotonic() - t0
            stop.set()
            await faults  # the fault in progress ends and is undone
            for proxy in (pg, amqp):
                await asyncio.to_thread(proxy.restore)
            for replica, alive in cluster.alive().items():
                if not alive:
                    print(f"[chaos] {replica} is not running: restarting it", flush=True)
                    await asyncio.to_thread(cluster.restart, replica, 120)
            last_end = injector.last_fault_end or time.monotonic()
            check_started = time.monotonic()
            print("[chaos] faults over; waiting for the system to settle, then checking", flush=True)
            checker = Checker(settings.database_url, amqp_url, ns, sinks,
                              progress=lambda m: print(f"[chaos] {m}", flush=True),
                              retry_delays_s=retry_delays_of(settings))
            report = await checker.check(
                result.accepted, result.inbound, timeout=args.quiet_timeout)
            total_s = time.monotonic() - t0
            # Quiet = three polls 1 s apart saw nothing moving: recovered by the first of them.
            recovery = (None if report.quiet_after_s is None
                        else check_started - last_end + max(0.0, report.quiet_after_s - 2.0))
            print_summary(args, injector, result, report, submitted_s, total_s, recovery)
            ok = report.ok and not result.failures
            keep = not ok and not args.drop_on_failure
            return 0 if ok else 1
    finally:
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        pg.close()
        amqp.close()
        if args.real_restarts:
            await asyncio.to_thread(bring_back_infrastructure)
        await delete_namespace(amqp_url, ns)
        if keep:
            print(f"[chaos] the check failed: database {database} kept for inspection "
                  f"(drop it with: dropdb {database})", flush=True)
        else:
            await drop_database(admin_url, database)


def print_summary(args, injector: Chaos, result, report, submitted_s: float, total_s: float,
                  recovery: float | None) -> None:
    by_kind = Counter(f"{f.kind}:{f.target.rpartition('-')[0] or f.target}" for f in injector.faults)
    print("\n=== sp4n chaos run ===")
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"faults injected: {len(injector.faults)} ({dict(sorted(by_kind.items()))})")
    for f in injector.faults:
        print(f"  t={f.started:6.1f}s  {f.kind:9} {f.target:14} {f.seconds:4.1f}s  {f.note}")
    print(f"complaints: {result.total} accepted ({len(result.accepted)} over HTTP, "
          f"{len(result.inbound)} over AMQP) of {args.n}; answers {dict(result.statuses)}")
    if result.failures:
        print(f"submission failures: {len(result.failures)}, e.g. {result.failures[:3]}")
    print(report.text())
    print(f"throughput: {result.total / submitted_s:.1f} complaints/s accepted over {submitted_s:.0f}s "
          f"(offered {args.rate}/s); {result.total / total_s:.1f}/s end to end until quiet "
          f"({total_s:.0f}s)")
    print("time to full recovery after the last fault: "
          + (f"{recovery:.1f}s" if recovery is not None else f"not within {args.quiet_timeout}s"))
    verdict = "OK: 0 lost, 0 duplicated, 0 dead-lettered, 0 stuck" if report.ok and not result.failures \
        else f"FAILED: {len(report.problems)} problems"
    print(verdict)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="complaints to submit")
    ap.add_argument("--rate", type=float, default=30.0, help="complaints offered per second")
    ap.add_argument("--replicas", type=int, default=2, help="processes of each service")
    ap.add_argument("--pool", type=int, default=4, help="database pool size of each process")
    ap.add_argument("--every-min", type=float, default=3.0, help="seconds between faults, at least")
    ap.add_argument("--every-max", type=float, default=8.0)
    ap.add_argument("--fault-min", type=float, default=2.0, help="seconds a fault lasts, at least")
    ap.add_argument("--fault-max", type=float, default=10.0)
    ap.add_argument("--real-restarts", action="store_true",
                    help="also restart RabbitMQ and PostgreSQL themselves (run alone on the machine)")
    ap.add_argument("--quiet-timeout", type=float, default=900.0,
                    help="seconds to wait for the system to settle after the last fault")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--drop-on-failure", action="store_true",
                    help="drop the run's database even when the check failed (kept by default)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
        sys.argv += ["--seed", str(args.seed)]  # the printed command reproduces the fault sequence
    admin_url = os.environ.get("SP4N_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    amqp_url = os.environ.get("SP4N_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    return asyncio.run(chaos(args, admin_url, amqp_url))


if __name__ == "__main__":
    sys.exit(main())
