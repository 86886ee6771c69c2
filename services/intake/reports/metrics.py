"""Per-OPD gauges computed from the read model by a periodic loop, so every replica reports
the same values (dashboards take ``max by (opd)`` across replicas). Labels: the OPD code only,
never a complaint id.

- open and open overdue: every complaint an OPD holds now, whenever it was disposed;
- the counts behind the three rates and the rates themselves, over the rolling window
  (``SP4N_INTAKE__KINERJA_WINDOW_DAYS``, 30, by disposition date, ``attribution=event``),
  so a regency-wide rate is ``sum(numerator) / sum(denominator)``;
- the working-day durations' median and p90 (``quantile`` label)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Gauge

from services.intake.domain.complaint import Actor
from services.intake.reports.context import ReportsContext
from services.intake.reports.model import NO_GROUP, KinerjaReport, ReportQuery
from services.intake.reports.usecases import kinerja_report
from shared.service import Loop, ServiceRuntime

log = logging.getLogger(__name__)
SYSTEM = Actor("admin_koordinator")

COUNTS = {  # gauge suffix → ReportRow field
    "disposed": "disposed", "followed_up": "followed_up", "completed": "completed",
    "response_on_time": "response_on_time", "completed_on_time": "completed_on_time",
    "open_overdue": "open_overdue",
}
RATIOS = {
    "follow_up_ratio": "follow_up_rate", "completion_ratio": "completion_rate",
    "response_on_time_ratio": "response_on_time_rate",
    "completion_on_time_ratio": "completion_on_time_rate",
}
STAGES = {"disposition": "days_to_disposition", "first_response": "days_to_first_response",
          "final_response": "days_to_final_response"}


class KinerjaMetrics:
    def __init__(self, registry: CollectorRegistry, window_days: int) -> None:
        w = f"over the last {window_days} days by disposition date"
        self.open = Gauge("sp4n_kinerja_open", "Complaints an OPD holds now, not completed",
                          ["opd"], registry=registry)
        self.open_overdue = Gauge(
            "sp4n_kinerja_open_overdue",
            "Complaints an OPD holds now, not completed, past the completion deadline",
            ["opd"], registry=registry)
        self.counts = {k: Gauge(f"sp4n_kinerja_{k}_window", f"Complaints {k.replace('_', ' ')}, {w}",
                                ["opd"], registry=registry) for k in COUNTS}
        self.ratios = {k: Gauge(f"sp4n_kinerja_{k}", f"{k.replace('_', ' ')} (0–1), {w}",
                                ["opd"], registry=registry) for k in RATIOS}
        self.working_days = Gauge(
            "sp4n_kinerja_working_days",
            f"Working days per stage (received→disposed, disposed→first tindak lanjut, "
            f"received→final tindak lanjut), median and p90, {w}",
            ["opd", "stage", "quantile"], registry=registry)
        self.target = Gauge("sp4n_kinerja_target_on_time_ratio",
                            "The regency's target on-time rate (0–1)", registry=registry)
        self.refreshed = Gauge("sp4n_kinerja_refreshed_timestamp_seconds",
                               "When the kinerja gauges were last recomputed", registry=registry)

    def publish(self, report: KinerjaReport, open_by_opd: dict[str, tuple[int, int]]) -> None:
        """Replace every value at once (no await in between: a scrape sees one refresh)."""
        for g in (self.open, self.open_overdue, self.working_days, *self.counts.values(),
                  *self.ratios.values()):
            g.clear()
        for opd, (n_open, n_overdue) in open_by_opd.items():
            self.open.labels(opd).set(n_open)
            self.open_overdue.labels(opd).set(n_overdue)
        for row in report.rows:
            if row.key == NO_GROUP:
                continue
            for k, f in COUNTS.items():
                self.counts[k].labels(row.key).set(getattr(row, f))
            for k, f in RATIOS.items():
                value = getattr(row, f)
                if value is not None:
                    self.ratios[k].labels(row.key).set(value / 100.0)
            for stage, f in STAGES.items():
                stats = getattr(row, f)
                if stats.median is not None:
                    self.working_days.labels(row.key, stage, "0.5").set(stats.median)
                    self.working_days.labels(row.key, stage, "0.9").set(stats.p90)
        self.target.set(report.target_on_time_rate / 100.0)
        self.refreshed.set(report.generated_at.timestamp())


async def refresh(ctx: ReportsContext, metrics: KinerjaMetrics, now: datetime) -> KinerjaReport:
    today = ctx.calendar.local_date(now)
    q = ReportQuery(date_from=today - timedelta(days=ctx.cfg.window_days - 1), date_to=today,
                    attribution="event")
    report = await kinerja_report(ctx.uow, q, SYSTEM, calendar=ctx.calendar, now=now,
                                  target_on_time_rate=ctx.cfg.target_on_time_rate)
    async with ctx.uow.read() as repo:
        open_by_opd = await repo.open_by_opd(now)
    metrics.publish(report, open_by_opd)
    return report


def gauge_loop(ctx: ReportsContext, metrics: KinerjaMetrics,
               clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Loop:
    async def kinerja_gauges(_runtime: ServiceRuntime) -> None:
        while True:
            try:
                await refresh(ctx, metrics, clock())
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed refresh keeps the last values; the next one retries
                log.exception("kinerja gauges refresh failed")
            await asyncio.sleep(ctx.cfg.refresh_s)
    return kinerja_gauges
