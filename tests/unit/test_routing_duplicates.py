"""Duplicate candidate selection: pure logic, no I/O."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.routing.duplicates import SubmissionKey, normalize_desa, select_candidates, window

T0 = datetime(2026, 3, 16, 2, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def key(category="infrastruktur_jalan", desa="Sungai Ayak", at=T0, complaint_id=None):
    return SubmissionKey.of(complaint_id or uuid.uuid4(), category, desa, at)


def test_normalize_desa_ignores_case_spacing_separators_and_prefix():
    for spelling in ("Sungai Ayak", "  SUNGAI   ayak ", "sungai-ayak", "sungai_ayak", "Desa Sungai Ayak",
                     "Ds. Sungai Ayak", "ds sungai ayak", "Kelurahan Sungai Ayak", "Kel. Sungai Ayak"):
        assert normalize_desa(spelling) == "sungai ayak", spelling
    assert normalize_desa(None) == normalize_desa("  ") == ""
    assert normalize_desa("Desa") == "desa"  # a bare word is a name, not a prefix


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
def test_window_edges(offset, expected):
    new = key()
    other = key(at=T0 - offset)
    assert (select_candidates(new, [other], 7) == [other.complaint_id]) is expected


def test_window_uses_the_configured_days():
    new, other = key(), key(at=T0 - 3 * DAY)
    assert select_candidates(new, [other], 3) == [other.complaint_id]
    assert select_candidates(new, [other], 2) == []
    assert window(T0, 7) == (T0 - 7 * DAY, T0 + 7 * DAY)


def test_other_desa_or_other_category_is_not_a_candidate():
    new = key()
    assert select_candidates(new, [key(desa="Tapang Semadak")], 7) == []
    assert select_candidates(new, [key(category="pendidikan")], 7) == []


def test_spelling_variants_of_the_same_desa_and_category_match():
    new = key(category="Infrastruktur_Jalan ", desa="Desa Sungai-Ayak")
    other = key(category="infrastruktur_jalan", desa="sungai ayak")
    assert select_candidates(new, [other], 7) == [other.complaint_id]


def test_no_desa_is_never_flagged_nor_a_candidate():
    for missing in (None, "", "   "):
        assert select_candidates(key(desa=missing), [key(desa=missing), key()], 7) == []
    assert select_candidates(key(), [key(desa=None)], 7) == []


def test_itself_is_not_a_candidate():
    new = key()
    assert select_candidates(new, [new], 7) == []


def test_candidates_sorted_by_received_at():
    new = key()
    late, early, middle = key(at=T0 + 2 * DAY), key(at=T0 - 5 * DAY), key(at=T0 - DAY)
    far = key(at=T0 - 9 * DAY)
    assert select_candidates(new, [late, far, early, middle], 7) == \
        [early.complaint_id, middle.complaint_id, late.complaint_id]


def test_candidates_are_capped_to_the_nearest_in_time():
    from datetime import datetime, timedelta, timezone
    import uuid as _uuid

    from services.routing.duplicates import MAX_CANDIDATES, SubmissionKey, select_candidates

    t0 = datetime(2026, 3, 17, 9, tzinfo=timezone.utc)
    new = SubmissionKey.of(_uuid.uuid4(), "infrastruktur_jalan", "Sungai Ayak", t0)
    others = [SubmissionKey.of(_uuid.uuid4(), "infrastruktur_jalan", "Sungai Ayak",
                               t0 - timedelta(hours=i + 1)) for i in range(MAX_CANDIDATES + 15)]
    picked = select_candidates(new, others, window_days=7)
    assert len(picked) == MAX_CANDIDATES
    # the nearest ones, listed oldest first
    assert picked == [o.complaint_id for o in reversed(others[:MAX_CANDIDATES])]
