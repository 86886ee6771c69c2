"""Duplicate suspicion's pure part: the normalised key and the window (no I/O). The selection
is SQL, tested against PostgreSQL in tests/integration/test_routing_duplicates.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.routing.duplicates import SubmissionKey, normalize_desa, window

T0 = datetime(2026, 3, 16, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_normalize_desa_ignores_case_spacing_separators_and_prefix():
    for spelling in ("Sungai Ayak", "  SUNGAI   ayak ", "sungai-ayak", "sungai_ayak", "Desa Sungai Ayak",
                     "Ds. Sungai Ayak", "ds sungai ayak", "Kelurahan Sungai Ayak", "Kel. Sungai Ayak"):
        assert normalize_desa(spelling) == "sungai ayak", spelling
    assert normalize_desa(None) == normalize_desa("  ") == ""
    assert normalize_desa("Desa") == "desa"  # a bare word is a name, not a prefix


def test_key_normalises_category_and_desa():
    cid = uuid.uuid4()
    key = SubmissionKey.of(cid, " Infrastruktur Jalan ", "Desa Sungai-Ayak", T0)
    assert key == SubmissionKey(cid, "infrastruktur_jalan", "sungai ayak", T0)
    assert key.has_desa
    assert not SubmissionKey.of(cid, "jalan", "   ", T0).has_desa
    assert not SubmissionKey.of(cid, "jalan", None, T0).has_desa


def test_window_is_symmetric_and_counts_whole_days():
    assert window(T0, 7) == (T0 - 7 * DAY, T0 + 7 * DAY)
    assert window(T0, 0) == (T0, T0)
