"""Composition root of the notify service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.notify.dispatcher import Dispatcher
from services.notify.handlers import make_alert_handler
from services.notify.metrics import NotifyMetrics
from services.notify.repository import NotifyRepository
from services.notify.subscriptions import load_file
from shared.service import ServiceRuntime
from shared.settings import Settings
from shared.topology import NOTIFY_ALERTS
from shared.uow import PgUnitOfWork

MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: Settings) -> FastAPI:
    # A bad subscriptions file stops the service here, before it consumes anything.
    file_subscriptions = (load_file(settings.notify_subscriptions_file)
                          if settings.notify_subscriptions_file else [])
    runtime = ServiceRuntime("notify", settings, MIGRATIONS,
                             title="sp4n notify — signed webhooks for complaint alerts")
    metrics = NotifyMetrics(runtime.registry)
    uow = PgUnitOfWork(lambda: runtime.pool, NotifyRepository)
    dispatcher = Dispatcher(settings, metrics, uow, file_subscriptions=file_subscriptions)
    runtime.consume(NOTIFY_ALERTS, make_alert_handler(uow, dispatcher))
    runtime.add_loop(dispatcher.deliver_webhooks)
    app = runtime.app
    app.state.runtime = runtime
    app.state.dispatcher = dispatcher
    app.state.metrics = metrics
    app.state.uow = uow
    return app
