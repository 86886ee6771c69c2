"""sp4n benchmark: intake throughput, accept→routed latency, end-to-end pipeline rate and
SLA breach-detection lag, all against real PostgreSQL and RabbitMQ on this machine.

It creates a fresh database and broker namespace, starts the four services as real
processes (one each), runs the phases, prints figures, and removes what it created.

    .venv/bin/python bench/pipeline.py                      # all phases, default sizes
    .venv/bin/python bench/pipeline.py --phases accept,latency --n 3000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.cli import migrations_of  # noqa: E402
from services.intake.apikeys import create_api_key  # noqa: E402
from shared.db import migrate  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topology import ALL_QUEUES, events_exchange  # noqa: E402
from tests.e2e import system as sp4n  # noqa: E402
from tests.infra import create_database, delete_namespace, drop_database, with_database  # noqa: E402

CATEGORIES = [("infrastruktur_jalan", "Belitang Hilir"), ("kesehatan", "Nanga Taman"),
              ("pendidikan", "Sekadau Hilir"), ("pelayanan_kecamatan", "Nanga Mahap"),
              ("administrasi_kependudukan", "Belitang")]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def body(i: int, received_at: datetime) -> dict:
    cat, kec = CATEGORIES[i % len(CATEGORIES)]
    return {
        "source": "bench", "external_id": f"bench-{uuid.uuid4().hex}",
        "received_at": received_at.isoformat(), "classification": "pengaduan",
        "category": cat, "title": f"Laporan uji beban nomor {i}",
        "description": "Laporan uji beban untuk mengukur kapasitas sp4n pada mesin ini.",
        # 500 desa: duplicates stay occasional, as in real traffic (the regency has ~90 desa;
        # one desa per category per week seldom gets more than a few reports).
        "location": {"kecamatan": kec, "desa": f"Desa Uji {random.randrange(500)}"},
        "reporter": {"name": "Penguji", "phone": "+6281200000000"},
    }


class Tap:
    """Arrival time (monotonic) of each event of interest, keyed by (event name, subject)."""

    def __init__(self, url: str, ns: str, keys: tuple[str, ...]) -> None:
        self.url, self.ns, self.keys = url, ns, keys
        self.seen: dict[tuple[str, str], float] = {}
        self.payloads: dict[tuple[str, str], dict] = {}

    async def start(self) -> None:
        self.conn = await aio_pika.connect(self.url)
        ch = await self.conn.channel()
        await ch.set_qos(prefetch_count=1000)
        ex = await ch.declare_exchange(events_exchange(self.ns).name, aio_pika.ExchangeType.TOPIC,
                                       durable=True)
        q = await ch.declare_queue(exclusive=True)
        for k in self.keys:
            await q.bind(ex, routing_key=k)
        await q.consume(self._on, no_ack=True)

    async def _on(self, msg) -> None:
        now = time.monotonic()
        if msg.routing_key == "sla.clock_started" and b'"opd_response"' not in msg.body:
            return  # only the OPD's clock marks a complaint as through the pipeline
        ev = json.loads(msg.body)
        name = ev["type"].removeprefix("id.go.sp4n.").rsplit(".", 1)[0]
        key = (name, ev["subject"])
        if name == "sla.clock_started" or name == "sla.breached":
            key = (f"{name}:{ev['data']['clock']}", ev["subject"])
        self.seen.setdefault(key, now)
        self.payloads.setdefault(key, ev)

    async def wait(self, keys: list[tuple[str, str]], timeout: float) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            missing = sum(1 for k in keys if k not in self.seen)
            if not missing:
                return 0
            await asyncio.sleep(0.05)
        return sum(1 for k in keys if k not in self.seen)

    async def stop(self) -> None:
        await self.conn.close()


async def post_all(client: httpx.AsyncClient, bodies: list[dict], concurrency: int,
                   rate: float | None) -> tuple[dict[str, float], list[float], int]:
    """POST every body; returns complaint id → accept time, request latencies, errors."""
    accepted: dict[str, float] = {}
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue = asyncio.Queue()
    start = time.monotonic()
    for i, b in enumerate(bodies):
        queue.put_nowait((i, b))

    async def worker():
        nonlocal errors
        while not queue.empty():
            i, b = queue.get_nowait()
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            t0 = time.monotonic()
            try:
                r = await client.post("/v1/complaints", json=b)
            except httpx.HTTPError:
                errors += 1
                continue
            t1 = time.monotonic()
            if r.status_code == 202:
                accepted[r.json()["complaint_id"]] = t1
                latencies.append(t1 - t0)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted, latencies, errors


async def drain(amqp_url: str, ns: str, services: list[str], timeout: float = 600) -> float:
    """Wait until the queues of the running services are empty (the previous phase's backlog
    is processed), so phases do not measure each other; returns the seconds waited."""
    t0 = time.monotonic()
    conn = await aio_pika.connect(amqp_url)
    try:
        quiet = 0
        while time.monotonic() - t0 < timeout and quiet < 3:
            pending = 0
            for spec in (s for s in ALL_QUEUES if s.service in services):
                async with conn.channel() as ch:
                    q = await ch.declare_queue(spec.name(ns), passive=True)
                    pending += q.declaration_result.message_count
            quiet = quiet + 1 if pending == 0 else 0
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    return time.monotonic() - t0


async def phase_accept_wrk(url, key, tap, seconds, concurrency) -> None:
    """Sustained acceptance with wrk (a C load generator) so the client's own CPU use does
    not starve the services on a small machine."""
    before = sum(1 for (name, _s) in tap.seen if name == "complaint.routed")
    env = {**os.environ, "SP4N_KEY": key, "SP4N_RECEIVED_AT": datetime.now(UTC).isoformat()}
    cmd = ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s",
           str(ROOT / "bench" / "accept.lua"), url]
    t0 = time.monotonic()
    out = await asyncio.to_thread(subprocess.run, cmd, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    print(f"\n[accept/wrk] {' '.join(cmd)}")
    for line in out.stdout.splitlines():
        if any(k in line for k in ("Requests/sec", "requests in", "Non-2xx", "50%", "99%", "Socket errors")):
            print(f"[accept/wrk] {line.strip()}")
    await asyncio.sleep(2)
    routed_wait = time.monotonic()
    last = -1
    while True:  # wait until routing has caught up (no new routed events for 2 s)
        routed = sum(1 for (name, _s) in tap.seen if name == "complaint.routed") - before
        if routed == last:
            break
        last = routed
        await asyncio.sleep(2)
    overall = routed / (elapsed + max(0.0, time.monotonic() - routed_wait - 4))
    print(f"[accept/wrk] {routed} routed; routing caught up {time.monotonic() - routed_wait - 2:.1f}s "
          f"after wrk stopped → {overall:.0f} routed/s overall")


async def phase_accept(client, tap, n, concurrency) -> None:
    now = datetime.now(UTC)
    bodies = [body(i, now) for i in range(n)]
    t0 = time.monotonic()
    accepted, lat, errors = await post_all(client, bodies, concurrency, None)
    elapsed = time.monotonic() - t0
    missing = await tap.wait([("complaint.routed", c) for c in accepted] , timeout=120)
    routed_done = max((tap.seen.get(("complaint.routed", c), 0) for c in accepted), default=t0) - t0
    print(f"\n[accept] {len(accepted)} accepted, {errors} errors in {elapsed:.2f}s with {concurrency} "
          f"concurrent clients → {len(accepted) / elapsed:.0f} accepted/s "
          f"(POST latency p50 {pct(lat, 50) * 1000:.1f} ms, p99 {pct(lat, 99) * 1000:.1f} ms)")
    print(f"[accept] all routed {routed_done:.2f}s after the first POST "
          f"→ {len(accepted) / routed_done:.0f} routed/s; {missing} never routed")


async def phase_latency(client, tap, rate, seconds, concurrency) -> None:
    n = int(rate * seconds)
    now = datetime.now(UTC)
    bodies = [body(i, now) for i in range(n)]
    accepted, lat, errors = await post_all(client, bodies, concurrency, rate)
    missing = await tap.wait([("complaint.routed", c) for c in accepted], timeout=60)
    delays = [tap.seen[("complaint.routed", c)] - t for c, t in accepted.items()
              if ("complaint.routed", c) in tap.seen]
    print(f"\n[latency] offered {rate:.0f} complaints/s for {seconds}s: {len(accepted)} accepted, "
          f"{errors} errors, {missing} not routed")
    print(f"[latency] accept→routed p50 {pct(delays, 50) * 1000:.1f} ms, "
          f"p99 {pct(delays, 99) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms")


async def phase_pipeline_wrk(url, key, tap, seconds, concurrency) -> None:
    """Sustained end-to-end rate: wrk posts for ``seconds``; done when sla has set the OPD's
    clock for every accepted complaint (every bench category routes)."""
    before = sum(1 for (name, _s) in tap.seen if name == "sla.clock_started:opd_response")
    env = {**os.environ, "SP4N_KEY": key, "SP4N_RECEIVED_AT": datetime.now(UTC).isoformat()}
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s",
           str(ROOT / "bench" / "accept.lua"), url]
    t0 = time.monotonic()
    out = await asyncio.to_thread(subprocess.run, cmd, env=env, capture_output=True, text=True)
    sent = int(re.search(r"(\d+) requests in", out.stdout)[1])
    non2xx = int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)) else 0
    accepted = sent - non2xx
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done = sum(1 for (name, _s) in tap.seen if name == "sla.clock_started:opd_response") - before
        if done >= accepted:
            break
        await asyncio.sleep(0.2)
    elapsed = max(ts for (name, _s), ts in tap.seen.items() if name == "sla.clock_started:opd_response") - t0
    print(f"\n[pipeline/wrk] {' '.join(cmd)}")
    print(f"[pipeline/wrk] {accepted} accepted ({non2xx} refused) in {seconds}s; all routed with "
          f"clocks set {elapsed:.1f}s after the first POST → {done / elapsed:.0f} complaints/s end to end "
          f"({done} complaints through the pipeline; wrk counts a request it timed out on as not "
          f"answered even when intake accepted it)")


async def phase_pipeline(client, tap, n, concurrency) -> None:
    """accepted → routed → clocks set (the OPD's hop clock started by sla)."""
    now = datetime.now(UTC)
    bodies = [body(i, now) for i in range(n)]
    t0 = time.monotonic()
    accepted, _lat, errors = await post_all(client, bodies, concurrency, None)
    keys = [("sla.clock_started:opd_response", c) for c in accepted]
    missing = await tap.wait(keys, timeout=180)
    done = max(tap.seen.get(k, 0) for k in keys) - t0
    print(f"\n[pipeline] {len(accepted)} complaints accepted → routed → clocks set in {done:.2f}s "
          f"→ {len(accepted) / done:.0f} complaints/s end to end ({errors} errors, {missing} incomplete)")


async def phase_breach_lag(client, tap, settings, open_timers, coming_due) -> None:
    """Scanner detection lag with ``open_timers`` pending timers in sla.

    Deadlines are ends of working days, so none falls due during a run by itself: the bench
    brings ``coming_due`` pending breach timers due over the next 5 s (a direct update of
    ``due_at`` in this throwaway database — what the passing of time does in production)
    and measures fired − due. Backdated complaints (already overdue when received) fire in
    the transaction that creates their clock; that path is reported separately.
    """
    conn = await asyncpg.connect(settings.database_url)
    try:
        pending_sql = "SELECT count(*) FROM sla.timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
        before = await conn.fetchval(pending_sql)
        fresh = max(0, (open_timers - before) // 4)  # a fresh complaint opens ~4 pending timers
        if fresh:
            now = datetime.now(UTC)
            accepted, _, _ = await post_all(client, [body(i, now) for i in range(fresh)], 32, None)
            await tap.wait([("sla.clock_started:opd_response", c) for c in accepted], timeout=600)
        pending = await conn.fetchval(pending_sql)
        ids = await conn.fetch(
            "WITH pick AS (SELECT id FROM sla.timers WHERE kind = 'breach' AND fired_at IS NULL"
            " AND cancelled_at IS NULL ORDER BY random() LIMIT $1)"
            " UPDATE sla.timers t SET due_at = now() + (row_number * interval '5 seconds' / $1)"
            " FROM (SELECT id, row_number() OVER () FROM pick) p WHERE t.id = p.id RETURNING t.id",
            coming_due)
        await asyncio.sleep(7)
        rows = await conn.fetch(
            "SELECT extract(epoch FROM fired_at - due_at) AS lag FROM sla.timers"
            " WHERE id = ANY($1::bigint[]) AND fired_at IS NOT NULL", [r["id"] for r in ids])
        lags = [float(r["lag"]) for r in rows]
        print(f"\n[breach] {pending} pending timers in sla; {len(ids)} breach timers brought due over 5 s "
              f"→ {len(lags)} fired by the scanner")
        print(f"[breach] detection lag (fired − due) p50 {pct(lags, 50) * 1000:.0f} ms, "
              f"p99 {pct(lags, 99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms "
              f"(scan interval {settings.sla_scan_interval_s * 1000:.0f} ms)")

        old = datetime.now(UTC) - timedelta(days=40)
        accepted, _, _ = await post_all(client, [body(i, old) for i in range(100)], 8, 20)
        await tap.wait([("sla.breached:completion", c) for c in accepted], timeout=60)
        rows = await conn.fetch(
            "SELECT extract(epoch FROM t.fired_at - c.created_at) AS lag"
            " FROM sla.timers t JOIN sla.clocks c ON c.id = t.clock_id"
            " WHERE t.kind = 'breach' AND t.fired_at IS NOT NULL AND c.complaint_id = ANY($1::uuid[])",
            list(accepted))
        lags = [float(r["lag"]) for r in rows]
        print(f"[breach] {len(accepted)} complaints received 40 days ago → {len(lags)} breaches, "
              f"fired {pct(lags, 99) * 1000:.0f} ms (p99) after their clock was created")
    finally:
        await conn.close()


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    mem = next((ln.split()[1] for ln in meminfo if ln.startswith("MemTotal")), "0")
    return (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB, "
            f"Python {platform.python_version()}, "
            "services + PostgreSQL + RabbitMQ + this client on one machine")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phases", default="accept,latency,pipeline,breach")
    ap.add_argument("--n", type=int, default=3000, help="complaints in the accept and pipeline phases")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rate", type=float, default=50, help="offered rate in the latency phase")
    ap.add_argument("--seconds", type=int, default=20, help="length of the latency phase")
    ap.add_argument("--open-timers", type=int, default=10_000)
    ap.add_argument("--coming-due", type=int, default=500,
                    help="breach timers brought due in the breach phase")
    ap.add_argument("--client", choices=("wrk", "httpx"), default="wrk" if shutil.which("wrk") else "httpx",
                    help="load generator for the accept phase (wrk if installed)")
    ap.add_argument("--accept-seconds", type=int, default=30)
    ap.add_argument("--postgres", default=os.environ.get("SP4N_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--amqp", default=os.environ.get("SP4N_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = ap.parse_args()
    phases = args.phases.split(",")

    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print("machine:", machine())
    suffix = uuid.uuid4().hex[:8]
    database, ns = f"sp4n_bench_{suffix}", f"sp4nbench-{suffix}"
    await create_database(args.postgres, database)
    settings = Settings(database_url=with_database(args.postgres, database), amqp_url=args.amqp,
                        namespace=ns, log_level="WARNING")
    system = None
    tap = Tap(args.amqp, ns, ("complaint.routed", "sla.clock_started", "sla.breached"))
    try:
        await migrate(settings.database_url, "intake", migrations_of("intake"))
        conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
        _, key = await create_api_key(conn, "bench", "portal", "bench")
        await conn.close()
        services = ["intake", "routing"] + (["sla", "notify"] if {"pipeline", "breach"} & set(phases) else [])
        system = sp4n.start(settings, services, Path(tempfile.mkdtemp(prefix="sp4n-bench-")))
        print("services:", ", ".join(f"{s} (1 process)" for s in services))
        await tap.start()
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        async with httpx.AsyncClient(base_url=system.url("intake"), limits=limits, timeout=30,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            await post_all(client, [body(i, datetime.now(UTC)) for i in range(50)], 8, None)  # warm-up
            await drain(args.amqp, ns, services)  # the warm-up's events are processed before counting
            if "accept" in phases and args.client == "wrk":
                await phase_accept_wrk(system.url("intake"), key, tap, args.accept_seconds, args.concurrency)
            elif "accept" in phases:
                await phase_accept(client, tap, args.n, args.concurrency)
            if "latency" in phases:
                print(f"\n(backlog drained in {await drain(args.amqp, ns, services):.0f}s)")
                await phase_latency(client, tap, args.rate, args.seconds, min(args.concurrency, 16))
            if "pipeline" in phases:
                print(f"\n(backlog drained in {await drain(args.amqp, ns, services):.0f}s)")
            if "pipeline" in phases and args.client == "wrk":
                await phase_pipeline_wrk(system.url("intake"), key, tap, args.accept_seconds, 16)
            elif "pipeline" in phases:
                await phase_pipeline(client, tap, args.n, args.concurrency)
            if "breach" in phases:
                print(f"\n(backlog drained in {await drain(args.amqp, ns, services):.0f}s)")
                await phase_breach_lag(client, tap, settings, args.open_timers, args.coming_due)
        await tap.stop()
    finally:
        if system:
            system.stop()
        await delete_namespace(args.amqp, ns)
        await drop_database(args.postgres, database)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
