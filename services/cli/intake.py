"""Intake's operator commands: API keys (``services.intake.apikeys``), the audit trail
(``services.intake.audit``) and the LAPOR! import (``services.importer.command``, which talks
to intake over HTTP)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import click

from services.cli.common import csv, migrations_of, pass_settings, run_async
from services.importer import command as importer
from services.intake import apikeys, audit
from services.intake.scopes import SCOPES
from shared.connect import service_connection
from shared.settings import Settings

ROLE_CHOICES = tuple(SCOPES)  # portal, importer, admin_koordinator, opd
_DURATION = re.compile(r"^(\d{1,6})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str, option: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w``; raises ``ValueError`` naming the option."""
    m = _DURATION.match(value.strip())
    if m is None:
        raise ValueError(f"{option}: expected a number and a unit m/h/d/w (e.g. 90d), "
                         f"not {value!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def parse_instant(value: str, option: str, tz: ZoneInfo) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is the regency's local time."""
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{option}: expected an ISO 8601 date or date-time (e.g. 2027-03-31), "
                         f"not {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=tz)


def expiry(expires_in: str | None, expires_at: str | None, tz: ZoneInfo,
           now: datetime) -> datetime | None:
    if expires_in and expires_at:
        raise ValueError("give --expires-in or --expires-at, not both")
    if expires_in:
        return now + parse_duration(expires_in, "--expires-in")
    if expires_at:
        at = parse_instant(expires_at, "--expires-at", tz)
        if at <= now:
            raise ValueError(f"--expires-at: {at.isoformat()} has already passed")
        return at
    return None


@click.command("create-api-key", short_help="Create an API key; it is printed once.")
@click.option("--name", required=True, help="who the key is for, e.g. portal-sekadau")
@click.option("--role", default="portal", show_default=True, type=click.Choice(ROLE_CHOICES),
              help="portal or importer (both need --source), admin_koordinator, or opd "
                   "(with --opd-code)")
@click.option("--source", help="portal/importer: the one source the key submits for and reads "
                               "(required for them), e.g. portal-sekadau or lapor")
@click.option("--opd-code", help="role opd: the OPD the key speaks for, e.g. dinkes")
@click.option("--scopes", "scopes", help="comma-separated: fewer scopes than the role's "
                                         "defaults (see list-api-keys --scopes)")
@click.option("--expires-in", help="the key stops working after this long: 90d, 12h, 2w, 30m")
@click.option("--expires-at", help="the key stops working at this date or date-time (ISO 8601; "
                                   "without an offset: the regency's local time)")
@pass_settings
def create_api_key(settings: Settings, name: str, role: str, source: str | None,
                   opd_code: str | None, scopes: str | None, expires_in: str | None,
                   expires_at: str | None) -> int:
    """Create an API key and print it once (stdout; the summary goes to stderr)."""

    async def go() -> int:
        # Refused before anything is opened: an unbound portal key is never created.
        granted = apikeys.check_key_spec(role, source, opd_code, csv(scopes) if scopes else None)
        until = expiry(expires_in, expires_at, settings.tz, datetime.now(UTC))
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            key, plaintext = await apikeys.create_api_key(conn, name, role, source, opd_code,
                                                          scopes=granted, expires_at=until)
        scope = f"opd={key.opd_code}" if key.opd_code else f"source={key.source or '*'}"
        until_text = f" expires={key.expires_at.isoformat()}" if key.expires_at else ""
        click.echo(f"created API key #{key.id} '{key.name}' role={key.role} {scope}{until_text}",
                   err=True)
        click.echo(f"scopes: {' '.join(key.scopes)}", err=True)
        click.echo("store it now; it is not shown again:", err=True)
        click.echo(plaintext)
        return 0

    return run_async(go())


@click.command("list-api-keys")
@click.option("--scopes", "show_scopes", is_flag=True, help="also print each key's scopes")
@pass_settings
def list_api_keys(settings: Settings, show_scopes: bool) -> int:
    """List API keys (never their secrets): role, source or OPD, expiry, last use, state."""

    async def go() -> int:
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            keys = await apikeys.list_api_keys(conn)
        now = datetime.now(UTC)
        for r in keys:
            if r.revoked_at:
                state = f"revoked {r.revoked_at:%Y-%m-%d}"
            elif r.expires_at and r.expires_at <= now:
                state = f"expired {r.expires_at:%Y-%m-%d}"
            else:
                state = "active"
            scope = f"opd={r.opd_code}" if r.opd_code else f"source={r.source or '*'}"
            until = f"until {r.expires_at:%Y-%m-%d}" if r.expires_at else "no expiry"
            used = f"used {r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "never used"
            click.echo(f"#{r.id:<4} {r.name:<24} sp4n_{r.prefix}_…  {r.role:<18} "
                       f"{scope:<23} {until:<16} {used:<22} {state}")
            if r.revoked_reason:
                click.echo(f"      reason: {r.revoked_reason}")
            if show_scopes:
                click.echo(f"      scopes: {' '.join(r.scopes)}")
        return 0

    return run_async(go())


@click.command("audit", short_help="Show the audit trail: actions and identity reads.")
@click.option("--complaint", help="a complaint id or tracking id")
@click.option("--key", "key_id", type=int, help="an API key's number (from list-api-keys)")
@click.option("--since", help="ISO 8601 date/date-time, or a span back from now: 24h, 7d")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@pass_settings
def audit_trail(settings: Settings, complaint: str | None, key_id: int | None, since: str | None,
                limit: int) -> int:
    """Who did what to which complaint, and who read a reporter's identity (read_identity),
    oldest first, from intake's append-only audit_log."""

    async def go() -> int:
        now = datetime.now(UTC)
        start = None
        if since:
            start = (now - parse_duration(since, "--since") if _DURATION.match(since.strip())
                     else parse_instant(since, "--since", settings.tz))
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            complaint_id = None
            if complaint:
                complaint_id = await _complaint_id(conn, complaint)
                if complaint_id is None:
                    raise ValueError(f"--complaint: no complaint '{complaint}'")
            rows = await audit.fetch(conn, complaint_id=complaint_id, key_id=key_id, since=start,
                                     limit=limit)
        for r in rows:
            at = r.at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M:%S %Z") if r.at else "?"
            who = f"key#{r.key_id} {r.key_name}" if r.key_id is not None else "system"
            click.echo(f"#{r.id:<6} {at}  {r.role:<18} {who:<30} {r.action:<14} "
                       f"{r.complaint_id or '-'}  req={r.request_id or '-'} from={r.client_addr or '-'}")
        if not rows:
            click.echo("no audit rows match", err=True)
        return 0

    return run_async(go())


async def _complaint_id(conn: asyncpg.Connection, key: str) -> uuid.UUID | None:
    """A complaint's id from its id or tracking id."""
    try:
        return uuid.UUID(key)
    except ValueError:
        found: uuid.UUID | None = await conn.fetchval(
            "SELECT id FROM complaints WHERE tracking_id = $1", key.strip().upper())
        return found


@click.command("revoke-api-key", short_help="Revoke an API key by its number.")
@click.argument("key_id", metavar="ID", type=int)
@click.option("--reason", help="why (shown by list-api-keys)")
@pass_settings
def revoke_api_key(settings: Settings, key_id: int, reason: str | None) -> int:
    """Revoke an API key by its number (from list-api-keys); applies within the key-cache TTL."""

    async def go() -> int:
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            revoked = await apikeys.revoke_api_key(conn, key_id, reason)
        if revoked:
            click.echo(f"revoked API key #{key_id}")
            return 0
        click.echo(f"no active API key #{key_id}", err=True)
        return 1

    return run_async(go())


@click.command("import-lapor")
@click.argument("file")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="intake's base URL")
@click.option("--api-key", envvar="SP4N_API_KEY", show_envvar=True,
              help="an importer key bound to source 'lapor' (create-api-key --role importer "
                   "--source lapor)")
@click.option("--concurrency", type=int, default=8, show_default=True, help="requests in flight")
@click.option("--dry-run", is_flag=True, help="read and validate only; send nothing")
@click.option("--kategori-map", type=click.Path(exists=True, dir_okay=False),
              help="JSON or CSV: LAPOR! Kategori label → regency category code (on top of the seed)")
@click.option("--instansi-map", type=click.Path(exists=True, dir_okay=False),
              help="JSON or CSV: LAPOR! Instansi Terdisposisi → OPD code (on top of the seed)")
@pass_settings
def import_lapor(settings: Settings, file: str, url: str, api_key: str | None, concurrency: int,
                 dry_run: bool, kategori_map: str | None, instansi_map: str | None) -> int:
    """Submit a LAPOR! Excel export (FILE, .xlsx) through intake.

    Source 'lapor'; a re-import is a no-op. Exit codes: 0 all rows imported or already
    present; 1 some rows rejected; 2 unreadable file or refused key; 3 network/5xx failures."""
    return importer.run(file, url=url, api_key=api_key, concurrency=concurrency, dry_run=dry_run,
                        tz=settings.tz, kategori_map=kategori_map, instansi_map=instansi_map)


COMMANDS = (create_api_key, list_api_keys, revoke_api_key, audit_trail, import_lapor)
