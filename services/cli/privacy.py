"""Reporter data commands (``services.intake.privacy``): erase a reporter, encrypt rows from
before encryption, rotate the master key, and the failed inbound submissions."""

from __future__ import annotations

import uuid

import click

from services.cli.common import migrations_of, pass_settings, run_async
from services.intake import privacy
from services.intake.crypto import Undecryptable, keyring_from, new_master_key
from shared.connect import service_connection
from shared.settings import Settings


@click.command("erase-reporter", short_help="Erase a reporter's identity (crypto-shredding).")
@click.argument("key")
@pass_settings
def erase_reporter(settings: Settings, key: str) -> int:
    """Erase the reporter of KEY — a reporter reference (rep_…: every complaint of that
    reporter), a complaint id or a tracking id — by destroying the data key: the stored
    identity no longer decrypts; the complaints, timeline, deadlines and events stay."""

    async def go() -> int:
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            erased = await privacy.erase_reporter(conn, key)
        if not erased:
            click.echo(f"tidak ada laporan untuk '{key}'", err=True)
            return 1
        for e in erased:
            click.echo(f"identitas pelapor dihapus: {e.tracking_id} ({e.complaint_id})")
        return 0

    return run_async(go())


@click.command("encrypt-existing", short_help="Encrypt reporters stored before encryption.")
@pass_settings
def encrypt_existing(settings: Settings) -> int:
    """Encrypt the reporter identities stored in plain text before migration 0007 (intake
    also does this at start-up); idempotent."""

    async def go() -> int:
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            n = await privacy.encrypt_existing(conn, keyring_from(settings.intake))
        click.echo(f"{n} reporters encrypted")
        return 0

    return run_async(go())


@click.command("rotate-master-key", short_help="Re-wrap every data key under the current master key.")
@click.option("--new-key", is_flag=True, help="only print a fresh master key (base64) and exit")
@pass_settings
def rotate_master_key(settings: Settings, new_key: bool) -> int:
    """Re-wrap the data keys wrapped by an old master key under the current one.

    Rotation: set SP4N_INTAKE__MASTER_KEY to a new key (--new-key prints one) with a new
    SP4N_INTAKE__MASTER_KEY_ID, keep the old one in SP4N_INTAKE__OLD_MASTER_KEYS
    ('{"<old id>": "<old key>"}'), restart intake, run this, then drop the old key."""
    if new_key:
        click.echo(new_master_key())
        return 0

    async def go() -> int:
        keyring = keyring_from(settings.intake)
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            try:
                n = await privacy.rotate_master_key(conn, keyring)
            except Undecryptable as exc:
                click.echo(f"error: {exc}; add its master key to SP4N_INTAKE__OLD_MASTER_KEYS", err=True)
                return 2
        click.echo(f"{n} data keys re-wrapped under master key '{keyring.current_id}'")
        return 0

    return run_async(go())


@click.group("failed-submissions")
def failed_submissions() -> None:
    """Inbound (AMQP) submissions intake could not accept, kept encrypted for repair; the
    DLQ holds only their id and reason. Purged after
    SP4N_INTAKE__FAILED_SUBMISSION_RETENTION_DAYS."""


@failed_submissions.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@pass_settings
def failed_list(settings: Settings, limit: int) -> int:
    """The newest failed submissions: id, time, claimed source, reason (never the body)."""

    async def go() -> int:
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            rows = await privacy.list_failed_submissions(conn, limit)
        for f in rows:
            click.echo(f"{f.id}  {f.received_at:%Y-%m-%d %H:%M:%S}  {f.source or '-':<20} {f.reason}")
        return 0

    return run_async(go())


@failed_submissions.command("show", short_help="Decrypt one failed submission for repair.")
@click.argument("failed_id", metavar="ID", type=click.UUID)
@pass_settings
def failed_show(settings: Settings, failed_id: uuid.UUID) -> int:
    """Print one failed submission's reason and its decrypted body (it holds the reporter's
    identity: for the admin koordinator repairing it)."""

    async def go() -> int:
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            f = await privacy.failed_submission(conn, keyring_from(settings.intake), failed_id)
        if f is None:
            click.echo(f"tidak ada kiriman gagal {failed_id} (mungkin sudah dihapus)", err=True)
            return 1
        click.echo(f"# {f.id} {f.received_at:%Y-%m-%d %H:%M:%S} source={f.source or '-'}", err=True)
        click.echo(f"# {f.reason}", err=True)
        click.echo((f.body or b"").decode(errors="replace"))
        return 0

    return run_async(go())


@failed_submissions.command("purge")
@pass_settings
def failed_purge(settings: Settings) -> int:
    """Delete failed submissions older than the retention period now (intake also does)."""

    async def go() -> int:
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            n = await privacy.purge_failed_submissions(
                conn, settings.intake.failed_submission_retention_days)
        click.echo(f"{n} failed submissions purged")
        return 0

    return run_async(go())


COMMANDS = (erase_reporter, encrypt_existing, rotate_master_key, failed_submissions)
