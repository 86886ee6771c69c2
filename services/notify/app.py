"""Composition root of the notify service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.notify.bindings import BindingKeeper
from services.notify.dispatcher import Dispatcher
from services.notify.handlers import make_alert_handler
from services.notify.metrics import NotifyMetrics
from services.notify.repository import NotifyRepository, prune_delivered, prune_delivery_attempts
from services.notify.secretbox import SecretBox
from services.notify.subscriptions import Subscription, load_file
from services.notify.targets import TargetRefused, target_policy
from services.notify.usecases import NotifyUnitOfWork
from shared.retention import days
from shared.service import ServiceRuntime
from shared.settings import Settings
from shared.topology import NOTIFY_ALERTS, events_exchange
from shared.uow import PgUnitOfWork

MIGRATIONS = Path(__file__).parent / "migrations"


async def _keep_bindings(runtime: ServiceRuntime) -> None:
    """The on-demand bindings follow the enabled subscriptions (``bindings``)."""
    uow: NotifyUnitOfWork = runtime.app.state.uow

    async def enabled_subscriptions() -> list[Subscription]:
        async with uow(single_statement=True) as tx:
            return await tx.repo.fetch_subscriptions(enabled_only=True)

    ns = runtime.settings.namespace
    keeper = BindingKeeper(NOTIFY_ALERTS.name(ns), events_exchange(ns).name, enabled_subscriptions,
                           runtime.admin_channel)
    runtime.app.state.bindings = keeper
    await keeper.run(runtime.settings.notify.bindings_refresh_s)


def build_app(settings: Settings) -> FastAPI:
    # A bad subscriptions file stops the service here, before it consumes anything.
    file_subscriptions = (load_file(settings.notify_subscriptions_file)
                          if settings.notify_subscriptions_file else [])
    policy = target_policy(settings)
    for sub in file_subscriptions:
        try:
            policy.check_literal(sub.url)
        except TargetRefused as exc:
            raise ValueError(f"{settings.notify_subscriptions_file}: subscription {sub.name!r}:"
                             f" {exc}") from exc
    box = SecretBox(settings.notify.secrets_key)
    runtime = ServiceRuntime("notify", settings, MIGRATIONS,
                             title="sp4n notify — signed webhooks for complaint alerts")
    metrics = NotifyMetrics(runtime.registry)
    uow = PgUnitOfWork(lambda: runtime.pool, lambda tx: NotifyRepository(tx, box))
    dispatcher = Dispatcher(settings, metrics, uow, file_subscriptions=file_subscriptions)
    runtime.consume(NOTIFY_ALERTS, make_alert_handler(uow, dispatcher))
    runtime.add_loop(dispatcher.deliver_webhooks)
    runtime.add_check("listen", dispatcher.listen_state)
    runtime.add_loop(_keep_bindings)
    keep = settings.retention
    # Attempts first: deleting their delivery would take them along uncounted.
    runtime.retention.add("delivery_attempts", lambda pool, limit: prune_delivery_attempts(
        pool, delivered_older_than=days(keep.notify_delivered_days),
        dead_lettered_older_than=days(keep.notify_dead_lettered_attempts_days), limit=limit))
    runtime.retention.add("deliveries", lambda pool, limit: prune_delivered(
        pool, older_than=days(keep.notify_delivered_days), limit=limit))
    app = runtime.app
    app.state.runtime = runtime
    app.state.dispatcher = dispatcher
    app.state.metrics = metrics
    app.state.uow = uow
    return app
