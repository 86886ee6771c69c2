from __future__ import annotations

import json

import asyncpg
import httpx
import pytest

from services.intake.app import build_app


@pytest.fixture(scope="module")
async def intake(settings):
    """intake running in process (its lifespan: migrations, broker, relay) and an HTTP client."""
    app = build_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://intake") as client:
        yield app, client


@pytest.fixture
async def db(settings):
    """A connection on intake's schema (jsonb decoded), for asserting on what intake stored."""
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    yield conn
    await conn.close()
