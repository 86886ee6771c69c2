"""``sp4n bootstrap``: create the least-privilege PostgreSQL roles and RabbitMQ users of
``shared.privileges`` (idempotent), declare the broker topology, and hand out credentials
(one env file per service, mode 0600, or printed).

Run it as an administrator (a PostgreSQL superuser, a RabbitMQ administrator with the
management API); then ``sp4n migrate`` runs with ``migrate.env`` and each service with its
own file. Passwords come from ``--password NAME=VALUE``, else from an existing env file in
``--env-dir`` (a re-run keeps them), else are generated.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import asyncpg
import click

from services.cli.broker_users import (
    Management,
    delete_users,
    ensure_user,
    users_with_prefix,
    wait_until_up,
)
from services.cli.common import pass_settings, run_async
from services.cli.pg_roles import drop_roles, ensure_role, grant_all
from shared.broker import declare_topology
from shared.connect import ensure_database
from shared.events import CODE_PATTERN
from shared.privileges import (
    SERVICES,
    check_prefix,
    migrate_grant,
    owner_role,
    portal_grant,
    portal_user_prefix,
    service_grant,
    service_role,
)
from shared.settings import Settings

MIGRATE = "migrate"


@dataclass
class Plan:
    """What to bootstrap, with the administrator URLs to do it with."""

    prefix: str
    database_url: str  # a superuser's, on the sp4n database
    amqp_url: str  # an administrator's
    namespace: str
    delivery_limit: int
    retry_delays_s: tuple[float, ...] = ()
    management_url: str | None = None
    portals: tuple[str, ...] = ()
    passwords: dict[str, str] = field(default_factory=dict)  # name → password (given/reused)
    database: bool = True
    broker: bool = True
    wait_s: float = 60.0  # for the management API to answer


@dataclass
class Bootstrapped:
    lines: list[str] = field(default_factory=list)
    # env file name (intake, …, migrate, portal-<source>) → its variables
    env: dict[str, dict[str, str]] = field(default_factory=dict)


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _password(plan: Plan, name: str, kind: str) -> str:
    return plan.passwords.get(f"{name}.{kind}") or plan.passwords.get(name) or secrets.token_urlsafe(24)


async def bootstrap(plan: Plan) -> Bootstrapped:
    """Apply ``plan``; returns what it did and every credential it set."""
    prefix = check_prefix(plan.prefix)
    for source in plan.portals:
        if not re.fullmatch(CODE_PATTERN, source):
            raise ValueError(f"--portal {source!r}: not a valid source code ({CODE_PATTERN})")
    out = Bootstrapped()
    names = [*SERVICES, MIGRATE]
    for name in names:
        out.env[name] = {}
    for source in plan.portals:
        out.env[f"portal-{source}"] = {}
    if plan.database:
        await ensure_database(plan.database_url)
        database = urlsplit(plan.database_url).path.lstrip("/").split("?")[0]
        conn = await asyncpg.connect(plan.database_url)
        try:
            for name in names:
                role = owner_role(prefix) if name == MIGRATE else service_role(prefix, name)
                password = _password(plan, name, "db")
                verb = await ensure_role(conn, role, password)
                out.lines.append(f"postgres role {role}: {verb}")
                out.env[name]["SP4N_DATABASE_URL"] = _with_credentials(plan.database_url, role, password)
            out.lines += [f"postgres {line}" for line in await grant_all(conn, prefix, database)]
        finally:
            await conn.close()
    if plan.broker:
        api = Management.from_urls(plan.amqp_url, plan.management_url)
        wait_until_up(api, plan.wait_s)
        grants = {name: service_grant(prefix, plan.namespace, name) for name in SERVICES}
        grants[MIGRATE] = migrate_grant(prefix, plan.namespace)
        for source in plan.portals:
            grants[f"portal-{source}"] = portal_grant(prefix, plan.namespace, source)
        for name, grant in grants.items():
            password = _password(plan, name, "amqp")
            verb = ensure_user(api, grant, password, plan.namespace)
            out.lines.append(f"rabbitmq user {grant.user}: {verb} (configure {grant.configure}, "
                             f"write {grant.write}, read {grant.read}; "
                             f"publishes {grant.topic_write} on {plan.namespace}.events)")
            out.env[name]["SP4N_AMQP_URL"] = _with_credentials(plan.amqp_url, grant.user, password)
        out.env["intake"]["SP4N_INTAKE__PORTAL_USER_PREFIX"] = portal_user_prefix(prefix)
        conn_amqp = await aio_pika.connect(plan.amqp_url)
        try:
            async with conn_amqp.channel() as channel:
                await declare_topology(channel, plan.namespace, plan.delivery_limit,
                                       plan.retry_delays_s)
        finally:
            await conn_amqp.close()
        out.lines.append(f"rabbitmq topology of namespace {plan.namespace}: declared")
    return out


async def unbootstrap(database_url: str | None, amqp_url: str | None, prefix: str,
                      management_url: str | None = None) -> list[str]:
    """Remove the roles and users of ``prefix`` (tests clean up their per-run ones with it).
    PostgreSQL: only what they hold in ``database_url``'s database goes with them."""
    check_prefix(prefix)
    lines: list[str] = []
    if amqp_url:
        api = Management.from_urls(amqp_url, management_url)
        lines += [f"rabbitmq user {u}: deleted" for u in
                  delete_users(api, users_with_prefix(api, f"{prefix}-"))]
    if database_url:
        conn = await asyncpg.connect(database_url)
        try:
            lines += [f"postgres role {r}: dropped" for r in await drop_roles(conn, prefix)]
        finally:
            await conn.close()
    return lines


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def reuse_passwords(env_dir: Path) -> dict[str, str]:
    """``{name}.db`` / ``{name}.amqp`` passwords of the env files already in ``env_dir``."""
    found: dict[str, str] = {}
    paths = [*env_dir.glob("*.env"), *env_dir.glob("*/*.env")] if env_dir.is_dir() else []
    for path in paths:
        env = read_env_file(path)
        for var, kind in (("SP4N_DATABASE_URL", "db"), ("SP4N_AMQP_URL", "amqp")):
            if env.get(var) and (pw := urlsplit(env[var]).password):
                found[f"{path.stem}.{kind}"] = unquote(pw)
    return found


def write_env_files(env_dir: Path, env: dict[str, dict[str, str]], *,
                    dir_per_name: bool = False) -> list[Path]:
    """``env_dir/<name>.env`` each (or ``env_dir/<name>/<name>.env``: one directory, i.e. one
    volume, per service, so no container sees another's credentials)."""
    env_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    for name, values in env.items():
        if not values:
            continue
        folder = env_dir / name if dir_per_name else env_dir
        folder.mkdir(exist_ok=True, mode=0o700)
        path = folder / f"{name}.env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"# sp4n {name}: written by `sp4n bootstrap`; secret, keep mode 0600\n")
            f.writelines(f"{k}={v}\n" for k, v in values.items())
        os.chmod(path, 0o600)
        written.append(path)
    return written


@click.command("bootstrap", short_help="Create least-privilege database roles and broker users.")
@click.option("--prefix", default="sp4n", show_default=True, envvar="SP4N_BOOTSTRAP_PREFIX",
              help="Name prefix: roles {prefix}_owner, {prefix}_intake…; users {prefix}-intake…")
@click.option("--portal", "portals", multiple=True, metavar="SOURCE",
              help="A broker user {prefix}-portal-SOURCE that may publish submissions as SOURCE.")
@click.option("--env-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write one env file per service, migrate and portal (mode 0600); passwords "
                   "of files already there are kept.")
@click.option("--dir-per-service", is_flag=True,
              help="With --env-dir: write DIR/<name>/<name>.env (one volume per container).")
@click.option("--print-env", is_flag=True, help="Print every env file's variables (secrets!).")
@click.option("--password", "passwords", multiple=True, metavar="NAME=VALUE",
              help="Password to set instead of a generated one (NAME: intake, routing, sla, "
                   "notify, migrate, portal-SOURCE; NAME.db or NAME.amqp for one side).")
@click.option("--management-url", envvar="SP4N_RABBITMQ_MANAGEMENT_URL",
              help="RabbitMQ management API (default: the AMQP host, port 15672, same admin).")
@click.option("--skip-database", is_flag=True, help="Leave PostgreSQL alone.")
@click.option("--skip-broker", is_flag=True, help="Leave RabbitMQ alone.")
@click.option("--drop", is_flag=True, help="Remove the roles and users of --prefix instead.")
@pass_settings
def bootstrap_command(settings: Settings, prefix: str, portals: tuple[str, ...],
                      env_dir: Path | None, dir_per_service: bool, print_env: bool,
                      passwords: tuple[str, ...],
                      management_url: str | None, skip_database: bool, skip_broker: bool,
                      drop: bool) -> int:
    """Create (or update) the owner role and one PostgreSQL role and one RabbitMQ user per
    service, each allowed only its own schema, queues and events; declare the topology.

    Uses SP4N_DATABASE_URL (a superuser) and SP4N_AMQP_URL (an administrator); idempotent."""

    async def go() -> int:
        if drop:
            for line in await unbootstrap(None if skip_database else settings.database_url,
                                          None if skip_broker else settings.amqp_url, prefix,
                                          management_url):
                click.echo(line)
            return 0
        given = reuse_passwords(env_dir) if env_dir else {}
        for item in passwords:
            name, sep, value = item.partition("=")
            if not sep or not value:
                raise ValueError(f"--password {item!r}: expected NAME=VALUE")
            given[name] = value
        plan = Plan(prefix=prefix, database_url=settings.database_url, amqp_url=settings.amqp_url,
                    namespace=settings.namespace, delivery_limit=settings.delivery_limit,
                    retry_delays_s=settings.retry.delays_s,
                    management_url=management_url, portals=portals, passwords=given,
                    database=not skip_database, broker=not skip_broker)
        done = await bootstrap(plan)
        for line in done.lines:
            click.echo(line)
        if env_dir:
            for path in write_env_files(env_dir, done.env, dir_per_name=dir_per_service):
                click.echo(f"wrote {path} (0600)")
        if print_env:
            for name, values in done.env.items():
                click.echo(f"# {name}")
                for k, v in values.items():
                    click.echo(f"{k}={v}")
        return 0

    return run_async(go())


COMMANDS = (bootstrap_command,)
