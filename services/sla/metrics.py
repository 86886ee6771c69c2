"""Domain metrics of the sla service, registered on the runtime's registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.events import ClockKind

if TYPE_CHECKING:
    from services.sla.usecases import Outcome

# Detection lag is expected around the scan interval (0.2 s): fine buckets there.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
               1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def _opd(opd_code: str | None) -> str:
    return opd_code or "none"


class SlaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.open_clocks = Gauge("sp4n_sla_open_clocks", "Clocks running (not stopped)",
                                 ["clock"], registry=registry)
        self.warnings = Counter("sp4n_sla_warnings", "SLA warnings fired",
                                ["opd", "clock"], registry=registry)
        self.breaches = Counter("sp4n_sla_breaches", "SLA breaches fired",
                                ["opd", "clock"], registry=registry)
        self.reply_windows_elapsed = Counter(
            "sp4n_sla_reply_windows_elapsed",
            "Reply windows (auto_close) that elapsed with no reply from the reporter",
            ["opd"], registry=registry)
        self.escalations = Counter("sp4n_sla_escalations", "Escalation ladder steps fired",
                                   ["opd", "clock"], registry=registry)
        self.deferrals_expired = Counter(
            "sp4n_sla_deferrals_expired",
            "DITUNDA periods that ended with no answer from the reporter (archived by the system)",
            registry=registry)
        self.beyond_coverage = Gauge(
            "sp4n_sla_clocks_beyond_calendar_coverage",
            "Running clocks whose deadline lies past the last year whose cuti bersama the "
            "calendar knows (confirm it: sp4n calendar confirm YEAR)", registry=registry)
        self.derive_drift = Counter(
            "sp4n_sla_derive_drift",
            "Clocks whose events a message decided unlike the rows derived from the "
            "complaint's facts, which it writes (should stay 0; see the sla log)", ["clock"],
            registry=registry)
        self.detection_lag = Histogram(
            "sp4n_sla_breach_detection_lag_seconds",
            "Breach fire time minus due time (or creation time, if created already due)",
            buckets=LAG_BUCKETS, registry=registry)

    def record(self, outcome: Outcome) -> None:
        """Count the alerts (and drifted or superseded clocks) of a committed
        ``usecases.Outcome``."""
        for clock in outcome.drift + outcome.superseded:
            self.derive_drift.labels(clock).inc()
        for alert in outcome.alerts:
            if alert.kind == "breach":
                self.breaches.labels(_opd(alert.opd_code), alert.clock).inc()
                if alert.lag_s is not None:
                    self.detection_lag.observe(max(alert.lag_s, 0.0))
            elif alert.kind == "elapsed":
                self.reply_windows_elapsed.labels(_opd(alert.opd_code)).inc()
            elif alert.kind == "expired":
                self.deferrals_expired.inc()
            elif alert.kind == "escalation":
                self.escalations.labels(_opd(alert.opd_code), alert.clock).inc()
            else:
                self.warnings.labels(_opd(alert.opd_code), alert.clock).inc()

    def set_open_clocks(self, counts: dict[str, int]) -> None:
        for kind in set(get_args(ClockKind)) | set(counts):
            self.open_clocks.labels(kind).set(counts.get(kind, 0))
