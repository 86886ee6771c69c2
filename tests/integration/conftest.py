from __future__ import annotations

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
