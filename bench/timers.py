"""sp4n benchmark: the sla timer scanner with many open clocks.

Claiming due timers must cost the same with 10k and 1M open clocks, breach and escalation lag
must stay under 1 s (p99), and the scanner's memory must not grow with open clocks. For each
size N it creates a fresh database, migrates the sla schema and seeds, directly in SQL
(``generate_series``), N open clocks, each with a pending warning, breach and three escalation
timers due in the future (5 N timers), then:

- claim cost: ``claim_due_timers`` (the scanner's claim statement ``CLAIM_DUE`` + its fire
  update) with ``--due`` timers due now among the 5 N pending, seeded after ANALYZE (the
  statistics do not know them: the case where a planner guessing the backlog goes wrong) —
  the claim statement's execution time and the buffers its plan touches (EXPLAIN ANALYZE
  BUFFERS, one batch), how it reads ``timers`` (printed under the table), and the wall time
  of a whole batch (``scan_once``: claim, fire, the firing log and the outbox rows, commit),
  none of which may depend on N;
- lag: ``--lag-timers`` breach and escalation timers due over the next few seconds while the
  real scanner loop (``scanner.scan_once`` every ``SP4N_SLA_SCAN_INTERVAL_S``) runs — the lag is
  fired_at − fire_at, p50/p99/max;
- memory: this process's RSS (it runs the same scanner code the sla process runs, plus the
  open-clocks and coverage gauges) before and after the scans.

    .venv/bin/python bench/timers.py [--sizes 10000,1000000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.cli import migrations_of  # noqa: E402
from services.sla.calendars import CalendarSource  # noqa: E402
from services.sla.metrics import SlaMetrics  # noqa: E402
from services.sla.repository import CLAIM_DUE, PgSlaRepository  # noqa: E402
from services.sla.scanner import refresh_open_clocks, scan_once  # noqa: E402
from shared.db import create_pool, migrate  # noqa: E402
from shared.uow import PgUnitOfWork  # noqa: E402
from tests.infra import create_database, drop_database, with_database  # noqa: E402

SEED_CLOCKS = """
INSERT INTO clocks (complaint_id, clock, hop, policy_key, opd_code, started_at, working_days,
    deadline, warn_at, initial_deadline, calendar_version, policy_version, category)
SELECT gen_random_uuid(), 'opd_response', 1, 'opd_response', 'opd' || (g % 40), now(), 5,
    now() + interval '7 days' + (g % 86400) * interval '1 second', now() + interval '6 days',
    now() + interval '7 days', 'bench', 1, 'jalan'
FROM generate_series(1, $1) AS g
"""
SEED_TIMERS = """
INSERT INTO timers (clock_id, kind, point, due_at, fire_at)
SELECT c.id, k.kind, k.point, c.deadline + k.after, c.deadline + k.after
FROM clocks c CROSS JOIN (VALUES ('warning', '', interval '-1 day'),
                                 ('breach', '', interval '0'),
                                 ('escalate', '1:pejabat_penghubung:0:1', interval '0'),
                                 ('escalate', '2:kepala_opd:2:1', interval '2 days'),
                                 ('escalate', '3:admin_koordinator:5:1', interval '5 days'))
    AS k(kind, point, after)
"""
# Due timers on fresh clocks: ``$1`` of them, due at now() + $2 s … spread over $3 s.
SEED_DUE = """
WITH c AS (
    INSERT INTO clocks (complaint_id, clock, hop, policy_key, opd_code, started_at, working_days,
        deadline, initial_deadline, calendar_version, policy_version)
    SELECT gen_random_uuid(), 'opd_response', 1, 'opd_response', 'due', now() - interval '9 days', 5,
        now() + $2 * interval '1 second' + (g::float8 / $1) * $3 * interval '1 second',
        now(), 'bench', 1
    FROM generate_series(1, $1) AS g RETURNING id, deadline
)
INSERT INTO timers (clock_id, kind, point, due_at, fire_at)
SELECT id, k.kind, k.point, deadline, deadline FROM c
CROSS JOIN (VALUES ('breach', ''), ('escalate', '1:pejabat_penghubung:0:1')) AS k(kind, point)
"""
# The claim statement itself (EXPLAIN ANALYZE of the plan the scanner runs, batch 500).
CLAIM_PLAN = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + CLAIM_DUE


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def buffers(plan: list[dict]) -> int:
    top = plan[0]["Plan"]
    return int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))


def timers_scan(plan: list[dict]) -> str:
    """How the claim reads ``timers``: the node (and index) and whether anything sorts."""
    def walk(node: dict) -> list[dict]:
        return [node] + [n for child in node.get("Plans", ()) for n in walk(child)]
    found = walk(plan[0]["Plan"])
    scans = [f"{n['Node Type']}({n.get('Index Name', '-')})" for n in found
             if n.get("Relation Name") == "timers"]
    sorts = sum(n["Node Type"] in ("Sort", "Incremental Sort") for n in found)
    return ",".join(scans) + (f"+{sorts}sort" if sorts else "")


async def one_size(admin: str, n: int, due: int, lag_timers: int, batch: int,
                   interval_s: float, plans: dict[int, str]) -> dict[str, float]:
    database = f"sp4n_tm_{uuid.uuid4().hex[:10]}"
    await create_database(admin, database)
    dsn = with_database(admin, database)
    out: dict[str, float] = {"n": n}
    try:
        await migrate(dsn, "sla", migrations_of("sla"))
        pool = await create_pool(dsn, schema="sla", min_size=1, max_size=4)
        uow = PgUnitOfWork(lambda: pool, PgSlaRepository)
        metrics = SlaMetrics(CollectorRegistry())
        calendars = CalendarSource("Asia/Pontianak")
        t0 = time.perf_counter()
        # Seeding on its own connection as ``replica``: no foreign-key or trigger work per row
        # (the rows are consistent by construction), which makes 1M clocks (5M timers) take
        # minutes less; the pool's connections keep the normal role.
        seeder = await asyncpg.connect(dsn, server_settings={
            "search_path": "sla", "session_replication_role": "replica"})
        try:
            await seeder.execute("DELETE FROM escalation_ladders")
            await seeder.execute(SEED_CLOCKS, n)
            await seeder.execute(SEED_TIMERS)
            await seeder.execute("VACUUM ANALYZE clocks")
            await seeder.execute("VACUUM ANALYZE timers")
        finally:
            await seeder.close()
        out["seed_s"] = time.perf_counter() - t0
        await refresh_open_clocks(uow, metrics, calendars)  # warm the gauges' code path
        rss_before = rss_mb()

        # Claim cost: `due` timers due now, claimed in batches of `batch`.
        async with pool.acquire() as conn:
            await conn.execute(SEED_DUE, due // 2, -60.0, 1.0)
            explained = await conn.fetchval(CLAIM_PLAN, batch)
        plan = json.loads(explained) if isinstance(explained, str) else explained
        out["claim_buffers"] = buffers(plan)
        out["claim_sql_ms"] = float(plan[0]["Execution Time"])
        plans[n] = timers_scan(plan)
        times = []
        claimed = 0
        while True:
            t = time.perf_counter()
            k = await scan_once(uow, batch, metrics)
            times.append(time.perf_counter() - t)
            claimed += k
            if k == 0:
                break
        out["claim_ms_per_batch"] = statistics.fmean(times[:-1]) * 1000 if len(times) > 1 else 0
        out["claimed"] = claimed
        t = time.perf_counter()
        await scan_once(uow, batch, metrics)
        out["empty_scan_ms"] = (time.perf_counter() - t) * 1000

        # Lag: the scanner loop running while timers come due over the next seconds.
        async with pool.acquire() as conn:
            await conn.execute(SEED_DUE, lag_timers // 2, 1.0, 4.0)
        stop = time.monotonic() + 7.0
        while time.monotonic() < stop:
            while await scan_once(uow, batch, metrics) >= batch:
                pass
            await asyncio.sleep(interval_s)
        await refresh_open_clocks(uow, metrics, calendars)
        lags = [r["lag"] for r in await pool.fetch(
            "SELECT extract(epoch FROM t.fired_at - t.fire_at)::float8 AS lag FROM timers t"
            " JOIN clocks c ON c.id = t.clock_id WHERE c.opd_code = 'due'"
            " AND t.fire_at > now() - interval '10 seconds' AND t.fired_at IS NOT NULL")]
        pending_due = await pool.fetchval(
            "SELECT count(*) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
            " AND fire_at <= now()")
        lags.sort()
        out["lag_n"] = len(lags)
        out["lag_p50_ms"] = lags[len(lags) // 2] * 1000 if lags else float("nan")
        out["lag_p99_ms"] = lags[int(len(lags) * 0.99) - 1] * 1000 if lags else float("nan")
        out["lag_max_ms"] = lags[-1] * 1000 if lags else float("nan")
        out["pending_due_after"] = pending_due
        out["rss_before_mb"] = rss_before
        out["rss_after_mb"] = rss_mb()
        await pool.close()
    finally:
        await drop_database(admin, database)
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,1000000", help="open clocks per run")
    ap.add_argument("--due", type=int, default=2000, help="timers due at once (claim cost)")
    ap.add_argument("--lag-timers", type=int, default=2000, help="timers coming due (lag)")
    ap.add_argument("--batch", type=int, default=500, help="SP4N_SLA_SCAN_BATCH_SIZE")
    ap.add_argument("--interval", type=float, default=0.2, help="SP4N_SLA_SCAN_INTERVAL_S")
    ap.add_argument("--postgres", default=os.environ.get(
        "SP4N_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = ap.parse_args()
    plans: dict[int, str] = {}
    results = [await one_size(args.postgres, int(n), args.due, args.lag_timers, args.batch,
                              args.interval, plans) for n in args.sizes.split(",")]
    print(f"\nmachine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, asyncpg {asyncpg.__version__}")
    print(f"command: .venv/bin/python bench/timers.py --sizes {args.sizes} --due {args.due} "
          f"--lag-timers {args.lag_timers} --batch {args.batch} --interval {args.interval}")
    cols = ("n", "seed_s", "claim_buffers", "claim_sql_ms", "claim_ms_per_batch", "empty_scan_ms",
            "claimed",
            "lag_n", "lag_p50_ms", "lag_p99_ms", "lag_max_ms", "pending_due_after",
            "rss_before_mb", "rss_after_mb")
    print("  ".join(f"{c:>18}" for c in cols))
    for r in results:
        print("  ".join(f"{r[c]:>18.1f}" if isinstance(r[c], float) else f"{r[c]:>18}"
                        for c in cols))
    for n, scan in plans.items():
        print(f"claim plan at {n} open clocks: timers read by {scan}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
