"""RabbitMQ side of ``sp4n bootstrap``: users, vhost permissions and topic permissions
through the management HTTP API (``rabbitmq_management``; PUT is idempotent).

The administrator credentials come from the management URL, or else from the AMQP URL
(``amqp://admin:pw@host:5672/vhost`` → ``http://host:15672``, same user, same vhost).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import httpx

from shared.privileges import BrokerGrant, events_exchange_name


@dataclass(frozen=True)
class Management:
    base: str  # http(s)://host:port, no trailing slash
    user: str
    password: str
    vhost: str

    @classmethod
    def from_urls(cls, amqp_url: str, management_url: str | None = None) -> Management:
        amqp = urlsplit(amqp_url)
        vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
        if management_url:
            m = urlsplit(management_url)
            base = f"{m.scheme}://{m.hostname}:{m.port or (443 if m.scheme == 'https' else 15672)}"
            user, password = m.username or amqp.username, m.password or amqp.password
        else:
            scheme = "https" if amqp.scheme == "amqps" else "http"
            base = f"{scheme}://{amqp.hostname or '127.0.0.1'}:15672"
            user, password = amqp.username, amqp.password
        return cls(base, unquote(user or "guest"), unquote(password or "guest"), vhost)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.base}/api", auth=(self.user, self.password),
                            timeout=10)

    @property
    def v(self) -> str:
        return quote(self.vhost, safe="")


def wait_until_up(api: Management, timeout_s: float = 60.0) -> None:
    """Wait for the management API (it starts a little after the broker answers AMQP)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with api.client() as http:
                r = http.get("/overview")
            if r.status_code == 200:
                return
            if r.status_code in (401, 403):
                _check(r, f"log in as {api.user}")
        except httpx.TransportError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ management API at {api.base} does not answer "
                                   f"({exc}); enable it: rabbitmq-plugins enable "
                                   "rabbitmq_management") from exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"RabbitMQ management API at {api.base}: HTTP {r.status_code}")
        time.sleep(1)


def _check(r: httpx.Response, what: str) -> None:
    if r.status_code >= 300:
        raise RuntimeError(f"RabbitMQ management API: {what}: HTTP {r.status_code} {r.text[:200]}")


def ensure_user(api: Management, grant: BrokerGrant, password: str, ns: str) -> str:
    """Create or update one user (no tags: not an administrator, no management login), its
    permissions on the vhost and its topic permission on the events exchange."""
    u = quote(grant.user, safe="")
    with api.client() as http:
        existed = http.get(f"/users/{u}").status_code == 200
        _check(http.put(f"/users/{u}", json={"password": password, "tags": ""}), f"user {grant.user}")
        _check(http.put(f"/permissions/{api.v}/{u}", json={
            "configure": grant.configure, "write": grant.write, "read": grant.read}),
            f"permissions of {grant.user}")
        _check(http.put(f"/topic-permissions/{api.v}/{u}", json={
            "exchange": events_exchange_name(ns), "write": grant.topic_write,
            "read": grant.topic_read}), f"topic permissions of {grant.user}")
    return "updated" if existed else "created"


def delete_users(api: Management, users: list[str]) -> list[str]:
    """Delete these users (tests: per-run users); missing ones are skipped."""
    gone = []
    with api.client() as http:
        for user in users:
            r = http.delete(f"/users/{quote(user, safe='')}")
            if r.status_code in (200, 204):
                gone.append(user)
            elif r.status_code != 404:
                _check(r, f"delete user {user}")
    return gone


def users_with_prefix(api: Management, prefix: str) -> list[str]:
    with api.client() as http:
        r = http.get("/users")
        _check(r, "list users")
        return [u["name"] for u in r.json() if u["name"].startswith(prefix)]
