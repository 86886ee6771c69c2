"""SLA policy: how many working days each clock gets. Data (the ``policies`` table), not code.

A policy row is keyed by a *policy key*, finer than the clock kind: the completion clock's
length depends on the report's classification (and, for a pengaduan, on whether it is
berkadar pengawasan). Editing a row bumps its version (a trigger), and every deadline
records the version it was computed with.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import Classification

VERIFICATION = "verification"
OPD_RESPONSE = "opd_response"
AUTO_CLOSE = "auto_close"
REDISPOSITION = "redisposition"
DEFERRAL = "deferral"
COMPLETION_KEYS = {
    "aspirasi": "completion_aspirasi",
    "permintaan_informasi": "completion_permintaan_informasi",
    "pengaduan": "completion_pengaduan",
}
COMPLETION_PENGAWASAN = "completion_pengaduan_pengawasan"

# The defaults seeded by migration 0002 (Permenpan RB 62/2018); here for docs and tests only.
DEFAULT_WORKING_DAYS = {
    VERIFICATION: 3,
    OPD_RESPONSE: 5,
    "completion_aspirasi": 5,
    "completion_permintaan_informasi": 5,
    "completion_pengaduan": 14,
    COMPLETION_PENGAWASAN: 60,
    AUTO_CLOSE: 10,
    REDISPOSITION: 3,
    DEFERRAL: 10,
}
# Seeded without a warning (migration 0005): the reporter, not staff, must act.
NO_WARNING = frozenset({DEFERRAL})


@dataclass(frozen=True)
class Policy:
    key: str
    working_days: int
    warn_before_working_days: int
    version: int
    # Warning points ("2hk", "50%"); empty: the single point ``warn_before_working_days``.
    warn_points: tuple[str, ...] = ()


def completion_policy_key(classification: Classification, berkadar_pengawasan: bool) -> str:
    if classification == "pengaduan" and berkadar_pengawasan:
        return COMPLETION_PENGAWASAN
    return COMPLETION_KEYS[classification]


def default_policies() -> dict[str, Policy]:
    return {k: Policy(k, n, 0 if k in NO_WARNING else 1, 1)
            for k, n in DEFAULT_WORKING_DAYS.items()}
