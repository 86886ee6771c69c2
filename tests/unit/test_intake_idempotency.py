from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.intake.idempotency import conflicting_fields
from services.intake.identity import fingerprint, new_tracking_id, reporter_ref

STORED = {"title": "Jalan rusak", "location": {"kecamatan": "Belitang", "desa": "A"},
          "attachments": []}


def test_identical_retry_is_not_a_conflict():
    assert conflicting_fields(STORED, "r1", dict(STORED), "r1") == []


def test_changed_fields_are_named_including_nested_ones():
    incoming = {**STORED, "title": "Jalan sangat rusak",
                "location": {"kecamatan": "Belitang", "desa": "B"}}
    assert conflicting_fields(STORED, "r1", incoming, "r1") == ["location.desa", "title"]


def test_changed_reporter_is_a_conflict_without_revealing_it():
    assert conflicting_fields(STORED, "r1", STORED, "r2") == ["reporter"]


def test_fingerprint_is_order_independent_and_keyed():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}, "k1") != fingerprint({"a": 1}, "k2")


def test_tracking_id_uses_local_date_of_the_regency():
    at = datetime(2026, 3, 16, 20, 0, tzinfo=UTC)  # 17 Mar 03:00 WIB
    tid = new_tracking_id("SKD", at, ZoneInfo("Asia/Pontianak"))
    assert tid.startswith("SKD-260317-") and len(tid) == len("SKD-260317-") + 6


def test_reporter_ref_links_named_reporters_but_never_anonymous_ones():
    a = reporter_ref("k", False, None, "+62 812-3456", None, "Budi")
    b = reporter_ref("k", False, None, "628123456", None, "Budi S")
    assert a == b and a.startswith("rep_") and "812" not in a
    x = reporter_ref("k", True, "1234567890123456", None, None, "Budi")
    y = reporter_ref("k", True, "1234567890123456", None, None, "Budi")
    assert x != y and x.startswith("anon_")
