"""The routing use case with the in-memory unit of work and repository: what one unit of
work commits, idempotency, and duplicate suspicion (tests/unit/routing_fakes.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.routing.model import Rulebook
from services.routing.rules import Rule
from services.routing.usecases import CachedRulebook, route_submitted
from shared.events import ComplaintSubmitted, Location, make_event
from tests.unit.routing_fakes import FakeRoutingRepository, RoutingUnitOfWork

NOW = datetime(2026, 3, 16, 2, 0, tzinfo=UTC)
BOOK = Rulebook((Rule(11, "pendidikan", "*", "disdikbud", 10, version=2),
                 Rule(12, "pungutan_liar", "*", "inspektorat", 10, version=3, auto_dispose=False)),
                {"disdikbud": "Dinas Pendidikan dan Kebudayaan",
                 "inspektorat": "Inspektorat Daerah Kabupaten Sekadau"})


@pytest.fixture
def uow() -> RoutingUnitOfWork:
    return RoutingUnitOfWork(FakeRoutingRepository())


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


async def run(uow, event, data, *, window_days=7, max_candidates=20):
    return await route_submitted(event, data, uow=uow, rulebook=book, clock=lambda: NOW,
                                 duplicate_window_days=window_days,
                                 max_duplicate_candidates=max_candidates)


def names(uow) -> list[str]:
    return [e.event_name for e in uow.committed_events]


async def test_routed_event_and_decision_are_stored_together(uow):
    event, data = submitted()
    result = await run(uow, event, data)
    assert result.status == "decided" and uow.commits == 1
    [out] = uow.committed_events
    assert out.event_name == "complaint.routed" and out.source == "sp4n/routing"
    assert out.subject == str(data.complaint_id)
    assert out.data["opd_code"] == "disdikbud" and out.data["hop"] == 1
    assert (out.data["rule_id"], out.data["rule_version"], out.data["routed_by"]) == (11, 2, "rule")
    record = uow.repo.decisions[(data.complaint_id, 1)]
    assert record.outcome == "routed" and record.event_id == out.id and record.source_event_id == event.id
    assert result.emitted is out and event.id in uow.inbox


async def test_unmatched_goes_to_triage(uow):
    event, data = submitted(category="pertanahan", kecamatan="Nanga Taman")
    result = await run(uow, event, data)
    [out] = uow.committed_events
    assert out.event_name == "complaint.triage_required"
    assert out.data["reason"] == \
        "Tidak ada aturan disposisi untuk kategori 'pertanahan' di kecamatan 'Nanga Taman'"
    assert (out.data["category"], out.data["kecamatan"]) == ("pertanahan", "Nanga Taman")
    record = uow.repo.decisions[(data.complaint_id, 1)]
    assert (record.outcome, record.opd_code, record.rule_id, record.reason) == \
        ("triage", None, None, out.data["reason"])
    assert result.status == "decided"


async def test_triage_for_a_rule_naming_an_unknown_opd_records_the_rule(uow):
    broken = Rulebook((Rule(13, "pendidikan", "*", "dinas_hilang", 10, version=4),), {})

    async def broken_book():
        return broken

    event, data = submitted()
    await route_submitted(event, data, uow=uow, rulebook=broken_book, clock=lambda: NOW,
                          duplicate_window_days=7, max_duplicate_candidates=20)
    assert names(uow) == ["complaint.triage_required"]
    record = uow.repo.decisions[(data.complaint_id, 1)]
    assert (record.outcome, record.opd_code, record.rule_id, record.rule_version) == \
        ("triage", "dinas_hilang", 13, 4)


async def test_redelivered_event_has_no_second_effect(uow):
    event, data = submitted()
    await run(uow, event, data)
    again = await run(uow, event, data)
    assert again.status == "duplicate_event"
    assert len(uow.committed_events) == 1
    assert uow.commits == 2 and uow.rollbacks == 0  # the inbox hit commits, with no effect


async def test_same_complaint_under_new_event_id_is_not_routed_twice(uow):
    event, data = submitted()
    await run(uow, event, data)
    republished = make_event("sp4n/intake", data)
    result = await run(uow, republished, data)
    assert result.status == "already_decided"
    assert len(uow.committed_events) == 1 and len(uow.repo.decisions) == 1
    assert republished.id in uow.inbox


async def test_failure_commits_nothing_so_redelivery_retries(uow):
    event, data = submitted(desa="Sungai Ayak")
    uow.repo.fail_on_candidates = True
    with pytest.raises(ConnectionError):
        await run(uow, event, data)
    assert not uow.inbox and not uow.repo.decisions and not uow.repo.submissions
    assert not uow.committed_events and uow.rollbacks == 1
    uow.repo.fail_on_candidates = False
    assert (await run(uow, event, data)).status == "decided"
    assert names(uow) == ["complaint.routed"]


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
    cached.invalidate()
    assert await cached() is BOOK and loads == [0.0, 2.5, 2.5]


async def test_rule_without_auto_dispose_emits_routing_suggested_not_routed(uow):
    event, data = submitted(category="pungutan_liar")
    result = await run(uow, event, data)
    assert result.status == "decided"
    [out] = uow.committed_events
    assert out.event_name == "complaint.routing_suggested"
    assert out.data == {"complaint_id": str(data.complaint_id), "opd_code": "inspektorat",
                        "opd_name": "Inspektorat Daerah Kabupaten Sekadau", "rule_id": 12,
                        "rule_version": 3, "suggested_at": "2026-03-16T02:00:00Z"}
    record = uow.repo.decisions[(data.complaint_id, 1)]
    assert (record.outcome, record.opd_code, record.rule_id, record.rule_version, record.reason) == \
        ("suggested", "inspektorat", 12, 3, None)
    assert record.event_id == out.id


async def test_rule_with_auto_dispose_records_routed_decision(uow):
    event, data = submitted(category="pendidikan")
    await run(uow, event, data)
    assert names(uow) == ["complaint.routed"]
    assert uow.repo.decisions[(data.complaint_id, 1)].outcome == "routed"


async def test_second_submission_in_same_desa_is_suspected_duplicate_without_changing_routing(uow):
    first_event, first = submitted(desa="Sungai Ayak", received_at=NOW - timedelta(days=3))
    await run(uow, first_event, first)
    assert names(uow) == ["complaint.routed"]
    event, data = submitted(desa="  desa sungai-ayak ", kecamatan="Belitang Hilir")
    result = await run(uow, event, data)
    routed, dup = uow.committed_events[1:]
    assert routed.event_name == "complaint.routed" and routed.data["opd_code"] == "disdikbud"
    assert dup.event_name == "complaint.duplicate_suspected" and dup.subject == str(data.complaint_id)
    assert dup.data["candidate_ids"] == [str(first.complaint_id)]
    assert (dup.data["category"], dup.data["desa"], dup.data["window_days"]) == \
        ("pendidikan", "desa sungai-ayak", 7)
    assert result.duplicate_suspected is dup


async def test_duplicate_window_comes_from_the_caller(uow):
    first_event, first = submitted(desa="Sungai Ayak", received_at=NOW - timedelta(days=3))
    await run(uow, first_event, first)
    event, data = submitted(desa="Sungai Ayak")
    await run(uow, event, data, window_days=2)
    assert names(uow) == ["complaint.routed", "complaint.routed"]
    assert uow.repo.candidate_calls[-1][1:] == (2, 20)


async def test_candidate_cap_comes_from_the_caller(uow):
    earlier = [submitted(desa="Sungai Ayak", received_at=NOW - timedelta(hours=h)) for h in (1, 2, 3)]
    for event, data in earlier:
        await run(uow, event, data)
    event, data = submitted(desa="Sungai Ayak")
    result = await run(uow, event, data, max_candidates=2)
    assert uow.repo.candidate_calls[-1][1:] == (7, 2)
    # the two nearest, oldest first
    assert result.duplicate_suspected.data["candidate_ids"] == \
        [str(earlier[1][1].complaint_id), str(earlier[0][1].complaint_id)]


async def test_earlier_complaint_processed_later_names_the_later_one(uow):
    late_event, late = submitted(desa="Sungai Ayak", received_at=NOW)
    early_event, early = submitted(desa="Sungai Ayak", received_at=NOW - timedelta(days=2))
    await run(uow, late_event, late)
    await run(uow, early_event, early)
    dups = [e for e in uow.committed_events if e.event_name == "complaint.duplicate_suspected"]
    assert len(dups) == 1  # one flag per pair, on the one processed second
    assert dups[0].subject == str(early.complaint_id)
    assert dups[0].data["candidate_ids"] == [str(late.complaint_id)]


async def test_redelivered_or_republished_duplicate_is_flagged_once(uow):
    first_event, first = submitted(desa="Sungai Ayak")
    await run(uow, first_event, first)
    event, data = submitted(desa="Sungai Ayak")
    await run(uow, event, data)
    assert (await run(uow, event, data)).status == "duplicate_event"
    assert (await run(uow, make_event("sp4n/intake", data), data)).status == "already_decided"
    dups = [e for e in uow.committed_events if e.event_name == "complaint.duplicate_suspected"]
    assert len(dups) == 1 and dups[0].subject == str(data.complaint_id)


async def test_complaint_without_desa_is_never_flagged(uow):
    for _ in range(2):
        event, data = submitted(desa=None)
        await run(uow, event, data)
    event, data = submitted(desa="   ")
    await run(uow, event, data)
    assert names(uow) == ["complaint.routed"] * 3
    assert uow.repo.submissions == {}


async def test_imported_history_is_not_routed_nor_remembered_for_duplicates(uow):
    data = submitted(desa="Sungai Ayak")[1].model_copy(update={"historical": True})
    event = make_event("sp4n/intake", data)
    result = await run(uow, event, data)
    assert result.status == "historical" and result.decision is None
    assert uow.committed_events == [] and uow.repo.decisions == {} and uow.repo.submissions == {}
    assert event.id in uow.inbox  # consumed: a redelivery is a duplicate, still with no effect
    assert (await run(uow, event, data)).status == "duplicate_event"
