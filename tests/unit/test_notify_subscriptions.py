"""Subscription matching, validation, the subscriptions file and the retry schedule."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from services.notify.domain import Decision, Outcome, decide, retry_delay
from services.notify.subscriptions import Subscription, event_type_matches, load_file, matching

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def sub(name="s", event_types=("sla.breached",), opd_codes=None, enabled=True):
    return Subscription(name=name, url="https://hooks.example.id/x", secret=SECRET,
                        event_types=event_types, opd_codes=opd_codes, enabled=enabled)


def test_exact_event_type():
    s = sub(event_types=("sla.breached",))
    assert s.matches("sla.breached", {})
    assert not s.matches("sla.warning", {})
    assert not s.matches("complaint.routed", {})


def test_family_wildcard_and_catch_all():
    s = sub(event_types=("sla.*",))
    assert s.matches("sla.breached", {})
    assert s.matches("sla.warning", {})
    assert not s.matches("complaint.routed", {})
    assert not s.matches("slant.breached", {})
    assert event_type_matches("*", "complaint.routed")
    assert not event_type_matches("sla.*", "sla")


def test_opd_filter():
    s = sub(event_types=("sla.*", "complaint.routed"), opd_codes=("DINKES", "PUPR"))
    assert s.matches("complaint.routed", {"opd_code": "PUPR"})
    assert s.matches("sla.warning", {"opd_code": "DINKES"})
    assert not s.matches("sla.warning", {"opd_code": "DISDIK"})
    # an OPD-filtered subscription never gets events naming no OPD
    assert not s.matches("sla.breached", {"opd_code": None})
    assert not s.matches("sla.breached", {})
    assert sub(opd_codes=None).matches("sla.breached", {"opd_code": "DISDIK"})


def test_disabled_subscription_matches_nothing_and_matching_selects():
    subs = [sub("a"), sub("b", enabled=False), sub("c", event_types=("sla.warning",)),
            sub("d", opd_codes=("PUPR",))]
    assert [s.name for s in matching(subs, "sla.breached", {"opd_code": "PUPR"})] == ["a", "d"]


@pytest.mark.parametrize("field,value", [
    ("name", "Bad Name"), ("url", "ftp://x"), ("url", "hooks.example.id"),
    ("secret", "plain-secret"), ("event_types", ()), ("event_types", ("SLA breached",)),
    ("opd_codes", ()),
])
def test_invalid_subscription_names_the_field(field, value):
    fields = dict(name="ok", url="https://x.id/h", secret=SECRET, event_types=("sla.*",))
    fields[field] = value
    with pytest.raises(ValidationError) as err:
        Subscription(**fields)
    assert field in str(err.value)


def test_load_file(tmp_path):
    path = tmp_path / "subs.json"
    path.write_text(json.dumps([
        {"name": "wa-bot", "url": "http://127.0.0.1:9/h", "secret": SECRET,
         "event_types": ["sla.*"]},
        {"name": "pupr", "url": "https://pupr.sekadaukab.go.id/h", "secret": SECRET,
         "event_types": ["complaint.routed"], "opd_codes": ["PUPR"]},
    ]))
    subs = load_file(path)
    assert [s.name for s in subs] == ["wa-bot", "pupr"]
    assert subs[0].opd_codes is None and subs[1].opd_codes == ("PUPR",)


def test_load_file_rejects_duplicates_and_garbage(tmp_path):
    path = tmp_path / "subs.json"
    one = {"name": "a", "url": "http://x/h", "secret": SECRET, "event_types": ["sla.*"]}
    path.write_text(json.dumps([one, one]))
    with pytest.raises(ValueError, match="duplicate"):
        load_file(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        load_file(path)
    path.write_text(json.dumps([{**one, "secret": "nope"}]))
    with pytest.raises(ValueError, match="secret"):
        load_file(path)


def test_backoff_schedule_doubles_from_base():
    assert [retry_delay(a, 60) for a in range(1, 6)] == [60, 120, 240, 480, 960]
    assert [retry_delay(a, 0.2) for a in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.8])
    with pytest.raises(ValueError):
        retry_delay(0, 60)


def test_decision_after_each_attempt():
    kw = dict(max_attempts=3, backoff_base_s=10)
    assert decide(1, 200, **kw) == Decision(Outcome.DELIVERED)
    assert decide(3, 204, **kw) == Decision(Outcome.DELIVERED)
    assert decide(1, 500, **kw) == Decision(Outcome.RETRY_SCHEDULED, 10)
    assert decide(2, None, **kw) == Decision(Outcome.RETRY_SCHEDULED, 20)
    assert decide(2, 302, **kw) == Decision(Outcome.RETRY_SCHEDULED, 20)
    assert decide(3, 500, **kw) == Decision(Outcome.DEAD_LETTERED)
    assert decide(3, None, **kw) == Decision(Outcome.DEAD_LETTERED)
