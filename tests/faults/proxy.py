"""A TCP fault proxy: listens on a local port and forwards every connection to a target.

Faults, applied to all connections at once:
- ``cut``: every connection is closed and new ones are refused (the listener closes) — a
  server that went away.
- ``blackhole``: connections are accepted and kept, but bytes in both directions are dropped —
  a partition that TCP cannot see. The connections that lost bytes are closed by ``restore``
  (their streams are corrupt, as after a real partition's retransmission timeout).
- ``latency <ms>``: every chunk is delivered ``ms`` later (chunks stay pipelined and ordered).
- ``restore``: back to normal forwarding; the listener is back on the same port.

Use it in-process (``FaultProxy``, asyncio) or as a separate process (``ProxyProcess``, which
runs ``python -m tests.faults.proxy HOST:PORT`` and sends it one command per line on stdin):
a separate process keeps forwarding even while the caller's event loop or GIL is busy.

    async with FaultProxy.to(settings.database_url, 5432) as proxy:
        url = proxy.url(settings.database_url)
        ...; await proxy.cut(); ...; await proxy.restore()
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 65536


def target_of(url: str, default_port: int) -> tuple[str, int]:
    """(host, port) a database or broker URL points at."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def through(url: str, port: int) -> str:
    """``url`` with its host:port replaced by a local proxy's port (credentials kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = listen_port
        self.mode = "normal"
        self.latency_s = 0.0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._tainted: set[asyncio.Task[None]] = set()  # links that dropped bytes

    @classmethod
    def to(cls, url: str, default_port: int = 0) -> FaultProxy:
        """A proxy to the server ``url`` points at (not listening before ``start``)."""
        return cls(*target_of(url, default_port))

    def url(self, url: str) -> str:
        """``url`` through this proxy."""
        return through(url, self.port)

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.cut()

    async def cut(self) -> None:
        await self.command("cut")

    async def restore(self) -> None:
        await self.command("restore")

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def command(self, line: str) -> str:
        """Apply one control command (``cut``, ``blackhole``, ``latency 500``, ``restore``)."""
        verb, *args = line.split()
        if verb == "cut":
            self.mode = "cut"
            if self._server is not None:
                self._server.close()
                self._server = None
            await self._close_links(self._links)
        elif verb == "blackhole":
            self.mode = "blackhole"
        elif verb == "latency":
            self.mode, self.latency_s = "normal", float(args[0]) / 1000
        elif verb == "restore":
            self.mode, self.latency_s = "normal", 0.0
            await self._close_links(self._tainted)
            if self._server is None:
                await self.start()
        else:
            raise ValueError(f"unknown proxy command {line!r}")
        return f"ok {self.port}"

    async def _close_links(self, links: set[asyncio.Task[None]]) -> None:
        doomed = list(links)
        for task in doomed:
            task.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.close()
            return
        # The link runs in its own task so that a fault can cancel it; asyncio's stream
        # callback task itself must end normally (3.11 logs a cancelled one as an error).
        link = asyncio.create_task(self._link(reader, writer))
        self._links.add(link)
        try:
            await asyncio.shield(link)
        except asyncio.CancelledError:
            link.cancel()
        finally:
            self._links.discard(link)
            self._tainted.discard(link)
            writer.close()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        upstream: asyncio.StreamWriter | None = None
        try:
            while self.mode == "blackhole":  # the peer's connect "succeeds" but nothing answers
                self._tainted.add(task)
                if not await reader.read(CHUNK):
                    return
            up_reader, upstream = await asyncio.open_connection(*self.target)
            await asyncio.gather(self._pump(task, reader, upstream), self._pump(task, up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):  # retrieves a lost connection's error
                        await w.wait_closed()

    async def _pump(self, task: asyncio.Task[None], src: asyncio.StreamReader,
                    dst: asyncio.StreamWriter) -> None:
        """Copy src → dst; with latency, each chunk is written at (arrival + latency)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                dst.write(data)
                await dst.drain()
            dst.write_eof()

        async def deliver_quietly() -> None:
            with contextlib.suppress(OSError, RuntimeError):  # the peer went away
                await deliver()

        sender = asyncio.create_task(deliver_quietly())
        try:
            while True:
                data = await src.read(CHUNK)
                if data and self.mode == "blackhole":
                    self._tainted.add(task)
                    continue
                queue.put_nowait((time.monotonic() + self.latency_s, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()


class ProxyProcess:
    """A ``FaultProxy`` in its own process, controlled over stdin; methods block until applied."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.proxy", f"{target_host}:{target_port}"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.port = int(self._answer().split()[1])
        self.mode = "normal"

    def _answer(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("ok"):
            raise RuntimeError(f"fault proxy failed: {line!r} (exit {self._proc.poll()})")
        return line

    def send(self, command: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._answer()
        self.mode = command.split()[0] if command != "restore" else "normal"

    def cut(self) -> None:
        self.send("cut")

    def blackhole(self) -> None:
        self.send("blackhole")

    def latency(self, ms: float) -> None:
        self.send(f"latency {ms}")

    def restore(self) -> None:
        self.send("restore")

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


async def _serve(target: str) -> None:
    host, _, port = target.rpartition(":")
    proxy = FaultProxy(host, int(port))
    print(f"ok {await proxy.start()}", flush=True)
    loop = asyncio.get_running_loop()
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip() or None:
        try:
            print(await proxy.command(line), flush=True)
        except Exception as exc:  # noqa: BLE001 - reported to the controller, proxy keeps running
            print(f"error {exc}", flush=True)


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1]))
