"""Message handlers: CloudEvent in, use case call, metrics out. Nothing else."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from shared.broker import PoisonMessage
from shared.events import CloudEvent, ComplaintSubmitted
from services.routing.metrics import RoutingMetrics
from services.routing.rules import Routed
from services.routing.usecases import RulebookSource, UnitOfWork, route_submitted

log = logging.getLogger(__name__)


def submitted_handler(*, unit_of_work: UnitOfWork, rulebook: RulebookSource,
                      metrics: RoutingMetrics) -> Callable[[CloudEvent], Awaitable[None]]:
    async def handle(event: CloudEvent) -> None:
        submitted = event.parse_data()
        if not isinstance(submitted, ComplaintSubmitted):
            raise PoisonMessage(f"routing expects complaint.submitted, got {event.type}")
        started = time.perf_counter()
        result = await route_submitted(event, submitted, unit_of_work=unit_of_work, rulebook=rulebook)
        if result.status != "decided":
            log.info("complaint %s: %s, event %s ignored", submitted.complaint_id, result.status, event.id)
            return
        metrics.decision_seconds.observe(time.perf_counter() - started)
        if isinstance(result.decision, Routed):
            metrics.routed.labels(result.decision.opd_code).inc()
            log.info("complaint %s routed to %s by rule %s v%s", submitted.complaint_id,
                     result.decision.opd_code, result.decision.rule_id, result.decision.rule_version)
        else:
            metrics.triage.inc()
            log.info("complaint %s sent to triage", submitted.complaint_id)

    return handle
