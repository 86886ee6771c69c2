"""What intake's HTTP routes and broker handlers are given by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from services.intake.auth import Authenticator
from services.intake.metrics import IntakeMetrics
from services.intake.usecases import IntakeConfig, IntakeUnitOfWork


@dataclass(frozen=True)
class IntakeContext:
    """Set as ``app.state.intake`` by ``build_app``; routes read it through ``Depends``."""

    cfg: IntakeConfig
    metrics: IntakeMetrics
    uow: IntakeUnitOfWork
    authenticator: Authenticator
    pool: Callable[[], asyncpg.Pool]  # the API-key lookup reads the pool directly (auth.py)
