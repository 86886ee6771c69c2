"""All of the Open311 facade's SQL: reads of intake's own tables (never another schema's).

Reads ``intake.responses(complaint_id, opd_code, hop, response_no, body, attachments,
created_at)`` — the OPD responses table of intake's lifecycle migration — for
``status_notes``.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.intake.lifecycle import PUBLIC_STATES
from services.intake.open311.mapping import CLOSED_STATES, RequestQuery, StoredRequest

# What is public is decided here, in the only place requests are read: rahasia
# (confidential) complaints never, and others only in ``lifecycle.PUBLIC_STATES`` (verified,
# not archived) — no public listing or lookup can return anything else. ``$1``: those states.
_SELECT = """
SELECT c.tracking_id, c.status, c.category, c.kecamatan, c.desa, c.opd_name,
       c.received_at, c.updated_at, c.anonymous, c.location_public,
       c.submission ->> 'description' AS description,
       c.submission #>> '{location,address}' AS address,
       (c.submission #>> '{location,lat}')::float8 AS lat,
       (c.submission #>> '{location,lon}')::float8 AS lon,
       c.submission #>> '{attachments,0}' AS media_url,
       (SELECT k.deadline FROM clocks k
         WHERE k.complaint_id = c.id AND k.clock = 'completion' AND k.deadline IS NOT NULL
         ORDER BY k.started_at DESC NULLS LAST, k.hop DESC LIMIT 1) AS expected_at,
       (SELECT r.body FROM responses r
         WHERE r.complaint_id = c.id
         ORDER BY r.created_at DESC, r.hop DESC, r.response_no DESC LIMIT 1) AS status_notes
FROM complaints c
WHERE NOT c.confidential AND c.status = ANY($1::text[])
"""
_PUBLIC = sorted(s.value for s in PUBLIC_STATES)


class Open311Repository:
    def __init__(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        self.conn = conn

    async def request(self, tracking_id: str) -> StoredRequest | None:
        row = await self.conn.fetchrow(_SELECT + " AND c.tracking_id = $2", _PUBLIC,
                                       tracking_id.upper())
        return StoredRequest(**row) if row is not None else None

    async def requests(self, q: RequestQuery) -> list[StoredRequest]:
        params: list[Any] = [_PUBLIC]

        def arg(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        closed = sorted(s.value for s in CLOSED_STATES)
        sql = _SELECT
        if q.ids:
            sql += f" AND c.tracking_id = ANY({arg(list(q.ids))}::text[])"
        else:
            sql += f" AND c.received_at BETWEEN {arg(q.start)} AND {arg(q.end)}"
            if q.service_codes:
                sql += f" AND c.category = ANY({arg(list(q.service_codes))}::text[])"
            if q.open_ is True:
                sql += f" AND c.status <> ALL({arg(closed)}::text[])"
            elif q.open_ is False:
                sql += f" AND c.status = ANY({arg(closed)}::text[])"
        sql += f" ORDER BY c.received_at DESC, c.tracking_id LIMIT {arg(q.limit)}"
        return [StoredRequest(**r) for r in await self.conn.fetch(sql, *params)]
