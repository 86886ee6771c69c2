"""intake's view of sla clocks: a restarted clock instance does not inherit the old outcome."""

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.cli import migrations_of
from services.intake.repository import IntakeRepository
from services.intake.usecases import record_event
from shared.db import create_pool, migrate
from shared.events import SlaBreached, SlaClockStarted, SlaClockStopped, make_event
from shared.uow import PgUnitOfWork

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Pontianak")
VERSIONS = {"calendar_version": "holidays-0.109+ovr-0", "policy_version": 1}


async def test_new_instance_resets_stop_but_moved_deadline_keeps_breach(settings):
    await migrate(settings.database_url, "intake", migrations_of("intake"))
    pool = await create_pool(settings.database_url, schema="intake", min_size=1, max_size=2)
    uow = PgUnitOfWork(lambda: pool, IntakeRepository)
    conn = await pool.acquire()
    try:
        cid = uuid.uuid4()
        now = datetime.now(UTC)
        await conn.execute(
            "INSERT INTO complaints (id, tracking_id, source, external_id, fingerprint, submission,"
            " classification, category, title, anonymous, confidential, reporter_ref, received_at,"
            " accepted_at) VALUES ($1, $2, 't', $3, 'f', '{}', 'pengaduan', 'c', 'judul', false,"
            " false, 'r', $4, $4)", cid, f"T-{cid.hex[:8]}", cid.hex, now)

        async def apply(data) -> None:
            assert await record_event(uow, make_event("sp4n/sla", data), TZ)

        def started(at, deadline):
            return SlaClockStarted(complaint_id=cid, clock="auto_close", hop=1, opd_code="dinkes",
                                   started_at=at, working_days=10, deadline=deadline, warn_at=None,
                                   **VERSIONS)

        first = now - timedelta(days=20)
        await apply(started(first, first + timedelta(days=14)))
        await apply(SlaBreached(complaint_id=cid, clock="auto_close", hop=1, opd_code="dinkes",
                                deadline=first + timedelta(days=14), due_at=first + timedelta(days=14),
                                **VERSIONS))
        await apply(SlaClockStopped(complaint_id=cid, clock="auto_close", hop=1, opd_code="dinkes",
                                    stopped_at=now, deadline=first + timedelta(days=14), on_time=False))
        # The same instance announced again with a moved deadline keeps its outcome.
        await apply(started(first, first + timedelta(days=16)))
        row = await conn.fetchrow("SELECT * FROM clocks WHERE complaint_id = $1", cid)
        assert row["stopped_at"] is not None and row["breached"]
        assert row["deadline"] == first + timedelta(days=16)
        # A second response opens a new reply window: it starts clean.
        await apply(started(now, now + timedelta(days=14)))
        row = await conn.fetchrow("SELECT * FROM clocks WHERE complaint_id = $1", cid)
        assert row["stopped_at"] is None and not row["breached"] and not row["warned"]
        assert row["started_at"] == now
    finally:
        await pool.release(conn)
        await pool.close()
