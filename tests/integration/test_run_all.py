"""``sp4n run all`` supervises its service processes (``services.cli.supervise``), tested with
small dummy child processes instead of the services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from services.cli.supervise import Exit, Supervisor

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def until(condition, what: str, timeout_s: float = 20.0):
    """Wait for ``condition()`` to be truthy (a bound on a hang, not a timed assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def graceful_child(marker: Path) -> list[str]:
    """A child that writes ``ready`` once its SIGTERM handler is set and ``graceful`` on SIGTERM."""
    code = textwrap.dedent(f"""
        import pathlib, signal, sys, time
        marker = pathlib.Path({str(marker)!r})
        def stop(*_):
            marker.write_text("graceful")
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        marker.write_text("ready")
        time.sleep(600)
    """)
    return [sys.executable, "-c", code]


def started(commands, **kwargs) -> tuple[Supervisor, threading.Thread, list[str]]:
    lines: list[str] = []
    supervisor = Supervisor(commands, stop_timeout_s=10, report=lines.append, poll_s=0.02, **kwargs)
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    return supervisor, thread, lines


def test_a_killed_service_is_restarted_and_the_others_keep_running():
    supervisor, thread, lines = started({"routing": SLEEPER, "sla": SLEEPER}, backoff_s=0.05)
    try:
        first = until(lambda: (p := supervisor.pids()) and all(p.values()) and p, "both children")
        os.kill(first["routing"], signal.SIGKILL)
        again = until(lambda: (p := supervisor.pids())["routing"] not in (None, first["routing"]) and p,
                      "routing restarted")
        assert again["sla"] == first["sla"]  # never stopped
        assert supervisor.exits == [Exit("routing", -signal.SIGKILL, 0.05)]
        assert any(line.startswith("routing exited with -9") and "restarting in 0.05s" in line
                   for line in lines)
    finally:
        supervisor.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert supervisor.pids() == {"routing": None, "sla": None}


def test_a_crash_loop_backs_off_doubling_up_to_the_cap():
    crasher = [sys.executable, "-c", "import sys; sys.exit(3)"]
    supervisor, thread, _ = started({"intake": crasher, "notify": SLEEPER},
                                    backoff_s=0.05, backoff_max_s=0.2)
    try:
        until(lambda: len(supervisor.exits) >= 5, "five exits")
        notify_pid = supervisor.pids()["notify"]
    finally:
        supervisor.stop()
        thread.join(30)
    exits = supervisor.exits[:5]
    assert [e.restart_in_s for e in exits] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert {(e.service, e.returncode) for e in exits} == {("intake", 3)}
    assert notify_pid is not None and all(e.service == "intake" for e in supervisor.exits)


def test_sigterm_stops_every_service_gracefully(tmp_path):
    markers = {svc: tmp_path / svc for svc in ("intake", "routing")}
    commands = {svc: graceful_child(m) for svc, m in markers.items()}
    script = ("import sys; from services.cli.run import run_all;"
              f" sys.exit(run_all(('intake', 'routing'), 10, commands={commands!r}))")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        until(lambda: all(m.exists() and m.read_text() == "ready" for m in markers.values()),
              "children ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert {svc: m.read_text() for svc, m in markers.items()} == {
        "intake": "graceful", "routing": "graceful"}
