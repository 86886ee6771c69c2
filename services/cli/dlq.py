"""``sp4n dlq``: the dead-letter queue of every service's queue — count, browse, replay.

A queue may be named as ``dlq list`` prints it (``sp4n.routing.submitted.v1.dlq``) or as
its source queue, with or without the namespace (``routing.submitted.v1``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
import click
from aio_pika.abc import AbstractConnection

from services.cli.common import pass_settings, run_async
from shared.broker import broker_death
from shared.settings import Settings
from shared.topology import ALL_QUEUES, QueueSpec

SHOW_PAGE = 20


def resolve_queue(name: str, namespace: str) -> QueueSpec | None:
    """The queue spec an operator's name means; None if it names none."""
    base = name.removesuffix(".dlq")
    candidates = {base, f"{namespace}.{base}"}
    return next((spec for spec in ALL_QUEUES if spec.name(namespace) in candidates), None)


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    error: str | None
    body: str


@dataclass(frozen=True)
class Page:
    total: int  # messages in the queue when browsing began
    skipped: int
    messages: list[DeadLetter]


async def browse(conn: AbstractConnection, queue_name: str, *, skip: int = 0,
                 limit: int = SHOW_PAGE) -> Page:
    """Messages ``skip+1 … skip+limit`` of a queue, without changing the queue.

    Invariant: messages are taken with basic.get and never acknowledged. A taken, unacked
    message is not handed out again on the same channel, so each one is seen once and the
    walk ends at the end of the queue (bounded by the count read first, so messages arriving
    meanwhile do not extend it); closing the channel returns every taken message to the
    queue, in its original order. (Getting and then nack-requeueing each one hands the same
    head message back again: the loop this replaces.)"""
    async with conn.channel() as ch:
        queue = await ch.declare_queue(queue_name, passive=True)
        total = queue.declaration_result.message_count or 0
        shown: list[DeadLetter] = []
        for position in range(min(total, skip + limit)):
            msg = await queue.get(no_ack=False, fail=False)
            if msg is None:
                break
            if position >= skip:
                shown.append(DeadLetter(msg.message_id, death_reason(msg.headers or {}),
                                        msg.body.decode(errors="replace")[:500]))
    return Page(total, skip, shown)


async def replay(conn: AbstractConnection, spec: QueueSpec, namespace: str, *,
                 limit: int | None = None) -> int:
    """Send DLQ messages back to the queue they came from (through the default exchange),
    so only the consumer that failed sees them again; returns how many moved. Each is acked
    in the DLQ only after the broker confirmed the copy. At most the messages present when
    it began (a replayed message that fails again is not replayed twice in one run)."""
    target = spec.name(namespace)
    ch = await conn.channel(publisher_confirms=True)
    try:
        dlq = await ch.declare_queue(spec.dlq_name(namespace), passive=True)
        total = dlq.declaration_result.message_count or 0
        moved = 0
        while moved < (total if limit is None else min(limit, total)):
            msg = await dlq.get(fail=False, no_ack=False)
            if msg is None:
                break
            headers = {k: v for k, v in (msg.headers or {}).items()
                       if not k.startswith(("x-death", "x-first-death", "x-last-death"))}
            headers["x-sp4n-replayed"] = int(str(headers.get("x-sp4n-replayed", 0))) + 1
            await ch.default_exchange.publish(
                aio_pika.Message(msg.body, headers=headers, content_type=msg.content_type,
                                 message_id=msg.message_id,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=target)
            await msg.ack()
            moved += 1
        return moved
    finally:
        await ch.close()


def death_reason(headers: Mapping[str, Any]) -> str | None:
    """Why a message is in the DLQ: sp4n's own reason, else RabbitMQ's x-death record."""
    if headers.get("x-sp4n-error"):
        return str(headers["x-sp4n-error"])
    death = broker_death(headers)
    return None if death is None else (
        f"{death}; delivery limit reached (the handler kept failing: see the service's log)")


@click.group("dlq")
def dlq() -> None:
    """Dead-letter queues: list, show, replay.

    QUEUE is a name `dlq list` prints (sp4n.routing.submitted.v1.dlq) or its source queue
    (routing.submitted.v1)."""


@dlq.command("list")
@pass_settings
def dlq_list(settings: Settings) -> int:
    """Every DLQ and how many messages it holds; also each quarantine (messages the broker
    dead-lettered from a queue with personal data, which its service has not sealed yet)."""
    ns = settings.namespace

    async def go() -> int:
        conn = await aio_pika.connect(settings.amqp_url)
        try:
            for spec in ALL_QUEUES:
                names = [spec.dlq_name(ns)] + ([spec.quarantine_name(ns)] if spec.personal_data else [])
                for name in names:
                    async with conn.channel() as ch:
                        try:
                            q = await ch.declare_queue(name, passive=True)
                        except aio_pika.exceptions.ChannelClosed:
                            click.echo(f"{name:<55} (not declared yet)")
                            continue
                        click.echo(f"{name:<55} {q.declaration_result.message_count} messages")
            return 0
        finally:
            await conn.close()

    return run_async(go())


def _spec_or_exit(name: str, namespace: str) -> QueueSpec:
    spec = resolve_queue(name, namespace)
    if spec is None:
        click.echo(f"unknown queue {name}; one of: {', '.join(s.name(namespace) for s in ALL_QUEUES)}",
                   err=True)
        raise click.exceptions.Exit(2)
    return spec


@dlq.command("show", short_help="Browse a DLQ: each message once, the queue unchanged.")
@click.argument("queue")
@click.option("--limit", type=click.IntRange(min=1), default=SHOW_PAGE, show_default=True,
              help="messages per page")
@click.option("--skip", type=click.IntRange(min=0), default=0, show_default=True,
              help="start after this many (the next page: --skip LIMIT)")
@pass_settings
def dlq_show(settings: Settings, queue: str, limit: int, skip: int) -> int:
    """Browse QUEUE's DLQ: one JSON line per message (id, reason, body), each once.

    The queue is left exactly as it was; a summary and the next page's --skip go to stderr."""
    spec = _spec_or_exit(queue, settings.namespace)
    dlq_name = spec.dlq_name(settings.namespace)

    async def go() -> int:
        conn = await aio_pika.connect(settings.amqp_url)
        try:
            page = await browse(conn, dlq_name, skip=skip, limit=limit)
        except aio_pika.exceptions.ChannelClosed:
            click.echo(f"{dlq_name} is not declared yet (its service has not started)", err=True)
            return 1
        finally:
            await conn.close()
        for m in page.messages:
            click.echo(json.dumps({"message_id": m.message_id, "error": m.error, "body": m.body},
                                  ensure_ascii=False))
        end = page.skipped + len(page.messages)
        if not page.messages:
            click.echo(f"{dlq_name}: no messages after {page.skipped} of {page.total}", err=True)
        else:
            click.echo(f"{dlq_name}: messages {page.skipped + 1}–{end} of {page.total}"
                       + (f"; next page: --skip {end}" if end < page.total else ""), err=True)
        return 0

    return run_async(go())


@dlq.command("replay", short_help="Send a DLQ's messages back to the queue that failed them.")
@click.argument("queue")
@click.option("--limit", type=click.IntRange(min=1), help="replay at most this many (default: all)")
@pass_settings
def dlq_replay(settings: Settings, queue: str, limit: int | None) -> int:
    """Send QUEUE's dead letters back to the queue they failed on, oldest first.

    Only the consumer that failed sees them again (through the default exchange)."""
    spec = _spec_or_exit(queue, settings.namespace)
    ns = settings.namespace

    async def go() -> int:
        conn = await aio_pika.connect(settings.amqp_url)
        try:
            moved = await replay(conn, spec, ns, limit=limit)
        except aio_pika.exceptions.ChannelClosed:
            click.echo(f"{spec.dlq_name(ns)} is not declared yet (its service has not started)", err=True)
            return 1
        finally:
            await conn.close()
        click.echo(f"replayed {moved} messages from {spec.dlq_name(ns)} to {spec.name(ns)}")
        return 0

    return run_async(go())


COMMANDS = (dlq,)
