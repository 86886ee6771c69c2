"""The event topology: which queue binds which event, and that queue arguments stay put."""

from __future__ import annotations

from services.notify.bindings import wanted_keys
from services.notify.signing import generate_secret
from services.notify.subscriptions import Subscription, matches
from shared.events import EVENT_MODELS
from shared.topology import (
    ALL_QUEUES,
    INTAKE_SUBMISSIONS,
    NOTIFY_ALERTS,
    NOTIFY_ON_DEMAND,
    QUEUE_GENERATION,
    UNBOUND_EVENTS,
    QueueSpec,
)

EVENT_QUEUES = [spec for spec in ALL_QUEUES if not spec.inbound]


def bound(name: str) -> list[QueueSpec]:
    return [spec for spec in EVENT_QUEUES if name in spec.routing_keys]


def test_every_published_event_is_bound_or_unbound_on_purpose():
    for name in EVENT_MODELS:
        assert bool(bound(name) or name in NOTIFY_ON_DEMAND) != (name in UNBOUND_EVENTS), name
    assert set(UNBOUND_EVENTS) <= set(EVENT_MODELS)
    assert set(NOTIFY_ON_DEMAND) <= set(EVENT_MODELS)


def test_bindings_name_real_events_once_each():
    for spec in EVENT_QUEUES:
        assert len(set(spec.routing_keys)) == len(spec.routing_keys), spec.name("ns")
        assert set(spec.routing_keys) <= set(EVENT_MODELS), spec.name("ns")


def test_notify_binds_every_complaint_and_sla_event_and_none_of_its_own():
    wanted = {n for n in EVENT_MODELS if n.startswith(("complaint.", "sla."))}
    # Always bound, or bound while a subscription asks for it; never both.
    assert set(NOTIFY_ALERTS.routing_keys) | set(NOTIFY_ON_DEMAND) == wanted
    assert not set(NOTIFY_ALERTS.routing_keys) & set(NOTIFY_ON_DEMAND)
    assert not [n for n in NOTIFY_ALERTS.routing_keys if n.startswith("notification.")]


def test_a_star_subscription_sees_every_event_notify_receives():
    for name in NOTIFY_ALERTS.routing_keys + NOTIFY_ON_DEMAND:
        assert matches(["*"], None, name, {})
        family = name.split(".")[0] + ".*"
        assert matches([family], None, name, {}) and matches([name], None, name, {})


def test_queue_arguments_are_unchanged_in_this_generation():
    # Changing any of these needs a new QUEUE_GENERATION (RabbitMQ refuses to redeclare).
    assert QUEUE_GENERATION == "v1"
    for spec in ALL_QUEUES:
        queue = spec.queue("ns", 5, spec.routing_keys[0])
        assert queue.name == f"ns.{spec.service}.{spec.family}.v1"
        assert queue.arguments == {
            "x-delivery-limit": 5, "x-dead-letter-exchange": "ns.dlx",
            "x-dead-letter-routing-key": queue.name, "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish", "x-queue-type": "quorum"}
    assert INTAKE_SUBMISSIONS.inbound


def test_on_demand_keys_are_wanted_by_the_enabled_subscriptions_that_ask_for_them():
    def sub(*patterns: str, enabled: bool = True) -> Subscription:
        return Subscription(name="s", url="http://x/", secret=generate_secret(), event_types=patterns,
                            enabled=enabled)

    assert wanted_keys([]) == frozenset()
    assert wanted_keys([sub("sla.breached", "complaint.routed")]) == frozenset()
    assert wanted_keys([sub("*")]) == frozenset(NOTIFY_ON_DEMAND)
    assert wanted_keys([sub("*", enabled=False)]) == frozenset()
    assert wanted_keys([sub("sla.*")]) == {"sla.clock_started", "sla.clock_stopped"}
    assert wanted_keys([sub("complaint.submitted"), sub("sla.warning")]) == {"complaint.submitted"}
