"""The ``sp4n`` command: migrate, run services, and each service's operator commands.

One module per service area, each calling that service's own admin functions on its own
schema through ``shared.connect``: ``run`` (migrate, run), ``intake`` (API keys, the LAPOR!
import), ``sla`` (calendar, policy), ``notify`` (subscription, webhook), ``dlq`` (every
service's dead-letter queues), ``outbox`` (rows the relays set aside) and ``demo``.
Invariant: the CLI imports the services, never the reverse.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path

import click

from services.cli import bootstrap, demo, dlq, intake, notify, outbox, privacy, report, run, sla
from services.cli.common import SERVICES, migrations_of
from services.cli.run import migrate_all, run_all
from shared.settings import Settings

__all__ = ["SERVICES", "cli", "main", "migrate_all", "migrations_of", "run_all"]


@click.group("sp4n", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version("sp4n"), "--version", prog_name="sp4n", message="%(prog)s %(version)s")
@click.option("--env-file", "env_files", multiple=True, envvar="SP4N_ENV_FILE",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Read SP4N_* variables from this file first (e.g. a service's credentials "
                   "from `sp4n bootstrap --env-dir`); they win over the environment.")
@click.pass_context
def cli(ctx: click.Context, env_files: tuple[Path, ...]) -> None:
    """The sp4n command: migrate, run services, manage API keys, webhooks, the working-day
    calendar, deadline policies, dead-letter queues and set-aside outbox rows, and a demo.

    Settings come from SP4N_* environment variables (see the README). `sp4n COMMAND --help`
    describes each command."""
    from services.cli.bootstrap import read_env_file

    for path in env_files:
        # Into the process environment, so `run <service>` (an exec) passes them on.
        os.environ.update(read_env_file(path))
    ctx.obj = Settings()


for module in (run, bootstrap, intake, sla, notify, dlq, outbox, demo, report, privacy):
    for command in module.COMMANDS:
        cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Run ``sp4n`` with ``argv`` (default: the process's arguments); returns the exit code
    (2 for a usage error, as before)."""
    try:
        result = cli.main(args=argv, prog_name="sp4n", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return result if isinstance(result, int) else 0

