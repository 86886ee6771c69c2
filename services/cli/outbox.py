"""``sp4n outbox``: the outbox rows each service's relay set aside after repeated failures
(``shared.outbox``) — list them, give them back to the relay."""

from __future__ import annotations

import click

from services.cli.common import SERVICES, migrations_of, pass_settings, run_async
from shared.connect import service_pool
from shared.outbox import list_set_aside, release_set_aside
from shared.settings import Settings

_SERVICE = click.option("--service", type=click.Choice(SERVICES),
                        help="one service's outbox (default: every service)")


@click.group("outbox", short_help="Outbox rows set aside by the relay: list, retry.")
def outbox() -> None:
    """Outbox rows the relay set aside after repeated failures (sp4n_outbox_set_aside):
    kept, never published until released with `sp4n outbox retry`."""


@outbox.command("list", short_help="Set-aside rows of every service (or --service).")
@_SERVICE
@click.option("--limit", default=100, show_default=True, help="rows per service")
@pass_settings
def outbox_list(settings: Settings, service: str | None, limit: int) -> int:
    """Set-aside rows, oldest first: service, id, event id, routing key, attempts, when, error."""

    async def go() -> int:
        total = 0
        for svc in (service,) if service else SERVICES:
            async with service_pool(settings, svc, migrations=migrations_of(svc)) as db:
                rows = await list_set_aside(db, limit=limit)
            for r in rows:
                click.echo(f"{svc:<8} {r.id:>8} {r.event_id} {r.routing_key:<28} attempts={r.attempts}"
                           f" set_aside={r.set_aside_at.isoformat(timespec='seconds')}"
                           f" error={r.last_error or '-'}")
            total += len(rows)
        click.echo(f"{total} set-aside row(s)", err=True)
        return 0

    return run_async(go())


@outbox.command("retry", short_help="Give set-aside rows back to the relay.")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "release_all", is_flag=True, help="every set-aside row")
@_SERVICE
@pass_settings
def outbox_retry(settings: Settings, ids: tuple[int, ...], release_all: bool,
                 service: str | None) -> int:
    """Release the set-aside rows IDS of --service (or --all of them) with fresh attempts;
    the running relay publishes them within its poll interval."""
    if bool(ids) == release_all:
        raise click.UsageError("give row IDS (with --service) or --all")
    if ids and not service:
        raise click.UsageError("row ids are per service: add --service")

    async def go() -> int:
        released = 0
        for svc in (service,) if service else SERVICES:
            async with service_pool(settings, svc, migrations=migrations_of(svc)) as db:
                released += await release_set_aside(db, list(ids) if ids else None)
        click.echo(f"released {released} row(s)")
        return 0

    return run_async(go())


COMMANDS = (outbox,)
