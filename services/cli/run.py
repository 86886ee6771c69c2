"""``sp4n migrate`` and ``sp4n run``: the database schemas and the service processes."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

import aio_pika
import click

from services.cli.common import SERVICES, migrations_of, pass_settings, run_async
from services.cli.supervise import Supervisor
from shared.broker import declare_topology
from shared.connect import ensure_database
from shared.db import migrate
from shared.settings import Settings


async def migrate_all(settings: Settings) -> dict[str, list[str]]:
    """Create the database if missing; apply every service's pending migrations."""
    await ensure_database(settings.database_url)
    return {svc: await migrate(settings.database_url, svc, migrations_of(svc)) for svc in SERVICES}


async def declare_all(settings: Settings) -> None:
    """Declare the product's whole broker topology (needs configure rights on it)."""
    conn = await aio_pika.connect(settings.amqp_url)
    try:
        async with conn.channel() as channel:
            await declare_topology(channel, settings.namespace, settings.delivery_limit,
                                   settings.retry.delays_s)
    finally:
        await conn.close()


def _migrate(settings: Settings, *, topology: bool = True) -> int:
    async def go() -> int:
        for svc, applied in (await migrate_all(settings)).items():
            click.echo(f"{svc}: {', '.join(applied) if applied else 'up to date'}")
        if topology:
            await declare_all(settings)
            click.echo(f"broker topology of namespace {settings.namespace}: declared")
        return 0

    return run_async(go())


@click.command("migrate", short_help="Create the database if missing; migrate every schema.")
@click.option("--no-topology", is_flag=True, help="Do not declare the broker topology.")
@pass_settings
def migrate_command(settings: Settings, no_topology: bool) -> int:
    """Create the database if missing; apply every service's migrations; declare the broker
    topology (exchanges, queues, bindings, DLQs).

    Advisory-locked and idempotent: replicas starting together apply each file once. In
    production run it with the owner role and the migrate broker user (`sp4n bootstrap`)."""
    return _migrate(settings, topology=not no_topology)


@click.command("run")
@click.argument("service", type=click.Choice((*SERVICES, "all")))
@click.option("--env-dir", type=click.Path(file_okay=False, path_type=Path),
              envvar="SP4N_CREDENTIALS_DIR",
              help="`run all`: the env files of `sp4n bootstrap --env-dir` (migrate.env for "
                   "the migration, <service>.env for each service).")
@pass_settings
def run_command(settings: Settings, service: str, env_dir: Path | None) -> int:
    """Run one service, or all of them as separate processes.

    `run all` migrates first (so the services themselves do not), then supervises: a
    service that dies is restarted with backoff while the others keep running; Ctrl-C or
    SIGTERM stops every service gracefully (each one drains its outbox)."""
    if service != "all":
        os.execvp(sys.executable, [sys.executable, "-m", f"services.{service}"])
    envs = credentials_of(env_dir) if env_dir else {}
    migrate_env = envs.get("migrate", {})
    migrate_settings = settings.model_copy(update={
        "database_url": migrate_env.get("SP4N_DATABASE_URL", settings.database_url),
        "amqp_url": migrate_env.get("SP4N_AMQP_URL", settings.amqp_url)})
    code = _migrate(migrate_settings)
    if code:
        return code
    # A service's graceful stop: in-flight handlers, then the outbox drain, then a margin.
    return run_all(SERVICES, settings.graceful_timeout_s + settings.outbox_drain_timeout_s,
                   envs=envs)


def credentials_of(env_dir: Path) -> dict[str, dict[str, str]]:
    """The env files ``sp4n bootstrap --env-dir`` wrote (name → variables)."""
    from services.cli.bootstrap import read_env_file

    return {p.stem: read_env_file(p) for p in sorted(env_dir.glob("*.env"))}


def run_all(services: tuple[str, ...], graceful_timeout_s: float, *,
            envs: Mapping[str, Mapping[str, str]] | None = None,
            commands: Mapping[str, Sequence[str]] | None = None, backoff_s: float = 1.0,
            backoff_max_s: float = 30.0) -> int:
    """Each service in its own process, supervised (``supervise``), with its env file's
    variables (if any) and without auto-migration (the caller migrated); Ctrl-C or SIGTERM
    stops them all gracefully. ``commands`` replaces the service processes (tests)."""
    def env_of(svc: str) -> dict[str, str]:
        return dict(os.environ) | {"SP4N_AUTO_MIGRATE": "false"} | dict((envs or {}).get(svc, {}))

    supervisor = Supervisor(
        commands or {svc: [sys.executable, "-m", f"services.{svc}"] for svc in services},
        stop_timeout_s=graceful_timeout_s + 5, backoff_s=backoff_s, backoff_max_s=backoff_max_s,
        envs={svc: env_of(svc) for svc in services} if commands is None else None)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        supervisor.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return supervisor.run()


COMMANDS = (migrate_command, run_command)
