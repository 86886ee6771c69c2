"""Which addresses a webhook may reach (SSRF protection).

notify is the one service that makes outbound calls, so a subscription must not turn it into
a proxy into the regency's own network: loopback, link-local (169.254.169.254, the cloud
metadata address), private, carrier-grade NAT, multicast, reserved and unspecified addresses
are refused unless the operator's allow-list (``SP4N_NOTIFY__ALLOWED_TARGETS``: CIDRs)
names them. Tests allow 127.0.0.1 that way.

Invariants:
- The check runs on every connection, on the addresses the name resolves to *then*, and the
  connection goes to the address that was checked (``GuardedBackend``): a name that resolved
  to a public address when the subscription was added and to 10.0.0.5 later (DNS rebinding)
  is refused at connect time.
- A name with any refused address is refused as a whole (a mixed answer is an attack or a
  misconfiguration, never something to pick the good half of).
- When the subscription is added, the URL is checked the same way, and a name that does not
  resolve is refused there (``check_url``); at delivery an unresolvable name is an ordinary
  failed attempt (DNS can be down for a while).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from shared.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses it resolves to (asyncio's getaddrinfo by default; tests inject).
Resolver = Callable[[str, int], Awaitable[list[str]]]


class TargetRefused(ValueError):
    """A webhook target notify will not call, with the reason."""


@dataclass(frozen=True)
class TargetPolicy:
    allowed: tuple[IpNetwork, ...] = ()
    https_only: bool = False

    @classmethod
    def of(cls, allowed: Iterable[str], *, https_only: bool = False) -> TargetPolicy:
        nets: list[IpNetwork] = []
        for cidr in allowed:
            try:
                nets.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"allowed_targets: {cidr!r} is not an address or CIDR") from exc
        return cls(tuple(nets), https_only)

    def refusal(self, address: str) -> str | None:
        """Why ``address`` may not be called, or None if it may."""
        try:
            ip: IpAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(ip in net for net in self.allowed):
            return None
        if ip.is_loopback:
            return f"{ip} is a loopback address"
        if ip.is_link_local:
            return f"{ip} is a link-local address"
        if ip.is_multicast:
            return f"{ip} is a multicast address"
        if ip.is_unspecified or ip.is_reserved:
            return f"{ip} is a reserved address"
        if not ip.is_global:
            return f"{ip} is a private address"
        return None

    def check_addresses(self, host: str, addresses: Sequence[str]) -> None:
        if not addresses:
            raise TargetRefused(f"{host} resolves to no address")
        for address in addresses:
            reason = self.refusal(address)
            if reason:
                raise TargetRefused(f"{host}: {reason} (not in SP4N_NOTIFY__ALLOWED_TARGETS)")

    def check_scheme(self, url: str) -> str:
        """The URL's host; ``TargetRefused`` if the scheme or host is unacceptable."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise TargetRefused("url must be http:// or https://")
        if self.https_only and parts.scheme != "https":
            raise TargetRefused("url must be https:// (SP4N_NOTIFY__HTTPS_ONLY)")
        if not parts.hostname:
            raise TargetRefused("url has no host")
        return parts.hostname

    def check_literal(self, url: str) -> None:
        """The checks that need no DNS: scheme, and a host that is an IP address or
        ``localhost`` (for a subscriptions file read at start-up)."""
        host = self.check_scheme(url)
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            self.check_addresses(host, ["127.0.0.1"])
            return
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        self.check_addresses(host, [host])

    async def check_url(self, url: str, resolve: Resolver | None = None) -> None:
        """Everything ``check_literal`` checks, plus the name's current addresses; a name
        that does not resolve is refused."""
        self.check_literal(url)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await (resolve or system_resolve)(host, port)
        except OSError as exc:
            raise TargetRefused(f"{host} does not resolve: {exc.strerror or exc}") from exc
        self.check_addresses(host, addresses)


def target_policy(settings: Settings) -> TargetPolicy:
    return TargetPolicy.of(settings.notify.allowed_targets, https_only=settings.notify.https_only)


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy applied to each TCP connection: resolve,
    check every address, connect to a checked one (TLS still verifies the URL's host name:
    httpcore passes the origin's host as SNI and for certificate checks)."""

    def __init__(self, policy: TargetPolicy, resolve: Resolver | None = None,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._resolve = resolve or system_resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc.strerror or exc}") from exc
        try:
            self._policy.check_addresses(host, addresses)
        except TargetRefused as exc:
            raise httpcore.ConnectError(f"target refused: {exc}") from exc
        return await self._inner.connect_tcp(addresses[0], port, timeout=timeout,
                                              local_address=local_address,
                                              socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a ``GuardedBackend`` pool, with no proxies (a proxy would make
    the connection in our stead, past the check)."""

    def __init__(self, policy: TargetPolicy, resolve: Resolver | None = None,
                 limits: httpx.Limits | None = None) -> None:
        super().__init__(trust_env=False)
        limits = limits or httpx.Limits()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy, resolve),
        )
