"""intake's broker consumers: thin — parse, call a use case, record metrics."""

from __future__ import annotations

import json
import logging
import uuid
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
from shared.broker import PoisonMessage, Sent
from shared.events import CloudEvent
from shared.failures import classify
from shared.service import ServiceRuntime
from shared.topology import INTAKE_SUBMISSIONS, INTAKE_TIMELINE

log = logging.getLogger(__name__)
NOT_A_SUBMISSION = ("a DLQ reference to a failed submission, not a submission: repair it with "
                    "'sp4n failed-submissions show' and resubmit")


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
        """Why ``body`` cannot be accepted (None: it was); raises on a transient failure. The
        exception is dropped here: a pydantic error carries the input values, i.e. the
        reporter's identity; a bug's failure is named, never its values."""
        try:
            await on_submission(parse(body, user_id))
        except PoisonMessage as exc:
            return str(exc)
        except Exception as exc:
            failure = classify(exc)
            if failure.transient:
                raise  # retried through the retry queues (shared.broker), body and all
            # A bug or data no retry fixes: kept encrypted like an invalid one, so the DLQ
            # never holds the identity.
            log.error("accepting an inbound submission failed: %s", failure.reason)
            return f"permanent failure: {failure.reason}"
        return None

    async def on_submission_body(sent: Sent) -> None:
        """A submission (with its sender) that cannot be accepted is kept encrypted
        (``failed_submissions``); the DLQ gets only its row id and the reason, never the
        body (the identity)."""
        failed_id = privacy.referenced_id(sent.body)
        if failed_id is not None:
            await resubmit(sent, failed_id)
            return
        reason = await rejection(sent.body, sent.user_id)
        if reason is None:
            return
        failed_id = await privacy.store_failed_submission(ctx.pool(), cfg.keyring, sent.body,
                                                          reason, sent.user_id)
        raise PoisonMessage(reason, dlq_body=privacy.dlq_reference(failed_id, reason))

    async def resubmit(sent: Sent, failed_id: uuid.UUID) -> None:
        """A DLQ reference back on the submissions queue. Replayed by an operator (or back
        from a retry step): the failed submission it names is submitted again from intake's
        encrypted copy, as its original sender; accepted, the copy is deleted; rejected
        again, the reference goes back to the DLQ with the new reason. Published by a portal
        (the inbound exchange), it is no submission and goes back to the DLQ: a portal does
        not get to resubmit what another one sent."""
        if not sent.internal:
            raise PoisonMessage(NOT_A_SUBMISSION,
                                dlq_body=privacy.dlq_reference(failed_id, NOT_A_SUBMISSION))
        async with ctx.pool().acquire() as conn:
            kept = await privacy.failed_submission(conn, cfg.keyring, failed_id)
        if kept is None or kept.body is None:
            reason = (f"failed submission {failed_id} is no longer kept (accepted already, or "
                      "purged after the retention period): nothing to resubmit")
            raise PoisonMessage(reason, dlq_body=privacy.dlq_reference(failed_id, reason))
        again = await rejection(kept.body, kept.sender)
        await privacy.settle_failed_submission(ctx.pool(), failed_id, again)
        if again is not None:
            raise PoisonMessage(again, dlq_body=privacy.dlq_reference(failed_id, again))
        log.info("failed submission %s resubmitted and accepted", failed_id)

    async def seal_dead_letter(sent: Sent, reason: str) -> bytes:
        """What the broker dead-lettered from the submissions queue (``shared.broker.
        subscribe_quarantine``): kept encrypted like a rejected submission, with its sender,
        so that replaying its reference resubmits it; the DLQ gets the reference. A reference
        itself (a replayed one whose resubmission kept crashing) keeps its row."""
        failed_id = privacy.referenced_id(sent.body)
        if failed_id is None:
            failed_id = await privacy.store_failed_submission(ctx.pool(), cfg.keyring,
                                                              sent.body, reason, sent.user_id)
        return privacy.dlq_reference(failed_id, reason)

    async def on_event(event: CloudEvent) -> None:
        try:
            applied = await record_event(uow, event, cfg.tz)
        except UnknownComplaint as exc:
            raise PoisonMessage(str(exc)) from exc
        if applied:
            metrics.timeline_events.labels(event.event_name).inc()

    runtime.consume_sent(INTAKE_SUBMISSIONS, on_submission_body, lambda sent: sent)
    runtime.quarantine(INTAKE_SUBMISSIONS, seal_dead_letter)
    runtime.consume(INTAKE_TIMELINE, on_event)
