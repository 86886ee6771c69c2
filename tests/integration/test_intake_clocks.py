"""intake's view of sla clocks: a restarted clock instance does not inherit the old outcome."""

import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from services.cli import migrations_of
from services.intake.repository import IntakeRepository
from shared.db import migrate

pytestmark = pytest.mark.integration


async def test_new_instance_resets_stop_but_moved_deadline_keeps_breach(settings):
    await migrate(settings.database_url, "intake", migrations_of("intake"))
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        cid = uuid.uuid4()
        now = datetime.now(timezone.utc)
        await conn.execute(
            "INSERT INTO complaints (id, tracking_id, source, external_id, fingerprint, submission,"
            " classification, category, title, anonymous, confidential, reporter_ref, received_at,"
            " accepted_at) VALUES ($1, $2, 't', $3, 'f', '{}', 'pengaduan', 'c', 'judul', false,"
            " false, 'r', $4, $4)", cid, f"T-{cid.hex[:8]}", cid.hex, now)
        repo = IntakeRepository(conn)

        def started(at, deadline):
            return {"clock": "auto_close", "hop": 1, "opd_code": "dinkes", "started_at": at.isoformat(),
                    "deadline": deadline.isoformat(), "working_days": 10,
                    "calendar_version": "holidays-0.109+ovr-0", "policy_version": 1}

        first = now - timedelta(days=20)
        await repo.upsert_clock_started(cid, started(first, first + timedelta(days=14)))
        await repo.upsert_clock_flag(cid, "auto_close", 1, "dinkes", stopped_at=now, breached=True)
        # The same instance announced again with a moved deadline keeps its outcome.
        await repo.upsert_clock_started(cid, started(first, first + timedelta(days=16)))
        row = await conn.fetchrow("SELECT * FROM clocks WHERE complaint_id = $1", cid)
        assert row["stopped_at"] is not None and row["breached"]
        assert row["deadline"] == first + timedelta(days=16)
        # A second response opens a new reply window: it starts clean.
        await repo.upsert_clock_started(cid, started(now, now + timedelta(days=14)))
        row = await conn.fetchrow("SELECT * FROM clocks WHERE complaint_id = $1", cid)
        assert row["stopped_at"] is None and not row["breached"] and not row["warned"]
        assert row["started_at"] == now
    finally:
        await conn.close()
