"""intake's broker consumers: thin — parse, call a use case, record metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import ValidationError

from services.intake import privacy
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
from shared.failures import classify
from shared.service import ServiceRuntime
from shared.topology import INTAKE_SUBMISSIONS, INTAKE_TIMELINE

log = logging.getLogger(__name__)


def parse_submission(body: bytes) -> ComplaintIn:
    try:
        return ComplaintIn.model_validate_json(body)
    except ValidationError as exc:
        raise PoisonMessage(f"invalid submission: {describe(exc)}") from exc
    except ValueError as exc:  # pragma: no cover - pydantic wraps these (JSONDecodeError included)
        raise PoisonMessage(f"invalid submission: {exc}") from exc


def submission_parser(portal_user_prefix: str, trust_body_source: bool
                      ) -> Callable[[bytes, str | None], ComplaintIn]:
    """The inbound submissions' parser. Invariant: the source is the sender's — the broker
    user in ``user_id`` (which RabbitMQ validated) minus ``portal_user_prefix`` — never the
    body's; a body naming another source, a sender that is no portal user, or (unless
    ``trust_body_source``, development only) no ``user_id`` at all is dead-lettered at once."""

    def parse(body: bytes, user_id: str | None) -> ComplaintIn:
        if user_id is None:
            if not trust_body_source:
                raise PoisonMessage("submission without user_id: publish as the portal's own "
                                    "broker user with the user_id property set")
            return parse_submission(body)
        source = user_id.removeprefix(portal_user_prefix) if user_id.startswith(
            portal_user_prefix) else ""
        if not source:
            raise PoisonMessage(f"sender {user_id!r} is not a portal broker user "
                                f"({portal_user_prefix}<source>)")
        try:
            doc = json.loads(body)
        except ValueError:
            return parse_submission(body)  # raises with pydantic's reason
        if not isinstance(doc, dict):
            return parse_submission(body)
        claimed = doc.setdefault("source", source)
        if claimed != source:
            raise PoisonMessage(f"source {str(claimed)[:64]!r} in the body differs from the "
                                f"sender's source {source!r}")
        try:
            return ComplaintIn.model_validate(doc)
        except ValidationError as exc:
            raise PoisonMessage(f"invalid submission: {describe(exc)}") from exc

    return parse


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

    settings = runtime.settings
    parse = submission_parser(settings.intake.portal_user_prefix, settings.trusts_body_source)

    async def rejection(body: bytes, user_id: str | None) -> str | None:
        """Why ``body`` cannot be accepted (None: it was). The exception is dropped here: a
        pydantic error carries the input values, i.e. the reporter's identity."""
        if privacy.is_dlq_reference(body):
            return "a DLQ reference to a failed submission, not a submission: repair it with " \
                   "'sp4n failed-submissions show' and resubmit"
        try:
            await on_submission(parse(body, user_id))
        except PoisonMessage as exc:
            return str(exc)
        return None

    async def on_submission_body(sent: tuple[bytes, str | None]) -> None:
        """A submission (body, the sender's validated ``user_id``) that cannot be accepted is
        kept encrypted (``failed_submissions``); the DLQ gets only its row id and the reason,
        never the body (the identity)."""
        body, user_id = sent
        try:
            reason = await rejection(body, user_id)
        except Exception as exc:
            failure = classify(exc)
            if failure.transient:
                raise  # retried through the retry queues (shared.broker), body and all
            # A bug or data no retry fixes: kept encrypted like an invalid one, so the DLQ
            # never holds the identity. The reason names the error, never the values.
            reason = f"permanent failure: {failure.reason}"
            log.error("accepting an inbound submission failed: %s", reason)
        if reason is None:
            return
        if privacy.is_dlq_reference(body):
            raise PoisonMessage(reason, dlq_body=body)
        failed_id = await privacy.store_failed_submission(ctx.pool(), cfg.keyring, body, reason)
        raise PoisonMessage(reason, dlq_body=privacy.dlq_reference(failed_id, reason))

    async def on_event(event: CloudEvent) -> None:
        try:
            applied = await record_event(uow, event, cfg.tz)
        except UnknownComplaint as exc:
            raise PoisonMessage(str(exc)) from exc
        if applied:
            metrics.timeline_events.labels(event.event_name).inc()

    runtime.consume_sent(INTAKE_SUBMISSIONS, on_submission_body, lambda body, user_id: (body, user_id))
    runtime.consume(INTAKE_TIMELINE, on_event)
