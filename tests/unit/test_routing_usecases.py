"""The routing use case with in-memory fakes: transaction boundaries and idempotency."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from shared.events import ComplaintSubmitted, Location, make_event
from services.routing.duplicates import select_candidates
from services.routing.model import Rulebook
from services.routing.rules import Rule
from services.routing.usecases import CachedRulebook, route_submitted

NOW = datetime(2026, 3, 16, 2, 0, tzinfo=timezone.utc)
BOOK = Rulebook((Rule(11, "pendidikan", "*", "disdikbud", 10, version=2),
                 Rule(12, "pungutan_liar", "*", "inspektorat", 10, version=3, auto_dispose=False)),
                {"disdikbud": "Dinas Pendidikan dan Kebudayaan",
                 "inspektorat": "Inspektorat Daerah Kabupaten Sekadau"})


class FakeStore:
    """Committed state; a unit of work applies its writes only when the block succeeds."""

    def __init__(self) -> None:
        self.inbox: set[str] = set()
        self.decisions: dict[tuple, object] = {}
        self.outbox: list = []
        self.submissions: dict = {}
        self.fail_on_outbox = False

    @contextlib.asynccontextmanager
    async def unit_of_work(self):
        tx = FakeTx(self)
        yield tx
        self.inbox |= tx.inbox
        self.decisions.update(tx.decisions)
        self.submissions.update(tx.submissions)
        self.outbox += tx.outbox


class FakeTx:
    def __init__(self, store: FakeStore) -> None:
        self.store, self.inbox, self.decisions, self.outbox = store, set(), {}, []
        self.submissions = {}

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

    async def record_decision(self, event, record, emitted, key):
        # As RoutingRepository.record_decision: inbox, decision, staged event, remembered key.
        if not await self.first_delivery(event):
            return "duplicate_event"
        if not await self.add_decision(record):
            return "already_decided"
        if key.has_desa:
            self.submissions.setdefault(key.complaint_id, key)
        await self.add_to_outbox(emitted)
        return "decided"

    async def duplicate_candidates(self, key, window_days):
        # The same selection as the SQL in RoutingRepository.duplicate_candidates.
        if not key.has_desa:
            return []
        recent = {**self.store.submissions, **self.submissions}.values()
        return select_candidates(key, recent, window_days)

    async def add_to_outbox(self, *events):
        if self.store.fail_on_outbox:
            raise ConnectionError("database gone")
        self.outbox += events


def submitted(category="pendidikan", kecamatan="Belitang", complaint_id=None, desa=None,
              received_at=NOW):
    data = ComplaintSubmitted(
        complaint_id=complaint_id or uuid.uuid4(), tracking_id="SKD-1", source="portal",
        received_at=received_at, accepted_at=received_at, classification="pengaduan",
        category=category, location=Location(kecamatan=kecamatan, desa=desa), anonymous=False,
        confidential=False, reporter_ref="ref")
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


async def test_rule_without_auto_dispose_emits_routing_suggested_not_routed():
    store = FakeStore()
    event, data = submitted(category="pungutan_liar")
    result = await run(store, event, data)
    assert result.status == "decided"
    [out] = store.outbox
    assert out.event_name == "complaint.routing_suggested"
    assert out.data == {"complaint_id": str(data.complaint_id), "opd_code": "inspektorat",
                        "opd_name": "Inspektorat Daerah Kabupaten Sekadau", "rule_id": 12,
                        "rule_version": 3, "suggested_at": "2026-03-16T02:00:00Z"}
    record = store.decisions[(data.complaint_id, 1)]
    assert (record.outcome, record.opd_code, record.rule_id, record.rule_version, record.reason) == \
        ("suggested", "inspektorat", 12, 3, None)
    assert record.event_id == out.id


async def test_rule_with_auto_dispose_records_routed_decision():
    store = FakeStore()
    event, data = submitted(category="pendidikan")
    await run(store, event, data)
    assert [e.event_name for e in store.outbox] == ["complaint.routed"]
    assert store.decisions[(data.complaint_id, 1)].outcome == "routed"


async def test_second_submission_in_same_desa_is_suspected_duplicate_without_changing_routing():
    store = FakeStore()
    first_event, first = submitted(desa="Sungai Ayak", received_at=NOW - timedelta(days=3))
    await run(store, first_event, first)
    assert [e.event_name for e in store.outbox] == ["complaint.routed"]
    event, data = submitted(desa="  desa sungai-ayak ", kecamatan="Belitang Hilir")
    result = await run(store, event, data)
    routed, dup = store.outbox[1:]
    assert routed.event_name == "complaint.routed" and routed.data["opd_code"] == "disdikbud"
    assert dup.event_name == "complaint.duplicate_suspected" and dup.subject == str(data.complaint_id)
    assert dup.data["candidate_ids"] == [str(first.complaint_id)]
    assert (dup.data["category"], dup.data["desa"], dup.data["window_days"]) == \
        ("pendidikan", "desa sungai-ayak", 7)
    assert result.duplicate_suspected is dup


async def test_duplicate_window_comes_from_the_caller():
    store = FakeStore()
    first_event, first = submitted(desa="Sungai Ayak", received_at=NOW - timedelta(days=3))
    await run(store, first_event, first)
    event, data = submitted(desa="Sungai Ayak")
    await route_submitted(event, data, unit_of_work=store.unit_of_work, rulebook=book,
                          clock=lambda: NOW, duplicate_window_days=2)
    assert [e.event_name for e in store.outbox] == ["complaint.routed", "complaint.routed"]


async def test_earlier_complaint_processed_later_names_the_later_one():
    store = FakeStore()
    late_event, late = submitted(desa="Sungai Ayak", received_at=NOW)
    early_event, early = submitted(desa="Sungai Ayak", received_at=NOW - timedelta(days=2))
    await run(store, late_event, late)
    await run(store, early_event, early)
    dups = [e for e in store.outbox if e.event_name == "complaint.duplicate_suspected"]
    assert len(dups) == 1  # one flag per pair, on the one processed second
    assert dups[0].subject == str(early.complaint_id)
    assert dups[0].data["candidate_ids"] == [str(late.complaint_id)]


async def test_redelivered_or_republished_duplicate_is_flagged_once():
    store = FakeStore()
    first_event, first = submitted(desa="Sungai Ayak")
    await run(store, first_event, first)
    event, data = submitted(desa="Sungai Ayak")
    await run(store, event, data)
    assert (await run(store, event, data)).status == "duplicate_event"
    assert (await run(store, make_event("sp4n/intake", data), data)).status == "already_decided"
    dups = [e for e in store.outbox if e.event_name == "complaint.duplicate_suspected"]
    assert len(dups) == 1 and dups[0].subject == str(data.complaint_id)


async def test_complaint_without_desa_is_never_flagged():
    store = FakeStore()
    for _ in range(2):
        event, data = submitted(desa=None)
        await run(store, event, data)
    event, data = submitted(desa="   ")
    await run(store, event, data)
    assert [e.event_name for e in store.outbox] == ["complaint.routed"] * 3
    assert store.submissions == {}
