"""``sp4n migrate`` and ``sp4n run``: the database schemas and the service processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

import click

from services.cli.common import SERVICES, migrations_of, pass_settings, run_async
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

    `run all` migrates first; Ctrl-C or SIGTERM stops every service gracefully."""
    if service != "all":
        os.execvp(sys.executable, [sys.executable, "-m", f"services.{service}"])
    _migrate(settings)
    return run_all(SERVICES, settings.graceful_timeout_s)


def run_all(services: tuple[str, ...], graceful_timeout_s: float) -> int:
    """Each service in its own process; Ctrl-C or SIGTERM stops them all gracefully."""
    procs = {svc: subprocess.Popen([sys.executable, "-m", f"services.{svc}"]) for svc in services}
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"running {', '.join(f'{s} (pid {p.pid})' for s, p in procs.items())}; Ctrl-C stops all",
          file=sys.stderr)
    exit_code = 0
    while not stopping:
        for svc, proc in procs.items():
            if proc.poll() is not None:
                print(f"{svc} exited with {proc.returncode}; stopping the others", file=sys.stderr)
                exit_code = proc.returncode or 1
                stopping = True
        time.sleep(0.2)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + graceful_timeout_s + 5
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    return exit_code


COMMANDS = (migrate_command, run_command)
