"""All of intake's SQL. A repository wraps one connection, inside the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from shared.events import CloudEvent
from shared.inbox import first_delivery
from shared.outbox import add_to_outbox


class IntakeRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def insert_complaint(self, row: dict[str, Any]) -> bool:
        """Insert unless the (source, external_id) or the tracking id is taken.

        True when this call created the complaint. On False the caller looks the submission
        up: found means a retry; not found means the random tracking id clashed.
        """
        inserted = await self.conn.fetchval(
            """INSERT INTO complaints (id, tracking_id, source, external_id, fingerprint,
                   submission, classification, category, title, kecamatan, desa, anonymous,
                   confidential, reporter_ref, received_at, accepted_at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)
               ON CONFLICT DO NOTHING RETURNING 1""",
            row["id"], row["tracking_id"], row["source"], row["external_id"],
            row["fingerprint"], row["submission"], row["classification"], row["category"],
            row["title"], row["kecamatan"], row["desa"], row["anonymous"],
            row["confidential"], row["reporter_ref"], row["received_at"], row["accepted_at"],
        )
        return inserted is not None

    async def insert_reporter(self, complaint_id: uuid.UUID, reporter: dict[str, Any] | None,
                              fingerprint: str) -> None:
        r = reporter or {}
        await self.conn.execute(
            "INSERT INTO reporters (complaint_id, name, phone, email, nik, fingerprint)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            complaint_id, r.get("name"), r.get("phone"), r.get("email"), r.get("nik"), fingerprint,
        )

    async def find_by_source(self, source: str, external_id: str) -> asyncpg.Record | None:
        return await self.conn.fetchrow(
            """SELECT c.id, c.tracking_id, c.status, c.submission, r.fingerprint AS reporter_fp
               FROM complaints c JOIN reporters r ON r.complaint_id = c.id
               WHERE c.source = $1 AND c.external_id = $2""",
            source, external_id,
        )

    async def find(self, key: str) -> asyncpg.Record | None:
        """By complaint id (uuid) or tracking id."""
        try:
            cid = uuid.UUID(key)
        except ValueError:
            return await self.conn.fetchrow("SELECT * FROM complaints WHERE tracking_id = $1", key.upper())
        return await self.conn.fetchrow("SELECT * FROM complaints WHERE id = $1", cid)

    async def exists(self, complaint_id: uuid.UUID) -> bool:
        return bool(await self.conn.fetchval("SELECT 1 FROM complaints WHERE id = $1", complaint_id))

    async def clocks_of(self, complaint_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT * FROM clocks WHERE complaint_id = $1 ORDER BY started_at NULLS LAST, clock, hop",
            complaint_id)

    async def timeline_of(self, complaint_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT event_type, occurred_at, summary FROM timeline WHERE complaint_id = $1"
            " ORDER BY occurred_at, id", complaint_id)

    async def add_timeline(self, complaint_id: uuid.UUID, event: CloudEvent, summary: str) -> None:
        await self.conn.execute(
            "INSERT INTO timeline (complaint_id, event_id, event_type, occurred_at, summary, data)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
            complaint_id, event.id, event.event_name, event.time, summary, event.data)

    async def mark_routed(self, complaint_id: uuid.UUID, opd_code: str, opd_name: str, hop: int) -> None:
        # Events may arrive out of order: an older hop never overwrites a newer one.
        await self.conn.execute(
            """UPDATE complaints SET status = 'TERDISPOSISI', needs_triage = false,
                   opd_code = $2, opd_name = $3, hop = $4, updated_at = now()
               WHERE id = $1 AND hop < $4""",
            complaint_id, opd_code, opd_name, hop)

    async def mark_needs_triage(self, complaint_id: uuid.UUID) -> None:
        await self.conn.execute(
            "UPDATE complaints SET needs_triage = true, updated_at = now() WHERE id = $1 AND hop = 0",
            complaint_id)

    async def upsert_clock_started(self, complaint_id: uuid.UUID, d: dict[str, Any]) -> None:
        await self.conn.execute(
            """INSERT INTO clocks (complaint_id, clock, hop, opd_code, started_at, deadline,
                   working_days, calendar_version, policy_version)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (complaint_id, clock, hop) DO UPDATE SET
                   opd_code = EXCLUDED.opd_code, started_at = EXCLUDED.started_at,
                   deadline = EXCLUDED.deadline, working_days = EXCLUDED.working_days,
                   calendar_version = EXCLUDED.calendar_version,
                   policy_version = EXCLUDED.policy_version""",
            complaint_id, d["clock"], d["hop"], d["opd_code"], _dt(d["started_at"]),
            _dt(d["deadline"]), d["working_days"], d["calendar_version"], d["policy_version"])

    async def upsert_clock_flag(self, complaint_id: uuid.UUID, clock: str, hop: int,
                                opd_code: str | None, *, stopped_at: datetime | None = None,
                                breached: bool = False, warned: bool = False,
                                deadline: datetime | None = None) -> None:
        # Any of started/stopped/warning/breached may arrive first; each only sets its own fields.
        await self.conn.execute(
            """INSERT INTO clocks (complaint_id, clock, hop, opd_code, stopped_at, breached, warned, deadline)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (complaint_id, clock, hop) DO UPDATE SET
                   stopped_at = COALESCE(EXCLUDED.stopped_at, clocks.stopped_at),
                   breached = clocks.breached OR EXCLUDED.breached,
                   warned = clocks.warned OR EXCLUDED.warned,
                   deadline = COALESCE(clocks.deadline, EXCLUDED.deadline),
                   opd_code = COALESCE(clocks.opd_code, EXCLUDED.opd_code)""",
            complaint_id, clock, hop, opd_code, stopped_at, breached, warned, deadline)

    async def first_delivery(self, event: CloudEvent) -> bool:
        return await first_delivery(self.conn, event)

    async def stage(self, *events: CloudEvent) -> None:
        await add_to_outbox(self.conn, *events)


def _dt(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)
