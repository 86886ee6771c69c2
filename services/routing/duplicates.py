"""Duplicate suspicion: complaints of the same category in the same desa received close
together are probably about the same thing. Pure logic, no I/O; the repository runs the
same selection in SQL (equality on the keys below, the window as an inclusive range).

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
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
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


def is_candidate(new: SubmissionKey, other: SubmissionKey, window_days: int) -> bool:
    if not new.has_desa or other.complaint_id == new.complaint_id:
        return False
    low, high = window(new.received_at, window_days)
    return (other.category == new.category and other.desa == new.desa
            and low <= other.received_at <= high)


# A flag is a hint to a person: the nearest few candidates are enough, and an unbounded list
# would grow without limit for a much-reported problem (one pothole, hundreds of reports).
MAX_CANDIDATES = 20


def select_candidates(new: SubmissionKey, recent: Iterable[SubmissionKey],
                      window_days: int) -> list[uuid.UUID]:
    """The MAX_CANDIDATES candidates nearest in received_at (ties: lower id), listed by
    received_at (then id, so the order is total)."""
    found = [o for o in recent if is_candidate(new, o, window_days)]
    nearest = sorted(found, key=lambda o: (abs((o.received_at - new.received_at).total_seconds()),
                                           str(o.complaint_id)))[:MAX_CANDIDATES]
    return [o.complaint_id for o in sorted(nearest, key=lambda o: (o.received_at, str(o.complaint_id)))]
