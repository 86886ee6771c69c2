"""The notify use cases against an in-memory unit of work and repository: accepting an event
(deliveries, exactly once), one webhook attempt with a fake HTTP sender (signing, error text)
and recording its outcome (delivered / retry with backoff / dead-lettered)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from standardwebhooks import Webhook

from services.notify import usecases
from services.notify.domain import Outcome, complaint_id_of
from services.notify.model import ClaimedDelivery
from services.notify.signing import generate_secret, webhook_id
from services.notify.subscriptions import Subscription
from services.notify.usecases import HttpAnswer
from shared.events import CloudEvent, NotificationDeadLettered, NotificationDelivered, SlaBreached, make_event
from tests.unit.fakes import FakeUnitOfWork
from tests.unit.notify_fakes import FakeNotifyRepository

SECRET = generate_secret()
MAX_ERROR_CHARS = 1000


async def send(delivery, post):
    return await usecases.send(delivery, post, max_error_chars=MAX_ERROR_CHARS)


def claimed(attempt: int = 1) -> ClaimedDelivery:
    return ClaimedDelivery(
        id=7, event_id="evt-1", event_type="id.go.sp4n.sla.breached.v1", event_name="sla.breached",
        event_time=datetime.now(UTC), complaint_id=uuid.uuid4(), subscription="wa",
        webhook_id=webhook_id("evt-1", "wa"), body='{"id":"evt-1","data":{"opd_code":"PUPR"}}',
        attempt=attempt, round=1, url="https://hooks.example.id/x", secrets=(SECRET,),
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


async def test_error_text_is_cut_to_the_configured_length():
    result = await usecases.send(claimed(), FakePost(HttpAnswer(500, "y" * 50)), max_error_chars=12)
    assert result.error == "HTTP 500: yy"


# --- accepting an event ----------------------------------------------------------------------

def sub(name: str, event_types=("sla.breached",), opd_codes=("PUPR",), enabled=True) -> Subscription:
    return Subscription(name=name, url=f"https://hooks.example.id/{name}", secret=SECRET,
                        event_types=event_types, opd_codes=opd_codes, enabled=enabled)


def breach(opd: str = "PUPR") -> CloudEvent:
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    return make_event("sp4n/sla", SlaBreached(
        complaint_id=uuid.uuid4(), clock="opd_response", hop=1, opd_code=opd,
        deadline=now, due_at=now, calendar_version="ID-2026.1", policy_version=1))


SUBS = [
    sub("wa"),
    sub("all", event_types=("*",), opd_codes=None),
    sub("family", event_types=("sla.*",)),
    sub("warnings", event_types=("sla.warning",)),
    sub("elsewhere", opd_codes=("DINKES",)),
    sub("paused", enabled=False),
]


async def test_matching_subscriptions_get_one_delivery_each():
    repo = FakeNotifyRepository(SUBS)
    uow = FakeUnitOfWork(repo)
    event = breach()

    created = await usecases.accept_event(uow, event)

    assert created == ["all", "family", "wa"]
    assert sorted(d.new.subscription for d in repo.deliveries.values()) == ["all", "family", "wa"]
    d = repo.delivery_of(event.id, "wa").new
    assert d.webhook_id == webhook_id(event.id, "wa")
    assert d.body == event.model_dump_json()
    assert (d.event_type, d.event_name, d.event_time) == (event.type, "sla.breached", event.time)
    assert d.complaint_id == uuid.UUID(event.subject)
    assert repo.wakes == 1
    # The subscriptions read (no transaction), then the transaction with the inbox row.
    assert uow.inbox == {event.id} and uow.commits == 2 and uow.committed_events == []


async def test_an_event_no_subscription_wants_costs_no_transaction_and_no_inbox_row():
    repo = FakeNotifyRepository([sub("warnings", event_types=("sla.warning",))])
    uow = FakeUnitOfWork(repo)
    event = breach()

    assert await usecases.accept_event(uow, event) == []

    assert repo.deliveries == {} and uow.inbox == set() and uow.commits == 1


async def test_a_redelivered_event_creates_no_delivery():
    repo = FakeNotifyRepository(SUBS)
    uow = FakeUnitOfWork(repo)
    event = breach()
    await usecases.accept_event(uow, event)

    assert await usecases.accept_event(uow, event) == []
    assert len(repo.deliveries) == 3 and repo.wakes == 1


async def test_the_delivery_key_guards_even_without_the_inbox():
    repo = FakeNotifyRepository(SUBS)
    event = breach()
    await usecases.accept_event(FakeUnitOfWork(repo), event)

    # (an inbox that forgot the event, e.g. a second consumer group)
    assert await usecases.accept_event(FakeUnitOfWork(repo), event) == []
    assert len(repo.deliveries) == 3 and repo.wakes == 1


async def test_an_event_no_subscription_matches_wakes_nobody():
    repo = FakeNotifyRepository(SUBS)
    assert await usecases.accept_event(FakeUnitOfWork(repo), breach("DISDUK")) == ["all"]
    repo = FakeNotifyRepository([s for s in SUBS if s.name != "all"])
    assert await usecases.accept_event(FakeUnitOfWork(repo), breach("DISDUK")) == []
    assert repo.deliveries == {} and repo.wakes == 0


async def test_sync_subscriptions_upserts_the_file():
    repo = FakeNotifyRepository([sub("wa", opd_codes=("DINKES",))])
    await usecases.sync_subscriptions(FakeUnitOfWork(repo), [sub("wa"), sub("sms")])
    assert repo.subscriptions["wa"].opd_codes == ("PUPR",) and "sms" in repo.subscriptions


# --- recording an attempt's outcome ------------------------------------------------------------

POLICY = {"max_attempts": 3, "backoff_base_s": 10.0}


async def claimed_from(repo: FakeNotifyRepository, uow: FakeUnitOfWork) -> ClaimedDelivery:
    [delivery] = await usecases.claim_due(uow, limit=10, lease_s=40.0)
    return delivery


def result(status_code: int | None, error: str | None = None) -> usecases.AttemptResult:
    return usecases.AttemptResult(datetime(2026, 3, 2, 8, 0, tzinfo=UTC), 12, status_code, error)


async def accepted() -> tuple[FakeNotifyRepository, FakeUnitOfWork, CloudEvent]:
    repo = FakeNotifyRepository([sub("wa")])
    uow = FakeUnitOfWork(repo)
    event = breach()
    await usecases.accept_event(uow, event)
    uow.committed_events.clear()
    return repo, uow, event


async def test_a_2xx_answer_delivers_and_emits_notification_delivered():
    repo, uow, event = await accepted()
    delivery = await claimed_from(repo, uow)

    assert await usecases.record(uow, delivery, result(204), **POLICY) is Outcome.DELIVERED

    stored = repo.delivery_of(event.id, "wa")
    assert (stored.status, stored.last_status_code, stored.lease_token) == ("delivered", 204, None)
    assert [(a.attempt, a.status_code) for a in repo.attempts] == [(1, 204)]
    [emitted] = uow.committed_events
    data = emitted.parse_data()
    assert isinstance(data, NotificationDelivered)
    assert (data.subscription, data.notified_event_id, data.notified_event_type, data.attempts) == \
        ("wa", event.id, event.type, 1)
    assert emitted.subject == event.subject and emitted.source == "sp4n/notify"


async def test_a_failed_attempt_is_retried_with_doubling_backoff():
    repo, uow, event = await accepted()
    delivery = await claimed_from(repo, uow)

    outcome = await usecases.record(uow, delivery, result(500, "HTTP 500: down"), **POLICY)

    assert outcome is Outcome.RETRY_SCHEDULED
    stored = repo.delivery_of(event.id, "wa")
    assert stored.status == "pending" and stored.lease_token is None and stored.locked_until is None
    assert stored.next_attempt_at == repo.now + timedelta(seconds=10)
    assert (stored.last_status_code, stored.last_error) == (500, "HTTP 500: down")
    assert uow.committed_events == []

    assert await usecases.claim_due(uow, limit=10, lease_s=40.0) == []  # not due yet
    repo.tick(10)
    second = await claimed_from(repo, uow)
    assert second.attempt == 2 and second.webhook_id == delivery.webhook_id
    outcome = await usecases.record(uow, second, result(None, "TimeoutError"), **POLICY)
    assert outcome is Outcome.RETRY_SCHEDULED
    assert repo.delivery_of(event.id, "wa").next_attempt_at == repo.now + timedelta(seconds=20)
    assert [(a.attempt, a.status_code, a.error) for a in repo.attempts] == [
        (1, 500, "HTTP 500: down"), (2, None, "TimeoutError")]


async def test_the_last_failed_attempt_dead_letters_and_emits_notification_dead_lettered():
    repo, uow, event = await accepted()
    outcomes = []
    for _ in range(3):
        delivery = await claimed_from(repo, uow)
        outcomes.append(await usecases.record(uow, delivery, result(503, "HTTP 503: busy"), **POLICY))
        repo.tick(3600)

    assert outcomes == [Outcome.RETRY_SCHEDULED, Outcome.RETRY_SCHEDULED, Outcome.DEAD_LETTERED]
    stored = repo.delivery_of(event.id, "wa")
    assert (stored.status, stored.attempts, stored.last_error) == ("dead_lettered", 3, "HTTP 503: busy")
    [emitted] = uow.committed_events
    data = emitted.parse_data()
    assert isinstance(data, NotificationDeadLettered)
    assert (data.subscription, data.notified_event_id, data.attempts, data.last_error) == \
        ("wa", event.id, 3, "HTTP 503: busy")
    assert await usecases.claim_due(uow, limit=10, lease_s=40.0) == []


async def test_a_lost_lease_logs_the_attempt_but_leaves_the_state_to_its_owner():
    repo, uow, event = await accepted()
    delivery = await claimed_from(repo, uow)
    repo.tick(41)  # the lease expired; another replica took the delivery over
    takeover = await claimed_from(repo, uow)
    assert takeover.id == delivery.id and takeover.lease_token != delivery.lease_token

    assert await usecases.record(uow, delivery, result(200), **POLICY) is None

    stored = repo.delivery_of(event.id, "wa")
    assert stored.status == "pending" and stored.lease_token == takeover.lease_token
    assert [(a.attempt, a.status_code) for a in repo.attempts] == [(1, 200)]
    assert uow.committed_events == []
    assert await usecases.record(uow, takeover, result(200), **POLICY) is Outcome.DELIVERED
    assert len(uow.committed_events) == 1


async def test_a_delivery_without_a_complaint_emits_nothing():
    repo = FakeNotifyRepository([sub("wa", opd_codes=None)])
    uow = FakeUnitOfWork(repo)
    event = CloudEvent(source="t", type="id.go.sp4n.sla.breached.v1", subject=None, data={})
    assert await usecases.accept_event(uow, event) == ["wa"]
    delivery = await claimed_from(repo, uow)
    assert delivery.complaint_id is None
    assert await usecases.record(uow, delivery, result(200), **POLICY) is Outcome.DELIVERED
    assert uow.committed_events == []
