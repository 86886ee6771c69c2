"""The admin koordinator's reporter-data route: erase a reporter (crypto-shredding)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Request
from pydantic import BaseModel

from services.intake import privacy, scopes
from services.intake.api import Context, Key, actor_of, origin_of
from services.intake.auth import require
from services.intake.errors import ApiError


class ErasedComplaint(BaseModel):
    complaint_id: uuid.UUID
    tracking_id: str


class ReporterErased(BaseModel):
    erased: list[ErasedComplaint]


router = APIRouter(prefix="/v1", tags=["reporters"])
# A tracking id, a complaint id (uuid) or a reporter reference (rep_…, anon_…).
ReporterKey = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_-]+$")]


@router.post("/reporters/{key}/erase", response_model=ReporterErased, name="erase_reporter",
             responses={403: {"description": "not an admin koordinator key"},
                        404: {"description": "no complaint for this reporter, id or tracking id"},
                        422: {"description": "not a tracking id, complaint id or reporter reference"}})
async def erase_reporter(key: ReporterKey, api: Key, ctx: Context, request: Request) -> ReporterErased:
    """Erase a reporter's identity (UU PDP): ``key`` is a reporter reference (``rep_…``: all
    of that reporter's complaints), a complaint id or a tracking id. The data key is destroyed,
    so the stored identity no longer decrypts; the complaints, their timeline, deadlines and
    events stay, and reads show the reporter as erased. Idempotent."""
    require(api, scopes.ERASE)
    async with ctx.pool().acquire() as conn:
        erased = await privacy.erase_reporter(conn, key, (actor_of(api), origin_of(request)))
    if not erased:
        raise ApiError(404, "not_found", f"tidak ada laporan untuk pelapor, id atau nomor '{key}'",
                       field="key")
    return ReporterErased(erased=[ErasedComplaint(complaint_id=e.complaint_id,
                                                  tracking_id=e.tracking_id) for e in erased])


def install_privacy_api(app: FastAPI) -> None:
    app.include_router(router)
