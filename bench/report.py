"""sp4n benchmark: the kinerja report (issue 11) over 100k complaints.

Creates a fresh database on the PostgreSQL named below, migrates intake's schema, seeds
``--n`` complaints received over the past year with SQL (their timeline — submitted, routed,
clock starts, tindak lanjut, closings, 5 % reopened and closed again — and their clocks, ~9
timeline rows each, 25 OPDs), ANALYZEs, then times the report use case exactly as the API
and the gauge loop call it (``kinerja_report`` with its SQL and the Python definitions), and
drops the database.

    .venv/bin/python bench/report.py [--n 100000] [--repeat 3] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.cli import migrations_of  # noqa: E402
from services.intake.domain.complaint import Actor  # noqa: E402
from services.intake.reports.domain import month_range  # noqa: E402
from services.intake.reports.model import ReportQuery  # noqa: E402
from services.intake.reports.repository import ReportRepository  # noqa: E402
from services.intake.reports.usecases import kinerja_report  # noqa: E402
from services.intake.reports.workdays import WorkCalendar  # noqa: E402
from shared.db import create_pool, migrate  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.uow import PgUnitOfWork  # noqa: E402

OPDS = [f"opd{i:02d}" for i in range(25)]

SEED = """
WITH s AS (
    SELECT i, i % 100 AS d, (ARRAY{opds}::text[])[1 + i % 25] AS opd,
           $2::timestamptz - (i % 365) * interval '1 day' - (i % 11) * interval '1 hour' AS rec
    FROM generate_series(1, $1) i
)
INSERT INTO complaints (id, tracking_id, source, external_id, fingerprint, submission,
    classification, category, title, kecamatan, anonymous, confidential, reporter_ref,
    received_at, accepted_at, status, opd_code, opd_name, hop, closed_at, closed_by)
SELECT md5('c' || i)::uuid, 'B-' || i, (ARRAY['portal','wa','lapor'])[1 + i % 3], 'e' || i, 'fp', '{{}}',
       'pengaduan', (ARRAY['jalan','kesehatan','pendidikan','air','lampu'])[1 + i % 5], 'judul',
       (ARRAY['Sekadau Hilir','Belitang','Nanga Taman','Nanga Mahap','Sekadau Hulu','Belitang Hilir',
              'Belitang Hulu'])[1 + i % 7], true, false, 'ref', rec, rec,
       CASE WHEN d < 5 THEN 'DIARSIPKAN' WHEN d < 8 THEN 'DITERIMA' WHEN d < 15 THEN 'TERDISPOSISI'
            WHEN d < 25 THEN 'DITINDAKLANJUTI' ELSE 'SELESAI' END,
       CASE WHEN d >= 8 THEN opd END, CASE WHEN d >= 8 THEN 'Dinas ' || opd END,
       CASE WHEN d >= 8 THEN 1 ELSE 0 END,
       CASE WHEN d >= 25 THEN rec + (i % 10 + 1) * interval '1 day' END,
       CASE WHEN d >= 25 THEN 'admin_koordinator' END
FROM s
"""

TIMELINE = """
WITH s AS (
    SELECT id, received_at AS rec, opd_code AS opd, status,
           ('x' || substr(id::text, 1, 8))::bit(32)::int & 2147483647 AS i
    FROM complaints
), e AS (
    SELECT id, 'complaint.submitted' AS t, rec AS at, '{}'::jsonb AS data FROM s
    UNION ALL SELECT id, 'sla.clock_started', rec, jsonb_build_object('clock', 'verification', 'hop', 0,
        'deadline', rec + interval '4 days') FROM s
    UNION ALL SELECT id, 'sla.clock_started', rec, jsonb_build_object('clock', 'completion', 'hop', 0,
        'deadline', rec + interval '20 days') FROM s
    UNION ALL SELECT id, 'complaint.routed', rec + interval '1 day',
        jsonb_build_object('opd_code', opd, 'hop', 1) FROM s WHERE opd IS NOT NULL
    UNION ALL SELECT id, 'sla.clock_stopped', rec + interval '1 day',
        jsonb_build_object('clock', 'verification', 'hop', 0, 'on_time', true) FROM s WHERE opd IS NOT NULL
    UNION ALL SELECT id, 'sla.clock_started', rec + interval '1 day', jsonb_build_object(
        'clock', 'opd_response', 'hop', 1, 'instance', 0, 'deadline', rec + interval '8 days')
        FROM s WHERE opd IS NOT NULL
    UNION ALL SELECT id, 'complaint.responded', rec + (i % 10) * interval '1 day' + interval '2 hours',
        jsonb_build_object('opd_code', opd, 'hop', 1, 'final', true)
        FROM s WHERE status IN ('DITINDAKLANJUTI', 'SELESAI')
    UNION ALL SELECT id, 'complaint.closed', rec + (i % 10 + 1) * interval '1 day',
        jsonb_build_object('closed_by', 'admin_koordinator') FROM s WHERE status = 'SELESAI'
    UNION ALL SELECT id, 'complaint.reopened', rec + (i % 10 + 1) * interval '1 day' + interval '1 hour',
        '{}'::jsonb FROM s WHERE status = 'SELESAI' AND i % 20 = 0
    UNION ALL SELECT id, 'complaint.closed', rec + (i % 10 + 2) * interval '1 day',
        jsonb_build_object('closed_by', 'system') FROM s WHERE status = 'SELESAI' AND i % 20 = 0
)
INSERT INTO timeline (complaint_id, event_id, event_type, occurred_at, summary, data)
SELECT id, gen_random_uuid()::text, t, at, t, data FROM e
"""

CLOCKS = """
INSERT INTO clocks (complaint_id, clock, hop, opd_code, started_at, deadline, working_days)
SELECT id, 'completion', 0, NULL, received_at, received_at + interval '20 days', 14 FROM complaints
UNION ALL
SELECT id, 'opd_response', 1, opd_code, received_at + interval '1 day', received_at + interval '8 days', 5
FROM complaints WHERE opd_code IS NOT NULL
"""


async def timed(label: str, repeat: int, fn) -> tuple[str, float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - t0)
    return label, statistics.median(times), result


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgres", default=os.environ.get(
        "SP4N_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = ap.parse_args()
    name = f"sp4n_bench_report_{uuid.uuid4().hex[:8]}"
    head = args.postgres.rsplit("/", 1)[0]
    admin = await asyncpg.connect(args.postgres)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{head}/{name}"
    settings = Settings(database_url=url)
    try:
        await migrate(url, "intake", migrations_of("intake"))
        pool = await create_pool(url, schema="intake", min_size=1, max_size=2)
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        async with pool.acquire() as conn:
            await conn.execute(SEED.format(opds="[" + ",".join(f"'{o}'" for o in OPDS) + "]"), args.n, now)
            await conn.execute(TIMELINE)
            await conn.execute(CLOCKS)
            await conn.execute("ANALYZE complaints; ANALYZE timeline; ANALYZE clocks")
            rows = await conn.fetchval("SELECT count(*) FROM timeline")
        seeded = time.perf_counter() - t0
        cal = WorkCalendar(settings.tz)
        uow = PgUnitOfWork(lambda: pool, ReportRepository)
        admin_actor = Actor("admin_koordinator")
        today = cal.local_date(now)
        last_month = (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        m0, m1 = month_range(last_month)

        def report(start: date, end: date, **kw: object):
            async def go():
                return await kinerja_report(uow, ReportQuery(start, end, **kw), admin_actor,  # type: ignore[arg-type]
                                            calendar=cal, now=now)
            return go

        async def facts_only():
            start = datetime.combine(m0, datetime.min.time(), cal.tz)
            end = datetime.combine(m1 + timedelta(days=1), datetime.min.time(), cal.tz)
            async with uow.read() as repo:
                return await repo.complaint_facts(start, end)

        async def open_by_opd():
            async with uow.read() as repo:
                return await repo.open_by_opd(now)

        cases = [
            (f"month {last_month} by OPD (attribution=event)", report(m0, m1)),
            ("  of which the SQL (complaint_facts)", facts_only),
            (f"month {last_month} by OPD (attribution=cohort)", report(m0, m1, attribution="cohort")),
            (f"month {last_month} by kecamatan", report(m0, m1, group_by="kecamatan")),
            (f"month {last_month}, one OPD", report(m0, m1, opd=OPDS[3])),
            ("rolling 30 days (the gauge loop's report)", report(today - timedelta(days=29), today)),
            ("the whole year by OPD", report(today - timedelta(days=365), today)),
            ("open / open overdue per OPD (gauges)", open_by_opd),
        ]
        print(f"sp4n bench/report.py — {platform.node()} ({platform.machine()}, "
              f"{os.cpu_count()} cores), Python {platform.python_version()}, "
              f"PostgreSQL {(await admin.fetchval('SHOW server_version'))}")
        print(f"seeded {args.n} complaints, {rows} timeline rows in {seeded:.1f} s")
        await cases[0][1]()  # warm the caches once: every figure below is a warm one
        for label, fn in cases:
            label, secs, result = await timed(label, args.repeat, fn)
            extra = ""
            if hasattr(result, "totals"):
                t = result.totals  # type: ignore[attr-defined]
                extra = f"  ({t.disposed} disposed, {len(result.rows)} rows)"  # type: ignore[attr-defined]
            print(f"  {label:<48} {secs * 1000:8.0f} ms (median of {args.repeat}){extra}")
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
