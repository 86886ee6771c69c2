"""Broker handlers: thin adapters from a consumed event to a use case."""

from __future__ import annotations

import logging

from services.notify import usecases
from services.notify.dispatcher import Dispatcher
from shared.events import CloudEvent

log = logging.getLogger(__name__)


def make_alert_handler(runtime, dispatcher: Dispatcher):
    async def handle_alert(event: CloudEvent) -> None:
        await dispatcher.subscriptions_synced.wait()
        created = await usecases.accept_event(runtime.pool, event)
        if created:
            dispatcher.wake()
        log.log(logging.INFO if created else logging.DEBUG, "event matched subscriptions", extra={
            "event_id": event.id, "event_type": event.type, "complaint_id": event.subject,
            "deliveries": created})

    return handle_alert
