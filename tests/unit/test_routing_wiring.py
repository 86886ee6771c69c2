"""FastStream wiring of routing's consumer, in memory with ``TestRabbitBroker``: an event
published to the events exchange under its routing key reaches routing's handler, and a
message that can never succeed goes to the queue's DLQ with its reason.

``TestRabbitBroker`` checks routing only (no acks, delivery limits or dead-letter
exchanges; see tests/integration/test_messaging.py for those on the real broker), so the DLQ
here is a subscriber of the dead-letter exchange under the DLQ's binding.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from faststream.exceptions import SubscriberNotFound
from faststream.rabbit import RabbitMessage, TestRabbitBroker
from prometheus_client import CollectorRegistry

from services.routing.handlers import submitted_handler
from services.routing.metrics import RoutingMetrics
from services.routing.model import Rulebook
from services.routing.rules import Rule
from shared.broker import make_broker, publish_event, subscribe
from shared.events import ComplaintRouted, ComplaintSubmitted, Location, make_event
from shared.settings import Settings
from shared.topology import ROUTING_SUBMITTED, dead_letter_exchange, events_exchange
from tests.unit.routing_fakes import FakeRoutingRepository, RoutingUnitOfWork

NS = "wiring"
NOW = datetime(2026, 3, 16, 2, 0, tzinfo=UTC)
BOOK = Rulebook((Rule(1, "pendidikan", "*", "disdikbud", 10),), {"disdikbud": "Dinas Pendidikan"})


async def book() -> Rulebook:
    return BOOK


@pytest.fixture
def wired():
    """Routing's subscriber as ``app.build_app`` registers it (the in-memory unit of work in
    place of PostgreSQL), plus a listener on ROUTING_SUBMITTED's DLQ."""
    settings = Settings(namespace=NS)
    registry = CollectorRegistry()
    broker = make_broker(settings, registry, "routing")
    uow = RoutingUnitOfWork(FakeRoutingRepository())
    subscribe(broker, settings, ROUTING_SUBMITTED, submitted_handler(
        uow=uow, rulebook=book, metrics=RoutingMetrics.register(registry),
        duplicate_window_days=settings.duplicate_window_days,
        max_duplicate_candidates=settings.routing.max_duplicate_candidates))
    dead: list[RabbitMessage] = []

    async def raw(msg: RabbitMessage) -> RabbitMessage:  # the broker does not inject (apply_types off)
        return msg

    @broker.subscriber(ROUTING_SUBMITTED.dlq(NS), dead_letter_exchange(NS), decoder=raw)
    async def dlq(msg: RabbitMessage) -> None:
        dead.append(msg)

    return broker, uow, dead, registry


def submission(category: str = "pendidikan"):
    return make_event("sp4n/intake", ComplaintSubmitted(
        complaint_id=uuid.uuid4(), tracking_id="SKD-W", source="portal", received_at=NOW,
        accepted_at=NOW, classification="pengaduan", category=category,
        location=Location(kecamatan="Belitang"), anonymous=False, confidential=False,
        reporter_ref="ref"))


async def test_complaint_submitted_on_the_events_exchange_reaches_the_handler(wired):
    broker, uow, dead, registry = wired
    event = submission()
    async with TestRabbitBroker(broker):
        await publish_event(broker, NS, event)
    assert event.id in uow.inbox
    [routed] = uow.committed_events
    assert routed.event_name == "complaint.routed" and routed.subject == event.subject
    assert routed.data["opd_code"] == "disdikbud"
    assert dead == []
    assert registry.get_sample_value("sp4n_complaints_routed_total", {"opd": "disdikbud"}) == 1


async def test_other_routing_keys_do_not_reach_routing(wired):
    broker, uow, dead, _registry = wired
    async with TestRabbitBroker(broker):
        with pytest.raises(SubscriberNotFound):  # the test broker's "nothing is bound to it"
            await publish_event(broker, NS, make_event("sp4n/routing", ComplaintRouted(
                complaint_id=uuid.uuid4(), opd_code="dinkes", opd_name="Dinas Kesehatan", hop=1,
                routed_at=NOW)))
    assert uow.inbox == set() and uow.commits == 0 and dead == []


@pytest.mark.parametrize("body, reason", [
    (b'{"hello": "world"', "not a valid sp4n CloudEvent"),      # not JSON
    (b'{"hello": "world"}', "not a valid sp4n CloudEvent"),     # not a CloudEvent
    (make_event("sp4n/routing", ComplaintRouted(               # valid, but not a submission
        complaint_id=uuid.uuid4(), opd_code="dinkes", opd_name="Dinas Kesehatan", hop=1,
        routed_at=NOW)).model_dump_json().encode(), "routing expects complaint.submitted"),
])
async def test_malformed_body_is_a_poison_message_sent_to_the_dlq(wired, body, reason):
    broker, uow, dead, _registry = wired
    async with TestRabbitBroker(broker):
        await broker.publish(body, exchange=events_exchange(NS), routing_key="complaint.submitted",
                             persist=True)
    [msg] = dead
    assert msg.body == body
    assert msg.headers["x-sp4n-error"].startswith(reason)
    assert msg.headers["x-sp4n-original-queue"] == ROUTING_SUBMITTED.name(NS)
    assert uow.commits == 0 and uow.inbox == set()
