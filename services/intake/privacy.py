"""Reporter data operations (UU PDP): erasing a reporter (crypto-shredding), encrypting
rows from before encryption, re-wrapping data keys under a new master key, and the failed
inbound submissions kept for repair. Each works on one asyncpg connection (or pool) of
intake's schema, like ``apikeys``; the CLI, the admin API and intake's upkeep loop call them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.intake import audit
from services.intake.audit import ERASE_IDENTITY, AuditEntry, Origin
from services.intake.crypto import Keyring, Undecryptable, WrappedKey, field_ad, seal, unseal
from services.intake.domain.complaint import Actor
from services.intake.domain.model import REPORTER_FIELDS, ReporterRow
from services.intake.reporter_data import reporter_owner, seal_reporter
from shared.events import CODE_PATTERN

log = logging.getLogger(__name__)
BATCH = 500
_SOURCE = re.compile(CODE_PATTERN)


# --- erasure -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Erased:
    complaint_id: uuid.UUID
    tracking_id: str


def _target(key: str) -> tuple[str, Any]:
    """Which complaints ``key`` names: a reporter reference (all of that reporter's
    complaints), a complaint id, or a tracking id."""
    key = key.strip()
    if key.startswith(("rep_", "anon_")):
        return "reporter_ref = $1", key
    try:
        return "id = $1", uuid.UUID(key)
    except ValueError:
        return "tracking_id = $1", key.upper()


# Who erases from the command line: an operator of the regency, with no API key.
CLI_OPERATOR = Actor("admin_koordinator", name="sp4n erase-reporter")


async def erase_reporter(conn: asyncpg.Connection, key: str,
                         audit_as: tuple[Actor, Origin | None] | None = None) -> list[Erased]:
    """Erase the reporter of the complaints ``key`` names by destroying their data keys:
    the ciphertexts stay but no longer decrypt. The complaint, its timeline, clocks and
    events stay; its pseudonym is replaced so intake no longer links it to the reporter's
    other complaints; the reporter fingerprint (a keyed hash of the identity) is dropped.
    Idempotent; [] when ``key`` names no complaint. Each erased complaint gets an
    ``erase_identity`` audit row (``audit_as``: who, from where) in the same transaction."""
    where, arg = _target(key)
    async with conn.transaction():
        rows = await conn.fetch(
            f"""WITH target AS (SELECT id, tracking_id FROM complaints WHERE {where} FOR UPDATE),
                k AS (DELETE FROM reporter_keys WHERE complaint_id IN (SELECT id FROM target)),
                p AS (DELETE FROM reporters_plaintext WHERE complaint_id IN (SELECT id FROM target)),
                r AS (UPDATE reporters SET erased_at = COALESCE(erased_at, now()), fingerprint = 'erased'
                      WHERE complaint_id IN (SELECT id FROM target)),
                c AS (UPDATE complaints
                      SET reporter_ref = 'erased_' || substr(md5(gen_random_uuid()::text), 1, 16)
                      WHERE id IN (SELECT id FROM target) AND reporter_ref NOT LIKE 'erased\\_%')
                SELECT id, tracking_id FROM target ORDER BY tracking_id""", arg)
        actor, origin = audit_as or (CLI_OPERATOR, None)
        for r in rows:
            await audit.insert(conn, AuditEntry.of(actor, ERASE_IDENTITY, r["id"], origin))
    return [Erased(r["id"], r["tracking_id"]) for r in rows]


# --- rows from before encryption -----------------------------------------------------------

async def encrypt_existing(conn: asyncpg.Connection, keyring: Keyring, batch: int = BATCH) -> int:
    """Seal the identities migration 0007 left in ``reporters_plaintext`` and delete them
    there, a batch per transaction (replicas skip each other's rows); returns how many."""
    done = 0
    while True:
        async with conn.transaction():
            rows = await conn.fetch(
                "SELECT complaint_id, name, phone, email, nik FROM reporters_plaintext"
                " ORDER BY complaint_id LIMIT $1 FOR UPDATE SKIP LOCKED", batch)
            for r in rows:
                cid = r["complaint_id"]
                s = seal_reporter(keyring, cid, ReporterRow(**{f: r[f] for f in REPORTER_FIELDS}))
                await conn.execute(
                    "UPDATE reporters SET name_ct = $2, phone_ct = $3, email_ct = $4, nik_ct = $5"
                    " WHERE complaint_id = $1", cid, s.name, s.phone, s.email, s.nik)
                if s.wrapped_key is not None:
                    await conn.execute(
                        "INSERT INTO reporter_keys (complaint_id, key_id, wrapped_key) VALUES ($1, $2, $3)"
                        " ON CONFLICT (complaint_id) DO UPDATE SET key_id = EXCLUDED.key_id,"
                        " wrapped_key = EXCLUDED.wrapped_key", cid, s.key_id, s.wrapped_key)
                await conn.execute("DELETE FROM reporters_plaintext WHERE complaint_id = $1", cid)
        done += len(rows)
        if len(rows) < batch:
            return done


# --- master key rotation -------------------------------------------------------------------

async def rotate_master_key(conn: asyncpg.Connection, keyring: Keyring, batch: int = BATCH) -> int:
    """Re-wrap every data key not wrapped by the current master key (reporters and failed
    submissions); returns how many. The old key may leave the keyring afterwards. Raises
    ``Undecryptable`` naming the row when a key's master key is not in the keyring."""
    moved = 0
    for table, id_col, owner in (("reporter_keys", "complaint_id", reporter_owner),
                                 ("failed_submissions", "id", _failed_owner)):
        while True:
            async with conn.transaction():
                rows = await conn.fetch(
                    f"SELECT {id_col} AS id, key_id, wrapped_key FROM {table} WHERE key_id <> $1"
                    f" ORDER BY {id_col} LIMIT $2 FOR UPDATE SKIP LOCKED", keyring.current_id, batch)
                for r in rows:
                    try:
                        new = keyring.rewrap(owner(r["id"]), WrappedKey(r["key_id"], r["wrapped_key"]))
                    except Undecryptable as exc:
                        raise Undecryptable(f"{table} {r['id']}: {exc}") from exc
                    assert new is not None  # selected by key_id <> current
                    await conn.execute(
                        f"UPDATE {table} SET key_id = $2, wrapped_key = $3 WHERE {id_col} = $1",
                        r["id"], new.key_id, new.blob)
            moved += len(rows)
            if len(rows) < batch:
                break
    return moved


# --- failed inbound submissions ------------------------------------------------------------

def _failed_owner(failed_id: uuid.UUID) -> str:
    return f"failed-submission:{failed_id}"


def claimed_source(body: bytes) -> str | None:
    """The ``source`` a body names, when it is JSON naming a well-formed one (unverified)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    source = data.get("source") if isinstance(data, dict) else None
    return source if isinstance(source, str) and _SOURCE.fullmatch(source) else None


async def store_failed_submission(pool: asyncpg.Pool, keyring: Keyring, body: bytes,
                                  reason: str, sender: str | None = None) -> uuid.UUID:
    """Keep a submission that could not be accepted, its raw body sealed under its own data
    key, with its sender (the broker user RabbitMQ validated; None: none named); returns the
    row id (what the DLQ message carries instead of the body)."""
    failed_id = uuid.uuid4()
    owner = _failed_owner(failed_id)
    dek, wrapped = keyring.new_data_key(owner)
    await pool.execute(
        "INSERT INTO failed_submissions (id, reason, source, key_id, wrapped_key, body, sender)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        failed_id, reason[:2000], claimed_source(body), wrapped.key_id, wrapped.blob,
        seal(dek, body, field_ad(owner, "body")), sender)
    return failed_id


def dlq_reference(failed_id: uuid.UUID, reason: str) -> bytes:
    """The DLQ body that stands in for a failed submission: its row and reason only."""
    return json.dumps({"failed_submission_id": str(failed_id), "reason": reason[:2000]},
                      ensure_ascii=False).encode()


def referenced_id(body: bytes) -> uuid.UUID | None:
    """The failed submission a DLQ reference sent back to the submissions queue names
    (``sp4n dlq replay``); None if ``body`` is no reference with a valid id. Only the id is
    ever taken from it: any other field is a publisher's, not intake's."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not (isinstance(data, dict) and "failed_submission_id" in data and "title" not in data):
        return None
    try:
        return uuid.UUID(str(data["failed_submission_id"]))
    except ValueError:
        return None


@dataclass(frozen=True)
class FailedSubmission:
    id: uuid.UUID
    received_at: datetime
    reason: str
    source: str | None
    body: bytes | None = None  # decrypted, only from ``failed_submission``
    sender: str | None = None  # only from ``failed_submission``


async def list_failed_submissions(conn: asyncpg.Connection, limit: int = 50) -> list[FailedSubmission]:
    rows = await conn.fetch(
        "SELECT id, received_at, reason, source FROM failed_submissions"
        " ORDER BY received_at DESC LIMIT $1", limit)
    return [FailedSubmission(**dict(r)) for r in rows]


async def failed_submission(conn: asyncpg.Connection, keyring: Keyring,
                            failed_id: uuid.UUID) -> FailedSubmission | None:
    """One failed submission with its body decrypted (for repair); None if unknown or purged."""
    r = await conn.fetchrow("SELECT * FROM failed_submissions WHERE id = $1", failed_id)
    if r is None:
        return None
    owner = _failed_owner(failed_id)
    dek = keyring.unwrap(owner, WrappedKey(r["key_id"], r["wrapped_key"]))
    return FailedSubmission(r["id"], r["received_at"], r["reason"], r["source"],
                            unseal(dek, r["body"], field_ad(owner, "body")), r["sender"])


async def settle_failed_submission(pool: asyncpg.Pool, failed_id: uuid.UUID,
                                   reason: str | None) -> None:
    """A resubmitted failed submission: accepted (``reason`` None), so its copy is deleted
    (the complaint holds the identity now, encrypted), or rejected again for ``reason``."""
    if reason is None:
        await pool.execute("DELETE FROM failed_submissions WHERE id = $1", failed_id)
    else:
        await pool.execute("UPDATE failed_submissions SET reason = $2 WHERE id = $1",
                           failed_id, reason[:2000])


async def purge_failed_submissions(conn: asyncpg.Connection, retention_days: int,
                                   now: datetime | None = None) -> int:
    """Delete failed submissions older than the retention period; returns how many."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    status: str = await conn.execute("DELETE FROM failed_submissions WHERE received_at < $1", cutoff)
    return int(status.split()[-1])


# --- intake's upkeep loop --------------------------------------------------------------------

async def upkeep(pool: asyncpg.Pool, keyring: Keyring, *, retention_days: int,
                 interval_s: float) -> None:
    """Encrypt rows from before encryption once, then purge expired failed submissions every
    ``interval_s`` (runs until cancelled; a failed round is logged and retried)."""
    while True:
        try:
            async with pool.acquire() as conn:
                encrypted = await encrypt_existing(conn, keyring)
                purged = await purge_failed_submissions(conn, retention_days)
            if encrypted or purged:
                log.info("reporter data: %d legacy rows encrypted, %d failed submissions purged",
                         encrypted, purged)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("reporter data upkeep failed, retrying: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)
