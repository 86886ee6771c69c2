"""Abuse resistance of intake (issue 8, item 4), attacked over real HTTP and AMQP: intake runs
as its own process against real PostgreSQL, RabbitMQ and (for the shared counters) Redis.

Each test talks from its own loopback address (127.0.0.x: every one is local on Linux), so
the per-address rate limits of one attack never count another's requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import pytest

from services.intake.apikeys import create_api_key
from shared.topology import INTAKE_SUBMISSIONS, SUBMISSION_ROUTING_KEY, inbound_exchange
from tests.e2e.system import RunningSystem, start

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REDIS_URL = os.environ.get("SP4N_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
V2 = "/open311/v2"
MB = 1024 * 1024
# The main instance: only the failed-authentication limit is small; the shared pair below
# has small public-read limits.
FAILED_AUTH_LIMIT = 5


def intake_overrides(settings, **over: object) -> dict[str, object]:
    return {"intake": settings.intake.model_dump() | over}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("abuse-logs")


@pytest.fixture(scope="module")
def system(settings, log_dir) -> Iterator[RunningSystem]:
    running = start(settings, ["intake"], log_dir, **intake_overrides(
        settings, rate_limit_failed_auth=f"{FAILED_AUTH_LIMIT}/minute",
        rate_limit_public_reads="1000/minute"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
async def keys(settings, system) -> dict[str, str]:
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        suffix = uuid.uuid4().hex[:6]
        _, portal = await create_api_key(conn, f"abuse-portal-{suffix}", "portal", "portal-sekadau")
        _, admin = await create_api_key(conn, f"abuse-admin-{suffix}", "admin_koordinator")
    finally:
        await conn.close()
    return {"portal": portal, "admin": admin}


def client(system: RunningSystem, address: str) -> httpx.AsyncClient:
    """An HTTP client to intake that connects from ``address``."""
    return httpx.AsyncClient(base_url=system.url("intake"), timeout=10,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def complaint(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "source": "portal-sekadau", "external_id": f"abuse-{uuid.uuid4().hex[:10]}",
        "received_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "classification": "pengaduan", "category": "infrastruktur_jalan",
        "title": "Jalan berlubang", "description": "Jalan desa berlubang besar di depan sekolah.",
        "location": {"kecamatan": "Sekadau Hilir", "desa": "Mungguk"},
        "reporter": {"name": "Budi", "phone": "+6281234567890"},
    }
    for path, value in over.items():  # "location.desa" sets a nested field
        target = body
        *parents, leaf = path.split(".")
        for p in parents:
            target = target[p]  # type: ignore[assignment]
        target[leaf] = value
    return body


def problem_fields(r: httpx.Response, status: int = 422) -> list[str]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in r.json()["errors"]]


def spec_descriptions(r: httpx.Response, status: int = 400) -> list[str]:
    assert r.status_code == status, r.text
    return [e["description"] for e in r.json()]


# --- NUL characters ------------------------------------------------------------------------------

BODY_PROBES = ["title", "description", "external_id", "category", "location.desa", "reporter.name"]
OPEN311_FILTERS = ["service_request_id", "service_code", "status", "start_date", "end_date"]


@pytest.mark.parametrize("field", BODY_PROBES)
async def test_nul_in_a_submitted_text_field_is_422_naming_it(system, keys, field):
    async with client(system, "127.0.0.2") as c:
        r = await c.post("/v1/complaints", json=complaint(**{field: "Jalan\u0000rusak parah"}),
                         headers=auth(keys["portal"]))
    assert problem_fields(r) == [field]
    assert "NUL" in r.json()["errors"][0]["reason"]


async def test_nul_in_a_defer_reason_is_422_naming_it(system, keys):
    async with client(system, "127.0.0.2") as c:
        r = await c.post("/v1/complaints/SKD-000000-NOPE00/defer", json={"reason": "tunggu\u0000"},
                         headers=auth(keys["admin"]))
    assert problem_fields(r) == ["reason"]


async def test_nul_in_the_complaint_key_is_422_naming_it(system, keys):
    async with client(system, "127.0.0.2") as c:
        r = await c.get("/v1/complaints/%00", headers=auth(keys["admin"]))
    assert problem_fields(r) == ["key"]


async def test_nul_in_the_opd_filter_is_422_naming_it(system, keys):
    async with client(system, "127.0.0.2") as c:
        r = await c.get("/v1/complaints", params={"opd": "\u0000"}, headers=auth(keys["admin"]))
    assert problem_fields(r) == ["opd"]


async def test_nul_in_an_open311_request_id_is_400_naming_it(system):
    async with client(system, "127.0.0.2") as c:
        r = await c.get(f"{V2}/requests/%00.json")
    [description] = spec_descriptions(r)
    assert description.startswith("service_request_id: ")


@pytest.mark.parametrize("name", OPEN311_FILTERS)
async def test_nul_in_an_open311_filter_is_400_naming_it(system, name):
    async with client(system, "127.0.0.2") as c:
        r = await c.get(f"{V2}/requests.json", params={name: "a\u0000"})
    [description] = spec_descriptions(r)
    assert description.startswith(f"{name}: ") and "NUL" in description


# --- out-of-range numbers and dates --------------------------------------------------------------

async def test_a_huge_offset_or_limit_is_422_naming_it(system, keys):
    async with client(system, "127.0.0.3") as c:
        for name in ("offset", "limit"):
            r = await c.get("/v1/complaints", params={name: "9223372036854775808"},
                            headers=auth(keys["admin"]))
            assert problem_fields(r) == [name]


async def test_a_year_one_date_is_422_naming_the_field(system, keys):
    year_one = "0001-01-01T00:00:00+14:00"
    async with client(system, "127.0.0.3") as c:
        r = await c.post("/v1/complaints", json=complaint(received_at=year_one),
                         headers=auth(keys["portal"]))
        assert problem_fields(r) == ["received_at"]
        r = await c.post("/v1/complaints/SKD-000000-NOPE00/close",
                         json={"occurred_at": "0001-01-01T00:00:00Z"}, headers=auth(keys["admin"]))
        assert problem_fields(r) == ["occurred_at"]
        form = {"service_code": "infrastruktur_jalan", "lat": "0.03", "long": "110.95",
                "description": "Jalan desa berlubang besar di depan sekolah dasar.",
                "first_name": "Budi", "phone": "+6281234567890",
                "api_key": keys["portal"], "attribute[received_at]": year_one}
        r = await c.post(f"{V2}/requests.json", data=form)
        assert [d.split(":")[0] for d in spec_descriptions(r)] == ["attribute[received_at]"]
        for name, value in (("start_date", "0001-01-01"), ("end_date", "9999-12-31"),
                            ("start_date", "9999-12-31T23:59:59-14:00"), ("end_date", "2026-13-45")):
            r = await c.get(f"{V2}/requests.json", params={name: value})
            assert [d.split(":")[0] for d in spec_descriptions(r)] == [name], value


async def next_message(queue: aio_pika.abc.AbstractQueue,
                       timeout: float) -> aio_pika.abc.AbstractIncomingMessage | None:
    for _ in range(int(timeout / 0.1)):
        msg = await queue.get(fail=False)
        if msg is not None:
            return msg
        await asyncio.sleep(0.1)
    return None


async def test_a_bad_broker_submission_goes_to_the_dlq_at_once(system, settings):
    """NUL and year 1 over AMQP: dead-lettered on the first delivery with the field named."""
    bodies = [complaint(title="Jalan\u0000rusak"), complaint(received_at="0001-01-01T00:00:00+00:00")]
    bad = {str(bodies[0]["external_id"]): "title", str(bodies[1]["external_id"]): "received_at"}
    conn = await aio_pika.connect(settings.amqp_url)
    try:
        ch = await conn.channel()
        exchange = await ch.get_exchange(inbound_exchange(settings.namespace).name)
        dlq = await ch.declare_queue(INTAKE_SUBMISSIONS.dlq_name(settings.namespace), durable=True)
        for b, field in zip(bodies, bad.values(), strict=True):  # one at a time: the DLQ gets
            await exchange.publish(                               # a reference, not the body
                aio_pika.Message(json.dumps(b).encode(), content_type="application/json",
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=SUBMISSION_ROUTING_KEY)
            msg = await next_message(dlq, timeout=15)
            assert msg is not None, "not dead-lettered"
            await msg.ack()
            assert set(json.loads(msg.body)) == {"failed_submission_id", "reason"}
            assert f"{field}:" in str(msg.headers["x-sp4n-error"])
            # The first delivery: no redelivery counted by the quorum queue.
            assert int(msg.headers.get("x-delivery-count", 0)) == 0, msg.headers  # type: ignore[arg-type]
    finally:
        await conn.close()
    db = await asyncpg.connect(settings.database_url)
    try:
        assert await db.fetchval("SELECT count(*) FROM intake.complaints WHERE external_id = ANY($1)",
                                 list(bad)) == 0
    finally:
        await db.close()


# --- body size and the key before the body -------------------------------------------------------

async def raw_exchange(system: RunningSystem, address: str, head: str,
                       *parts: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a request head and some body bytes over a plain socket, then read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", system.ports["intake"],
                                                   local_addr=(address, 0))
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        for p in parts:
            writer.write(p)
        await writer.drain()
        raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = raw_head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 10)
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()


def head(path: str, *lines: str) -> str:
    return "\n".join([f"POST {path} HTTP/1.1", "Host: intake", *lines, ""])


async def test_a_50mb_body_is_413_before_it_is_read(system, keys):
    """Content-Length says 50 MB; 1 KiB is sent and the answer comes without the rest."""
    for path, ctype in (("/v1/complaints", "application/json"),
                        (f"{V2}/requests.json", "application/x-www-form-urlencoded")):
        status, headers, body = await raw_exchange(
            system, "127.0.0.4",
            head(path, f"Authorization: Bearer {keys['portal']}", f"Content-Type: {ctype}",
                 f"Content-Length: {50 * MB}"), b"{" + b" " * 1023)
        assert status == 413, body
        if path.startswith(V2):
            assert json.loads(body)[0]["description"].startswith("body: larger than")
        else:
            assert headers["content-type"].startswith("application/problem+json")
            assert json.loads(body)["type"] == "urn:sp4n:problem:payload_too_large"


async def test_a_chunked_body_is_cut_at_the_limit(system, keys):
    """No Content-Length: counted while it streams; 80 KiB of chunks against a 64 KiB limit."""
    chunk = b" " * 16384
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 5
    status, _, body = await raw_exchange(
        system, "127.0.0.4",
        head("/v1/complaints", f"Authorization: Bearer {keys['portal']}",
             "Content-Type: application/json", "Transfer-Encoding: chunked"), *chunks)
    assert status == 413, body
    assert json.loads(body)["errors"] == [{"field": "(body)", "reason": "larger than 65536 bytes"}]


async def test_an_unauthenticated_large_body_is_401_unread(system):
    for key_header in ([], ["Authorization: Bearer sk_deadbeef_not-a-real-key"]):
        status, headers, body = await raw_exchange(
            system, "127.0.0.5",
            head("/v1/complaints", *key_header, "Content-Type: application/json",
                 f"Content-Length: {50 * MB}"), b"{")
        assert status == 401, body
        assert json.loads(body)["type"] == "urn:sp4n:problem:unauthorized"


async def test_an_open311_file_part_is_refused_naming_it(system, keys):
    async with client(system, "127.0.0.6") as c:
        r = await c.post(f"{V2}/requests.json",
                         data={"api_key": keys["portal"], "service_code": "infrastruktur_jalan"},
                         files={"media": ("foto.jpg", b"\xff\xd8" + b"x" * 20000, "image/jpeg")})
    assert spec_descriptions(r) == ["media: files are not accepted; send media_url"]


async def test_an_open311_file_part_is_never_spooled(settings, monkeypatch):
    """In process, the real app: Starlette's spooled temporary file is never made."""
    from starlette import formparsers

    from services.intake.app import build_app

    made: list[object] = []
    real = formparsers.SpooledTemporaryFile

    def spy(*args: object, **kwargs: object) -> object:
        made.append(args)
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", spy)
    app = build_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake") as c:
        r = await c.post(f"{V2}/requests.json", data={"service_code": "infrastruktur_jalan"},
                         files={"upload": ("a.bin", b"x" * 1000, "application/octet-stream")})
    assert spec_descriptions(r) == ["upload: files are not accepted; send media_url"]
    assert made == []


# --- rate limits ---------------------------------------------------------------------------------

async def test_failed_authentication_is_rate_limited_per_address(system, keys):
    async with client(system, "127.0.0.7") as c:
        for _ in range(FAILED_AUTH_LIMIT):
            r = await c.get("/v1/complaints", headers=auth("sk_deadbeef_guessing"))
            assert r.status_code == 401, r.text
        r = await c.get("/v1/complaints", headers=auth("sk_deadbeef_guessing"))
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["type"] == "urn:sp4n:problem:rate_limited"
        # Locked out for keys: even a valid key waits, and so does an Open311 api_key.
        assert (await c.get("/v1/complaints", headers=auth(keys["admin"]))).status_code == 429
        r = await c.get(f"{V2}/services.json", params={"api_key": keys["portal"]})
        assert r.status_code == 429 and r.json()[0]["code"] == 429
        # Public reads without a key are not authentication: still served.
        assert (await c.get(f"{V2}/services.json")).status_code == 200
    async with client(system, "127.0.0.8") as other:  # another address is not affected
        assert (await other.get("/v1/complaints", headers=auth(keys["admin"]))).status_code == 200


@pytest.fixture(scope="module")
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix unique to this run; every key under it is deleted afterwards."""
    import redis.asyncio as redis

    prefix = f"sp4ntest-abuse-{uuid.uuid4().hex[:10]}"
    yield prefix
    r = redis.Redis.from_url(REDIS_URL)
    try:
        async for k in r.scan_iter(match=f"{prefix}*"):
            await r.delete(k)
    finally:
        await r.aclose()


PUBLIC_READS, PUBLIC_READS_PER_KEY = 6, 4


@pytest.fixture(scope="module")
def shared_pair(settings, log_dir, redis_prefix, system) -> Iterator[tuple[RunningSystem, RunningSystem]]:
    """Two more intake replicas whose counters live in one Redis."""
    over = intake_overrides(settings, rate_limit_redis_url=REDIS_URL, rate_limit_key_prefix=redis_prefix,
                            rate_limit_public_reads=f"{PUBLIC_READS}/minute",
                            rate_limit_public_reads_per_key=f"{PUBLIC_READS_PER_KEY}/minute")
    pair: list[RunningSystem] = []
    try:
        for name in ("a", "b"):
            d = log_dir / name
            d.mkdir()
            pair.append(start(settings, ["intake"], d, **over))
        yield pair[0], pair[1]
    finally:
        for s in pair:
            s.stop()


async def test_public_reads_are_rate_limited_per_address_across_replicas(shared_pair, redis_prefix):
    a, b = shared_pair
    async with client(a, "127.0.0.9") as ca, client(b, "127.0.0.9") as cb:
        for i in range(PUBLIC_READS):
            r = await (ca if i % 2 else cb).get(f"{V2}/services.json")
            assert r.status_code == 200, r.text
        for c in (ca, cb):
            r = await c.get(f"{V2}/requests.json")
            assert r.status_code == 429, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()[0]["description"].startswith("rate limit:")
    import redis.asyncio as redis

    r = redis.Redis.from_url(REDIS_URL)
    try:
        assert [k async for k in r.scan_iter(match=f"{redis_prefix}*")], "counters are not in Redis"
    finally:
        await r.aclose()


async def test_public_reads_are_rate_limited_per_key_across_replicas(shared_pair, keys):
    a, b = shared_pair
    for i in range(PUBLIC_READS_PER_KEY):
        async with client(a if i % 2 else b, f"127.0.1.{i + 1}") as c:
            r = await c.get(f"{V2}/services.json", params={"api_key": keys["portal"]})
            assert r.status_code == 200, r.text
    async with client(a, "127.0.1.200") as c:  # a fresh address, the same key
        r = await c.get(f"{V2}/services.json", params={"api_key": keys["portal"]})
        assert r.status_code == 429, r.text
        assert "api_key" in r.json()[0]["description"]
        assert (await c.get(f"{V2}/services.json")).status_code == 200  # without it: per address
