"""One webhook attempt with a fake HTTP sender: signing, outcome and error text."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from standardwebhooks import Webhook

from services.notify.repository import ClaimedDelivery
from services.notify.signing import generate_secret, webhook_id
from services.notify.usecases import HttpAnswer, complaint_id_of, send
from shared.events import CloudEvent

SECRET = generate_secret()


def claimed(attempt: int = 1) -> ClaimedDelivery:
    return ClaimedDelivery(
        id=7, event_id="evt-1", event_type="id.go.sp4n.sla.breached.v1", event_name="sla.breached",
        event_time=datetime.now(timezone.utc), complaint_id=uuid.uuid4(), subscription="wa",
        webhook_id=webhook_id("evt-1", "wa"), body='{"id":"evt-1","data":{"opd_code":"PUPR"}}',
        attempt=attempt, round=1, url="https://hooks.example.id/x", secret=SECRET,
        lease_token=uuid.uuid4())


class FakePost:
    def __init__(self, answer: HttpAnswer | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict, bytes]] = []

    async def __call__(self, url, headers, body):
        self.calls.append((url, headers, body))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_success_sends_signed_body_unchanged():
    post = FakePost(HttpAnswer(202))
    result = await send(claimed(), post)
    assert result.status_code == 202 and result.error is None and result.duration_ms >= 0
    url, headers, body = post.calls[0]
    assert url == "https://hooks.example.id/x"
    assert body == claimed().body.encode()
    assert headers["webhook-id"] == webhook_id("evt-1", "wa")
    assert headers["content-type"] == "application/cloudevents+json"
    assert Webhook(SECRET).verify(body, headers)["data"]["opd_code"] == "PUPR"


async def test_webhook_id_is_the_same_on_every_attempt():
    post = FakePost(HttpAnswer(500))
    await send(claimed(1), post)
    await send(claimed(2), post)
    assert post.calls[0][1]["webhook-id"] == post.calls[1][1]["webhook-id"]


async def test_error_text_for_http_errors_and_exceptions():
    result = await send(claimed(), FakePost(HttpAnswer(500, "  database down  ")))
    assert (result.status_code, result.error) == (500, "HTTP 500: database down")
    result = await send(claimed(), FakePost(TimeoutError()))
    assert (result.status_code, result.error) == (None, "TimeoutError")
    result = await send(claimed(), FakePost(ConnectionRefusedError("refused")))
    assert result.error == "ConnectionRefusedError: refused"
    result = await send(claimed(), FakePost(HttpAnswer(418, "x" * 5000)))
    assert len(result.error) <= 1000


def test_complaint_id_from_subject_or_data():
    cid = uuid.uuid4()
    base = dict(source="t", type="id.go.sp4n.sla.breached.v1")
    assert complaint_id_of(CloudEvent(subject=str(cid), data={}, **base)) == cid
    assert complaint_id_of(CloudEvent(subject=None, data={"complaint_id": str(cid)}, **base)) == cid
    assert complaint_id_of(CloudEvent(subject="not-a-uuid", data={}, **base)) is None
