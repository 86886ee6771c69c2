"""Duplicate suspicion: complaints of the same category in the same desa received close
together are probably about the same thing. This module holds the pure part — the key and
the window; the selection itself is ONE SQL statement in ``repository`` (the only copy of
the rule, tested against PostgreSQL in tests/integration/test_routing_duplicates.py).

Invariants:
- Flag, never merge, and never change routing: the admin koordinator may archive one as
  ``duplikat`` of another.
- A complaint without desa is never flagged and is never a candidate.
- Same desa = same normalised desa name (case, whitespace, ``_``/``-`` and a leading
  "Desa"/"Ds."/"Kelurahan"/"Kel." ignored, like kecamatan in ``rules``); same category =
  same normalised category code. Kecamatan is deliberately not part of the key (portals
  often leave it out or misspell it).
- Window: ``|received_at(a) - received_at(b)| <= window_days * 24 h``, both ends inclusive,
  on the time the complaint reached the first portal (so a backdated import compares by its
  original date).
- Order-tolerant and symmetric: a complaint is compared with every earlier *processed*
  complaint, whether received before or after it. Each suspicious pair is therefore flagged
  once, on the complaint routing processes second, naming the other one — if B is processed
  before A, A's event lists B; B's earlier event (if any) is not re-issued.
- A flag is a hint to a person: it names at most ``settings.routing.max_duplicate_candidates``
  candidates, the nearest in received_at (ties: lower id as text), listed by received_at
  (then id, so the order is total). An unbounded list would grow without limit for a
  much-reported problem (one pothole, hundreds of reports).
- Retention: a remembered submission is forgotten once both its received_at and the time
  routing recorded it are older than the window plus a margin
  (``settings.retention.recent_submissions_margin_days``, ``repository.prune_recent_submissions``):
  a complaint reaching routing later than that margin after it was received is compared only
  with what is still remembered.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.routing.rules import normalize_category

_DESA_PREFIX = re.compile(r"^(desa|ds\.?|kelurahan|kel\.?)\s+")


def normalize_desa(value: str | None) -> str:
    """'  DESA  Sungai-Ayak ' → 'sungai ayak'; '' when unknown."""
    text = " ".join((value or "").replace("_", " ").replace("-", " ").split()).lower()
    return _DESA_PREFIX.sub("", text)


@dataclass(frozen=True)
class SubmissionKey:
    """One complaint as duplicate suspicion sees it (stored in ``recent_submissions``)."""

    complaint_id: uuid.UUID
    category: str  # normalised
    desa: str  # normalised; '' = unknown
    received_at: datetime

    @classmethod
    def of(cls, complaint_id: uuid.UUID, category: str | None, desa: str | None,
           received_at: datetime) -> SubmissionKey:
        return cls(complaint_id, normalize_category(category), normalize_desa(desa), received_at)

    @property
    def has_desa(self) -> bool:
        return bool(self.desa)


def window(received_at: datetime, window_days: int) -> tuple[datetime, datetime]:
    """The inclusive range of ``received_at`` a candidate must fall in."""
    width = timedelta(days=window_days)
    return received_at - width, received_at + width
