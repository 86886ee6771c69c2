"""Unit of work: one transaction that owns the inbox record of the event being consumed, the
service's state change, and the outbox rows of the events that change causes.

    async with uow(event) as tx:          # a ``UnitOfWork`` (see ``PgUnitOfWork``)
        if not await tx.claim():          # inbox: False on a redelivery
            return                        # (the inbox row still commits: nothing else does)
        ... tx.repo.something(...) ...    # the service's repository, on the same transaction
        tx.stage(*events)                 # written to the outbox before commit

Invariants:
- The inbox record, the state change and the staged events commit together or not at all:
  there is no state change without its events, and a redelivery finds the inbox row.
- Use cases only ever see the ``Tx`` protocol (``claim``, ``claimed``, ``stage``, ``repo``);
  none opens a transaction or touches a pool. Unit tests pass an in-memory fake.
- Hot paths stay single statements: a repository may fold the inbox insert (``INBOX_INSERT``)
  and the staged rows (``take_staged`` + ``outbox_row``/``OUTBOX_INSERT_ARRAYS``) into its own
  statement and report the inbox outcome with ``set_claimed``. Whatever is still staged when
  the block ends is inserted in one statement before the commit.
- ``uow.read()`` yields a repository for reads only: one pooled connection, no transaction
  (no BEGIN/COMMIT round trips; each statement sees what was committed when it started).
- ``single_statement=True`` sends no BEGIN/COMMIT: the repository promises that the block runs
  exactly one statement (atomic by itself) and writes every staged event in it; leaving events
  staged there is a programming error (raised, so the block rolls nothing back silently).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Generic, Protocol, TypeVar

import asyncpg

from shared.events import CloudEvent
from shared.outbox import add_to_outbox, staged_on

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

# Records the event id; yields one row iff this is the event's first delivery. Parameters:
# $1 event id, $2 event type. A repository may use it as a CTE of its own statement.
INBOX_INSERT = ("INSERT INTO inbox (event_id, event_type) VALUES ($1, $2)"
                " ON CONFLICT (event_id) DO NOTHING RETURNING 1")


class Tx(Protocol[R_co]):
    """What a use case sees of its unit of work."""

    @property
    def repo(self) -> R_co: ...

    @property
    def event(self) -> CloudEvent | None: ...

    @property
    def claimed(self) -> bool | None:
        """None until the inbox was asked; then True on the event's first delivery."""

    async def claim(self) -> bool:
        """Record the consumed event in the inbox; False on a redelivery (skip the effect)."""

    def stage(self, *events: CloudEvent) -> None:
        """Queue events for the outbox; they commit with the transaction."""


class PgTx(Generic[R]):
    """A unit of work on one pooled connection (the repository's side of ``Tx``)."""

    def __init__(self, conn: asyncpg.Connection, event: CloudEvent | None,
                 make_repo: Callable[[PgTx[R]], R]) -> None:
        self.conn = conn
        self.event = event
        self.claimed: bool | None = None
        self._staged: list[CloudEvent] = []
        self.repo: R = make_repo(self)

    async def claim(self) -> bool:
        if self.claimed is None:
            if self.event is None:
                raise RuntimeError("claim() needs the unit of work's event")
            row = await self.conn.fetchval(INBOX_INSERT, self.event.id, self.event.type)
            self.claimed = row is not None
        return self.claimed

    def set_claimed(self, first_delivery: bool) -> None:
        """A repository statement recorded the inbox row itself (``INBOX_INSERT`` as a CTE)."""
        self.claimed = first_delivery

    def stage(self, *events: CloudEvent) -> None:
        self._staged.extend(events)

    def take_staged(self) -> list[CloudEvent]:
        """Hand the staged events to a repository that writes them in its own statement; the
        relay is woken when the connection returns to the pool."""
        events, self._staged = self._staged, []
        if events:
            staged_on(self.conn)
        return events

    async def flush(self) -> None:
        """Write what is still staged (one statement); called before the commit."""
        if self._staged:
            await add_to_outbox(self.conn, *self.take_staged())

    @property
    def has_staged(self) -> bool:
        return bool(self._staged)


class PgUnitOfWork(Generic[R]):
    """The production unit of work: ``uow(event)`` opens a ``PgTx`` on the pool.

    ``make_repo`` builds the service's repository on the transaction (it may keep the
    ``PgTx`` to read ``conn``, fold the inbox row in with ``set_claimed`` and take the
    staged events)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool],
                 make_repo: Callable[[PgTx[R]], R]) -> None:
        # ``pool`` is a getter: composition roots build the unit of work before start-up
        # creates the pool.
        self._pool = pool
        self._make_repo = make_repo

    @contextlib.asynccontextmanager
    async def __call__(self, event: CloudEvent | None = None, *,
                       single_statement: bool = False) -> AsyncIterator[PgTx[R]]:
        async with self._pool().acquire() as conn:
            if single_statement:
                tx = PgTx(conn, event, self._make_repo)
                yield tx
                if tx.has_staged:
                    raise RuntimeError("single-statement unit of work left events staged")
                return
            async with conn.transaction():
                tx = PgTx(conn, event, self._make_repo)
                yield tx
                await tx.flush()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[R]:
        """The repository on a pooled connection without a transaction, for reads only
        (staging events there is a programming error)."""
        async with self._pool().acquire() as conn:
            tx = PgTx(conn, None, self._make_repo)
            yield tx.repo
            if tx.has_staged:
                raise RuntimeError("read-only unit of work staged events")
