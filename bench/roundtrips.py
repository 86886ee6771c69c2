"""sp4n benchmark: SQL statements (client↔server round trips) per consumed message.

Deterministic, unlike wall time: it counts every statement a handler sends to PostgreSQL
(asyncpg's per-connection query logger; BEGIN and COMMIT included, an ``executemany`` counted
once per row, because the server executes each row as its own statement) while the services'
real handlers process the real events of a stream of complaints, in process. It needs only
the PostgreSQL named below (no broker, no service processes): it creates a fresh database,
migrates the intake, routing and sla schemas, runs the flow and drops the database.

Flow per complaint (each event taken from the producing service's outbox):
  intake  accept (HTTP/broker submission)                → complaint.submitted
  routing complaint.submitted                            → complaint.routed (+ duplicate flag)
  sla     complaint.submitted, complaint.routed          → sla.clock_started ×3, clock_stopped
  intake  record_event for each of routing's and sla's events
A second pass delivers complaint.routed to sla BEFORE complaint.submitted (competing
consumers reorder events), and a third redelivers events already consumed (inbox hit).

    .venv/bin/python bench/roundtrips.py [--n 200] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.cli import migrations_of  # noqa: E402
from services.intake.repository import IntakeRepository  # noqa: E402
from services.intake.schemas import ComplaintIn  # noqa: E402
from services.intake.usecases import IntakeConfig, record_event, submit_complaint  # noqa: E402
from services.routing import repository as routing_repo  # noqa: E402
from services.routing.handlers import submitted_handler  # noqa: E402
from services.routing.metrics import RoutingMetrics  # noqa: E402
from services.routing.usecases import CachedRulebook  # noqa: E402
from services.sla.calendars import CalendarSource  # noqa: E402
from services.sla.handlers import make_complaint_handler  # noqa: E402
from services.sla.metrics import SlaMetrics  # noqa: E402
from services.sla.repository import PgSlaRepository  # noqa: E402
from shared.db import create_pool, migrate  # noqa: E402
from shared.events import CloudEvent  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.uow import PgUnitOfWork  # noqa: E402
from tests.infra import create_database, drop_database, with_database  # noqa: E402

CATEGORIES = [("infrastruktur_jalan", "Belitang Hilir"), ("kesehatan", "Nanga Taman"),
              ("pendidikan", "Sekadau Hilir"), ("pelayanan_kecamatan", "Nanga Mahap"),
              ("administrasi_kependudukan", "Belitang"), ("pertanahan", "Belitang")]


class Counter:
    """Statements per connection, read between handler calls (one handler at a time)."""

    def __init__(self) -> None:
        self.n = 0
        self.log: list[str] = []
        self.keep_log = False

    def __call__(self, record) -> None:
        # executemany: one Bind/Execute per row, each executed by the server on its own.
        self.n += len(record.args) if isinstance(record.args, list) else 1
        if self.keep_log:
            self.log.append(" ".join(record.query.split())[:110])


async def counted_pool(dsn: str, schema: str, counter: Counter) -> asyncpg.Pool:
    return await create_pool(dsn, schema=schema, min_size=1, max_size=2, query_logger=counter)


def submission(i: int, received_at: datetime) -> ComplaintIn:
    cat, kec = CATEGORIES[i % len(CATEGORIES)]
    return ComplaintIn.model_validate({
        "source": "bench", "external_id": f"rt-{uuid.uuid4().hex}",
        "received_at": received_at.isoformat(), "classification": "pengaduan",
        "category": cat, "title": f"Laporan uji round trip nomor {i}",
        "description": "Laporan uji untuk menghitung pernyataan SQL per pesan di sp4n.",
        "location": {"kecamatan": kec, "desa": f"Desa Uji {random.randrange(50)}"},
        "reporter": {"name": "Penguji", "phone": "+6281200000000"},
    })


async def drain_outbox(pool: asyncpg.Pool) -> list[CloudEvent]:
    """Events staged since the last call, in outbox order (as the relay would publish them)."""
    rows = await pool.fetch(
        "UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL RETURNING id, payload")
    return [CloudEvent.model_validate(r["payload"]) for r in sorted(rows, key=lambda r: r["id"])]


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="complaints per pass")
    ap.add_argument("--postgres", default=os.environ.get(
        "SP4N_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--show", action="store_true", help="print the statements of one message per kind")
    args = ap.parse_args()
    random.seed(7)

    database = f"sp4n_rt_{uuid.uuid4().hex[:10]}"
    await create_database(args.postgres, database)
    dsn = with_database(args.postgres, database)
    try:
        for svc in ("intake", "routing", "sla"):
            await migrate(dsn, svc, migrations_of(svc))
        settings = Settings(database_url=dsn)
        counters = {svc: Counter() for svc in ("intake", "routing", "sla")}
        pools = {svc: await counted_pool(dsn, svc, counters[svc]) for svc in counters}
        # Warm-up outside the counts: each pool connection prepares its statements once.
        stats = await run(pools, counters, settings, args.n, show=False, record=False)
        stats = await run(pools, counters, settings, args.n, show=args.show, record=True)
        for p in pools.values():
            await p.close()
    finally:
        await drop_database(args.postgres, database)

    print(f"\nmachine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, asyncpg {asyncpg.__version__}")
    print(f"command: .venv/bin/python bench/roundtrips.py --n {args.n}")
    print(f"{args.n} complaints per pass; statements per message (mean, min–max), BEGIN/COMMIT "
          "included, executemany counted per row\n")
    print(f"{'service':<8} {'message':<46} {'msgs':>6} {'mean':>7} {'min':>5} {'max':>5}")
    for (svc, kind), values in sorted(stats.items()):
        print(f"{svc:<8} {kind:<46} {len(values):>6} {statistics.fmean(values):>7.2f} "
              f"{min(values):>5} {max(values):>5}")
    return 0


async def run(pools, counters, settings: Settings, n: int, *, show: bool,
              record: bool) -> dict[tuple[str, str], list[int]]:
    stats: dict[tuple[str, str], list[int]] = defaultdict(list)
    shown: set[tuple[str, str]] = set()
    registry = CollectorRegistry()
    cfg = IntakeConfig.from_settings(settings)
    rulebook = CachedRulebook(lambda: routing_repo.load_rulebook(pools["routing"]),
                              ttl_s=settings.routing.rules_ttl_s)
    await rulebook()  # loaded at most every ttl_s; not part of any message
    route = submitted_handler(uow=PgUnitOfWork(lambda: pools["routing"], routing_repo.RoutingRepository),
                              rulebook=rulebook, metrics=RoutingMetrics.register(registry),
                              duplicate_window_days=settings.duplicate_window_days,
                              max_duplicate_candidates=settings.routing.max_duplicate_candidates)
    sla = make_complaint_handler(PgUnitOfWork(lambda: pools["sla"], PgSlaRepository),
                                 CalendarSource(settings.tz), SlaMetrics(registry))

    intake_uow = PgUnitOfWork(lambda: pools["intake"], IntakeRepository)

    async def intake_event(event: CloudEvent) -> None:  # as services.intake.handlers.on_event
        await record_event(intake_uow, event, cfg.tz)

    async def measure(svc: str, kind: str, call) -> None:
        c = counters[svc]
        await asyncio.sleep(0)
        before = c.n
        c.keep_log, c.log = show and (svc, kind) not in shown, []
        await call
        await asyncio.sleep(0)  # loggers are called with call_soon
        await asyncio.sleep(0)
        if record:
            stats[(svc, kind)].append(c.n - before)
        if c.keep_log:
            shown.add((svc, kind))
            print(f"-- {svc} {kind}: {c.n - before} statements")
            for q in c.log:
                print(f"   {q}")
        c.keep_log = False

    now = datetime.now(UTC)
    for pass_name in ("in order", "routed first"):
        for i in range(n):
            received = now - timedelta(minutes=random.randrange(600))
            await measure("intake", "accept (submission)",
                          submit_complaint(intake_uow, submission(i, received), cfg, now))
            [submitted] = await drain_outbox(pools["intake"])
            await measure("routing", "complaint.submitted", route(submitted))
            routing_events = await drain_outbox(pools["routing"])
            sla_in = [submitted, *[e for e in routing_events if e.event_name == "complaint.routed"]]
            if pass_name == "routed first":
                sla_in.reverse()
            for e in sla_in:
                label = e.event_name + (" (before submitted)" if pass_name == "routed first"
                                        and e.event_name == "complaint.routed" else "")
                if pass_name == "routed first" and e.event_name == "complaint.submitted" \
                        and len(sla_in) > 1:
                    label += " (after routed)"
                await measure("sla", label, sla(e))
            sla_events = await drain_outbox(pools["sla"])
            for e in [*routing_events, *sla_events]:
                label = e.event_name
                if e.event_name.startswith("sla.clock_"):
                    label += f" ({e.data['clock']})"
                await measure("intake", f"record_event {label}", intake_event(e))
            if pass_name == "in order" and i % 10 == 0:  # redeliveries: the inbox answers
                await measure("sla", "redelivery (inbox hit)", sla(submitted))
                await measure("routing", "redelivery (inbox hit)", route(submitted))
                await measure("intake", "redelivery (inbox hit)", intake_event(routing_events[0]))
    return stats


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
