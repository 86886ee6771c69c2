"""Broker plumbing: the broker factory, topology declaration, event publishing and the
consumer wrapper that turns a bad message into a DLQ entry with its reason.

What happens to a message whose handler raises (``shared.failures.classify``):
- **permanent** (``PoisonMessage``, invalid data, a bug): copied to the queue's DLQ at once
  with the reason in its headers, then acked.
- **transient** (database or broker unavailable, timeout, serialization failure, deadlock):
  a copy is published persistently, with confirms, to the queue's next delayed-retry queue
  (``QueueSpec.retry_queue``) with its attempt count in ``x-sp4n-attempt``, then the original
  is acked; after the step's delay the copy is dead-lettered back into the queue. A crash
  between the publish and the ack delivers the message twice, which the inbox deduplicates.
  Retries therefore survive restarts and do not use up the quorum delivery limit, which is
  left as the last resort for a message whose copy cannot be published (nacked, requeued).
- **returned** (delivered before, never acknowledged: its consumer lost its link, was paused
  or killed while holding it): the quorum queue counts each return in ``x-delivery-count``
  and dead-letters the message past the queue's delivery limit — a few link faults in a row
  would do that to messages that never failed at all. So a message that arrives with
  ``retry.refresh_after_returns`` returns is not handled but given back as a fresh copy
  through its first retry step (delivery count 0), the returns so far added up in
  ``x-sp4n-returns``; only past ``retry.max_returns`` in total (a message that kills every
  consumer that takes it) does it go to the DLQ, with that reason.

A message past its queue's delivery limit (its consumer crashed, was killed or nacked it
again and again) is dead-lettered by the broker itself, body and headers as they were: into
the DLQ, or for a queue whose bodies may hold personal data into its quarantine
(``shared.topology``), where ``subscribe_quarantine`` has the service seal the body and
dead-letter only what it returns in its stead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

import aio_pika
import aiormq
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from faststream.rabbit.subscriber import RabbitSubscriber
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from shared.events import CloudEvent
from shared.failures import Failure, classify
from shared.settings import Settings
from shared.topology import (
    ALL_QUEUES,
    QueueSpec,
    dead_letter_exchange,
    events_exchange,
    retry_exchange,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
CE_CONTENT_TYPE = "application/cloudevents+json"
# How many transient failures a message has had (set on each retry copy).
ATTEMPT_HEADER = "x-sp4n-attempt"
# Set by quorum queues on a redelivered message: how often it was returned unacknowledged.
DELIVERY_COUNT_HEADER = "x-delivery-count"
# The returns of a message's earlier copies (``DELIVERY_COUNT_HEADER`` of each refreshed copy).
RETURNS_HEADER = "x-sp4n-returns"
# The sender (``Sent.user_id``) of the message a retry copy stands for: the copy is published
# by the consumer's own user, which RabbitMQ would refuse as another ``user_id``.
SENDER_HEADER = "x-sp4n-sender"
# What became of a failed message: a retry copy or a DLQ copy was published, or neither could
# be (the broker is away) and the message is nacked back into its queue.
Outcome = Literal["retried", "dead_lettered", "requeued"]
# Told about every failed message: the queue, the classified failure and what was done.
FailureObserver = Callable[[QueueSpec, Failure, Outcome], None]


@dataclass(frozen=True)
class Sent:
    """A message's body and who sent it, as far as the broker vouches for it.

    ``exchange`` is the one the message was published to. The default exchange (``""``)
    means it did not come from a publisher of the queue's own exchange: the broker put it
    back from a retry step, or an operator replayed it (``sp4n dlq replay``), i.e. a user
    with write permission on ``amq.default``, which no portal and no service has.
    ``user_id`` is the publishing connection's user (RabbitMQ refuses any other); on a
    message back from a retry step, the one the retry copy recorded (``SENDER_HEADER``)."""

    body: bytes
    user_id: str | None
    exchange: str

    @property
    def internal(self) -> bool:
        return self.exchange == ""


def sent_of(raw: aio_pika.abc.AbstractIncomingMessage) -> Sent:
    return _sent(raw.body, raw.user_id, raw.exchange or "", raw.headers or {})


def quarantined_sent(raw: aio_pika.abc.AbstractIncomingMessage) -> Sent:
    """``Sent`` of a message the broker dead-lettered, as it was when it entered its queue:
    the latest ``x-death`` record names the exchange it had come through."""
    headers = raw.headers or {}
    death = latest_death(headers)
    exchange = _text(death.get("exchange") or "") if death is not None else raw.exchange or ""
    return _sent(raw.body, raw.user_id, exchange, headers)


def latest_death(headers: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The broker's latest dead-lettering record of a message (``x-death``, newest first)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return None


def _sent(body: bytes, user_id: str | None, exchange: str, headers: Mapping[str, Any]) -> Sent:
    if user_id is None and exchange == "":
        recorded = headers.get(SENDER_HEADER)
        user_id = _text(recorded) if recorded else None
    return Sent(body, user_id, exchange)


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class PoisonMessage(Exception):
    """A message that no retry can make valid; it goes to the DLQ with this reason.

    ``dlq_body``: what the DLQ gets instead of the message (e.g. a reference to where the
    service keeps it encrypted); then none of the original's headers is copied either."""

    def __init__(self, reason: str, *, dlq_body: bytes | None = None) -> None:
        super().__init__(reason)
        self.dlq_body = dlq_body


def make_broker(settings: Settings, registry: CollectorRegistry, app_name: str) -> RabbitBroker:
    # apply_types=False: handlers take the raw message (see ``subscribe``); FastDepends'
    # per-message injection cost ~40% of a consumer's CPU on a small machine.
    return RabbitBroker(
        settings.amqp_url,
        default_channel=Channel(
            prefetch_count=settings.prefetch_count,
            publisher_confirms=True,
        ),
        graceful_timeout=settings.graceful_timeout_s,
        middlewares=[RabbitPrometheusMiddleware(registry=registry, app_name=app_name)],
        logger=logging.getLogger(f"sp4n.{app_name}.broker"),
        log_level=logging.DEBUG,
        apply_types=False,
    )


async def declare_topology(channel: aio_pika.abc.AbstractChannel, ns: str, delivery_limit: int,
                           retry_delays_s: tuple[float, ...] = ()) -> None:
    """Declare every exchange, queue, binding and DLQ of the product (idempotent), and with
    ``retry_delays_s`` every queue's delayed-retry queues (``sp4n migrate`` does: in
    production no service may configure them itself).

    Every process declares the whole topology, not only its own queues, so an event
    published before its consumer first started is still queued, never dropped.
    """
    for spec in ALL_QUEUES:
        await declare_queue(channel, ns, spec, delivery_limit)
        if retry_delays_s:
            await declare_retry_queues(channel, ns, spec, retry_delays_s)


async def declare_queue(channel: aio_pika.abc.AbstractChannel, ns: str, spec: QueueSpec,
                        delivery_limit: int) -> None:
    """Declare one spec's exchanges, quorum queue, bindings and DLQ (idempotent)."""
    source = spec.exchange(ns)
    exchange = await channel.declare_exchange(
        source.name, aio_pika.ExchangeType(source.type.value), durable=True)
    ex_dlx = await channel.declare_exchange(
        dead_letter_exchange(ns).name, aio_pika.ExchangeType.DIRECT, durable=True)
    rq = spec.queue(ns, delivery_limit, spec.routing_keys[0])
    try:
        q = await channel.declare_queue(rq.name, durable=True, arguments=rq.arguments)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        # The queue exists with other arguments (declared by an older release, e.g. with
        # another delivery limit): RabbitMQ cannot change them, and the queue holds messages.
        # It is used as it is; the warning says what differs.
        log.warning("queue %s exists with other arguments than this release declares (%s); "
                    "using it as it is", rq.name, str(exc)[:300])
        await channel.reopen()  # the refusal closed the channel
        q = await channel.declare_queue(rq.name, passive=True)
    for key in spec.routing_keys:
        await q.bind(exchange, routing_key=key)
    dlq = await channel.declare_queue(spec.dlq_name(ns), durable=True)
    if spec.personal_data:
        # Quarantine bound first, then the DLQ's old binding by the queue's name (from before
        # the quarantine) removed: the broker's dead-letters are routable all along.
        quarantine = await channel.declare_queue(spec.quarantine_name(ns), durable=True)
        await quarantine.bind(ex_dlx, routing_key=spec.name(ns))
        await dlq.unbind(ex_dlx, routing_key=spec.name(ns))
    await dlq.bind(ex_dlx, routing_key=spec.dlq_routing_key(ns))


async def declare_retry_queues(channel: aio_pika.abc.AbstractChannel, ns: str, spec: QueueSpec,
                               delays_s: tuple[float, ...]) -> None:
    """Declare the retry exchange and the spec's delayed-retry queues (idempotent). Only
    the consuming service declares them: nothing else publishes there."""
    ex = retry_exchange(ns)
    exchange = await channel.declare_exchange(ex.name, aio_pika.ExchangeType.DIRECT, durable=True)
    for delay in dict.fromkeys(delays_s):
        rq = spec.retry_queue(ns, delay)
        q = await channel.declare_queue(rq.name, durable=True, arguments=rq.arguments)
        await q.bind(exchange, routing_key=rq.name)


async def publish_event(broker: RabbitBroker, ns: str, event: CloudEvent) -> None:
    """Publish persistently; returns once the broker confirmed it."""
    await broker.publish(
        event.model_dump_json().encode(),
        exchange=events_exchange(ns),
        routing_key=event.event_name,
        persist=True,
        message_id=event.id,
        content_type=CE_CONTENT_TYPE,
    )


def parse_cloud_event(body: bytes) -> CloudEvent:
    try:
        event = CloudEvent.model_validate_json(body)
        event.parse_data()
    except (ValidationError, KeyError, ValueError) as exc:
        raise PoisonMessage(f"not a valid sp4n CloudEvent: {exc}") from exc
    return event


@overload
def subscribe(broker: RabbitBroker, settings: Settings, spec: QueueSpec,
              handle: Callable[[CloudEvent], Awaitable[None]], *,
              observe: FailureObserver | None = None) -> RabbitSubscriber: ...
@overload
def subscribe(broker: RabbitBroker, settings: Settings, spec: QueueSpec,
              handle: Callable[[T], Awaitable[None]], parse: Callable[[bytes], T], *,
              observe: FailureObserver | None = None) -> RabbitSubscriber: ...
@overload
def subscribe(broker: RabbitBroker, settings: Settings, spec: QueueSpec,
              handle: Callable[[T], Awaitable[None]], *,
              parse_sent: Callable[[Sent], T],
              observe: FailureObserver | None = None) -> RabbitSubscriber: ...


def subscribe(
    broker: RabbitBroker,
    settings: Settings,
    spec: QueueSpec,
    handle: Callable[[Any], Awaitable[None]],
    parse: Callable[[bytes], Any] = parse_cloud_event,
    *,
    parse_sent: Callable[[Sent], Any] | None = None,
    observe: FailureObserver | None = None,
) -> RabbitSubscriber:
    """Attach ``handle`` to the spec's queue; ``parse`` turns the body into its argument
    (a ``CloudEvent`` unless another parser is given). ``parse_sent``, when given, gets the
    body with its sender instead (``Sent``). A failure is
    dead-lettered or retried (module docstring) and reported to ``observe``. The retry
    queues must be declared (``declare_retry_queues``). Each subscriber has a channel of its
    own, so it can be paused alone (``shared.pause``)."""
    ns = settings.namespace
    # The queue, its bindings and exchanges exist before the subscriber starts: declared by
    # ``sp4n migrate``, or by the runtime (``declare_topology``) when it migrates at startup.
    # The subscriber only checks its queue passively, which needs no configure permission,
    # and accepts a queue an older release declared with other arguments (``declare_queue``).
    queue = spec.queue(ns, settings.delivery_limit, spec.routing_keys[0], declare=False)
    subscriber = broker.subscriber(
        queue, spec.exchange(ns), ack_policy=AckPolicy.NACK_ON_ERROR,
        channel=Channel(prefetch_count=settings.prefetch_count), decoder=_raw_message,
        title=spec.name(ns), description=f"{spec.service} consumes {', '.join(spec.routing_keys)}")

    @subscriber
    async def _consume(msg: RabbitMessage) -> None:
        if _header_int(msg, DELIVERY_COUNT_HEADER) >= settings.retry.refresh_after_returns:
            await refresh_returned(broker, settings, spec, msg, observe)
            return
        try:
            if parse_sent is not None:
                await handle(parse_sent(sent_of(msg.raw_message)))
            else:
                await handle(parse(msg.body))
        except Exception as exc:  # noqa: BLE001 - every failure is classified and handled
            await handle_failure(broker, settings, spec, msg, exc, observe)

    return subscriber


async def handle_failure(broker: RabbitBroker, settings: Settings, spec: QueueSpec,
                         msg: RabbitMessage, exc: Exception, observe: FailureObserver | None) -> None:
    """Dead-letter a permanent failure, schedule a retry of a transient one (the caller
    acks the message afterwards); raises when the copy could not be published."""
    ns = settings.namespace
    failure = classify(exc)
    outcome: Outcome = "requeued"  # unless the copy below is published
    try:
        if not failure.transient:
            reason = str(exc) if isinstance(exc, PoisonMessage) else failure.reason
            if not isinstance(exc, PoisonMessage):
                log.error("handler failed permanently on %s", spec.name(ns), exc_info=exc)
            # A poison message may stand in a replacement body (no personal data) for its own.
            body = exc.dlq_body if isinstance(exc, PoisonMessage) else None
            await dead_letter(broker, ns, spec, msg, reason, body=body)
            outcome = "dead_lettered"
            return
        attempt = _attempt(msg) + 1
        limit = settings.retry.max_attempts
        if limit and attempt >= limit:
            await dead_letter(broker, ns, spec, msg,
                              f"still failing after {attempt} transient failures: {failure.reason}")
            outcome = "dead_lettered"
        else:
            await schedule_retry(broker, ns, spec, msg, attempt, settings.retry.delays_s,
                                 failure.reason)
            outcome = "retried"
    finally:
        if observe is not None:
            observe(spec, failure, outcome)


def _attempt(msg: RabbitMessage) -> int:
    return _header_int(msg, ATTEMPT_HEADER)


def _header_int(msg: RabbitMessage, name: str) -> int:
    try:
        return int((msg.headers or {}).get(name, 0))
    except (TypeError, ValueError):
        return 0


async def refresh_returned(broker: RabbitBroker, settings: Settings, spec: QueueSpec,
                           msg: RabbitMessage, observe: FailureObserver | None) -> None:
    """A message returned unacknowledged ``x-delivery-count`` times: give it back as a fresh
    copy (through the first retry step) before the queue's delivery limit dead-letters it, or
    to the DLQ (a queue with personal data: its quarantine) once its returns add up to
    ``retry.max_returns`` (module docstring). The caller acks the original; raises (the
    message is requeued) when the copy was not taken."""
    ns = settings.namespace
    returns = _header_int(msg, RETURNS_HEADER) + _header_int(msg, DELIVERY_COUNT_HEADER)
    reason = (f"returned unacknowledged {returns} times (its consumer lost its link, was "
              f"paused or died while holding it)")
    failure = Failure(True, reason)
    outcome: Outcome = "requeued"
    try:
        if returns >= settings.retry.max_returns and spec.personal_data:
            # Its body must not reach the DLQ: rejected, the broker dead-letters it into the
            # quarantine, which the service seals (``subscribe_quarantine``).
            log.warning("message on %s %s: rejected into its quarantine", spec.name(ns), reason)
            await msg.reject(requeue=False)
            outcome = "dead_lettered"
        elif returns >= settings.retry.max_returns:
            await dead_letter(broker, ns, spec, msg, f"{reason}: a message that may kill "
                              f"its consumer; check the services' logs before replaying it")
            outcome = "dead_lettered"
        else:
            log.info("message on %s %s; handing it back as a fresh copy", spec.name(ns), reason)
            await schedule_retry(broker, ns, spec, msg, _attempt(msg), settings.retry.delays_s,
                                 reason, returns=returns)
            outcome = "retried"
    finally:
        if observe is not None:
            observe(spec, failure, outcome)


def retry_delay(attempt: int, delays_s: tuple[float, ...]) -> float:
    """The delay before the ``attempt``-th retry (1-based): its step, else the last one."""
    return delays_s[min(attempt, len(delays_s)) - 1]


async def schedule_retry(broker: RabbitBroker, ns: str, spec: QueueSpec, msg: RabbitMessage,
                         attempt: int, delays_s: tuple[float, ...], reason: str, *,
                         returns: int | None = None) -> None:
    """Publish the message's copy to its retry step (persistent, confirmed, mandatory); the
    caller then acks the original. Raises when the broker did not take the copy.
    ``returns``: a returned message's refresh (``refresh_returned``): its attempt count
    unchanged (0, i.e. the first step, for one that never failed), the returns so far
    recorded. A transient failure's ``attempt`` is always at least 1."""
    delay = retry_delay(max(attempt, 1), delays_s)
    if returns is None:
        log.warning("transient failure on %s (attempt %d); retrying in %gs: %s",
                    spec.name(ns), attempt, delay, reason[:500])
    headers = dict(msg.headers or {})
    # The copy is a new message to the queue: the broker's count of the original's returns
    # must not come with it (it would read as returns of the copy).
    headers.pop(DELIVERY_COUNT_HEADER, None)
    if returns is not None:
        headers[RETURNS_HEADER] = returns
    headers[ATTEMPT_HEADER] = attempt
    # Always set or removed here, so a publisher cannot name a sender of its choosing.
    sender = sent_of(msg.raw_message).user_id
    if sender is None:
        headers.pop(SENDER_HEADER, None)
    else:
        headers[SENDER_HEADER] = sender
    headers["x-sp4n-error"] = reason[:2000]
    headers["x-sp4n-original-queue"] = spec.name(ns)
    confirmation = await broker.publish(
        msg.body,
        exchange=retry_exchange(ns),
        routing_key=spec.retry_name(ns, delay),
        mandatory=True,
        persist=True,
        headers=headers,
        # A returned (unroutable) message is matched to its confirmation by message id.
        message_id=msg.message_id or uuid.uuid4().hex,
        correlation_id=msg.correlation_id,
        content_type=msg.content_type,
    )
    if not isinstance(confirmation, aiormq.spec.Basic.Ack):
        raise RuntimeError(f"retry queue {spec.retry_name(ns, delay)} did not take the message")


def broker_death(headers: Mapping[str, Any]) -> str | None:
    """Why the broker itself dead-lettered a message, from its latest ``x-death`` record (and
    ``x-delivery-count`` when set); None if the broker never did. Names, counts only."""
    d = latest_death(headers)
    if d is None:
        return None
    text = (f"{_text(d.get('reason'))} on {_text(d.get('queue'))}, "
            f"dead-lettered {d.get('count')} time(s) by the broker")
    delivered = headers.get(DELIVERY_COUNT_HEADER)
    return text if delivered is None else f"{text}, x-delivery-count {delivered}"


# Keeps a quarantined message's body (with its sender, for a replay) where the service keeps
# such data, given the reason; returns what the DLQ gets in its stead.
Seal = Callable[[Sent, str], Awaitable[bytes]]


def subscribe_quarantine(broker: RabbitBroker, settings: Settings, spec: QueueSpec, seal: Seal, *,
                         observe: FailureObserver | None = None) -> RabbitSubscriber:
    """Consume the quarantine of a queue whose bodies may hold personal data: the messages the
    broker dead-lettered as they were (``shared.topology``). Each is sealed (``seal``), its
    stand-in is dead-lettered (confirmed), and only then it is acked.

    Invariant: neither the body nor any of the original headers reaches the DLQ. A failure
    (the database unreachable, the broker away, anything) puts the message back in the
    quarantine after ``retry.probe_initial_s``, never into the DLQ as it was, and is
    reported to ``observe`` (so the consumers pause while the database is unreachable): the
    quarantine has no delivery limit, so the message waits there until it can be sealed."""
    ns = settings.namespace
    subscriber = broker.subscriber(
        spec.quarantine(ns, declare=settings.migrates_at_startup), dead_letter_exchange(ns),
        ack_policy=AckPolicy.MANUAL, channel=Channel(prefetch_count=settings.prefetch_count),
        decoder=_raw_message, title=spec.quarantine_name(ns),
        description=f"{spec.service} seals what the broker dead-lettered from {spec.name(ns)}")

    @subscriber
    async def _seal(msg: RabbitMessage) -> None:
        death = broker_death(msg.headers or {}) or "dead-lettered by the broker"
        reason = f"delivery limit reached (its consumer kept failing or crashing): {death}"
        try:
            stand_in = await seal(quarantined_sent(msg.raw_message), reason)
            await dead_letter(broker, ns, spec, msg, reason, body=stand_in)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the message stays quarantined
            failure = classify(exc)
            log.error("sealing a quarantined message of %s failed, requeued: %s",
                      spec.name(ns), failure.reason)
            if observe is not None:
                observe(spec, failure, "requeued")
            await asyncio.sleep(settings.retry.probe_initial_s)  # no hot loop while it lasts
            await msg.nack(requeue=True)
            return
        await msg.ack()

    return subscriber


async def _raw_message(msg: RabbitMessage) -> RabbitMessage:
    """Decoder that hands the handler the message itself; ``parse`` reads its body."""
    return msg


async def dead_letter(broker: RabbitBroker, ns: str, spec: QueueSpec, msg: RabbitMessage,
                      reason: str, body: bytes | None = None) -> None:
    """Copy the original message (or ``body`` in its stead, without the original's headers)
    to the spec's DLQ with the reason; the caller then acks it."""
    log.warning("dead-lettered message on %s: %s", spec.name(ns), reason[:500])
    headers = dict(msg.headers or {}) if body is None else {}
    headers["x-sp4n-error"] = reason[:2000]
    headers["x-sp4n-original-queue"] = spec.name(ns)
    await broker.publish(
        msg.body if body is None else body,
        exchange=dead_letter_exchange(ns),
        routing_key=spec.dlq_routing_key(ns),
        persist=True,
        headers=headers,
        message_id=msg.message_id,
        content_type=msg.content_type if body is None else "application/json",
    )
