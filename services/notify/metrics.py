"""Domain metrics of the notify service, on the runtime's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.notify.domain import Outcome

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 7200, 21600)


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "sp4n_notify_deliveries", "Webhook delivery attempts by their outcome",
            ["subscription", "outcome"], registry=registry)
        self.attempts = Counter(
            "sp4n_notify_attempts", "Webhook HTTP attempts made", ["subscription"], registry=registry)
        self.dead_lettered = Counter(
            "sp4n_notify_dead_lettered", "Webhook deliveries given up after the last attempt",
            ["subscription"], registry=registry)
        self.latency = Histogram(
            "sp4n_notify_delivery_latency_seconds",
            "From the event's time to its successful delivery", ["subscription"],
            buckets=LATENCY_BUCKETS, registry=registry)
        self.pending = Gauge(
            "sp4n_notify_pending_deliveries", "Deliveries waiting for an attempt or a retry",
            registry=registry)

    def observe(self, subscription: str, outcome: Outcome | None, latency_s: float | None) -> None:
        self.attempts.labels(subscription).inc()
        if outcome is None:
            return
        self.deliveries.labels(subscription, outcome.value).inc()
        if outcome is Outcome.DEAD_LETTERED:
            self.dead_lettered.labels(subscription).inc()
        elif outcome is Outcome.DELIVERED and latency_s is not None:
            self.latency.labels(subscription).observe(max(latency_s, 0.0))
