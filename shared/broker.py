"""Broker plumbing: the broker factory, topology declaration, event publishing and the
consumer wrapper that turns a bad message into a DLQ entry with its reason.

Acknowledgement policy: a handler that raises is nacked with requeue, so transient faults
(database restart) are retried; the quorum queue's delivery limit then dead-letters a
message that keeps failing. A message that can never succeed (malformed, invalid) raises
``PoisonMessage`` and is copied to the DLQ at once with the reason in its headers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import aio_pika
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from shared.events import CloudEvent
from shared.settings import Settings
from shared.topology import (
    ALL_QUEUES,
    QueueSpec,
    dead_letter_exchange,
    events_exchange,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
CE_CONTENT_TYPE = "application/cloudevents+json"


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


async def declare_topology(channel: aio_pika.abc.AbstractChannel, ns: str, delivery_limit: int) -> None:
    """Declare every exchange, queue, binding and DLQ of the product (idempotent).

    Every process declares the whole topology, not only its own queues, so an event
    published before its consumer first started is still queued, never dropped.
    """
    for spec in ALL_QUEUES:
        await declare_queue(channel, ns, spec, delivery_limit)


async def declare_queue(channel: aio_pika.abc.AbstractChannel, ns: str, spec: QueueSpec,
                        delivery_limit: int) -> None:
    """Declare one spec's exchanges, quorum queue, bindings and DLQ (idempotent)."""
    source = spec.exchange(ns)
    exchange = await channel.declare_exchange(
        source.name, aio_pika.ExchangeType(source.type.value), durable=True)
    ex_dlx = await channel.declare_exchange(
        dead_letter_exchange(ns).name, aio_pika.ExchangeType.DIRECT, durable=True)
    rq = spec.queue(ns, delivery_limit, spec.routing_keys[0])
    q = await channel.declare_queue(rq.name, durable=True, arguments=rq.arguments)
    for key in spec.routing_keys:
        await q.bind(exchange, routing_key=key)
    dlq = await channel.declare_queue(spec.dlq_name(ns), durable=True)
    await dlq.bind(ex_dlx, routing_key=spec.name(ns))


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
              handle: Callable[[CloudEvent], Awaitable[None]]) -> Any: ...
@overload
def subscribe(broker: RabbitBroker, settings: Settings, spec: QueueSpec,
              handle: Callable[[T], Awaitable[None]], parse: Callable[[bytes], T]) -> Any: ...
@overload
def subscribe(broker: RabbitBroker, settings: Settings, spec: QueueSpec,
              handle: Callable[[T], Awaitable[None]], *,
              parse_sent: Callable[[bytes, str | None], T]) -> Any: ...


def subscribe(
    broker: RabbitBroker,
    settings: Settings,
    spec: QueueSpec,
    handle: Callable[[Any], Awaitable[None]],
    parse: Callable[[bytes], Any] = parse_cloud_event,
    *,
    parse_sent: Callable[[bytes, str | None], Any] | None = None,
) -> Any:
    """Attach ``handle`` to the spec's queue; ``parse`` turns the body into its argument
    (a ``CloudEvent`` unless another parser is given). ``parse_sent``, when given, gets the
    body and the message's ``user_id`` instead: RabbitMQ refuses a ``user_id`` that is not
    the publishing connection's user, so it names the sender reliably."""
    ns = settings.namespace
    # Without auto-migration the queue, its bindings and exchanges exist already (declared
    # by ``sp4n migrate``); the subscriber then only checks its queue passively, which
    # needs no configure permission on anything.
    queue = spec.queue(ns, settings.delivery_limit, spec.routing_keys[0],
                       declare=settings.migrates_at_startup)

    @broker.subscriber(queue, spec.exchange(ns), ack_policy=AckPolicy.NACK_ON_ERROR,
                       decoder=_raw_message, title=spec.name(ns),
                       description=f"{spec.service} consumes {', '.join(spec.routing_keys)}")
    async def _consume(msg: RabbitMessage) -> None:
        try:
            if parse_sent is not None:
                await handle(parse_sent(msg.body, msg.raw_message.user_id))
            else:
                await handle(parse(msg.body))
        except PoisonMessage as exc:
            await dead_letter(broker, ns, spec, msg, str(exc), body=exc.dlq_body)

    return _consume


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
        routing_key=spec.name(ns),
        persist=True,
        headers=headers,
        message_id=msg.message_id,
        content_type=msg.content_type if body is None else "application/json",
    )
