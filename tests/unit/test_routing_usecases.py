"""The routing use case with in-memory fakes: transaction boundaries and idempotency."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timezone

import pytest

from shared.events import ComplaintSubmitted, Location, make_event
from services.routing.model import Rulebook
from services.routing.rules import Rule
from services.routing.usecases import CachedRulebook, route_submitted

NOW = datetime(2026, 3, 16, 2, 0, tzinfo=timezone.utc)
BOOK = Rulebook((Rule(11, "pendidikan", "*", "disdikbud", 10, version=2),),
                {"disdikbud": "Dinas Pendidikan dan Kebudayaan"})


class FakeStore:
    """Committed state; a unit of work applies its writes only when the block succeeds."""

    def __init__(self) -> None:
        self.inbox: set[str] = set()
        self.decisions: dict[tuple, object] = {}
        self.outbox: list = []
        self.fail_on_outbox = False

    @contextlib.asynccontextmanager
    async def unit_of_work(self):
        tx = FakeTx(self)
        yield tx
        self.inbox |= tx.inbox
        self.decisions.update(tx.decisions)
        self.outbox += tx.outbox


class FakeTx:
    def __init__(self, store: FakeStore) -> None:
        self.store, self.inbox, self.decisions, self.outbox = store, set(), {}, []

    async def first_delivery(self, event):
        if event.id in self.store.inbox or event.id in self.inbox:
            return False
        self.inbox.add(event.id)
        return True

    async def add_decision(self, record):
        key = (record.complaint_id, record.hop)
        if key in self.store.decisions:
            return False
        self.decisions[key] = record
        return True

    async def add_to_outbox(self, *events):
        if self.store.fail_on_outbox:
            raise ConnectionError("database gone")
        self.outbox += events


def submitted(category="pendidikan", kecamatan="Belitang", complaint_id=None):
    data = ComplaintSubmitted(
        complaint_id=complaint_id or uuid.uuid4(), tracking_id="SKD-1", source="portal",
        received_at=NOW, accepted_at=NOW, classification="pengaduan", category=category,
        location=Location(kecamatan=kecamatan), anonymous=False, confidential=False,
        reporter_ref="ref")
    return make_event("sp4n/intake", data), data


async def book():
    return BOOK


async def run(store, event, data):
    return await route_submitted(event, data, unit_of_work=store.unit_of_work, rulebook=book,
                                 clock=lambda: NOW)


async def test_routed_event_and_decision_are_stored_together():
    store = FakeStore()
    event, data = submitted()
    result = await run(store, event, data)
    assert result.status == "decided"
    [out] = store.outbox
    assert out.event_name == "complaint.routed" and out.source == "sp4n/routing"
    assert out.subject == str(data.complaint_id)
    assert out.data["opd_code"] == "disdikbud" and out.data["hop"] == 1
    assert (out.data["rule_id"], out.data["rule_version"], out.data["routed_by"]) == (11, 2, "rule")
    record = store.decisions[(data.complaint_id, 1)]
    assert record.outcome == "routed" and record.event_id == out.id and record.source_event_id == event.id


async def test_unmatched_goes_to_triage():
    store = FakeStore()
    event, data = submitted(category="pertanahan", kecamatan="Nanga Taman")
    result = await run(store, event, data)
    [out] = store.outbox
    assert out.event_name == "complaint.triage_required"
    assert out.data["reason"] == "Tidak ada aturan disposisi untuk kategori 'pertanahan' di kecamatan 'Nanga Taman'"
    assert (out.data["category"], out.data["kecamatan"]) == ("pertanahan", "Nanga Taman")
    assert store.decisions[(data.complaint_id, 1)].outcome == "triage"
    assert result.status == "decided"


async def test_redelivered_event_has_no_second_effect():
    store = FakeStore()
    event, data = submitted()
    await run(store, event, data)
    again = await run(store, event, data)
    assert again.status == "duplicate_event"
    assert len(store.outbox) == 1


async def test_same_complaint_under_new_event_id_is_not_routed_twice():
    store = FakeStore()
    event, data = submitted()
    await run(store, event, data)
    republished = make_event("sp4n/intake", data)
    result = await run(store, republished, data)
    assert result.status == "already_decided"
    assert len(store.outbox) == 1 and len(store.decisions) == 1
    assert republished.id in store.inbox


async def test_failure_commits_nothing_so_redelivery_retries():
    store = FakeStore()
    event, data = submitted()
    store.fail_on_outbox = True
    with pytest.raises(ConnectionError):
        await run(store, event, data)
    assert not store.inbox and not store.decisions and not store.outbox
    store.fail_on_outbox = False
    assert (await run(store, event, data)).status == "decided"


async def test_cached_rulebook_reloads_after_ttl():
    loads = []
    clock = [0.0]

    async def load():
        loads.append(clock[0])
        return BOOK

    cached = CachedRulebook(load, ttl_s=2.0, monotonic=lambda: clock[0])
    await cached()
    clock[0] = 1.9
    await cached()
    assert loads == [0.0]
    clock[0] = 2.5
    await cached()
    assert loads == [0.0, 2.5]
