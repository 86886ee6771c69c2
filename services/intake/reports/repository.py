"""The report's SQL, over intake's own tables only: ``complaints`` (who holds a complaint
now), ``timeline`` (every lifecycle event intake emitted and every routing/sla event it
consumed, each with its data: dispositions, tindak lanjut, closings and reopenings are never
overwritten there) and ``clocks`` (sla's deadlines as mirrored). Nothing to rebuild: the
report is computed from these on every call (indexes in migration 0003)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from services.intake.reports.domain import COMPLETED_STATE, HELD_STATES
from services.intake.reports.model import ComplaintFacts
from shared.uow import PgTx

# One row per complaint. Each LATERAL reads one complaint's timeline entries of one kind
# through ``timeline_by_complaint_type``.
_FACTS = """
SELECT c.id, c.tracking_id, c.source, c.classification, c.category, c.kecamatan, c.status,
       c.received_at, c.opd_code, c.opd_name, c.hop,
       r.first_disposed_at, r.disposed_at,
       resp.first_response_at, resp.final_response_at,
       oc.deadline AS response_deadline,
       cc.deadline AS completion_deadline, COALESCE(cc.breached, false) AS completion_breached,
       cl.first_closed_at,
       CASE WHEN c.status = 'SELESAI' THEN c.closed_at END AS closed_at,
       COALESCE(cl.reopen_count, 0)::int AS reopen_count
FROM complaints c
LEFT JOIN LATERAL (
    SELECT min(t.occurred_at) AS first_disposed_at,
           max(t.occurred_at) FILTER (WHERE (t.data->>'hop')::int = c.hop) AS disposed_at
    FROM timeline t WHERE t.complaint_id = c.id AND t.event_type = 'complaint.routed'
) r ON true
LEFT JOIN LATERAL (
    SELECT min(t.occurred_at) FILTER (
               WHERE t.data->>'opd_code' = c.opd_code AND (t.data->>'hop')::int = c.hop
           ) AS first_response_at,
           max(t.occurred_at) FILTER (
               WHERE COALESCE((t.data->>'final')::boolean, true)) AS final_response_at
    FROM timeline t WHERE t.complaint_id = c.id AND t.event_type = 'complaint.responded'
) resp ON true
LEFT JOIN LATERAL (
    -- The OPD clock of the holding hop, first instance (a reply or a reopen starts another);
    -- its last start or deadline change carries the deadline in force (a resume, a
    -- reclassification or a calendar change moves it).
    SELECT COALESCE(t.data->>'new_deadline', t.data->>'deadline')::timestamptz AS deadline
    FROM timeline t
    WHERE t.complaint_id = c.id AND t.event_type IN ('sla.clock_started', 'sla.deadline_changed')
      AND t.data->>'clock' = 'opd_response' AND (t.data->>'hop')::int = c.hop
      AND COALESCE((t.data->>'instance')::int, 0) = 0
    ORDER BY t.id DESC LIMIT 1
) oc ON true
LEFT JOIN LATERAL (
    -- The completion clock in force: the latest started (a reopen starts another instance).
    SELECT k.deadline, k.breached FROM clocks k
    WHERE k.complaint_id = c.id AND k.clock = 'completion'
    ORDER BY k.started_at DESC NULLS LAST LIMIT 1
) cc ON true
LEFT JOIN LATERAL (
    SELECT min(t.occurred_at) FILTER (WHERE t.event_type = 'complaint.closed') AS first_closed_at,
           count(*) FILTER (WHERE t.event_type = 'complaint.reopened') AS reopen_count
    FROM timeline t
    WHERE t.complaint_id = c.id AND t.event_type IN ('complaint.closed', 'complaint.reopened')
) cl ON true
"""


OPEN_HELD_STATES = HELD_STATES - {COMPLETED_STATE}


class ReportRepository:
    def __init__(self, tx: PgTx[ReportRepository]) -> None:
        self.conn: asyncpg.Connection = tx.conn

    async def complaint_facts(self, start: datetime, end: datetime, *, opd: str | None = None
                              ) -> list[ComplaintFacts]:
        """Every complaint received in [start, end) or disposed in it (by its timeline)."""
        args: list[Any] = [start, end]
        opd_clause = ""
        if opd is not None:
            args.append(opd)
            opd_clause = " AND c.opd_code = $3"
        rows = await self.conn.fetch(
            f"""{_FACTS}
                WHERE c.id IN (
                    SELECT id FROM complaints WHERE received_at >= $1 AND received_at < $2
                    UNION
                    SELECT complaint_id FROM timeline
                    WHERE event_type = 'complaint.routed' AND occurred_at >= $1 AND occurred_at < $2
                ){opd_clause}""",
            *args)
        return [ComplaintFacts(**dict(r)) for r in rows]

    async def open_by_opd(self, now: datetime) -> dict[str, tuple[int, int]]:
        """Per OPD code: complaints it holds now and not completed, and those of them past
        the completion deadline (as ``domain.overdue``)."""
        rows = await self.conn.fetch(
            """SELECT c.opd_code, count(*)::int AS open,
                      count(*) FILTER (WHERE cc.deadline < $1)::int AS overdue
               FROM complaints c
               LEFT JOIN LATERAL (
                   SELECT k.deadline FROM clocks k
                   WHERE k.complaint_id = c.id AND k.clock = 'completion'
                   ORDER BY k.started_at DESC NULLS LAST LIMIT 1) cc ON true
               WHERE c.status = ANY($2::text[]) AND c.opd_code IS NOT NULL
               GROUP BY c.opd_code""",
            now, sorted(OPEN_HELD_STATES))
        return {r["opd_code"]: (r["open"], r["overdue"]) for r in rows}
