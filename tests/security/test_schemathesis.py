"""schemathesis against intake's OpenAPI document: every operation, with each kind of key and
none, valid and invalid input generated from the document, against a real running intake
(its own process, real PostgreSQL and RabbitMQ). Not one answer may be a server error.

Bounded and repeatable for CI: ``SP4N_FUZZ_EXAMPLES`` examples per operation, key and mode
(default 5), derandomized unless ``SP4N_FUZZ_RANDOM=1`` (then each run explores anew; use
it with a larger count to hunt).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from services.intake.apikeys import create_api_key
from tests.e2e.system import RunningSystem, start

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EXAMPLES = int(os.environ.get("SP4N_FUZZ_EXAMPLES", "5"))
RANDOM = os.environ.get("SP4N_FUZZ_RANDOM") == "1"
KINDS = ["none", "portal", "admin_koordinator", "opd"]
SOURCE = "portal-sekadau"  # the portal key's source


@pytest.fixture(scope="module")
def system(settings, tmp_path_factory) -> Iterator[RunningSystem]:
    log_dir: Path = tmp_path_factory.mktemp("schemathesis-logs")
    # Every unauthenticated example is a failed authentication: no lock-out here.
    over = settings.intake.model_dump() | {"rate_limit_failed_auth": "", "rate_limit_public_reads": ""}
    running = start(settings, ["intake"], log_dir, intake=over)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
async def keys(settings, system) -> dict[str, str | None]:
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    suffix = uuid.uuid4().hex[:6]
    try:
        _, portal = await create_api_key(conn, f"fuzz-portal-{suffix}", "portal", SOURCE)
        _, admin = await create_api_key(conn, f"fuzz-admin-{suffix}", "admin_koordinator")
        _, opd = await create_api_key(conn, f"fuzz-opd-{suffix}", "opd:dpupr")
    finally:
        await conn.close()
    return {"none": None, "portal": portal, "admin_koordinator": admin, "opd": opd}


@pytest.fixture(scope="module")
def tracking_id(system, keys) -> str:
    """A real complaint, so generated actions and reads also reach past the lookup."""
    r = httpx.post(f"{system.url('intake')}/v1/complaints", headers={"X-API-Key": str(keys["portal"])},
                   json={"source": "portal-sekadau", "external_id": f"fuzz-{uuid.uuid4().hex[:8]}",
                         "received_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
                         "classification": "pengaduan", "category": "infrastruktur_jalan",
                         "title": "Jalan rusak", "description": "Jalan desa berlubang besar sekali.",
                         "anonymous": True})
    assert r.status_code == 202, r.text
    return str(r.json()["tracking_id"])


def own_source(case: schemathesis.Case) -> schemathesis.Case:
    """A submission for the portal key's own source, so generated complaints get past the
    source check into the use case and the database (other keys are refused either way)."""
    if isinstance(case.body, dict) and "source" in case.body:
        case.body["source"] = SOURCE
    return case


def fuzz(operation: schemathesis.schemas.APIOperation, url: str, key: str | None, mode: GenerationMode,
         path_parameters: dict[str, str] | None, session: requests.Session, seen: Counter[int]) -> None:
    headers = {"X-API-Key": key} if key else None
    takes_api_key = any(p.name == "api_key" for p in operation.query)
    query = {"api_key": key} if key and takes_api_key else None
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters,
                                     query=query).map(own_source)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, session=session, headers=headers, timeout=30)
        seen[response.status_code] += 1
        assert response.status_code < 500, (
            f"{response.status_code} for {case.as_curl_command()}\n{response.text[:1000]}")

    try:
        run()
    except Unsatisfiable:
        # Nothing to get wrong (no parameters, no body): only positive examples exist.
        assert mode == GenerationMode.NEGATIVE, operation.label


@pytest.mark.parametrize("kind", KINDS)
def test_no_server_error_for_any_generated_request(system, keys, tracking_id, kind):
    url = system.url("intake")
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20  # the native API, the reports and Open311 all documented
    seen: Counter[int] = Counter()
    with requests.Session() as session:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(operation, url, keys[kind], mode, None, session, seen)
                if any(p.name == "key" for p in operation.path_parameters):
                    fuzz(operation, url, keys[kind], mode, {"key": tracking_id}, session, seen)
    print(f"{kind}: {sum(seen.values())} requests to {len(operations)} operations; "
          f"answers {dict(sorted(seen.items()))}")
    tail = system.log_tail("intake", 400)
    assert "Traceback" not in tail, tail
