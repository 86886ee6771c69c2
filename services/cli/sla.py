"""The sla service's operator commands: the working-day calendar's overrides (each change a
new calendar version with who and why, recomputing open deadlines unless told to keep them),
its coverage, the deadline policies and the escalation ladders (``services.sla.repository`` /
``usecases``, on the sla schema)."""

from __future__ import annotations

import getpass
import uuid
from datetime import UTC, date, datetime

import asyncpg
import click

from services.cli.common import migrations_of, pass_settings, run_async
from services.sla import repository, usecases
from services.sla.app import office_hours
from services.sla.calendar import library_coverage_year, library_holiday_names
from services.sla.calendars import CalendarSource
from services.sla.repository import PgSlaRepository
from services.sla.verification import verify_deadlines
from shared.connect import service_connection, service_pool
from shared.settings import Settings
from shared.uow import PgUnitOfWork


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container): say so rather than fail
        return "operator"


_BY = click.option("--by", "changed_by", default=None,
                   help="who makes the change (default: the login name)")
_KEEP = click.option("--keep-deadlines", is_flag=True,
                     help="keep existing deadlines as computed (default: recompute the open ones)")

# -- calendar ------------------------------------------------------------------------------


@click.group("calendar")
def calendar() -> None:
    """Working-day calendar overrides (sla).

    The holidays package gives the national holidays and cuti bersama; an override wins over
    it. Each change is a new calendar version (who, why); open deadlines the day can move are
    recomputed against it (sla.deadline_changed) unless --keep-deadlines."""


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
        calendar = await CalendarSource(settings.tz).current(_Store(settings))
        click.echo(f"cuti bersama diketahui sampai: {calendar.covered_through} "
                   f"(paket holidays: {library_coverage_year()}; lanjutkan dengan "
                   f"`sp4n calendar confirm {calendar.covered_through + 1}`)")
        return 0

    return run_async(go())


def _day(_ctx: click.Context, _param: click.Parameter, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-12-01") from None


async def _change(settings: Settings, day: date, working: bool | None, reason: str,
                  changed_by: str | None, keep: bool) -> int:
    async with service_pool(settings, "sla", migrations=migrations_of("sla")) as pool:
        out = await usecases.change_calendar(
            day, working, reason, changed_by or _operator(), keep_deadlines=keep,
            uow=PgUnitOfWork(lambda: pool, PgSlaRepository),
            calendars=CalendarSource(settings.tz), now=datetime.now(UTC),
            completion_met_by=settings.sla.completion_met_by, office_hours=office_hours(settings))
    what = "remove" if working is None else "set"
    if keep:
        click.echo(f"{day}: {what} done; calendar revision {out.revision} "
                   "(existing deadlines kept; applies to clocks started from now on)")
    else:
        click.echo(f"{day}: {what} done; calendar revision {out.revision}; "
                   f"{out.moved} deadline(s) moved in {out.complaints} complaint(s)")
    return 0


@calendar.command("set")
@click.argument("day", metavar="DATE", callback=_day)
@click.option("--working/--closed", "working", default=False,
              help="make it a working day, or close it (libur; the default)")
@click.option("--reason", default="", help="required: e.g. the decree that moved the day")
@_BY
@_KEEP
@pass_settings
def calendar_set(settings: Settings, day: date, working: bool, reason: str,
                 changed_by: str | None, keep_deadlines: bool) -> int:
    """Make DATE (YYYY-MM-DD) a working day or close it."""
    return run_async(_change(settings, day, working, reason, changed_by, keep_deadlines))


@calendar.command("remove", short_help="Remove the override of DATE.")
@click.argument("day", metavar="DATE", callback=_day)
@click.option("--reason", default="override dihapus", help="why (kept with the change)")
@_BY
@_KEEP
@pass_settings
def calendar_remove(settings: Settings, day: date, reason: str, changed_by: str | None,
                    keep_deadlines: bool) -> int:
    """Remove the override of DATE (YYYY-MM-DD): the package's calendar applies again."""
    return run_async(_change(settings, day, None, reason, changed_by, keep_deadlines))


@calendar.command("confirm", short_help="Confirm YEAR's cuti bersama are entered.")
@click.argument("year", type=click.IntRange(2000, 2200))
@_BY
@pass_settings
def calendar_confirm(settings: Settings, year: int, changed_by: str | None) -> int:
    """Confirm that YEAR's cuti bersama (the SKB) are in the calendar (entered as overrides
    where the holidays package lacks them): deadlines in YEAR are no longer flagged
    beyond_calendar_coverage."""

    async def go() -> int:
        async with service_pool(settings, "sla", migrations=migrations_of("sla")) as pool:
            revision = await usecases.confirm_calendar_year(
                year, changed_by or _operator(), uow=PgUnitOfWork(lambda: pool, PgSlaRepository))
        click.echo(f"{year}: cuti bersama dikonfirmasi; calendar revision {revision}")
        return 0

    return run_async(go())


@calendar.command("history", short_help="Every calendar change: version, who, why.")
@click.option("--limit", type=int, default=50)
@pass_settings
def calendar_history(settings: Settings, limit: int) -> int:
    """Every calendar change, newest first: revision, day, what, who, why."""

    async def go() -> int:
        async with service_connection(settings, "sla", migrations=migrations_of("sla")) as conn:
            for c in await repository.list_calendar_changes(conn, limit):
                kind = "dihapus" if c.working is None else "hari kerja" if c.working else "libur"
                what = (f"tahun {c.confirmed_year} dikonfirmasi" if c.confirmed_year
                        else f"{c.day} {kind}")
                keep = "  (tenggat lama dipertahankan)" if c.keep_deadlines else ""
                click.echo(f"  ovr-{c.revision:<4} {c.changed_at:%d-%m-%Y %H:%M}  {what}  "
                           f"oleh {c.changed_by}: {c.reason}{keep}")
        return 0

    return run_async(go())


@calendar.command("verify", short_help="Recompute stored deadlines under their own version.")
@click.option("--complaint", "complaint_ids", multiple=True, type=click.UUID,
              help="only this complaint (repeatable); default: every complaint with a running clock")
@click.option("--all", "all_clocks", is_flag=True, help="stopped clocks too")
@pass_settings
def calendar_verify(settings: Settings, complaint_ids: tuple[uuid.UUID, ...],
                    all_clocks: bool) -> int:
    """Derive every clock again from its complaint's facts under the calendar version it names
    (an older version is rebuilt from its stored content) and list each whose stored deadline
    differs. Changes nothing. Exit status 1 if any differs."""

    async def go() -> int:
        async with service_pool(settings, "sla", migrations=migrations_of("sla")) as pool:
            out = await verify_deadlines(
                uow=PgUnitOfWork(lambda: pool, PgSlaRepository),
                calendars=CalendarSource(settings.tz), now=datetime.now(UTC),
                complaint_ids=list(complaint_ids) or None, open_only=not all_clocks,
                completion_met_by=settings.sla.completion_met_by,
                office_hours=office_hours(settings))
        tz = settings.tz
        for m in out.mismatches:
            stored = m.stored.astimezone(tz).isoformat(" ") if m.stored else "tidak tersimpan"
            recomputed = (m.recomputed.astimezone(tz).isoformat(" ") if m.recomputed
                          else "tidak ada")
            click.echo(f"  BEDA {m.complaint_id} {m.clock} hop {m.hop} #{m.instance}"
                       f" ({m.calendar_version or '-'}): tersimpan {stored},"
                       f" dihitung ulang {recomputed}")
        for version, n in sorted(out.not_rebuildable.items()):
            click.echo(f"  {n} tenggat di versi {version} tidak dapat dihitung ulang (rilis"
                       " paket holidays lain, atau versi dibuat sebelum isinya disimpan)")
        click.echo(f"diperiksa: {out.complaints} pengaduan, {out.compared} tenggat dihitung ulang"
                   f" di versi kalendernya; {len(out.mismatches)} berbeda")
        return 1 if out.mismatches else 0

    return run_async(go())


class _Store:
    """A ``CalendarStore`` for one read from the CLI."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def read_calendar(self) -> repository.CalendarSnapshot:
        async with service_connection(self._settings, "sla") as conn:
            return await repository.read_calendar(conn)


# -- policies ------------------------------------------------------------------------------


@click.group("policy", short_help="Deadline policies in working days (sla).")
def policy() -> None:
    """Deadline policies in working days (sla); an edit applies to clocks started from then on."""


async def _print_policies(conn: asyncpg.Connection) -> None:
    for p in sorted((await repository.load_policies(conn)).values(), key=lambda p: p.key):
        points = ", ".join(p.warn_points) if p.warn_points else f"{p.warn_before_working_days}hk"
        click.echo(f"  {p.key:<36} {p.working_days:>3} HK  peringatan {points:<12} v{p.version}")


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
@click.option("--warn-points", default=None,
              help="several warning points instead, e.g. '2hk,50%' ('' = back to --warn)")
@pass_settings
def policy_set(settings: Settings, clock: str, working_days: int, warn: int | None,
               warn_points: str | None) -> int:
    """Set CLOCK's deadline to WORKING_DAYS (e.g. completion_pengaduan 14), then list all."""

    async def go() -> int:
        async with service_connection(settings, "sla", migrations=migrations_of("sla")) as conn, \
                conn.transaction():
            p = await repository.set_policy(conn, clock, working_days, warn)
            if warn_points is not None:
                await usecases.set_warning_points(conn, clock, warn_points)
                p = (await repository.load_policies(conn))[clock]
            click.echo(f"{p.key}: {p.working_days} HK, version {p.version} (clocks started from now on)")
            await _print_policies(conn)
        return 0

    return run_async(go())


# -- escalation ladders ----------------------------------------------------------------------


@click.group("ladder", short_help="Escalation ladders after a breach (sla).")
def ladder() -> None:
    """Escalation ladders (sla): per clock, optionally per OPD or category (the most specific
    wins); each step N working days after the breach names who is told (sla.escalated).
    An edit bumps the ladder's version and applies to clocks started from then on."""


@ladder.command("list", short_help="Every ladder with its steps and version.")
@pass_settings
def ladder_list(settings: Settings) -> int:
    """Every ladder: clock, scope (OPD, category), steps, version, who and why."""

    async def go() -> int:
        async with service_connection(settings, "sla", migrations=migrations_of("sla")) as conn:
            for lad in await repository.list_ladders(conn):
                scope = f"opd={lad.opd_code or '*'} kategori={lad.category or '*'}"
                steps = ", ".join(f"L{s.level} +{s.after_working_days} HK {s.target}"
                                  for s in lad.steps)
                click.echo(f"  {lad.clock:<14} {scope:<36} v{lad.version}  {steps}"
                           f"  ({lad.updated_by}: {lad.reason or '-'})")
        return 0

    return run_async(go())


@ladder.command("set", short_help="Add or replace a ladder.")
@click.argument("clock")
@click.option("--steps", required=True,
              help="after_working_days:target,… e.g. 0:pejabat_penghubung,2:kepala_opd,5:sekda")
@click.option("--opd", "opd_code", default=None, help="only for this OPD")
@click.option("--category", default=None, help="only for this category")
@click.option("--reason", default="", help="required: e.g. the Perbup")
@_BY
@pass_settings
def ladder_set(settings: Settings, clock: str, steps: str, opd_code: str | None,
               category: str | None, reason: str, changed_by: str | None) -> int:
    """Add or replace CLOCK's ladder (opd_response, completion, verification, redisposition)."""

    async def go() -> int:
        async with service_connection(settings, "sla", migrations=migrations_of("sla")) as conn:
            version = await usecases.set_escalation_ladder(
                conn, clock, steps, opd_code=opd_code, category=category,
                updated_by=changed_by or _operator(), reason=reason)
        click.echo(f"{clock} ladder: version {version} (clocks started from now on)")
        return 0

    return run_async(go())


@ladder.command("remove", short_help="Remove a ladder.")
@click.argument("clock")
@click.option("--opd", "opd_code", default=None)
@click.option("--category", default=None)
@pass_settings
def ladder_remove(settings: Settings, clock: str, opd_code: str | None,
                  category: str | None) -> int:
    """Remove the ladder of CLOCK with exactly this scope."""

    async def go() -> int:
        async with service_connection(settings, "sla", migrations=migrations_of("sla")) as conn:
            removed = await repository.remove_ladder(conn, clock, opd_code, category)
        click.echo(f"{clock} ladder: {'removed' if removed else 'none with that scope'}")
        return 0 if removed else 1

    return run_async(go())


COMMANDS = (calendar, policy, ladder)
