"""Open311 GeoReport v2 facade of intake (XML and JSON), so existing GeoReport clients work unchanged.

Mounted at ``/open311/v2`` by intake's composition root. Submissions take the same path as
intake's native API (``submit_complaint``); reads come from intake's own tables; the service
list is intake's catalogue (``services/intake/catalog.json``, mirroring routing's seed).
"""

from __future__ import annotations

from services.intake.metrics import IntakeMetrics
from services.intake.open311.api import install_routes
from services.intake.usecases import IntakeConfig
from shared.service import ServiceRuntime


def install_open311(runtime: ServiceRuntime, cfg: IntakeConfig, metrics: IntakeMetrics) -> None:
    s = runtime.settings
    install_routes(runtime.app, cfg, metrics, region_name=s.region_name,
                   key_cache_ttl_s=s.intake.key_cache_ttl_s,
                   location_decimals=s.intake.public_location_decimals,
                   usage=runtime.app.state.intake.authenticator.usage,
                   max_body_bytes=s.intake.open311_max_body_bytes)


__all__ = ["install_open311"]
