"""intake's native routes imported alone, on a bare FastAPI app with the in-memory unit of
work: the HTTP shape (status codes, answers) without PostgreSQL or a broker. Error bodies
are ``errors.py``'s to shape; only their status codes are checked here."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from prometheus_client import CollectorRegistry

from services.intake.api import router
from services.intake.apikeys import SCOPES, ApiKey
from services.intake.context import IntakeContext
from services.intake.errors import install_error_handlers
from services.intake.lifecycle import State
from services.intake.metrics import IntakeMetrics
from services.intake.usecases import IntakeConfig
from tests.unit.intake_fakes import T0, FakeIntakeRepository, FakeIntakeUnitOfWork, complaint, disposed

KEYS = {
    "admin": ApiKey(1, "admin", "admin_koordinator", SCOPES["admin_koordinator"]),
    "dinkes": ApiKey(2, "pp-dinkes", "opd", SCOPES["opd"], opd_code="dinkes"),
    "portal": ApiKey(3, "portal", "portal", SCOPES["portal"], source="portal-sekadau"),
    "wa": ApiKey(4, "wa", "portal", SCOPES["portal"], source="wa-bot"),
}


class FakeAuthenticator:
    async def authenticate(self, _pool: object, request: Request) -> ApiKey:
        key = KEYS.get(request.headers.get("x-api-key", ""))
        if key is None:
            raise HTTPException(401)
        return key


def client_for(*complaints) -> tuple[httpx.AsyncClient, FakeIntakeUnitOfWork]:
    uow = FakeIntakeUnitOfWork(FakeIntakeRepository(*complaints))
    app = FastAPI()
    metrics = IntakeMetrics(CollectorRegistry())
    app.state.intake = IntakeContext(
        cfg=IntakeConfig(region_code="SKD", tz=ZoneInfo("Asia/Pontianak"), reporter_ref_key="k",
                         hop_cap=3),
        metrics=metrics, uow=uow, authenticator=FakeAuthenticator(), pool=lambda: None)
    install_error_handlers(app, metrics)
    app.include_router(router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t"), uow


async def test_status_by_tracking_id_shows_what_the_role_may_do():
    c = disposed()
    client, _ = client_for(c)
    async with client:
        r = await client.get(f"/v1/complaints/{c.tracking_id.lower()}", headers={"x-api-key": "dinkes"})
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "TERDISPOSISI" and body["allowed_actions"] == ["respond", "return"]
        assert "reporter" not in body  # none stored here: the key is left out, not null
        r = await client.get(f"/v1/complaints/{c.id}", headers={"x-api-key": "admin"})
        # issue 10: the admin koordinator may correct and pull back a disposed complaint
        assert r.json()["allowed_actions"] == ["reclassify", "withdraw"]


@pytest.mark.parametrize("key,code", [("wa", 404), ("dinkes", 403), ("portal", 200), (None, 401)])
async def test_who_may_read_a_complaint(key, code):
    c = complaint()  # from portal-sekadau, not disposed
    client, _ = client_for(c)
    async with client:
        r = await client.get(f"/v1/complaints/{c.id}", headers={"x-api-key": key} if key else {})
    assert r.status_code == code


async def test_an_action_and_its_refusals():
    c = complaint()
    client, uow = client_for(c)
    async with client:
        url = f"/v1/complaints/{c.id}"
        assert (await client.post(f"{url}/respond", json={"body": "x"},
                                  headers={"x-api-key": "dinkes"})).status_code == 403
        assert (await client.post(f"{url}/close", headers={"x-api-key": "admin"})).status_code == 409
        r = await client.post(f"{url}/dispose", json={"opd_code": "nope"}, headers={"x-api-key": "admin"})
        assert r.status_code == 422
        r = await client.post(f"{url}/verify", headers={"x-api-key": "admin"})  # no body: all optional
        assert r.status_code == 200
        assert r.json()["status"] == "TERVERIFIKASI" and r.json()["previous_status"] == "DITERIMA"
    assert uow.repo.complaints[c.id].status == State.TERVERIFIKASI
    assert [e.event_name for e in uow.committed_events] == ["complaint.verified"]


async def test_a_listing_is_scoped_to_the_key():
    mine = disposed(received_at=T0 + timedelta(hours=1))
    others = [complaint(), disposed(opd_code="dpupr"), complaint(source="wa-bot")]
    client, _ = client_for(mine, *others)
    async with client:
        r = await client.get("/v1/complaints", headers={"x-api-key": "dinkes"})
        assert [i["complaint_id"] for i in r.json()["items"]] == [str(mine.id)]
        assert (await client.get("/v1/complaints?opd=dpupr",
                                 headers={"x-api-key": "dinkes"})).status_code == 403
        r = await client.get("/v1/complaints", headers={"x-api-key": "portal"})
        assert r.json()["total"] == 3
        r = await client.get("/v1/complaints?limit=1", headers={"x-api-key": "admin"})
        assert r.json()["total"] == 4 and r.json()["items"][0]["complaint_id"] == str(mine.id)
