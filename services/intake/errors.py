"""Error answers portals can act on: every 4xx names the field and the reason."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.intake.metrics import IntakeMetrics


class ApiError(Exception):
    """A 4xx answer with a top-level JSON body: ``{"error", "message", …}``."""

    def __init__(self, status_code: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = {"error": error, "message": message, **extra}


def install_error_handlers(app: FastAPI, metrics: IntakeMetrics) -> None:
    """How the native API's errors look on the wire (Open311 has its own, see ``open311``)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.rejected.labels("validation").inc()
        return JSONResponse(validation_problem(list(exc.errors())), status_code=422)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status_code)


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
