"""The routing service in process against real PostgreSQL and RabbitMQ.

Several modules share one database per run: every test uses fresh complaint ids and never
assumes empty tables.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import aio_pika
import asyncpg
import httpx
import pytest

from services.routing.app import MIGRATIONS, build_app
from shared.broker import publish_event
from shared.db import migrate
from shared.events import ComplaintSubmitted, Location, make_event
from shared.settings import RoutingSettings
from shared.topology import events_exchange

pytestmark = pytest.mark.integration
TTL_S = 0.5


class Probe:
    """Collects complaint.* events from the events exchange, keyed by complaint id."""

    def __init__(self) -> None:
        self.seen: dict[str, list[dict]] = {}

    def on_message(self, body: bytes) -> None:
        event = json.loads(body)  # complaint.* includes the submissions themselves
        self.seen.setdefault(event["subject"], []).append(event)

    def of(self, complaint_id, event_name: str | None = None) -> list[dict]:
        events = self.seen.get(str(complaint_id), [])
        return [e for e in events if event_name is None or f".{event_name}.v" in e["type"]]

    async def wait_for(self, complaint_id, event_name: str, timeout: float = 10.0) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            found = self.of(complaint_id, event_name)
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {event_name} for {complaint_id}; saw {self.of(complaint_id)}")


@pytest.fixture(scope="module")
async def service(settings):
    app = build_app(settings.model_copy(update={"routing": RoutingSettings(rules_ttl_s=TTL_S)}))
    conn = await aio_pika.connect_robust(settings.amqp_url)
    probe = Probe()
    async with app.router.lifespan_context(app):
        channel = await conn.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(events_exchange(settings.namespace).name, routing_key="complaint.*")

        async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with msg.process():
                probe.on_message(msg.body)

        await queue.consume(on_message)
        db = await asyncpg.connect(settings.database_url, server_settings={"search_path": "routing"})
        try:
            yield app, app.state.runtime, probe, db
        finally:
            await db.close()
    await conn.close()


def submission(category: str, kecamatan: str | None, complaint_id: uuid.UUID | None = None):
    now = datetime.now(UTC)
    return make_event("sp4n/intake", ComplaintSubmitted(
        complaint_id=complaint_id or uuid.uuid4(), tracking_id=f"SKD-{uuid.uuid4().hex[:8]}",
        source="portal-test", received_at=now, accepted_at=now, classification="pengaduan",
        category=category, location=Location(kecamatan=kecamatan), anonymous=False,
        confidential=False, reporter_ref="ref-test"))


async def submit(runtime, event) -> None:
    await publish_event(runtime.broker, runtime.settings.namespace, event)


async def seed_rule_id(db, seed_key: str) -> tuple[int, int]:
    row = await db.fetchrow("SELECT id, version FROM rules WHERE seed_key = $1", seed_key)
    assert row is not None, seed_key
    return row["id"], row["version"]


async def test_submitted_complaint_is_routed_by_category_rule(service):
    app, runtime, probe, db = service
    event = submission("pendidikan", "Belitang")
    await submit(runtime, event)
    routed = await probe.wait_for(event.subject, "complaint.routed")
    rule_id, version = await seed_rule_id(db, "skd:pendidikan:*")
    assert routed["source"] == "sp4n/routing"
    assert routed["data"]["opd_code"] == "disdikbud"
    assert routed["data"]["opd_name"] == "Dinas Pendidikan dan Kebudayaan"
    assert (routed["data"]["hop"], routed["data"]["routed_by"]) == (1, "rule")
    assert (routed["data"]["rule_id"], routed["data"]["rule_version"]) == (rule_id, version)
    row = await db.fetchrow("SELECT * FROM decisions WHERE complaint_id = $1", uuid.UUID(event.subject))
    assert (row["outcome"], row["opd_code"], row["hop"], row["rule_id"]) == \
        ("routed", "disdikbud", 1, rule_id)
    assert row["source_event_id"] == event.id and row["event_id"] == routed["id"]


@pytest.mark.parametrize("category, kecamatan, opd, seed_key", [
    ("pelayanan_kecamatan", "  nanga MAHAP ", "kec_nanga_mahap", "skd:pelayanan_kecamatan:nanga_mahap"),
    ("air_bersih", "Nanga Taman", "disperkim", "skd:air_bersih:nanga_taman"),  # priority 20 beats 10
    ("air_bersih", "Sekadau Hilir", "pdam", "skd:air_bersih:*"),
])
async def test_area_rules_and_priority(service, category, kecamatan, opd, seed_key):
    _app, runtime, probe, db = service
    event = submission(category, kecamatan)
    await submit(runtime, event)
    routed = await probe.wait_for(event.subject, "complaint.routed")
    assert routed["data"]["opd_code"] == opd
    assert routed["data"]["rule_id"] == (await seed_rule_id(db, seed_key))[0]


@pytest.mark.parametrize("category, kecamatan", [
    ("kategori_tidak_dikenal", "Belitang"),
    ("pertanahan", "Sekadau Hulu"),          # a known category without rules
    ("pelayanan_kecamatan", "Kapuas"),       # a kecamatan outside the regency
    ("pelayanan_kecamatan", None),
])
async def test_unmatched_complaint_goes_to_triage(service, category, kecamatan):
    _app, runtime, probe, db = service
    event = submission(category, kecamatan)
    await submit(runtime, event)
    triage = await probe.wait_for(event.subject, "complaint.triage_required")
    assert triage["data"]["category"] == category
    assert triage["data"]["kecamatan"] == kecamatan
    assert triage["data"]["reason"].startswith(f"Tidak ada aturan disposisi untuk kategori '{category}'")
    assert probe.of(event.subject, "complaint.routed") == []
    outcome = await db.fetchval("SELECT outcome FROM decisions WHERE complaint_id = $1",
                                uuid.UUID(event.subject))
    assert outcome == "triage"


async def test_rule_without_auto_dispose_suggests_and_does_not_route(service):
    _app, runtime, probe, db = service
    rule_id, version = await seed_rule_id(db, "skd:pungutan_liar:*")
    event = submission("pungutan_liar", "Sekadau Hilir")
    complaint_id = uuid.UUID(event.subject)
    await submit(runtime, event)
    suggested = await probe.wait_for(complaint_id, "complaint.routing_suggested")
    assert suggested["source"] == "sp4n/routing"
    assert (suggested["data"]["opd_code"], suggested["data"]["opd_name"]) == \
        ("inspektorat", "Inspektorat Daerah Kabupaten Sekadau")
    assert (suggested["data"]["rule_id"], suggested["data"]["rule_version"]) == (rule_id, version)
    row = await db.fetchrow("SELECT * FROM decisions WHERE complaint_id = $1", complaint_id)
    assert (row["outcome"], row["opd_code"], row["rule_id"], row["rule_version"]) == \
        ("suggested", "inspektorat", rule_id, version)
    assert row["event_id"] == suggested["id"]
    # Decision and event commit together: the stored outbox holds exactly this one outcome.
    types = await db.fetch("SELECT payload->>'type' AS type FROM outbox WHERE payload->>'subject' = $1",
                           str(complaint_id))
    assert [r["type"] for r in types] == ["id.go.sp4n.complaint.routing_suggested.v1"]
    await asyncio.sleep(0.3)
    assert probe.of(complaint_id, "complaint.routed") == []
    assert probe.of(complaint_id, "complaint.triage_required") == []


async def test_switching_auto_dispose_off_takes_effect_and_bumps_the_version(service):
    _app, runtime, probe, db = service
    category = f"uji_{uuid.uuid4().hex[:8]}"
    await db.execute("INSERT INTO categories (code, name, category_group) VALUES ($1, 'Uji', 'uji')",
                     category)
    rule_id = await db.fetchval(
        "INSERT INTO rules (category, kecamatan, opd_code, priority) VALUES ($1, '*', 'dinsos', 10)"
        " RETURNING id", category)
    await db.execute("UPDATE rules SET auto_dispose = false WHERE id = $1", rule_id)
    assert await db.fetchval("SELECT version FROM rules WHERE id = $1", rule_id) == 2
    await asyncio.sleep(TTL_S * 2)
    event = submission(category, "Belitang")
    await submit(runtime, event)
    suggested = await probe.wait_for(event.subject, "complaint.routing_suggested")
    assert (suggested["data"]["opd_code"], suggested["data"]["rule_version"]) == ("dinsos", 2)
    assert probe.of(event.subject, "complaint.routed") == []


async def test_duplicates_produce_one_decision_and_one_event(service):
    _app, runtime, probe, db = service
    event = submission("kesehatan", "Belitang Hulu")
    complaint_id = uuid.UUID(event.subject)
    await submit(runtime, event)
    await submit(runtime, event)  # the same event redelivered
    republished = submission("kesehatan", "Belitang Hulu", complaint_id=complaint_id)  # new event id
    await submit(runtime, republished)
    # The consumer works in queue order, so once a later complaint is routed and the outbox
    # is drained, every copy above has been handled.
    sentinel = submission("kesehatan", "Belitang")
    await submit(runtime, sentinel)
    await probe.wait_for(sentinel.subject, "complaint.routed")
    for _ in range(50):
        consumed = await db.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", republished.id)
        unsent = await db.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        if consumed and not unsent:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    outcomes = (probe.of(complaint_id, "complaint.routed")
                + probe.of(complaint_id, "complaint.triage_required"))
    assert len(outcomes) == 1
    assert outcomes[0]["data"]["opd_code"] == "dinkes"
    assert len(probe.of(complaint_id, "complaint.submitted")) == 3  # the probe saw every copy
    assert await db.fetchval("SELECT count(*) FROM decisions WHERE complaint_id = $1", complaint_id) == 1
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE payload->>'subject' = $1",
                             str(complaint_id)) == 1


async def test_editing_a_rule_bumps_its_version_and_takes_effect_without_restart(service):
    _app, runtime, probe, db = service
    category = f"uji_{uuid.uuid4().hex[:8]}"
    await db.execute("INSERT INTO categories (code, name, category_group) VALUES ($1, 'Uji', 'uji')",
                     category)
    rule_id = await db.fetchval(
        "INSERT INTO rules (category, kecamatan, opd_code, priority) VALUES ($1, '*', 'dinsos', 10)"
        " RETURNING id", category)
    assert await db.fetchval("SELECT version FROM rules WHERE id = $1", rule_id) == 1

    await db.execute("UPDATE rules SET opd_code = 'dlh' WHERE id = $1", rule_id)
    assert await db.fetchval("SELECT version FROM rules WHERE id = $1", rule_id) == 2
    await db.execute("UPDATE rules SET note = 'catatan saja', version = 99 WHERE id = $1", rule_id)
    assert await db.fetchval("SELECT version FROM rules WHERE id = $1", rule_id) == 2
    history = await db.fetch(
        "SELECT version, opd_code FROM rule_versions WHERE rule_id = $1 ORDER BY version", rule_id)
    assert [(r["version"], r["opd_code"]) for r in history] == [(1, "dinsos"), (2, "dlh")]

    await asyncio.sleep(TTL_S * 2)  # the cached rulebook expires
    event = submission(category, "Belitang")
    await submit(runtime, event)
    routed = await probe.wait_for(event.subject, "complaint.routed")
    assert (routed["data"]["opd_code"], routed["data"]["rule_id"], routed["data"]["rule_version"]) == \
        ("dlh", rule_id, 2)

    await db.execute("UPDATE rules SET enabled = false WHERE id = $1", rule_id)
    await asyncio.sleep(TTL_S * 2)
    event = submission(category, "Belitang")
    await submit(runtime, event)
    await probe.wait_for(event.subject, "complaint.triage_required")


async def test_rules_reject_typos_and_catch_all(service):
    _app, _runtime, _probe, db = service
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute("INSERT INTO rules (category, opd_code) VALUES ('pendidkan', 'disdikbud')")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute("INSERT INTO rules (category, kecamatan, opd_code)"
                         " VALUES ('pendidikan', 'Belitang Tengah', 'disdikbud')")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO rules (category, kecamatan, opd_code) VALUES ('*', '*', 'setda')")


async def test_seed_rerun_keeps_operator_edits_and_adds_no_rows(service, settings):
    _app, _runtime, _probe, db = service
    counts = ("SELECT (SELECT count(*) FROM opds), (SELECT count(*) FROM categories),"
              " (SELECT count(*) FROM rules)")
    await db.execute("UPDATE opds SET name = 'Dinas Sosial P3A' WHERE code = 'dinsos'")
    before = tuple(await db.fetchrow(counts))
    assert await migrate(settings.database_url, "routing", MIGRATIONS) == []
    await db.execute((MIGRATIONS / "0002_seed_sekadau.sql").read_text())  # a forced re-run
    await db.execute("UPDATE rules SET opd_code = 'setda' WHERE seed_key = 'skd:pungutan_liar:*'")
    await db.execute((MIGRATIONS / "0003_routing_suggested.sql").read_text())
    assert tuple(await db.fetchrow(counts)) == before
    assert await db.fetchval("SELECT name FROM opds WHERE code = 'dinsos'") == "Dinas Sosial P3A"
    assert await db.fetchval("SELECT opd_code FROM rules WHERE seed_key = 'skd:pungutan_liar:*'") == "setda"
    await db.execute("UPDATE opds SET name = 'Dinas Sosial' WHERE code = 'dinsos'")
    await db.execute("UPDATE rules SET opd_code = 'inspektorat' WHERE seed_key = 'skd:pungutan_liar:*'")


async def test_seed_has_no_catch_all_and_covers_sekadau(service):
    _app, _runtime, _probe, db = service
    seeded = await db.fetch("SELECT category, kecamatan FROM rules WHERE seed_key IS NOT NULL")
    assert not [r for r in seeded if r["category"] == "*" and r["kecamatan"] == "*"]
    names = {r["name"] for r in await db.fetch("SELECT name FROM kecamatan")}
    assert names >= {"Belitang", "Belitang Hilir", "Belitang Hulu", "Nanga Mahap", "Nanga Taman",
                     "Sekadau Hilir", "Sekadau Hulu"}


async def test_read_api_and_metrics(service):
    app, _runtime, _probe, _db = service
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing") as client:
        opds = (await client.get("/v1/opds")).json()
        assert {"code": "kec_belitang", "name": "Kecamatan Belitang", "kind": "kecamatan"} in opds
        categories = {c["code"]: c for c in (await client.get("/v1/categories")).json()}
        assert "jalan" in categories["infrastruktur_jalan"]["keywords"]
        rules = (await client.get("/v1/rules")).json()
        assert any(r["category"] == "pendidikan" and r["opd_code"] == "disdikbud" for r in rules)
        preview = (await client.get("/v1/routing/preview",
                                    params={"category": "air_bersih", "kecamatan": "Nanga Mahap"})).json()
        assert (preview["outcome"], preview["opd_code"]) == ("routed", "disperkim")
        assert preview["auto_dispose"] is True
        preview = (await client.get("/v1/routing/preview",
                                    params={"category": "pungutan_liar", "kecamatan": "Belitang"})).json()
        assert (preview["outcome"], preview["auto_dispose"], preview["opd_code"]) == \
            ("suggested", False, "inspektorat")
        preview = (await client.get("/v1/routing/preview", params={"category": "lainnya"})).json()
        assert preview["outcome"] == "triage"
        preview = (await client.get("/v1/routing/preview", params={"category": "pertanahan"})).json()
        assert preview["outcome"] == "triage"
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.json()
        metrics = (await client.get("/metrics")).text
    assert 'sp4n_complaints_routed_total{opd="disdikbud"}' in metrics
    assert "sp4n_complaints_triage_total" in metrics
    assert 'sp4n_complaints_routing_suggested_total{opd="inspektorat"}' in metrics
    assert "sp4n_routing_decision_seconds_count" in metrics
    triage = [line for line in metrics.splitlines() if line.startswith("sp4n_complaints_triage_total")]
    assert float(triage[0].split()[-1]) >= 4
