"""The fault checker's webhook judgement (tests/faults/checker.py) catches each way a
receiver's traffic can be wrong: an effect done twice, an event under two webhook-ids, a
fact never delivered, a delivery never acknowledged."""

from __future__ import annotations

import json
import uuid
from collections import Counter

from tests.e2e.receiver import Received, WebhookReceiver
from tests.faults.checker import Facts, Report, Sink, judge_sink

CID = uuid.uuid4()


def routed(event_id: str, hop: int = 1) -> bytes:
    return json.dumps({"specversion": "1.0", "id": event_id, "source": "sp4n/routing",
                       "type": "id.go.sp4n.complaint.routed.v1", "subject": str(CID),
                       "data": {"complaint_id": str(CID), "hop": hop}}).encode()


def judged(requests: list[tuple[str, bytes, int]], deliveries: dict[str, str]) -> Report:
    """``requests``: (webhook-id, body, status) as received; ``deliveries``: event id → its
    delivery's webhook-id (notify's table)."""
    receiver = WebhookReceiver()
    receiver.requests = [Received("/all", {"webhook-id": w}, body, status) for w, body, status in requests]
    sink = Sink("ops", receiver, "/all", ("complaint.routed",))
    report = Report()
    judge_sink(report, sink, {str(CID)}, {("ops", e): w for e, w in deliveries.items()},
               Facts({CID: "routed"}, Counter(), Counter()))
    return report


def test_a_retried_delivery_under_one_webhook_id_is_clean():
    report = judged([("msg_1", routed("e1"), 500), ("msg_1", routed("e1"), 200)], {"e1": "msg_1"})
    assert report.ok, report.text()


def test_a_decision_delivered_as_two_events_is_acting_twice():
    report = judged([("msg_1", routed("e1"), 200), ("msg_2", routed("e2"), 200)],
                    {"e1": "msg_1", "e2": "msg_2"})
    assert any("acted twice" in p for p in report.problems), report.text()


def test_one_event_under_two_webhook_ids_is_reported():
    report = judged([("msg_1", routed("e1"), 200), ("msg_9", routed("e1"), 200)], {"e1": "msg_1"})
    assert any("several webhook-ids" in p for p in report.problems), report.text()


def test_a_fact_never_delivered_and_a_delivery_never_acknowledged_are_reported():
    assert any("never delivered" in p for p in judged([], {}).problems)
    report = judged([("msg_1", routed("e1"), 500)], {"e1": "msg_1"})
    assert any("never answered 200" in p for p in report.problems), report.text()
