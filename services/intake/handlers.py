"""intake's broker consumers: thin — parse, call a use case, record metrics."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from services.intake.context import IntakeContext
from services.intake.errors import describe
from services.intake.history import HistoryNotAllowed
from services.intake.schemas import ComplaintIn
from services.intake.usecases import (
    SubmissionConflict,
    UnknownComplaint,
    record_event,
    submit_complaint,
)
from shared.broker import PoisonMessage
from shared.events import CloudEvent
from shared.service import ServiceRuntime
from shared.topology import INTAKE_SUBMISSIONS, INTAKE_TIMELINE


def parse_submission(body: bytes) -> ComplaintIn:
    try:
        return ComplaintIn.model_validate_json(body)
    except ValidationError as exc:
        raise PoisonMessage(f"invalid submission: {describe(exc)}") from exc
    except ValueError as exc:  # pragma: no cover - pydantic wraps these (JSONDecodeError included)
        raise PoisonMessage(f"invalid submission: {exc}") from exc


def install_consumers(runtime: ServiceRuntime, ctx: IntakeContext) -> None:
    cfg, metrics, uow = ctx.cfg, ctx.metrics, ctx.uow

    async def on_submission(sub: ComplaintIn) -> None:
        """A portal's submission published on the broker: the same path as HTTP."""
        try:
            accepted = await submit_complaint(uow, sub, cfg, datetime.now(UTC))
        except SubmissionConflict as exc:
            metrics.rejected.labels("conflict").inc()
            raise PoisonMessage(f"conflict: {exc}") from exc
        except HistoryNotAllowed as exc:  # imported history comes over HTTP, from its key
            metrics.rejected.labels("forbidden_history").inc()
            raise PoisonMessage(str(exc)) from exc
        metrics.count_accepted(accepted.created, sub.source, sub.classification)

    async def on_event(event: CloudEvent) -> None:
        try:
            applied = await record_event(uow, event, cfg.tz)
        except UnknownComplaint as exc:
            raise PoisonMessage(str(exc)) from exc
        if applied:
            metrics.timeline_events.labels(event.event_name).inc()

    runtime.consume(INTAKE_SUBMISSIONS, on_submission, parse_submission)
    runtime.consume(INTAKE_TIMELINE, on_event)
