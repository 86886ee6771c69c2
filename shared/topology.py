"""RabbitMQ topology: names and declarations of exchanges and queues.

- One durable topic exchange ``{ns}.events`` for domain events; routing key = event name.
- One durable direct exchange ``{ns}.inbound`` where portals may publish submissions.
- One durable quorum queue per (consuming service, event family), with a delivery limit
  and dead-lettering into ``{ns}.dlx``; one classic durable DLQ per queue.
- A queue whose bodies may hold personal data (``QueueSpec.personal_data``: intake's
  submissions, which carry the reporter's identity) has a quarantine queue
  (``{queue}.quarantine``) as well. Invariant: no body of such a queue reaches its DLQ. The
  broker's own dead-letters (delivery limit reached: a consumer that crashed or was killed
  on the message again and again) carry the original body, so ``{ns}.dlx`` routes them, by
  the queue's name, to the quarantine; the consuming service seals each body where it keeps
  such data and puts only a reference into the DLQ, which it alone publishes to (routing
  key ``{queue}.dlq``). The queue's own arguments stay as they are: only bindings differ.
- Per consumed queue, one delayed-retry quorum queue per retry step
  (``{queue}.retry.{delay}``, e.g. ``sp4n.routing.submitted.v1.retry.5s``), bound to the
  direct exchange ``{ns}.retry``; declared by the consuming service (``shared.broker``).

Queue arguments are immutable in RabbitMQ: when they change, bump ``QUEUE_GENERATION``
so the new queues get new names instead of failing with PRECONDITION_FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

QUEUE_GENERATION = "v1"
SUBMISSION_ROUTING_KEY = "complaint.submit"


def events_exchange(ns: str) -> RabbitExchange:
    return RabbitExchange(f"{ns}.events", type=ExchangeType.TOPIC, durable=True)


def inbound_exchange(ns: str) -> RabbitExchange:
    return RabbitExchange(f"{ns}.inbound", type=ExchangeType.DIRECT, durable=True)


def dead_letter_exchange(ns: str) -> RabbitExchange:
    return RabbitExchange(f"{ns}.dlx", type=ExchangeType.DIRECT, durable=True)


def retry_exchange(ns: str) -> RabbitExchange:
    """Where a consumer publishes the copy of a message that failed transiently, routed by the
    retry queue's name (``QueueSpec.retry_queue``)."""
    return RabbitExchange(f"{ns}.retry", type=ExchangeType.DIRECT, durable=True)


def delay_label(delay_s: float) -> str:
    """A retry step's delay in a queue name: ``1s``, ``600s``, ``250ms``."""
    ms = round(delay_s * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


@dataclass(frozen=True)
class QueueSpec:
    """A consuming service's queue for one event family."""

    service: str
    family: str
    routing_keys: tuple[str, ...]
    inbound: bool = False  # bound to the inbound exchange instead of the events exchange
    # Bodies may hold personal data: dead-letters go through a quarantine (module docstring).
    personal_data: bool = False

    def name(self, ns: str) -> str:
        return f"{ns}.{self.service}.{self.family}.{QUEUE_GENERATION}"

    def dlq_name(self, ns: str) -> str:
        return f"{self.name(ns)}.dlq"

    def dlq_routing_key(self, ns: str) -> str:
        """The key the DLQ is bound by on ``{ns}.dlx``. The broker dead-letters with the
        queue's name (``x-dead-letter-routing-key``): for a queue with personal data that
        name leads to the quarantine instead, and only the service's reference reaches the
        DLQ, by the DLQ's own name."""
        return self.dlq_name(ns) if self.personal_data else self.name(ns)

    def quarantine_name(self, ns: str) -> str:
        return f"{self.name(ns)}.quarantine"

    def quarantine(self, ns: str, *, declare: bool = True) -> RabbitQueue:
        """Classic and durable like the DLQ, and without a delivery limit: a message there
        waits for its service however often sealing it fails, never dropped."""
        return RabbitQueue(self.quarantine_name(ns), declare=declare, durable=True,
                           routing_key=self.name(ns))

    def exchange(self, ns: str) -> RabbitExchange:
        return inbound_exchange(ns) if self.inbound else events_exchange(ns)

    def queue(self, ns: str, delivery_limit: int, routing_key: str, *,
              declare: bool = True) -> RabbitQueue:
        return RabbitQueue(
            self.name(ns),
            declare=declare,
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=routing_key,
            arguments={
                "x-delivery-limit": delivery_limit,
                "x-dead-letter-exchange": dead_letter_exchange(ns).name,
                "x-dead-letter-routing-key": self.name(ns),
                # at-least-once dead-lettering needs reject-publish overflow (RabbitMQ 3.10+).
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )

    def dlq(self, ns: str) -> RabbitQueue:
        return RabbitQueue(self.dlq_name(ns), durable=True, routing_key=self.dlq_routing_key(ns))

    def retry_name(self, ns: str, delay_s: float) -> str:
        return f"{self.name(ns)}.retry.{delay_label(delay_s)}"

    def retry_queue(self, ns: str, delay_s: float) -> RabbitQueue:
        """A delayed-retry step: nothing consumes it; each message waits ``delay_s`` (the
        queue's message TTL) and is then dead-lettered back into this spec's queue through
        the default exchange. Quorum with at-least-once dead-lettering, like the queue it
        feeds, so a retry survives a broker restart and is never dropped on the way back.
        Bound to ``retry_exchange`` by its own name. The delay is in the name: queue
        arguments are immutable, so another delay is another queue."""
        name = self.retry_name(ns, delay_s)
        return RabbitQueue(
            name,
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=name,
            arguments={
                "x-message-ttl": round(delay_s * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.name(ns),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )


# Every queue of the product, so tooling (readiness, DLQ replay, test clean-up) can enumerate them.
# Which queues hold personal data: only intake's submissions (a portal's body names the
# reporter: name, NIK, phone, e-mail, and the citizen's own words). Every other queue carries
# events, which hold none (``shared.events``).
INTAKE_SUBMISSIONS = QueueSpec("intake", "submissions", (SUBMISSION_ROUTING_KEY,), inbound=True,
                               personal_data=True)
# Bindings may be added freely (they are not queue arguments); intake's own lifecycle
# events are applied by intake directly, so its queue binds only what others decide.
INTAKE_TIMELINE = QueueSpec(
    "intake", "timeline",
    ("complaint.routed", "complaint.triage_required", "complaint.routing_suggested",
     "complaint.duplicate_suspected", "sla.clock_started", "sla.clock_stopped",
     "sla.warning", "sla.breached", "sla.reply_window_elapsed",
     "sla.escalated", "sla.deadline_changed", "sla.deferral_expired"),
)
ROUTING_SUBMITTED = QueueSpec("routing", "submitted", ("complaint.submitted",))
SLA_COMPLAINTS = QueueSpec(
    "sla", "complaints",
    ("complaint.submitted", "complaint.routed", "complaint.deferred", "complaint.resumed",
     "complaint.archived", "complaint.forwarded", "complaint.returned", "complaint.responded",
     "complaint.reporter_replied", "complaint.closed", "complaint.reopened",
     "complaint.reclassified", "complaint.withdrawn"),
)
# notify feeds webhook subscriptions, and a subscription may ask for any complaint.* or sla.*
# event (``*``, ``complaint.*``, ``sla.*`` or a name); the subscriptions' own filter
# (services/notify/subscriptions.py) picks what is delivered. Events carry no personal data
# (a pseudonymous reporter_ref at most), so none is withheld.
# - Bound always (declared with the topology): the alerting events.
# - Bound on demand (``NOTIFY_ON_DEMAND``): the events every complaint produces several times
#   over (submitted, three clock starts, the stops). notify binds each while an enabled
#   subscription asks for it and unbinds it when none does (services/notify/bindings.py), so
#   a system without such subscriptions does not pay a quorum-queue delivery per event.
# complaint.verified and complaint.rated are consumed by no other service (intake applies
# them itself; sla's verification clock stops at disposition, complaint.routed, and no clock
# depends on a rating), but a subscriber may want them.
NOTIFY_ALERTS = QueueSpec(
    "notify", "alerts",
    ("complaint.routed", "complaint.triage_required", "complaint.routing_suggested",
     "complaint.returned", "complaint.responded", "complaint.closed", "complaint.reopened",
     "complaint.duplicate_suspected", "sla.warning", "sla.breached",
     "complaint.deferred", "complaint.resumed", "complaint.archived", "complaint.forwarded",
     "complaint.reporter_replied", "sla.reply_window_elapsed", "complaint.verified",
     "complaint.rated", "complaint.reclassified", "complaint.withdrawn", "sla.escalated",
     "sla.deadline_changed", "sla.deferral_expired"),
)
NOTIFY_ON_DEMAND = ("complaint.submitted", "sla.clock_started", "sla.clock_stopped")
# Published, bound by no queue, on purpose: notify's own delivery reports. They are an audit
# trail on the exchange for an operator's tools; no service needs them, and binding them to
# notify would loop (a webhook about a webhook's delivery, reported again, …).
UNBOUND_EVENTS = ("notification.delivered", "notification.dead_lettered")
ALL_QUEUES: tuple[QueueSpec, ...] = (
    INTAKE_SUBMISSIONS, INTAKE_TIMELINE, ROUTING_SUBMITTED, SLA_COMPLAINTS, NOTIFY_ALERTS,
)
