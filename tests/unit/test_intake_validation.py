from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.intake.errors import field_errors
from services.intake.schemas import ComplaintIn


def valid(**over):
    body = {
        "source": "portal-sekadau", "external_id": "A-1",
        "received_at": "2026-03-17T09:00:00+07:00", "classification": "pengaduan",
        "category": "infrastruktur_jalan", "title": "Jalan rusak",
        "description": "Jalan desa berlubang besar di depan sekolah.",
        "location": {"kecamatan": "Belitang", "desa": "Sungai Ayak"},
        "reporter": {"name": "Budi", "phone": "+6281234567890"},
    }
    body.update(over)
    return body


def errors_of(body) -> dict[str, str]:
    with pytest.raises(ValidationError) as exc:
        ComplaintIn.model_validate(body)
    return {e["field"]: e["reason"] for e in field_errors(exc.value.errors())}


def test_valid_submission_parses():
    c = ComplaintIn.model_validate(valid())
    assert c.received_at.utcoffset() == timedelta(hours=7)
    assert "reporter" not in c.canonical()


def test_each_bad_field_is_named_with_its_reason():
    errs = errors_of(valid(description="x" * 4001, classification="keluhan",
                           location={"lat": 120, "lon": 1}, attachments=["not a url"]))
    assert "description" in errs and "4000" in errs["description"]
    assert "classification" in errs
    assert "location.lat" in errs
    assert "attachments.0" in errs


def test_received_at_needs_an_offset_and_not_the_future():
    assert "received_at" in errors_of(valid(received_at="2026-03-17T09:00:00"))
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert errors_of(valid(received_at=future))["received_at"] == "must not be in the future"


def test_berkadar_pengawasan_only_for_pengaduan():
    errs = errors_of(valid(classification="aspirasi", berkadar_pengawasan=True))
    assert errs == {"berkadar_pengawasan": "applies to classification 'pengaduan' only"}
    assert ComplaintIn.model_validate(valid(berkadar_pengawasan=True)).berkadar_pengawasan


def test_named_reporter_required_unless_anonymous():
    assert "reporter" in errors_of(valid(reporter=None))
    assert "reporter" in errors_of(valid(reporter={"name": "Budi"}))
    anon = ComplaintIn.model_validate(valid(reporter=None, anonymous=True))
    assert anon.reporter is None


def test_reporter_contact_formats():
    errs = errors_of(valid(reporter={"name": "Budi", "phone": "abc", "email": "x", "nik": "123"}))
    assert set(errs) == {"reporter.phone", "reporter.email", "reporter.nik"}


def test_unknown_fields_are_rejected_not_ignored():
    assert "priority" in errors_of(valid(priority="high"))


def test_unknown_category_and_kecamatan_are_not_errors():
    c = ComplaintIn.model_validate(valid(category="belum_ada", location={"kecamatan": "Entah"}))
    assert c.category == "belum_ada"
