"""Which webhook targets notify may call (services/notify/targets.py): pure checks, and the
connect-time check on a real local connection."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from services.notify.targets import GuardedTransport, TargetPolicy, TargetRefused

NONE_ALLOWED = TargetPolicy()


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("10.0.0.5", "private"), ("172.16.3.4", "private"), ("192.168.1.1", "private"),
    ("100.64.0.1", "private"), ("fd00::1", "private"),
    ("0.0.0.0", "reserved"), ("240.0.0.1", "reserved"), ("224.0.0.1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
])
def test_internal_addresses_are_refused(address: str, why: str) -> None:
    reason = NONE_ALLOWED.refusal(address)
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["103.10.20.30", "8.8.8.8", "2001:4860:4860::8888"])
def test_public_addresses_pass(address: str) -> None:
    assert NONE_ALLOWED.refusal(address) is None


def test_the_allow_list_names_what_may_be_called() -> None:
    policy = TargetPolicy.of(["127.0.0.1/32", "10.20.0.0/16"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("10.20.7.8") is None
    assert policy.refusal("10.21.0.1") is not None
    assert policy.refusal("127.0.0.2") is not None
    with pytest.raises(ValueError, match="allowed_targets"):
        TargetPolicy.of(["not-a-cidr"])


def test_a_name_with_any_refused_address_is_refused() -> None:
    with pytest.raises(TargetRefused, match="10.0.0.5 is a private address"):
        NONE_ALLOWED.check_addresses("mixed.example", ["103.10.20.30", "10.0.0.5"])
    with pytest.raises(TargetRefused, match="no address"):
        NONE_ALLOWED.check_addresses("empty.example", [])


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9000/h", "http://[::1]/h", "http://localhost:8080/h",
    "http://api.localhost/h", "http://169.254.169.254/latest/meta-data/", "ftp://x.id/h",
])
def test_literal_targets_are_refused_without_dns(url: str) -> None:
    with pytest.raises(TargetRefused):
        NONE_ALLOWED.check_literal(url)


def test_https_only() -> None:
    policy = TargetPolicy(https_only=True)
    with pytest.raises(TargetRefused, match="https"):
        policy.check_literal("http://hooks.example.id/h")
    policy.check_literal("https://hooks.example.id/h")


async def test_check_url_resolves_and_refuses_unresolvable_or_internal_names() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        table = {"public.example": ["103.10.20.30"], "internal.example": ["10.1.2.3"]}
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return table[host]

    await NONE_ALLOWED.check_url("https://public.example/h", resolve)
    with pytest.raises(TargetRefused, match="private"):
        await NONE_ALLOWED.check_url("https://internal.example/h", resolve)
    with pytest.raises(TargetRefused, match="does not resolve"):
        await NONE_ALLOWED.check_url("https://nowhere.example/h", resolve)


async def _serve_once() -> tuple[asyncio.AbstractServer, int, list[bytes]]:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


async def test_connections_go_only_to_checked_addresses_dns_rebinding_refused() -> None:
    """The name answered a public address when the subscription was added; now it answers
    loopback. The connection is refused at connect time and no byte reaches the target."""
    server, port, seen = await _serve_once()
    answers = iter([["103.10.20.30"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    try:
        await NONE_ALLOWED.check_url(f"http://hooks.example.id:{port}/h", rebinding)  # at creation
        async with httpx.AsyncClient(transport=GuardedTransport(NONE_ALLOWED, rebinding)) as client:
            with pytest.raises(httpx.ConnectError, match="target refused: .*127.0.0.1 is a loopback"):
                await client.post(f"http://hooks.example.id:{port}/h", content=b"{}")
        assert seen == []

        # The same target, allow-listed: the connection goes to the resolved address, and the
        # request still names the URL's host.
        async def local(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        allowed = TargetPolicy.of(["127.0.0.1/32"])
        async with httpx.AsyncClient(transport=GuardedTransport(allowed, local)) as client:
            answer = await client.post(f"http://hooks.example.id:{port}/h", content=b"{}")
        assert answer.status_code == 204
        assert b"host: hooks.example.id" in seen[0].lower()
    finally:
        server.close()
