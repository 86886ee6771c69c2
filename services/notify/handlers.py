"""Broker handlers: thin adapters from a consumed event to a use case."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from services.notify import usecases
from services.notify.dispatcher import Dispatcher
from shared.events import CloudEvent

log = logging.getLogger(__name__)


def make_alert_handler(uow: usecases.NotifyUnitOfWork,
                       dispatcher: Dispatcher) -> Callable[[CloudEvent], Awaitable[None]]:
    async def handle_alert(event: CloudEvent) -> None:
        await dispatcher.subscriptions_synced.wait()
        created = await usecases.accept_event(uow, event)
        if created:
            dispatcher.wake()
        log.log(logging.INFO if created else logging.DEBUG, "event matched subscriptions", extra={
            "event_id": event.id, "event_type": event.type, "complaint_id": event.subject,
            "deliveries": created})

    return handle_alert
