"""``/kinerja``: the regency's numbers as a server-rendered page (Bahasa Indonesia) for the
admin koordinator, pimpinan and each OPD — sign-in with an API key, a session cookie, the
report model (``services.intake.reports``) underneath. ``routes`` is the module-level router;
``session`` signs the cookie; ``view`` and ``chart`` are pure."""

from __future__ import annotations

from shared.service import ServiceRuntime
from shared.settings import Settings


def install_web(runtime: ServiceRuntime, settings: Settings) -> None:
    """The page's routes on intake's app (``app.state.web``); needs ``install_reports`` first."""
    from services.intake.web.routes import WebContext, router
    from services.intake.web.session import Signer

    runtime.app.state.web = WebContext(signer=Signer(settings.intake.web_session_secret),
                                       session_ttl_s=settings.intake.web_session_ttl_s,
                                       tz=settings.tz, region_name=settings.region_name)
    runtime.app.include_router(router)
