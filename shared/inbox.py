"""Inbox: exactly-once effect for at-least-once delivery.

Call ``first_delivery`` inside the transaction that applies the event's effect. It records
the event id and says whether this is the first time; on a redelivery the caller skips the
effect, and the transaction commits nothing new.
"""

import asyncpg

from shared.events import CloudEvent


async def first_delivery(conn: asyncpg.Connection, event: CloudEvent) -> bool:
    row = await conn.fetchval(
        "INSERT INTO inbox (event_id, event_type) VALUES ($1, $2)"
        " ON CONFLICT (event_id) DO NOTHING RETURNING 1",
        event.id, event.type,
    )
    return row is not None


# For a repository that merges the inbox record into its first statement (as a CTE): yields one
# row iff this is the first delivery of the event. Parameters: $1 event id, $2 event type.
INBOX_INSERT = ("INSERT INTO inbox (event_id, event_type) VALUES ($1, $2)"
                " ON CONFLICT (event_id) DO NOTHING RETURNING 1")
