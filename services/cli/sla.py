"""The sla service's operator commands: the working-day calendar's overrides and the
deadline policies (``services.sla.repository`` / ``usecases``, on the sla schema)."""

from __future__ import annotations

from datetime import date

import asyncpg
import click

from services.cli.common import migrations_of, pass_settings, run_async
from services.sla import repository, usecases
from services.sla.calendar import library_holiday_names
from shared.connect import service_connection
from shared.settings import Settings

# -- calendar ------------------------------------------------------------------------------


@click.group("calendar")
def calendar() -> None:
    """Working-day calendar overrides (sla).

    The holidays package gives the national holidays and cuti bersama; an override wins over
    it. A change applies to clocks started from then on."""


@calendar.command("list")
@click.option("--year", type=int, help="default: this year")
@pass_settings
def calendar_list(settings: Settings, year: int | None) -> int:
    """The year's holidays from the package, and every override."""
    shown = year or date.today().year

    async def go() -> int:
        async with service_connection(settings, "sla", migrations=migrations_of("sla")) as conn:
            overrides = {r.day: r for r in await repository.list_calendar_overrides(conn)}
            revision = await repository.calendar_revision(conn)
        click.echo(f"libur nasional dan cuti bersama {shown} (paket holidays):")
        for day, name in sorted(library_holiday_names(shown).items()):
            mark = ""
            if day in overrides:
                mark = f"  ← override: {'hari kerja' if overrides[day].working else 'libur'}"
            click.echo(f"  {day:%a %d-%m-%Y}  {name}{mark}")
        click.echo("override (menang atas paket):")
        for day, r in sorted(overrides.items()):
            click.echo(f"  {day:%a %d-%m-%Y}  {'hari kerja' if r.working else 'libur'}  {r.reason}")
        click.echo(f"revisi kalender: {revision}")
        return 0

    return run_async(go())


def _day(_ctx: click.Context, _param: click.Parameter, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-12-01") from None


@calendar.command("set")
@click.argument("day", metavar="DATE", callback=_day)
@click.option("--working/--closed", "working", default=False,
              help="make it a working day, or close it (libur; the default)")
@click.option("--reason", default="", help="required: e.g. the decree that moved the day")
@pass_settings
def calendar_set(settings: Settings, day: date, working: bool, reason: str) -> int:
    """Make DATE (YYYY-MM-DD) a working day or close it."""

    async def go() -> int:
        async with service_connection(settings, "sla", migrations=migrations_of("sla")) as conn, \
                conn.transaction():
            revision = await usecases.set_calendar_override(conn, day, working, reason)
        click.echo(f"{day}: set done; calendar revision {revision} (applies to clocks started from now on)")
        return 0

    return run_async(go())


@calendar.command("remove", short_help="Remove the override of DATE.")
@click.argument("day", metavar="DATE", callback=_day)
@pass_settings
def calendar_remove(settings: Settings, day: date) -> int:
    """Remove the override of DATE (YYYY-MM-DD): the package's calendar applies again."""

    async def go() -> int:
        async with service_connection(settings, "sla", migrations=migrations_of("sla")) as conn, \
                conn.transaction():
            revision = await usecases.remove_calendar_override(conn, day)
        click.echo(f"{day}: remove done; calendar revision {revision} "
                   "(applies to clocks started from now on)")
        return 0

    return run_async(go())


# -- policies ------------------------------------------------------------------------------


@click.group("policy", short_help="Deadline policies in working days (sla).")
def policy() -> None:
    """Deadline policies in working days (sla); an edit applies to clocks started from then on."""


async def _print_policies(conn: asyncpg.Connection) -> None:
    for p in sorted((await repository.load_policies(conn)).values(), key=lambda p: p.key):
        click.echo(f"  {p.key:<36} {p.working_days:>3} HK  peringatan {p.warn_before_working_days} HK "
                   f"sebelumnya  v{p.version}")


@policy.command("list", short_help="Every clock's deadline and warning, in working days.")
@pass_settings
def policy_list(settings: Settings) -> int:
    """Every clock's deadline and warning, in working days (HK), with its version."""

    async def go() -> int:
        async with service_connection(settings, "sla", migrations=migrations_of("sla")) as conn:
            await _print_policies(conn)
        return 0

    return run_async(go())


@policy.command("set", short_help="Set a clock's deadline in working days, then list all.")
@click.argument("clock")
@click.argument("working_days", type=int)
@click.option("--warn", type=int, help="warn this many working days before the deadline")
@pass_settings
def policy_set(settings: Settings, clock: str, working_days: int, warn: int | None) -> int:
    """Set CLOCK's deadline to WORKING_DAYS (e.g. completion_pengaduan 14), then list all."""

    async def go() -> int:
        async with service_connection(settings, "sla", migrations=migrations_of("sla")) as conn:
            p = await repository.set_policy(conn, clock, working_days, warn)
            click.echo(f"{p.key}: {p.working_days} HK, version {p.version} (clocks started from now on)")
            await _print_policies(conn)
        return 0

    return run_async(go())


COMMANDS = (calendar, policy)
