"""The functions the sp4n CLI calls, against real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.cli import migrations_of
from services.notify import admin, usecases
from services.notify.repository import NotifyRepository
from services.notify.signing import secret_key
from services.notify.targets import target_policy
from shared.connect import service_pool
from shared.events import CloudEvent, ComplaintRouted, make_event
from shared.settings import Settings
from shared.uow import PgUnitOfWork

pytestmark = pytest.mark.integration


def _routed(opd: str) -> CloudEvent:
    return make_event("sp4n/routing", ComplaintRouted(
        complaint_id=uuid.uuid4(), opd_code=opd, opd_name="Dinas Uji", hop=1,
        routed_at=datetime.now(UTC) - timedelta(seconds=5)))


async def test_subscription_lifecycle_and_removal_dead_letters_pending(settings: Settings) -> None:
    opd = f"OPD-{uuid.uuid4().hex[:8]}"
    name = f"cli-{opd.lower()}"
    async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
        uow = PgUnitOfWork(lambda: db, lambda tx: NotifyRepository(tx, admin.box_of(settings)))
        sub = await admin.add_subscription(db, name=name, url="http://127.0.0.1:9/never",
                                           event_types=["complaint.routed"], opd_codes=[opd],
                                           policy=target_policy(settings))
        assert len(secret_key(sub.secret)) == 32
        with pytest.raises(ValueError, match="already exists"):
            await admin.add_subscription(db, name=name, url="http://127.0.0.1/y", event_types=["sla.*"],
                                         policy=target_policy(settings))
        with pytest.raises(ValueError):
            await admin.add_subscription(db, name="bad", url="http://x/y", event_types=["nope nope"])
        assert name in [s.name for s in await admin.list_subscriptions(db)]

        assert await admin.set_subscription_enabled(db, name, False) is True
        # paused: nothing created (other modules' subscriptions in the shared schema may match)
        assert name not in await usecases.accept_event(uow, _routed(opd))
        assert await admin.set_subscription_enabled(db, name, True) is True
        assert await admin.set_subscription_enabled(db, "no-such-sub", True) is False

        event = _routed(opd)
        assert name in await usecases.accept_event(uow, event)
        stored = await db.fetchrow(
            "SELECT * FROM deliveries WHERE event_id = $1 AND subscription = $2", event.id, name)
        assert stored["status"] == "pending" and stored["attempts"] == 0
        assert json.loads(stored["body"]) == json.loads(event.model_dump_json())

        # replace=True updates in place (e.g. rotating the secret)
        rotated = await admin.add_subscription(db, name=name, url="http://127.0.0.1:9/never",
                                               event_types=["complaint.routed"], opd_codes=[opd],
                                               replace=True, policy=target_policy(settings))
        assert rotated.secret != sub.secret
        assert [s.secret for s in await admin.list_subscriptions(db) if s.name == name] == [rotated.secret]

        assert await admin.remove_subscription(db, name) is True
        assert await admin.remove_subscription(db, name) is False
        dead = await admin.list_dead_lettered(db, subscription=name)
        assert [(d.event_id, d.last_error) for d in dead] == [(event.id, "subscription removed")]
        staged = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE routing_key = 'notification.dead_lettered'"
            " AND payload->'data'->>'notified_event_id' = $1 AND payload->'data'->>'subscription' = $2",
            event.id, name)
        assert staged == 1
        with pytest.raises(ValueError, match="no longer exists"):
            await admin.replay_dead_lettered(db, dead[0].id)
        assert await admin.replay_dead_lettered(db, 10**12) is False
