"""intake's read model of the regency's numbers (issue 11): tingkat tindak lanjut, tingkat
penyelesaian and ketepatan waktu per OPD, as a report (API, CLI, web page) and as gauges.

Shape: ``model`` (the report's public dataclasses) → ``usecases`` (``kinerja_report``) →
``domain`` (pure: the definitions, the counting rule, medians) → ``repository`` (the SQL
over intake's own ``complaints``/``timeline``/``clocks``; nothing else to rebuild)."""

from __future__ import annotations

from shared.service import ServiceRuntime
from shared.settings import Settings
from shared.uow import PgUnitOfWork


def install_reports(runtime: ServiceRuntime, settings: Settings) -> None:
    """The report's route and the gauge loop on intake's runtime (``app.state.reports``)."""
    from services.intake.reports.api import router
    from services.intake.reports.context import ReportsConfig, ReportsContext
    from services.intake.reports.metrics import KinerjaMetrics, gauge_loop
    from services.intake.reports.repository import ReportRepository
    from services.intake.reports.workdays import WorkCalendar

    cfg = ReportsConfig.from_settings(settings)
    ctx = ReportsContext(uow=PgUnitOfWork(lambda: runtime.pool, ReportRepository),
                         calendar=WorkCalendar(settings.tz), cfg=cfg)
    runtime.app.state.reports = ctx
    runtime.app.include_router(router)
    runtime.add_loop(gauge_loop(ctx, KinerjaMetrics(runtime.registry, cfg.window_days)))
