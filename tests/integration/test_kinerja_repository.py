"""The kinerja report's SQL against real PostgreSQL: what ``ReportRepository`` reads of one
complaint's history (the holding hop, the first and the final tindak lanjut, the OPD clock's
first instance and its moved deadline, the completion clock in force, a reopen between two
closings) and which complaints a period selects. Its dates lie in 2025 and its OPD codes are
its own: the session's database is shared with the other integration tests."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from services.cli import migrations_of
from services.intake.reports.repository import ReportRepository
from shared.db import create_pool, migrate
from shared.uow import PgUnitOfWork

pytestmark = pytest.mark.integration


def at(day: str) -> datetime:
    return datetime.fromisoformat(f"2025-{day}T10:00:00+07:00")  # before any other test's data


@pytest.fixture
async def pool(settings):
    await migrate(settings.database_url, "intake", migrations_of("intake"))
    p = await create_pool(settings.database_url, schema="intake", min_size=1, max_size=2)
    yield p
    await p.close()


async def add_complaint(conn, received: datetime, status: str, opd: str | None, hop: int,
                        closed_at: datetime | None = None) -> uuid.UUID:
    cid = uuid.uuid4()
    await conn.execute(
        """INSERT INTO complaints (id, tracking_id, source, external_id, fingerprint, submission,
               classification, category, title, kecamatan, anonymous, confidential, reporter_ref,
               received_at, accepted_at, status, opd_code, opd_name, hop, closed_at)
           VALUES ($1, $2, 'portal', $2, 'fp', '{}', 'pengaduan', 'kesehatan', 'judul', 'Belitang',
                   true, false, 'ref', $3, $3, $4, $5, $5, $6, $7)""",
        cid, f"KIN-{cid.hex[:10]}", received, status, opd, hop, closed_at)
    return cid


async def add_events(conn, cid: uuid.UUID, *events: tuple[str, datetime, dict]) -> None:
    for name, when, data in events:
        await conn.execute(
            "INSERT INTO timeline (complaint_id, event_id, event_type, occurred_at, summary, data)"
            " VALUES ($1, $2, $3, $4, $3, $5)",
            cid, str(uuid.uuid4()), name, when, data)  # the pool encodes jsonb


async def test_one_complaints_history_and_the_period(pool):
    async with pool.acquire() as conn:
        x = await add_complaint(conn, at("11-02"), "SELESAI", "kin-a", 2, closed_at=at("11-10"))
        await add_events(
            conn, x,
            ("complaint.routed", at("11-02"), {"opd_code": "kin-b", "hop": 1}),
            ("sla.clock_started", at("11-02"), {"clock": "opd_response", "hop": 1,
                                                "deadline": at("11-09").isoformat()}),
            ("complaint.returned", at("11-03"), {"opd_code": "kin-b", "hop": 1}),
            ("complaint.routed", at("11-05"), {"opd_code": "kin-a", "hop": 2}),
            ("sla.clock_started", at("11-05"), {"clock": "opd_response", "hop": 2, "instance": 0,
                                                "deadline": at("11-12").isoformat()}),
            ("sla.deadline_changed", at("11-05"), {"clock": "opd_response", "hop": 2, "instance": 0,
                                                   "new_deadline": at("11-13").isoformat()}),
            ("complaint.responded", at("11-06"), {"opd_code": "kin-a", "hop": 2, "final": False}),
            ("complaint.responded", at("11-07"), {"opd_code": "kin-a", "hop": 2, "final": True}),
            ("sla.clock_started", at("11-09"), {"clock": "opd_response", "hop": 2, "instance": 1,
                                                "deadline": at("12-01").isoformat()}),
            ("complaint.closed", at("11-08"), {}),
            ("complaint.reopened", at("11-09"), {}),
            ("complaint.responded", at("11-09"), {"opd_code": "kin-a", "hop": 2}),
            ("complaint.closed", at("11-10"), {}))
        await conn.execute(
            """INSERT INTO clocks (complaint_id, clock, hop, started_at, deadline)
               VALUES ($1, 'completion', 0, $2, $3), ($1, 'completion', 1, $4, $5)""",
            x, at("11-02"), at("11-20"), at("11-09"), at("11-27"))
        # Received in October, disposed in November: in November's report by disposition.
        y = await add_complaint(conn, at("10-20"), "TERDISPOSISI", "kin-a", 1)
        await add_events(conn, y, ("complaint.routed", at("11-03"), {"opd_code": "kin-a", "hop": 1}))
        await conn.execute(
            "INSERT INTO clocks (complaint_id, clock, hop, started_at, deadline)"
            " VALUES ($1, 'completion', 0, $2, $3)", y, at("10-20"), at("11-07"))
        # Received and disposed in October: not in November's.
        z = await add_complaint(conn, at("10-20"), "TERDISPOSISI", "kin-b", 1)
        await add_events(conn, z, ("complaint.routed", at("10-21"), {"opd_code": "kin-b", "hop": 1}))

    uow = PgUnitOfWork(lambda: pool, ReportRepository)
    async with uow.read() as repo:
        facts = {f.id: f for f in await repo.complaint_facts(at("11-01"), at("12-01"))}
        only_dpupr = await repo.complaint_facts(at("10-01"), at("12-01"), opd="kin-b")
        open_now = await repo.open_by_opd(at("11-20"))
    assert set(facts) == {x, y}
    f = facts[x]
    assert (f.opd_code, f.hop, f.status) == ("kin-a", 2, "SELESAI")
    assert f.first_disposed_at == at("11-02") and f.disposed_at == at("11-05")
    assert f.first_response_at == at("11-06")   # a progress update is a tindak lanjut
    assert f.final_response_at == at("11-09")   # the last final one (after the reopen)
    assert f.response_deadline == at("11-13")   # instance 0, as moved; not the reopen's instance
    assert f.completion_deadline == at("11-27")  # the completion clock in force
    assert (f.first_closed_at, f.closed_at, f.reopen_count) == (at("11-08"), at("11-10"), 1)
    assert facts[y].response_deadline is None and facts[y].first_response_at is None
    assert [g.id for g in only_dpupr] == [z]
    # The database is shared with other tests: only this test's OPD codes are asserted.
    assert {k: v for k, v in open_now.items() if k.startswith("kin-")} == {"kin-a": (1, 1), "kin-b": (1, 0)}
