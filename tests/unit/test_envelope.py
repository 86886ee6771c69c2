import uuid
from datetime import UTC, datetime

import pytest

from shared.broker import PoisonMessage, parse_cloud_event
from shared.events import (
    EVENT_MODELS,
    CloudEvent,
    ComplaintRouted,
    ComplaintSubmitted,
    Location,
    make_event,
)


def _routed():
    return ComplaintRouted(complaint_id=uuid.uuid4(), opd_code="DINKES", opd_name="Dinas Kesehatan",
                           hop=1, rule_id=7, rule_version=2,
                           routed_at=datetime(2026, 3, 17, 9, tzinfo=UTC))


def test_envelope_round_trips_through_json():
    data = _routed()
    event = make_event("sp4n/routing", data)
    again = CloudEvent.model_validate_json(event.model_dump_json())
    assert again == event
    assert again.specversion == "1.0"
    assert again.type == "id.go.sp4n.complaint.routed.v1"
    assert again.event_name == "complaint.routed"
    assert again.subject == str(data.complaint_id)
    assert again.parse_data() == data


def test_every_event_type_is_past_tense_and_versioned():
    for name, model in EVENT_MODELS.items():
        assert model.ce_type().endswith(f"{name}.v{model.version}")
        last_word = name.split(".")[-1]
        assert last_word.endswith(("ed", "required", "started", "stopped", "warning", "withdrawn")), name


def test_event_data_rejects_unknown_fields():
    with pytest.raises(ValueError):
        ComplaintRouted.model_validate({**_routed().model_dump(), "reporter_name": "Budi"})


def test_submitted_event_carries_no_reporter_identity():
    fields = set(ComplaintSubmitted.model_fields)
    assert "reporter_ref" in fields
    assert not fields & {"reporter", "name", "phone", "email", "nik", "description", "address"}
    assert set(Location.model_fields) == {"kecamatan", "desa"}


def test_parse_cloud_event_rejects_malformed_bodies_as_poison():
    with pytest.raises(PoisonMessage):
        parse_cloud_event(b"not json")
    with pytest.raises(PoisonMessage, match="source"):
        parse_cloud_event(b'{"type": "x", "data": {}}')
    event = make_event("t", _routed())
    body = event.model_dump(mode="json")
    body["data"].pop("opd_code")
    with pytest.raises(PoisonMessage, match="opd_code"):
        parse_cloud_event(CloudEvent.model_validate(body).model_dump_json().encode())
    assert parse_cloud_event(event.model_dump_json().encode()).id == event.id
