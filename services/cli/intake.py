"""Intake's operator commands: API keys (``services.intake.apikeys``) and the LAPOR! import
(``services.importer.command``, which talks to intake over HTTP)."""

from __future__ import annotations

import click

from services.cli.common import migrations_of, pass_settings, run_async
from services.importer import command as importer
from services.intake import apikeys
from shared.connect import service_connection
from shared.settings import Settings

ROLE_CHOICES = ("portal", "admin_koordinator", "opd")


@click.command("create-api-key", short_help="Create an API key; it is printed once.")
@click.option("--name", required=True, help="who the key is for, e.g. portal-sekadau")
@click.option("--role", default="portal", show_default=True, type=click.Choice(ROLE_CHOICES),
              help="portal (source-bound), admin_koordinator, or opd (with --opd-code)")
@click.option("--source", help="restrict the key to one portal source name")
@click.option("--opd-code", help="role opd: the OPD the key speaks for, e.g. dinkes")
@pass_settings
def create_api_key(settings: Settings, name: str, role: str, source: str | None,
                   opd_code: str | None) -> int:
    """Create an API key and print it once (stdout; the summary goes to stderr)."""

    async def go() -> int:
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            key, plaintext = await apikeys.create_api_key(conn, name, role, source, opd_code)
        scope = f"opd={key.opd_code}" if key.opd_code else f"source={key.source or '*'}"
        click.echo(f"created API key #{key.id} '{key.name}' role={key.role} {scope}", err=True)
        click.echo("store it now; it is not shown again:", err=True)
        click.echo(plaintext)
        return 0

    return run_async(go())


@click.command("list-api-keys")
@pass_settings
def list_api_keys(settings: Settings) -> int:
    """List API keys (never their secrets)."""

    async def go() -> int:
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            keys = await apikeys.list_api_keys(conn)
        for r in keys:
            state = f"revoked {r.revoked_at:%Y-%m-%d}" if r.revoked_at else "active"
            scope = f"opd={r.opd_code}" if r.opd_code else f"source={r.source or '*'}"
            click.echo(f"#{r.id:<4} {r.name:<24} sp4n_{r.prefix}_…  {r.role:<18} "
                       f"{scope:<23} {state}")
        return 0

    return run_async(go())


@click.command("revoke-api-key", short_help="Revoke an API key by its number.")
@click.argument("key_id", metavar="ID", type=int)
@pass_settings
def revoke_api_key(settings: Settings, key_id: int) -> int:
    """Revoke an API key by its number (from list-api-keys); applies within the key-cache TTL."""

    async def go() -> int:
        async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
            revoked = await apikeys.revoke_api_key(conn, key_id)
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
              help="a portal key bound to source 'lapor'")
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


COMMANDS = (create_api_key, list_api_keys, revoke_api_key, import_lapor)
