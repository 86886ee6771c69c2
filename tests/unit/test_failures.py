"""Which failures are retried (transient) and which go to the DLQ at once (permanent), and
how the retry steps are named and chosen."""

from __future__ import annotations

import aiormq.exceptions
import asyncpg
import pytest
from pydantic import BaseModel, ValidationError

from shared.broker import PoisonMessage, retry_delay
from shared.failures import classify
from shared.settings import DatabaseSettings
from shared.topology import ROUTING_SUBMITTED, delay_label, retry_exchange

DATABASE_UNAVAILABLE = [
    ConnectionRefusedError(111, "Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    OSError(113, "No route to host"),
    TimeoutError(),  # pool acquire timeout, connect timeout, command_timeout
    TimeoutError(),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.exceptions.InterfaceError("connection is closed"),
    asyncpg.exceptions.InterfaceError("pool is closing"),
    # seen in bench/chaos.py after a real PostgreSQL restart mid-statement
    asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
]
TRANSIENT_CONFLICTS = [
    asyncpg.exceptions.SerializationError("could not serialize access"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
]


class _Model(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Model.model_validate({"n": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


PERMANENT = [
    PoisonMessage("not a valid sp4n CloudEvent"),
    OverflowError("date value out of range"),  # year-1 received_at in date arithmetic
    ValueError("bad"),
    KeyError("x"),
    RuntimeError("a bug"),
    _validation_error(),
    asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
    asyncpg.exceptions.UndefinedTableError('relation "x" does not exist'),
    asyncpg.exceptions.InterfaceError("cannot perform operation: another operation is in progress"),
    FileNotFoundError(2, "No such file or directory"),
]


@pytest.mark.parametrize("exc", DATABASE_UNAVAILABLE, ids=repr)
def test_an_unreachable_database_is_transient_and_pauses_consumers(exc):
    failure = classify(exc)
    assert failure.transient and failure.unavailable == "database"


@pytest.mark.parametrize("exc", TRANSIENT_CONFLICTS, ids=repr)
def test_conflicts_and_timeouts_are_transient_without_a_pause(exc):
    failure = classify(exc)
    assert failure.transient and failure.unavailable is None


@pytest.mark.parametrize("exc", PERMANENT, ids=repr)
def test_everything_else_is_permanent(exc):
    assert not classify(exc).transient


def test_a_broker_link_failure_is_transient_and_names_the_broker():
    failure = classify(aiormq.exceptions.ChannelInvalidStateError("closed"))
    assert failure.transient and failure.unavailable == "broker"


def test_a_chained_cause_decides():
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as cause:
            raise RuntimeError("repository failed") from cause
    except RuntimeError as exc:
        assert classify(exc).transient
    # A poison message stays permanent whatever it was raised from.
    try:
        raise PoisonMessage("invalid") from TimeoutError()
    except PoisonMessage as exc:
        assert not classify(exc).transient


def test_an_exception_group_is_transient_only_when_every_member_is():
    assert classify(ExceptionGroup("g", [TimeoutError(), OSError(111, "refused")])).transient
    assert not classify(ExceptionGroup("g", [TimeoutError(), ValueError("bad")])).transient


def test_the_reason_names_type_and_message_only():
    exc = asyncpg.exceptions.UniqueViolationError("duplicate key value")
    exc.detail = "Key (reporter_ref)=(secret) already exists."  # never used
    assert classify(exc).reason == "UniqueViolationError: duplicate key value"
    assert classify(TimeoutError()).reason == "TimeoutError"
    assert len(classify(ValueError("x" * 5000)).reason) == 2000


def test_retry_steps_are_named_by_their_delay_and_the_last_one_repeats():
    assert [delay_label(d) for d in (1, 5.0, 600, 0.25, 1.5)] == ["1s", "5s", "600s", "250ms", "1500ms"]
    steps = (1.0, 5.0, 30.0)
    assert [retry_delay(n, steps) for n in (1, 2, 3, 4, 50)] == [1.0, 5.0, 30.0, 30.0, 30.0]
    q = ROUTING_SUBMITTED.retry_queue("ns", 5.0)
    assert q.name == "ns.routing.submitted.v1.retry.5s"
    # Named {ns}.{service}.… (the service's own permissions cover it), fed back by the
    # default exchange into the queue itself after the TTL.
    assert q.arguments == {
        "x-message-ttl": 5000, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "ns.routing.submitted.v1",
        "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
        "x-queue-type": "quorum"}
    assert retry_exchange("ns").name == "ns.retry"


def test_session_settings_carry_the_timeouts_and_keepalives():
    from shared.db import session_settings

    assert session_settings(DatabaseSettings()) == {
        "statement_timeout": "30000", "idle_in_transaction_session_timeout": "60000",
        "tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}
