"""What every ``sp4n`` command module shares: the service names, where their migrations
live, the settings object on the click context, and how a command runs its coroutine."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from shared.settings import Settings

SERVICES = ("intake", "routing", "sla", "notify")
SERVICES_DIR = Path(__file__).parent.parent

# The root group stores the settings here; every command takes them with ``@pass_settings``.
pass_settings = click.make_pass_decorator(Settings)


def migrations_of(service: str) -> Path:
    return SERVICES_DIR / service / "migrations"


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine; a ``ValueError`` (the admin functions name the field and
    the reason) is the operator's mistake: printed, exit code 2."""
    try:
        return asyncio.run(coro)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2


def csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]
