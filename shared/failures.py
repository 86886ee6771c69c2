"""Which failures are worth retrying: a consumer's or a request's exception, classified.

- **transient**: a dependency is unavailable or briefly refused the work — the database or
  the broker cannot be reached, a connection dropped, the pool had no connection in time,
  a statement timed out, a serialization failure or deadlock, too many connections, an
  administrator shut the server down. The same message or request may succeed later.
- **permanent**: everything else (invalid data, ``PoisonMessage``, a bug, a constraint
  that will fail again). Retrying cannot help; a message goes to its DLQ at once.

``unavailable`` marks the transient failures that mean the database cannot be reached at
all (not a conflict between transactions): consumers pause on those until it answers.

Invariant: a failure's ``reason`` names the exception type and its message only (asyncpg's
message never carries the row values; its ``detail`` does and is not used), so it holds no
personal data and may go into a DLQ header or a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import aiormq.exceptions
import asyncpg

Dependency = Literal["database", "broker"]

# The server refused or lost the work, but the same statement may succeed later.
_PG_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.QueryCanceledError,          # statement_timeout
    asyncpg.exceptions.LockNotAvailableError,       # lock_timeout
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
)
# The database cannot be reached or is going away: consumers pause until it answers.
_PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,     # SQLSTATE class 08
    asyncpg.exceptions.CannotConnectNowError,       # starting up / shutting down
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.OperatorInterventionError,   # class 57 (includes the two above)
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    # "cannot switch to state N; another operation is in progress": the client's protocol
    # state on a connection whose link broke mid-statement (seen when PostgreSQL restarts
    # under load); that connection is discarded and the work succeeds on a fresh one.
    asyncpg.exceptions.InternalClientError,
)
# The broker link failed (channel or connection closed under us).
_AMQP_UNAVAILABLE: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ConnectionClosed,
)
_MAX_REASON = 2000


@dataclass(frozen=True)
class Failure:
    transient: bool
    reason: str
    # Set on transient failures that mean a dependency is unreachable.
    unavailable: Dependency | None = None


def classify(exc: BaseException) -> Failure:
    """Transient or permanent (see the module docstring); an exception chained with
    ``raise … from cause`` is transient when its cause is."""
    reason = describe(exc)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _classify_one(current)
        if found == "permanent":
            break
        if found is not None:
            return Failure(True, reason, found if found != "transient" else None)
        current = current.__cause__
    return Failure(False, reason)


def _classify_one(exc: BaseException) -> Dependency | Literal["transient", "permanent"] | None:
    """Transient (the dependency, or "transient"), "permanent" whatever its cause, or None:
    permanent unless its cause is transient."""
    # Imported here: shared.broker imports this module.
    from shared.broker import PoisonMessage

    if isinstance(exc, PoisonMessage):
        return "permanent"
    if isinstance(exc, BaseExceptionGroup):
        parts = [_classify_one(e) for e in exc.exceptions]
        if parts and all(p is not None and p != "permanent" for p in parts):
            return next((p for p in parts if p != "transient"), "transient")
        return "permanent"
    if isinstance(exc, _PG_TRANSIENT):  # before: QueryCanceledError is in class 57 too
        return "transient"
    if isinstance(exc, _PG_UNAVAILABLE):
        return "database"
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        # "connection is closed", "pool is closing", "the underlying connection is closed":
        # the link went away. Other interface errors are misuse (a bug), hence permanent.
        text = str(exc).lower()
        return "database" if "closed" in text or "closing" in text else None
    if isinstance(exc, _AMQP_UNAVAILABLE):
        return "broker"
    if isinstance(exc, TimeoutError):  # pool acquire timeout, connect timeout, command_timeout
        return "database"
    if isinstance(exc, OSError) and not isinstance(exc, _LOCAL_OS_ERRORS):
        return "database"
    return None


# OSErrors about local files or arguments are bugs or configuration, not an outage.
_LOCAL_OS_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError,
)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, bounded. Of a PostgreSQL error only its primary
    message: ``str()`` appends its DETAIL, which quotes row values."""
    if isinstance(exc, asyncpg.PostgresError):
        text = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else ""))
    else:
        text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:_MAX_REASON]
