"""Duplicate suspicion in the routing service, in process against real PostgreSQL and
RabbitMQ (the app, the exclusive tap queue and the helpers come from test_routing_service).

Every test uses its own desa, so tests sharing the run's database never see each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.routing.duplicates import SubmissionKey
from services.routing.model import DecisionRecord
from services.routing.repository import RoutingRepository
from shared.events import ComplaintSubmitted, ComplaintTriageRequired, Location, make_event
from shared.uow import PgTx
from tests.integration.test_routing_service import service, submit  # noqa: F401 - the fixture
from tests.unit.routing_fakes import reference_candidates

pytestmark = pytest.mark.integration
CATEGORY = "infrastruktur_jalan"
DUP_TYPE = "id.go.sp4n.complaint.duplicate_suspected.v1"
CAP = 20  # settings.routing.max_duplicate_candidates' default
T0 = datetime(2026, 3, 16, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def fresh_desa() -> str:
    return f"Desa Uji {uuid.uuid4().hex[:8]}"


def submission(desa: str | None, received_at: datetime, *, category: str = CATEGORY,
               complaint_id: uuid.UUID | None = None):
    return make_event("sp4n/intake", ComplaintSubmitted(
        complaint_id=complaint_id or uuid.uuid4(), tracking_id=f"SKD-{uuid.uuid4().hex[:8]}",
        source="portal-test", received_at=received_at, accepted_at=datetime.now(UTC),
        classification="pengaduan", category=category,
        location=Location(kecamatan="Sekadau Hilir", desa=desa), anonymous=False,
        confidential=False, reporter_ref="ref-test"))


async def decided(db, event, timeout: float = 10.0) -> None:
    """Wait until routing has committed its decision (and with it every outbox row) for event."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await db.fetchval("SELECT 1 FROM decisions WHERE complaint_id = $1", uuid.UUID(event.subject)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no decision for {event.subject}")


@contextlib.asynccontextmanager
async def remembered(runtime, keys):
    """A repository on a transaction whose ``recent_submissions`` hold ``keys``; rolled back
    afterwards, so it leaves nothing behind."""
    async with runtime.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.executemany(
                "INSERT INTO recent_submissions (complaint_id, category, desa, received_at)"
                " VALUES ($1, $2, $3, $4)",
                [(k.complaint_id, k.category, k.desa, k.received_at) for k in keys if k.has_desa])
            yield PgTx(conn, None, RoutingRepository).repo
        finally:
            await tx.rollback()


def key(desa: str | None, at: datetime = T0, category: str = CATEGORY) -> SubmissionKey:
    return SubmissionKey.of(uuid.uuid4(), category, desa, at)


async def stored_duplicate_events(db, complaint_id) -> list[dict]:
    rows = await db.fetch("SELECT payload FROM outbox WHERE payload->>'subject' = $1"
                          " AND payload->>'type' = $2", str(complaint_id), DUP_TYPE)
    return [json.loads(r["payload"]) for r in rows]  # this connection has no jsonb codec


async def test_same_category_and_desa_three_days_apart_flags_the_second(service):  # noqa: F811
    _app, runtime, probe, db = service
    desa, now = fresh_desa(), datetime.now(UTC)
    first = submission(desa, now - timedelta(days=3))
    await submit(runtime, first)
    await probe.wait_for(first.subject, "complaint.routed")
    second = submission(f"  {desa.upper()} ", now)  # spelled differently, same desa
    await submit(runtime, second)
    dup = await probe.wait_for(second.subject, "complaint.duplicate_suspected")
    assert dup["source"] == "sp4n/routing"
    assert dup["data"]["candidate_ids"] == [first.subject]
    assert (dup["data"]["category"], dup["data"]["window_days"]) == (CATEGORY, 7)
    assert dup["data"]["desa"] == desa.upper()
    # Flag, don't merge: the second is routed as usual, the first is not flagged afterwards.
    routed = await probe.wait_for(second.subject, "complaint.routed")
    assert routed["data"]["opd_code"] == "dpupr"
    assert await stored_duplicate_events(db, first.subject) == []
    assert probe.of(first.subject, "complaint.duplicate_suspected") == []


async def test_ten_days_apart_other_category_or_no_desa_flag_nothing(service):  # noqa: F811
    _app, runtime, probe, db = service
    desa, now = fresh_desa(), datetime.now(UTC)
    first = submission(desa, now - timedelta(days=10))
    await submit(runtime, first)
    await decided(db, first)
    later = [submission(desa, now),                                     # 10 days later
             submission(desa, now - timedelta(days=9), category="pendidikan"),  # other category
             submission(fresh_desa(), now - timedelta(days=10)),        # other desa
             submission(None, now - timedelta(days=10)),                # no desa
             submission(None, now - timedelta(days=10))]
    for event in later:
        await submit(runtime, event)
    for event in later:
        await decided(db, event)
        assert await stored_duplicate_events(db, event.subject) == []
    await probe.wait_for(later[-1].subject, "complaint.routed")
    await asyncio.sleep(0.3)
    for event in [first, *later]:
        assert probe.of(event.subject, "complaint.duplicate_suspected") == []


async def test_order_tolerant_earlier_complaint_arriving_later_names_the_other(service):  # noqa: F811
    _app, runtime, probe, db = service
    desa, now = fresh_desa(), datetime.now(UTC)
    b = submission(desa, now)
    a = submission(desa, now - timedelta(days=2))  # received earlier, reaches routing later
    await submit(runtime, b)
    await decided(db, b)
    await submit(runtime, a)
    dup = await probe.wait_for(a.subject, "complaint.duplicate_suspected")
    assert dup["data"]["candidate_ids"] == [b.subject]
    assert await stored_duplicate_events(db, b.subject) == []


async def test_redelivery_and_republish_emit_no_second_duplicate_event(service):  # noqa: F811
    _app, runtime, probe, db = service
    desa, now = fresh_desa(), datetime.now(UTC)
    first = submission(desa, now - timedelta(days=1))
    await submit(runtime, first)
    await decided(db, first)
    second = submission(desa, now)
    await submit(runtime, second)
    await submit(runtime, second)  # the same event redelivered
    republished = submission(desa, now, complaint_id=uuid.UUID(second.subject))  # new event id
    await submit(runtime, republished)
    for _ in range(100):
        if await db.fetchval("SELECT 1 FROM inbox WHERE event_id = $1", republished.id):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("republished event never consumed")
    stored = await stored_duplicate_events(db, second.subject)
    assert len(stored) == 1 and stored[0]["data"]["candidate_ids"] == [first.subject]
    await probe.wait_for(second.subject, "complaint.duplicate_suspected")
    await asyncio.sleep(0.5)
    assert len(probe.of(second.subject, "complaint.duplicate_suspected")) == 1
    assert len(probe.of(first.subject, "complaint.duplicate_suspected")) == 0
    assert await db.fetchval("SELECT count(*) FROM recent_submissions WHERE complaint_id = $1",
                             uuid.UUID(second.subject)) == 1


async def test_window_edges_in_sql(service):  # noqa: F811
    _app, runtime, _probe, _db = service
    desa = fresh_desa()
    inside = {d: key(desa, T0 + d) for d in (-7 * DAY, -DAY, 7 * DAY)}
    outside = [key(desa, T0 - 7 * DAY - timedelta(microseconds=1)),
               key(desa, T0 + 7 * DAY + timedelta(seconds=1)),
               key(desa, category="pendidikan"),
               key(fresh_desa())]
    new = SubmissionKey.of(uuid.uuid4(), CATEGORY, f"  {desa.upper().replace(' ', '-')} ", T0)
    async with remembered(runtime, [*inside.values(), *outside, new]) as repo:
        assert await repo.duplicate_candidates(new, 7, CAP) == [
            inside[-7 * DAY].complaint_id, inside[-DAY].complaint_id, inside[7 * DAY].complaint_id]
        assert await repo.duplicate_candidates(key(None), 7, CAP) == []


@pytest.mark.parametrize("offset, expected", [
    (timedelta(0), True),
    (3 * DAY, True),
    (-3 * DAY, True),                          # received after the new one: still a candidate
    (7 * DAY, True),                           # the edges are inclusive
    (-7 * DAY, True),
    (7 * DAY + timedelta(seconds=1), False),
    (-7 * DAY - timedelta(microseconds=1), False),
    (10 * DAY, False),
])
async def test_window_edge_cases(service, offset, expected):  # noqa: F811
    _app, runtime, _probe, _db = service
    desa = fresh_desa()
    new, other = key(desa), key(desa, T0 - offset)
    async with remembered(runtime, [new, other]) as repo:
        assert (await repo.duplicate_candidates(new, 7, CAP) == [other.complaint_id]) is expected


async def test_window_uses_the_given_days(service):  # noqa: F811
    _app, runtime, _probe, _db = service
    desa = fresh_desa()
    new, other = key(desa), key(desa, T0 - 3 * DAY)
    async with remembered(runtime, [new, other]) as repo:
        assert await repo.duplicate_candidates(new, 3, CAP) == [other.complaint_id]
        assert await repo.duplicate_candidates(new, 2, CAP) == []


async def test_spelling_variants_match_and_itself_is_no_candidate(service):  # noqa: F811
    _app, runtime, _probe, _db = service
    desa = f"Sungai {uuid.uuid4().hex[:8]}"
    new = SubmissionKey.of(uuid.uuid4(), "Infrastruktur_Jalan ", f"Desa {desa.replace(' ', '-')}", T0)
    other = SubmissionKey.of(uuid.uuid4(), "infrastruktur_jalan", f" kel. {desa.upper()}", T0)
    async with remembered(runtime, [new, other]) as repo:
        assert await repo.duplicate_candidates(new, 7, CAP) == [other.complaint_id]
    async with remembered(runtime, [new]) as repo:
        assert await repo.duplicate_candidates(new, 7, CAP) == []


async def test_candidates_are_the_nearest_in_time_listed_oldest_first(service):  # noqa: F811
    _app, runtime, _probe, _db = service
    desa = fresh_desa()
    new = key(desa)
    others = [key(desa, T0 - timedelta(hours=i + 1)) for i in range(CAP + 15)]
    late, far = key(desa, T0 + 2 * DAY), key(desa, T0 - 9 * DAY)
    async with remembered(runtime, [new, *others, far]) as repo:
        assert await repo.duplicate_candidates(new, 7, CAP) == \
            [o.complaint_id for o in reversed(others[:CAP])]
        assert await repo.duplicate_candidates(new, 7, 3) == \
            [o.complaint_id for o in reversed(others[:3])]
    async with remembered(runtime, [new, late, others[4], others[0]]) as repo:
        assert await repo.duplicate_candidates(new, 7, CAP) == \
            [others[4].complaint_id, others[0].complaint_id, late.complaint_id]


async def test_sql_selection_equals_the_reference_on_generated_data(service):  # noqa: F811
    """The fake repository of the unit tests uses ``reference_candidates``; on random data
    (ties in time on both sides, near-edge offsets, other desa/category) the SQL agrees."""
    _app, runtime, _probe, _db = service
    rng = random.Random(20261201)
    for _round in range(12):
        desas = [fresh_desa() for _ in range(2)]
        categories = [CATEGORY, "pendidikan"]
        offsets = [timedelta(hours=rng.randrange(-10 * 24, 10 * 24)) for _ in range(8)] + \
            [7 * DAY, -7 * DAY, 7 * DAY + timedelta(seconds=1), timedelta(hours=5), -timedelta(hours=5)]
        keys = [SubmissionKey.of(uuid.uuid4(), rng.choice(categories), rng.choice(desas),
                                 T0 + rng.choice(offsets)) for _ in range(rng.randrange(5, 40))]
        async with remembered(runtime, keys) as repo:
            for new in rng.sample(keys, 5):
                window_days, limit = rng.choice([1, 3, 7]), rng.choice([1, 2, 5, CAP])
                assert await repo.duplicate_candidates(new, window_days, limit) == \
                    reference_candidates(new, keys, window_days, limit), (window_days, limit)


async def test_concurrent_decisions_of_the_same_key_see_each_other(service, settings):  # noqa: F811
    """The handler's path: ``record_decision`` remembers the submission and takes the
    (category, desa) lock in the statement that stores the decision; the second transaction
    waits there, and its ``duplicate_candidates`` (a later statement) sees the first."""
    _app, _runtime, _probe, _db = service
    desa, t0 = fresh_desa(), datetime.now(UTC)
    a = SubmissionKey.of(uuid.uuid4(), CATEGORY, desa, t0)
    b = SubmissionKey.of(uuid.uuid4(), CATEGORY, desa, t0 + timedelta(hours=1))

    def decision(key):
        event = make_event("sp4n/intake", ComplaintSubmitted(
            complaint_id=key.complaint_id, tracking_id="SKD-T", source="portal",
            received_at=key.received_at, accepted_at=key.received_at, classification="pengaduan",
            category=CATEGORY, location=Location(kecamatan="Belitang", desa=desa),
            anonymous=False, confidential=False, reporter_ref="ref"))
        emitted = make_event("sp4n/routing", ComplaintTriageRequired(
            complaint_id=key.complaint_id, reason="uji", category=CATEGORY))
        record = DecisionRecord(complaint_id=key.complaint_id, hop=1, outcome="triage",
                                category=CATEGORY, kecamatan="Belitang", source_event_id=event.id,
                                event_id=emitted.id, decided_at=t0, reason="uji")
        return event, record, emitted

    conn_a = await asyncpg.connect(settings.database_url, server_settings={"search_path": "routing"})
    conn_b = await asyncpg.connect(settings.database_url, server_settings={"search_path": "routing"})
    for conn in (conn_a, conn_b):  # as the pool's connections (shared.db)
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        tx_a = conn_a.transaction()
        await tx_a.start()
        event, record, emitted = decision(a)
        repo_a = PgTx(conn_a, event, RoutingRepository).repo
        assert await repo_a.record_decision(record, emitted, a) == "decided"
        assert await repo_a.duplicate_candidates(a, 7, CAP) == []

        async def in_b():
            async with conn_b.transaction():
                event, record, emitted = decision(b)
                repo_b = PgTx(conn_b, event, RoutingRepository).repo
                assert await repo_b.record_decision(record, emitted, b) == "decided"
                return await repo_b.duplicate_candidates(b, 7, CAP)

        task = asyncio.create_task(in_b())
        await asyncio.sleep(0.3)
        assert not task.done()  # waiting on a's lock
        await tx_a.commit()
        assert await asyncio.wait_for(task, 5) == [a.complaint_id]
        event, record, emitted = decision(b)  # b re-published: consumed, nothing stored
        tx = PgTx(conn_b, event, RoutingRepository)
        assert await tx.repo.record_decision(record, emitted, b) == "already_decided"
        assert tx.claimed is True
        tx = PgTx(conn_b, event, RoutingRepository)
        assert await tx.repo.record_decision(record, emitted, b) == "duplicate_event"
        assert tx.claimed is False
        assert await conn_b.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1",
                                     emitted.id) == 0
    finally:
        await conn_a.close()
        await conn_b.close()


async def test_duplicate_metric_is_exported(service):  # noqa: F811
    import httpx

    app, _runtime, _probe, _db = service
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing") as client:
        metrics = (await client.get("/metrics")).text
    line = [x for x in metrics.splitlines() if x.startswith("sp4n_complaints_duplicate_suspected_total")]
    assert line and float(line[0].split()[-1]) >= 3
