"""The ``sp4n`` command: migrate, run services, manage API keys, and a demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from shared.db import migrate
from shared.settings import Settings

SERVICES = ("intake", "routing", "sla", "notify")
SERVICES_DIR = Path(__file__).parent


def migrations_of(service: str) -> Path:
    return SERVICES_DIR / service / "migrations"


async def migrate_all(settings: Settings) -> dict[str, list[str]]:
    return {svc: await migrate(settings.database_url, svc, migrations_of(svc)) for svc in SERVICES}


async def ensure_database(url: str) -> None:
    """Create the target database when it is missing (a fresh local PostgreSQL)."""
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        head, _, tail = url.rpartition("/")
        name = tail.split("?", 1)[0]
        admin = await asyncpg.connect(f"{head}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        print(f"created database {name}")
    else:
        await conn.close()


def cmd_migrate(settings: Settings, _args) -> int:
    async def go():
        await ensure_database(settings.database_url)
        return await migrate_all(settings)

    for svc, applied in asyncio.run(go()).items():
        print(f"{svc}: {', '.join(applied) if applied else 'up to date'}")
    return 0


def cmd_run(settings: Settings, args) -> int:
    if args.service != "all":
        os.execvp(sys.executable, [sys.executable, "-m", f"services.{args.service}"])
    cmd_migrate(settings, args)
    return run_all(SERVICES, settings.graceful_timeout_s)


def run_all(services: tuple[str, ...], graceful_timeout_s: float) -> int:
    """Each service in its own process; Ctrl-C or SIGTERM stops them all gracefully."""
    procs = {svc: subprocess.Popen([sys.executable, "-m", f"services.{svc}"]) for svc in services}
    stopping = False

    def stop(*_):
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


def cmd_create_api_key(settings: Settings, args) -> int:
    from services.intake.apikeys import create_api_key

    async def go():
        conn = await _intake_conn(settings)
        try:
            return await create_api_key(conn, args.name, args.role, args.source, args.opd_code)
        finally:
            await conn.close()

    try:
        key, plaintext = asyncio.run(go())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scope = f"opd={key.opd_code}" if key.opd_code else f"source={key.source or '*'}"
    print(f"created API key #{key.id} '{key.name}' role={key.role} {scope}", file=sys.stderr)
    print("store it now; it is not shown again:", file=sys.stderr)
    print(plaintext)
    return 0


def cmd_list_api_keys(settings: Settings, _args) -> int:
    from services.intake.apikeys import list_api_keys

    async def go():
        conn = await _intake_conn(settings)
        try:
            return await list_api_keys(conn)
        finally:
            await conn.close()

    for r in asyncio.run(go()):
        state = f"revoked {r['revoked_at']:%Y-%m-%d}" if r["revoked_at"] else "active"
        scope = f"opd={r['opd_code']}" if r["opd_code"] else f"source={r['source'] or '*'}"
        print(f"#{r['id']:<4} {r['name']:<24} sp4n_{r['prefix']}_…  {r['role']:<18} "
              f"{scope:<23} {state}")
    return 0


def cmd_revoke_api_key(settings: Settings, args) -> int:
    from services.intake.apikeys import revoke_api_key

    async def go():
        conn = await _intake_conn(settings)
        try:
            return await revoke_api_key(conn, args.id)
        finally:
            await conn.close()

    if asyncio.run(go()):
        print(f"revoked API key #{args.id}")
        return 0
    print(f"no active API key #{args.id}", file=sys.stderr)
    return 1


async def _intake_conn(settings: Settings) -> asyncpg.Connection:
    await ensure_database(settings.database_url)
    await migrate(settings.database_url, "intake", migrations_of("intake"))
    return await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})


def cmd_demo(settings: Settings, args) -> int:
    from services.demo import run_demo

    return asyncio.run(run_demo(settings, args.url, args.api_key, args.timeout))


def cmd_import_lapor(settings: Settings, args) -> int:
    from services.importer.command import run as run_import

    return run_import(args, settings.tz)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sp4n", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if missing; apply every service's migrations")
    run = sub.add_parser("run", help="run one service, or all of them as separate processes")
    run.add_argument("service", choices=(*SERVICES, "all"))
    key = sub.add_parser("create-api-key", help="create an API key and print it once")
    key.add_argument("--name", required=True)
    key.add_argument("--role", default="portal", choices=("portal", "admin_koordinator", "opd"),
                     help="portal (source-bound), admin_koordinator, or opd (with --opd-code)")
    key.add_argument("--source", help="restrict the key to one portal source name")
    key.add_argument("--opd-code", help="role opd: the OPD the key speaks for, e.g. dinkes")
    sub.add_parser("list-api-keys", help="list API keys (never their secrets)")
    rev = sub.add_parser("revoke-api-key", help="revoke an API key by its number")
    rev.add_argument("id", type=int)
    demo = sub.add_parser("demo", help="post realistic complaints and show where each went")
    demo.add_argument("--url", default="http://127.0.0.1:8000")
    demo.add_argument("--api-key", help="a portal key; by default a demo key is created")
    demo.add_argument("--timeout", type=float, default=15.0)
    lapor = sub.add_parser("import-lapor", help="submit a LAPOR! Excel export through intake "
                           "(source 'lapor'; a re-import is a no-op)")
    lapor.add_argument("file", help="the .xlsx export")
    lapor.add_argument("--url", default="http://127.0.0.1:8000", help="intake's base URL")
    lapor.add_argument("--api-key", default=os.environ.get("SP4N_API_KEY"),
                       help="a portal key bound to source 'lapor' (default: $SP4N_API_KEY)")
    lapor.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    lapor.add_argument("--dry-run", action="store_true", help="read and validate only; send nothing")
    from services import cli_admin  # operator commands: subscriptions, calendar, policy, dlq

    for name, command in cli_admin.register(sub).items():
        sub.choices[name].set_defaults(func=command)
    return p


COMMANDS = {
    "migrate": cmd_migrate, "run": cmd_run, "create-api-key": cmd_create_api_key,
    "list-api-keys": cmd_list_api_keys, "revoke-api-key": cmd_revoke_api_key, "demo": cmd_demo,
    "import-lapor": cmd_import_lapor,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = getattr(args, "func", None) or COMMANDS[args.command]
    return command(Settings(), args)


if __name__ == "__main__":
    sys.exit(main())
