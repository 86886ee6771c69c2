"""What the report's routes and the gauge loop are given by intake's composition root
(``app.state.reports``)."""

from __future__ import annotations

from dataclasses import dataclass

from services.intake.reports.usecases import ReportUnitOfWork
from services.intake.reports.workdays import WorkCalendar
from shared.settings import Settings


@dataclass(frozen=True)
class ReportsConfig:
    target_on_time_rate: float
    refresh_s: float
    window_days: int
    region_name: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ReportsConfig:
        s = settings.intake
        return cls(target_on_time_rate=s.kinerja_target_on_time_rate,
                   refresh_s=s.kinerja_metrics_refresh_s, window_days=s.kinerja_window_days,
                   region_name=settings.region_name)


@dataclass(frozen=True)
class ReportsContext:
    uow: ReportUnitOfWork
    calendar: WorkCalendar
    cfg: ReportsConfig
