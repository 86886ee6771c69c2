"""The ``sp4n`` command's shape: its version, per-command help, the names operators use,
and that the services never import the CLI (no cycles)."""

from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

import pytest

from services.cli import main
from services.cli.dlq import resolve_queue
from shared.topology import ALL_QUEUES, ROUTING_SUBMITTED

ROOT = Path(__file__).resolve().parents[2]

# Every command the README documents (and scripts/run uses), with its arguments.
COMMANDS = [
    ["migrate"], ["run"], ["create-api-key"], ["list-api-keys"], ["revoke-api-key"], ["audit"], ["demo"],
    ["import-lapor"], ["dlq"], ["dlq", "list"], ["dlq", "show"], ["dlq", "replay"],
    ["subscription"], ["subscription", "add"], ["subscription", "list"], ["subscription", "pause"],
    ["subscription", "resume"], ["subscription", "remove"], ["webhook", "dead-letters"],
    ["webhook", "replay"], ["calendar", "list"], ["calendar", "set"], ["calendar", "remove"],
    ["policy", "list"], ["policy", "set"], ["outbox"], ["outbox", "list"], ["outbox", "retry"],
]


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sp4n {version('sp4n')}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_documented_command_has_its_own_help(command: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    assert f"Usage: sp4n {' '.join(command)}" in capsys.readouterr().out


def test_nested_help_names_the_options_and_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "show", "--help"]) == 0
    out = capsys.readouterr().out
    assert "QUEUE" in out and "--limit" in out and "--skip" in out and "default: 20" in out
    assert main(["calendar", "set", "-h"]) == 0
    out = capsys.readouterr().out
    assert "DATE" in out and "--working / --closed" in out and "--reason" in out
    assert main(["subscription", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(sub in out for sub in ("add", "list", "pause", "resume", "remove"))


@pytest.mark.parametrize("argv", [
    [], ["nope"], ["run", "nope"], ["create-api-key"], ["create-api-key", "--name", "x", "--role", "root"],
    ["revoke-api-key", "seven"], ["calendar", "set", "2026-13-45"], ["policy", "set", "completion"],
    ["dlq", "show"], ["webhook", "replay", "x"], ["outbox", "retry"], ["outbox", "retry", "7"],
])
def test_a_usage_error_exits_2_with_the_usage_on_stderr(argv: list[str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Usage: sp4n" in captured.err and captured.out == ""


def test_dlq_names_as_dlq_list_prints_them_or_as_the_source_queue() -> None:
    ns = "sp4n-test"
    for spec in ALL_QUEUES:
        short = spec.name(ns).removeprefix(f"{ns}.")
        for name in (spec.dlq_name(ns), spec.name(ns), short, f"{short}.dlq"):
            assert resolve_queue(name, ns) == spec, name
    assert resolve_queue("routing.submitted.v1", ns) == ROUTING_SUBMITTED
    assert resolve_queue("routing.submitted", ns) is None
    assert resolve_queue("other-ns.routing.submitted.v1", ns) is None


def test_the_services_never_import_the_cli() -> None:
    offenders = []
    for path in (ROOT / "services").rglob("*.py"):
        if path.is_relative_to(ROOT / "services" / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith("services.cli")]
    assert offenders == []
