"""A webhook receiver on 127.0.0.1 for end-to-end tests: records every request and can be
told to fail the first N attempts of each delivery (by ``webhook-id``)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    fail_first: dict[str, int] = field(default_factory=dict)  # path → failures per webhook-id
    requests: list[Received] = field(default_factory=list)
    _attempts: Counter = field(default_factory=Counter)

    async def __aenter__(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip()
                           for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                key = (path, headers.get("webhook-id", ""))
                self._attempts[key] += 1
                status = 500 if self._attempts[key] <= self.fail_first.get(path, 0) else 200
                self.requests.append(Received(path, headers, body, status))
                reason = b"OK" if status == 200 else b"Internal Server Error"
                writer.write(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\n\r\n" % (status, reason))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass
        finally:
            writer.close()

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]
