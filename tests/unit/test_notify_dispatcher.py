"""The dispatcher's round (claim → send → record → metrics) on the in-memory repository: every
due delivery is sent once per attempt, under its stable webhook-id, and retried only when due."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from services.notify import usecases
from services.notify.dispatcher import Dispatcher
from services.notify.metrics import NotifyMetrics
from services.notify.signing import generate_secret
from services.notify.subscriptions import Subscription
from services.notify.usecases import HttpAnswer
from shared.events import CloudEvent
from shared.settings import NotifySettings, Settings
from tests.unit.fakes import FakeUnitOfWork
from tests.unit.notify_fakes import FakeNotifyRepository


class FakePost:
    def __init__(self, status_of=lambda n: 200) -> None:
        self.status_of = status_of
        self.webhook_ids: list[str] = []

    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> HttpAnswer:
        self.webhook_ids.append(headers["webhook-id"])
        return HttpAnswer(self.status_of(len(self.webhook_ids)))


async def accepted(n_events: int, **notify) -> tuple[FakeNotifyRepository, FakeUnitOfWork, Settings]:
    """A repository with one catch-all subscription and ``n_events`` accepted events."""
    sub = Subscription(name="wa", url="https://hooks.example.id/wa", secret=generate_secret(),
                       event_types=("*",))
    repo = FakeNotifyRepository([sub])
    uow = FakeUnitOfWork(repo)
    settings = Settings(notify_max_attempts=3, notify_backoff_base_s=10.0,
                        notify=NotifySettings(**notify))
    for i in range(n_events):
        event = CloudEvent(source="t", type="id.go.sp4n.sla.breached.v1", subject=None, data={},
                           id=f"evt-{i}")
        assert await usecases.accept_event(uow, event) == ["wa"]
    return repo, uow, settings


async def test_a_round_claims_a_batch_and_sends_each_once():
    repo, uow, settings = await accepted(5, batch_size=2)
    registry = CollectorRegistry()
    dispatcher = Dispatcher(settings, NotifyMetrics(registry), uow)
    post = FakePost()

    assert dispatcher.batch_size == 2
    assert [await dispatcher.dispatch_once(post) for _ in range(4)] == [2, 2, 1, 0]
    assert len(post.webhook_ids) == len(set(post.webhook_ids)) == 5
    assert {d.status for d in repo.deliveries.values()} == {"delivered"}
    assert registry.get_sample_value(
        "sp4n_notify_deliveries_total", {"subscription": "wa", "outcome": "delivered"}) == 5
    await dispatcher.refresh_pending_gauge(force=True)
    assert registry.get_sample_value("sp4n_notify_pending_deliveries") == 0


async def test_concurrent_dispatchers_never_send_one_delivery_twice():
    repo, uow, settings = await accepted(7, batch_size=3)
    post = FakePost()
    dispatchers = [Dispatcher(settings, NotifyMetrics(CollectorRegistry()), uow) for _ in range(3)]
    claimed = await asyncio.gather(*(d.dispatch_once(post) for d in dispatchers))
    assert sorted(claimed) == [1, 3, 3]
    assert len(post.webhook_ids) == len(set(post.webhook_ids)) == 7


async def test_a_failing_receiver_gets_the_same_webhook_id_on_each_due_retry():
    repo, uow, settings = await accepted(1)
    dispatcher = Dispatcher(settings, NotifyMetrics(CollectorRegistry()), uow)
    post = FakePost(lambda n: 500)

    assert await dispatcher.dispatch_once(post) == 1
    assert await dispatcher.dispatch_once(post) == 0  # the retry is not due yet
    repo.tick(10)
    assert await dispatcher.dispatch_once(post) == 1
    repo.tick(20)
    assert await dispatcher.dispatch_once(post) == 1
    repo.tick(3600)
    assert await dispatcher.dispatch_once(post) == 0  # dead-lettered after the third attempt
    assert len(post.webhook_ids) == 3 and len(set(post.webhook_ids)) == 1
    [stored] = repo.deliveries.values()
    assert (stored.status, stored.attempts) == ("dead_lettered", 3)
    assert len(uow.committed_events) == 0  # (no complaint id: nothing to tell)


def test_lease_is_the_timeout_plus_the_configured_margin():
    settings = Settings(notify_timeout_s=10.0, notify=NotifySettings(lease_margin_s=5.0))
    dispatcher = Dispatcher(settings, NotifyMetrics(CollectorRegistry()),
                            FakeUnitOfWork(FakeNotifyRepository()))
    assert dispatcher.lease_s == 15.0
