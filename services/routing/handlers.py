"""Message handlers: CloudEvent in, use case call, metrics out. Nothing else."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from services.routing.metrics import RoutingMetrics
from services.routing.rules import Routed, Suggested
from services.routing.usecases import RulebookSource, UnitOfWork, route_submitted
from shared.broker import PoisonMessage
from shared.events import CloudEvent, ComplaintSubmitted

log = logging.getLogger(__name__)


def submitted_handler(*, uow: UnitOfWork, rulebook: RulebookSource, metrics: RoutingMetrics,
                      duplicate_window_days: int, max_duplicate_candidates: int,
                      ) -> Callable[[CloudEvent], Awaitable[None]]:
    async def handle(event: CloudEvent) -> None:
        submitted = event.parse_data()
        if not isinstance(submitted, ComplaintSubmitted):
            raise PoisonMessage(f"routing expects complaint.submitted, got {event.type}")
        started = time.perf_counter()
        result = await route_submitted(event, submitted, uow=uow, rulebook=rulebook,
                                       duplicate_window_days=duplicate_window_days,
                                       max_duplicate_candidates=max_duplicate_candidates)
        if result.status != "decided":
            log.info("complaint %s: %s, event %s ignored", submitted.complaint_id, result.status, event.id)
            return
        metrics.decision_seconds.observe(time.perf_counter() - started)
        if isinstance(result.decision, Routed):
            metrics.routed.labels(result.decision.opd_code).inc()
            log.info("complaint %s routed to %s by rule %s v%s", submitted.complaint_id,
                     result.decision.opd_code, result.decision.rule_id, result.decision.rule_version)
        elif isinstance(result.decision, Suggested):
            metrics.suggested.labels(result.decision.opd_code).inc()
            log.info("complaint %s: rule %s v%s suggests %s, waiting for the admin koordinator",
                     submitted.complaint_id, result.decision.rule_id, result.decision.rule_version,
                     result.decision.opd_code)
        else:
            metrics.triage.inc()
            log.info("complaint %s sent to triage", submitted.complaint_id)
        if result.duplicate_suspected is not None:
            metrics.duplicate_suspected.inc()
            log.info("complaint %s: possible duplicate of %s", submitted.complaint_id,
                     ", ".join(result.duplicate_suspected.data["candidate_ids"]))

    return handle
