"""Deciding what a repeated submission (same source + external_id) means. Pure."""

from __future__ import annotations

from typing import Any


def conflicting_fields(stored: dict[str, Any], stored_reporter_fp: str,
                       incoming: dict[str, Any], incoming_reporter_fp: str) -> list[str]:
    """Dotted names of the fields where a retry differs from what was accepted.

    Empty means the retry is the same complaint: answer with the same ids. Otherwise the
    portal reused an external_id for different content and must be told which fields differ.
    """
    diffs: list[str] = []
    _diff(stored, incoming, "", diffs)
    if stored_reporter_fp != incoming_reporter_fp:
        diffs.append("reporter")
    return sorted(diffs)


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _diff(a.get(key), b.get(key), f"{path}.{key}" if path else key, out)
    elif a != b:
        out.append(path)
