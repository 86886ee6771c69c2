"""``sp4n migrate`` and ``sp4n run``: the database schemas and the service processes."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

import click

from services.cli.common import SERVICES, migrations_of, pass_settings, run_async
from services.cli.supervise import Supervisor
from shared.connect import ensure_database
from shared.db import migrate
from shared.settings import Settings


async def migrate_all(settings: Settings) -> dict[str, list[str]]:
    """Create the database if missing; apply every service's pending migrations."""
    await ensure_database(settings.database_url)
    return {svc: await migrate(settings.database_url, svc, migrations_of(svc)) for svc in SERVICES}


def _migrate(settings: Settings) -> int:
    async def go() -> int:
        for svc, applied in (await migrate_all(settings)).items():
            click.echo(f"{svc}: {', '.join(applied) if applied else 'up to date'}")
        return 0

    return run_async(go())


@click.command("migrate", short_help="Create the database if missing; migrate every schema.")
@pass_settings
def migrate_command(settings: Settings) -> int:
    """Create the database if missing; apply every service's migrations.

    Advisory-locked and idempotent: replicas starting together apply each file once."""
    return _migrate(settings)


@click.command("run")
@click.argument("service", type=click.Choice((*SERVICES, "all")))
@pass_settings
def run_command(settings: Settings, service: str) -> int:
    """Run one service, or all of them as separate processes.

    `run all` migrates first, then supervises: a service that dies is restarted with
    backoff while the others keep running; Ctrl-C or SIGTERM stops every service gracefully
    (each one drains its outbox)."""
    if service != "all":
        os.execvp(sys.executable, [sys.executable, "-m", f"services.{service}"])
    _migrate(settings)
    # A service's graceful stop: in-flight handlers, then the outbox drain, then a margin.
    return run_all(SERVICES, settings.graceful_timeout_s + settings.outbox_drain_timeout_s)


def run_all(services: tuple[str, ...], graceful_timeout_s: float, *,
            commands: Mapping[str, Sequence[str]] | None = None, backoff_s: float = 1.0,
            backoff_max_s: float = 30.0) -> int:
    """Each service in its own process, supervised (``supervise``); Ctrl-C or SIGTERM stops
    them all gracefully. ``commands`` replaces the service processes (tests)."""
    supervisor = Supervisor(
        commands or {svc: [sys.executable, "-m", f"services.{svc}"] for svc in services},
        stop_timeout_s=graceful_timeout_s + 5, backoff_s=backoff_s, backoff_max_s=backoff_max_s)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        supervisor.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return supervisor.run()


COMMANDS = (migrate_command, run_command)
