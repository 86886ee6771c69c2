"""Disposition rules: which OPD a complaint goes to, decided from its category and area.

Pure logic, no I/O. Invariants:
- Only enabled rules take part. A rule matches when its category equals the complaint's
  category or is ``*``, and its kecamatan equals the complaint's kecamatan or is ``*``.
  Comparison ignores case, surrounding and repeated whitespace, ``_``/``-`` versus space,
  and a leading "Kecamatan"/"Kec." (portals spell areas inconsistently).
- The winner has the highest priority; on a tie the more specific rule (fewer wildcards)
  wins; then the lowest id, so the outcome never depends on load order.
- No match is not an error: the complaint goes to the admin koordinator's triage queue
  (keyword/ML classification may only suggest; explicit rules decide — DESIGN §2).
- A winning rule with ``auto_dispose`` off only *suggests* its OPD: the complaint waits for
  the admin koordinator, who accepts the suggestion or disposes elsewhere. A winner whose
  OPD is missing from the directory is never used: triage, naming the broken rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

WILDCARD = "*"
_AREA_PREFIX = re.compile(r"^(kecamatan|kec\.?)\s+")


def normalize_category(value: str | None) -> str:
    return " ".join((value or "").split()).lower().replace(" ", "_")


def normalize_area(value: str | None) -> str:
    text = " ".join((value or "").replace("_", " ").replace("-", " ").split()).lower()
    return _AREA_PREFIX.sub("", text)


@dataclass(frozen=True)
class Rule:
    id: int
    category: str
    kecamatan: str
    opd_code: str
    priority: int = 0
    version: int = 1
    enabled: bool = True
    auto_dispose: bool = True

    @property
    def specificity(self) -> int:
        """How many of the two dimensions the rule names (0 = catch-all)."""
        return (self.category != WILDCARD) + (self.kecamatan != WILDCARD)

    def matches(self, category: str, kecamatan: str) -> bool:
        """``category``/``kecamatan`` must already be normalized."""
        return (self.enabled
                and (self.category == WILDCARD or normalize_category(self.category) == category)
                and (self.kecamatan == WILDCARD or normalize_area(self.kecamatan) == kecamatan))


def match(rules: Iterable[Rule], category: str | None, kecamatan: str | None) -> Rule | None:
    """The winning rule for a complaint, or None when no enabled rule applies."""
    cat, area = normalize_category(category), normalize_area(kecamatan)
    candidates = [r for r in rules if r.matches(cat, area)]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (-r.priority, -r.specificity, r.id))


@dataclass(frozen=True)
class Routed:
    opd_code: str
    opd_name: str
    rule_id: int
    rule_version: int


@dataclass(frozen=True)
class Suggested:
    """A rule matched but does not dispose automatically: the admin koordinator decides."""

    opd_code: str
    opd_name: str
    rule_id: int
    rule_version: int


@dataclass(frozen=True)
class Triage:
    reason: str  # Bahasa Indonesia: the admin koordinator reads it
    suggested_rule: Rule | None = None


Decision = Routed | Suggested | Triage


def _area_text(kecamatan: str | None) -> str:
    area = " ".join((kecamatan or "").split())
    return f"di kecamatan '{area}'" if area else "(kecamatan tidak diketahui)"


def decide(rules: Iterable[Rule], opd_names: Mapping[str, str],
           category: str | None, kecamatan: str | None) -> Decision:
    """Route (or only suggest, when the rule does not auto-dispose) by the winning rule, or
    say in Bahasa Indonesia why triage is needed."""
    rule = match(rules, category, kecamatan)
    cat_text = " ".join((category or "").split())
    if rule is None:
        return Triage(f"Tidak ada aturan disposisi untuk kategori '{cat_text}' {_area_text(kecamatan)}")
    name = opd_names.get(rule.opd_code)
    if name is None:
        return Triage(f"Aturan disposisi #{rule.id} menunjuk OPD '{rule.opd_code}' "
                      "yang tidak ada di direktori OPD", rule)
    if not rule.auto_dispose:
        return Suggested(rule.opd_code, name, rule.id, rule.version)
    return Routed(rule.opd_code, name, rule.id, rule.version)
