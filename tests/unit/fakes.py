"""In-memory unit of work for use-case unit tests (the ``shared.uow.Tx`` protocol).

    uow = FakeUnitOfWork(FakeRoutingRepository())
    await route_submitted(event, ..., uow=uow)
    assert uow.committed_events == [...]

A block that raises drops its staged events and the inbox forgets the event, as the real
transaction would roll back; an in-memory repository's own changes are the test's to check.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from shared.events import CloudEvent

R = TypeVar("R")


class FakeTx(Generic[R]):
    def __init__(self, uow: FakeUnitOfWork[R], event: CloudEvent | None) -> None:
        self._uow = uow
        self.repo: R = uow.repo
        self.event = event
        self.claimed: bool | None = None
        self.staged: list[CloudEvent] = []

    async def claim(self) -> bool:
        if self.claimed is None:
            if self.event is None:
                raise RuntimeError("claim() needs the unit of work's event")
            self.claimed = self.event.id not in self._uow.inbox
            self._uow.inbox.add(self.event.id)
        return self.claimed

    def set_claimed(self, first_delivery: bool) -> None:
        self.claimed = first_delivery
        if self.event is not None:
            self._uow.inbox.add(self.event.id)

    def stage(self, *events: CloudEvent) -> None:
        self.staged.extend(events)


class FakeUnitOfWork(Generic[R]):
    """Call it like ``PgUnitOfWork``: ``async with uow(event) as tx``."""

    def __init__(self, repo: R) -> None:
        self.repo = repo
        self.inbox: set[str] = set()
        self.committed_events: list[CloudEvent] = []
        self.commits = 0
        self.rollbacks = 0

    @contextlib.asynccontextmanager
    async def __call__(self, event: CloudEvent | None = None, *,
                       single_statement: bool = False) -> AsyncIterator[FakeTx[R]]:
        tx = FakeTx(self, event)
        inbox_before = set(self.inbox)
        try:
            yield tx
        except BaseException:
            self.inbox = inbox_before
            self.rollbacks += 1
            raise
        self.committed_events.extend(tx.staged)
        self.commits += 1

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[R]:
        """Like ``PgUnitOfWork.read``: the repository, no transaction."""
        yield self.repo
