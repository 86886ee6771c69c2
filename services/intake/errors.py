"""Error answers portals can act on: every 4xx names the field and the reason."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as ``{"field": "location.lat", "reason": ..., "type": ...}``."""
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]  # where it came from; a field may itself be called "body"
        reason = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"field": ".".join(loc) or "(body)", "reason": reason, "type": e.get("type", "")})
    return out


def validation_problem(errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "error": "validation_failed",
        "message": "Data laporan tidak valid; perbaiki kolom berikut.",
        "errors": field_errors(errors),
    }


def describe(exc: ValidationError) -> str:
    return "; ".join(f"{e['field']}: {e['reason']}" for e in field_errors(exc.errors()))
