"""Public reads, tried as a scraper would (issue: trust): the Open311 facade of a real intake
process over real HTTP, against real PostgreSQL and RabbitMQ, with the lifecycle driven
through the native API by the admin koordinator.

- nothing unverified (DITERIMA, DITUNDA) or archived is public, and rahasia never is;
- an anonim report never carries identity and shows a coarsened location (no street
  address) unless the admin koordinator makes the location public;
- no reporter data in any public answer, JSON or XML.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from services.intake.apikeys import create_api_key
from tests.e2e.system import start
from tests.integration.test_open311_api import form

pytestmark = pytest.mark.integration
V2 = "/open311/v2"
PII = ("Budi", "Santoso", "6281234567890", "budi@example.org")


@pytest.fixture(scope="module")
async def http(settings, tmp_path_factory) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    system = await asyncio.to_thread(start, settings, ["intake"], tmp_path_factory.mktemp("logs"))
    try:
        conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
        try:
            _, portal = await create_api_key(conn, "scrape-portal", "portal", "portal-scrape")
            _, admin = await create_api_key(conn, "scrape-admin", "admin_koordinator")
        finally:
            await conn.close()
        async with httpx.AsyncClient(base_url=system.url("intake"), timeout=10) as client:
            yield client, {"portal": portal, "admin": admin}
    finally:
        await asyncio.to_thread(system.stop)


async def submit(client: httpx.AsyncClient, key: str, **over: str | None) -> str:
    r = await client.post(f"{V2}/requests.json", data=form(key, **over))
    assert r.status_code == 200, r.text
    return str(r.json()[0]["service_request_id"])


async def act(client: httpx.AsyncClient, admin: str, tracking: str, action: str,
              **body: object) -> None:
    r = await client.post(f"/v1/complaints/{tracking}/{action}", json=body,
                          headers={"authorization": f"Bearer {admin}"})
    assert r.status_code == 200, (action, r.text)


async def public_ids(client: httpx.AsyncClient, *ids: str) -> set[str]:
    r = await client.get(f"{V2}/requests.json", params={"service_request_id": ",".join(ids)})
    assert r.status_code == 200, r.text
    return {x["service_request_id"] for x in r.json()}


async def test_unverified_archived_and_rahasia_reports_are_never_public(http) -> None:
    client, keys = http
    fresh = await submit(client, keys["portal"])
    deferred = await submit(client, keys["portal"])
    archived = await submit(client, keys["portal"])
    rahasia = await submit(client, keys["portal"], **{"attribute[rahasia]": "true"})
    shown = await submit(client, keys["portal"])
    await act(client, keys["admin"], deferred, "defer", reason="Mohon lampirkan foto lokasi")
    await act(client, keys["admin"], archived, "archive", reason="bukan_pelayanan_publik")
    for tracking in (rahasia, shown):
        await act(client, keys["admin"], tracking, "verify")

    everything = (fresh, deferred, archived, rahasia, shown)
    assert await public_ids(client, *everything) == {shown}
    for hidden in (fresh, deferred, archived, rahasia):
        for fmt in ("json", "xml"):
            r = await client.get(f"{V2}/requests/{hidden}.{fmt}")
            assert r.status_code == 404, (hidden, fmt, r.text)
    listing = (await client.get(f"{V2}/requests.json")).json()
    assert not {x["service_request_id"] for x in listing} & {fresh, deferred, archived, rahasia}
    for fmt in ("json", "xml"):
        text = (await client.get(f"{V2}/requests.{fmt}")).text
        assert not [p for p in PII if p in text], fmt


async def test_anonim_location_is_coarse_until_the_admin_makes_it_public(http) -> None:
    client, keys = http
    anon = await submit(client, keys["portal"], first_name=None, last_name=None, phone=None,
                        email=None, lat="0.03127", long="110.95714",
                        **{"attribute[anonim]": "true"})
    await act(client, keys["admin"], anon, "verify")
    [req] = (await client.get(f"{V2}/requests/{anon}.json")).json()
    assert (req["lat"], req["long"]) == (0.031, 110.957)
    assert "Jl. Merdeka" not in (req["address"] or "")
    xml = (await client.get(f"{V2}/requests/{anon}.xml")).text
    assert "<lat>0.031</lat>" in xml and "0.03127" not in xml and "Jl. Merdeka" not in xml

    await act(client, keys["admin"], anon, "reclassify", location_public=True,
              reason="Lokasi fasilitas umum, tidak menunjuk rumah pelapor")
    [req] = (await client.get(f"{V2}/requests/{anon}.json")).json()
    assert (req["lat"], req["long"]) == (0.03127, 110.95714)
    assert req["address"].startswith("Jl. Merdeka depan SDN 3")
