from prometheus_client import CollectorRegistry, Counter, Histogram


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "sp4n_complaints_received", "Complaints accepted (first time), by source and classification",
            ["source", "classification"], registry=registry)
        self.duplicates = Counter(
            "sp4n_complaints_resubmitted", "Idempotent retries answered with the existing ids",
            ["source"], registry=registry)
        self.rejected = Counter(
            "sp4n_complaints_rejected", "Submissions refused, by reason",
            ["reason"], registry=registry)
        self.timeline_events = Counter(
            "sp4n_intake_timeline_events", "Downstream events applied to complaint status",
            ["event"], registry=registry)
        self.actions = Counter(
            "sp4n_intake_actions", "Lifecycle actions applied, by action and resulting status",
            ["action", "status"], registry=registry)
        self.actions_refused = Counter(
            "sp4n_intake_actions_refused", "Lifecycle actions refused (403/409), by action and reason",
            ["action", "reason"], registry=registry)
        self.http_latency = Histogram(
            "sp4n_http_request_seconds", "HTTP request latency by route",
            ["method", "route", "status"], registry=registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

    def count_accepted(self, created: bool, source: str, classification: str) -> None:
        """A submission answered with ids: new, or an idempotent retry."""
        if created:
            self.received.labels(source, classification).inc()
        else:
            self.duplicates.labels(source).inc()
