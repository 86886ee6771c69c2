"""intake's imported-history path (pure parts): ``HistoryIn`` validation and the lifecycle
steps ``plan`` replays."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.intake.history import plan
from services.intake.schemas import ComplaintIn, HistoryIn

T = "2026-03-0{}T09:00:00+07:00"


def h(**kw) -> HistoryIn:
    return HistoryIn.model_validate(kw)


def actions(x: HistoryIn) -> list[tuple[str, str]]:
    return [(s.action, s.actor.role) for s in plan(x, "lapor")]


def test_plans_lead_to_the_state_lapor_knows():
    done = h(state="SELESAI", historical=True, verified_at=T.format(2), opd_code="dinkes",
             disposed_at=T.format(3), responded_at=T.format(4), closed_at=T.format(6), rating=5)
    assert actions(done) == [("verify", "admin_koordinator"), ("dispose", "admin_koordinator"),
                             ("respond", "opd"), ("rate", "portal"), ("close", "admin_koordinator")]
    by_system = done.model_copy(update={"closed_by": "system", "rating": None})
    assert actions(by_system)[-1] == ("close_by_system", "admin_koordinator")
    replied = h(state="DITANGGAPI_PELAPOR", opd_code="dinkes", disposed_at=T.format(3),
                responded_at=T.format(4), reporter_replied_at=T.format(5))
    assert [a for a, _ in actions(replied)] == ["dispose", "respond", "reply"]
    archived = h(state="DIARSIPKAN", historical=True, closed_at=T.format(2))
    assert [a for a, _ in actions(archived)] == ["archive"]
    forwarded = h(state="DILIMPAHKAN", historical=True, closed_at=T.format(2), forwarded_to="BPN Sekadau")
    assert [a for a, _ in actions(forwarded)] == ["forward"]
    assert [a for a, _ in actions(h(state="DITUNDA", deferred_at=T.format(2)))] == ["defer"]
    returned = h(state="DIKEMBALIKAN", opd_code="dinkes", disposed_at=T.format(2), returned_at=T.format(3))
    assert [a for a, _ in actions(returned)] == ["dispose", "return"]
    assert actions(h(state="DITERIMA")) == []
    # a duplicate's original is unknown to sp4n: archived with reason 'lainnya'
    dup = plan(h(state="DIARSIPKAN", historical=True, closed_at=T.format(2), archive_reason="duplikat"),
               "lapor")
    assert getattr(dup[0].body, "reason", None) == "lainnya"


@pytest.mark.parametrize(("fields", "message"), [
    ({"state": "SELESAI", "historical": True, "closed_at": T.format(5)}, "needs opd_code, disposed_at"),
    ({"state": "TERDISPOSISI", "opd_code": "dinkes", "verified_at": T.format(4), "disposed_at": T.format(3)},
     "disposed_at must not be before verified_at"),
    ({"state": "SELESAI", "opd_code": "dinkes", "disposed_at": T.format(3), "responded_at": T.format(4),
      "closed_at": T.format(5)}, "historical is true exactly"),
    ({"state": "TERDISPOSISI", "opd_code": "dinkes", "disposed_at": "2099-01-01T00:00:00+07:00"},
     "must not be in the future"),
    ({"state": "TERDISPOSISI", "opd_code": "Dinas Kesehatan", "disposed_at": T.format(3)}, "opd_code"),
])
def test_history_is_complete_ordered_and_not_in_the_future(fields, message):
    with pytest.raises(ValidationError, match=message):
        h(**fields)


def test_history_dates_not_before_receipt_and_lapor_names_suffice():
    base = {"source": "lapor", "external_id": "L-1", "received_at": T.format(3),
            "classification": "pengaduan", "category": "kesehatan", "title": "Obat habis",
            "description": "Obat di puskesmas sering habis."}
    with pytest.raises(ValidationError, match="before received_at"):
        ComplaintIn.model_validate({**base, "anonymous": True,
                                    "history": {"state": "TERVERIFIKASI", "verified_at": T.format(2)}})
    named = ComplaintIn.model_validate({**base, "reporter": {"name": "Budi"}})
    assert not named.anonymous
    with pytest.raises(ValidationError, match="needs a name and a phone"):  # other portals: contact needed
        ComplaintIn.model_validate({**base, "source": "portal-x", "reporter": {"name": "Budi"}})


async def test_history_is_refused_unless_the_caller_is_an_importer():
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from services.intake.history import HistoryNotAllowed
    from services.intake.usecases import IntakeConfig, submit_complaint

    sub = ComplaintIn.model_validate({
        "source": "lapor", "external_id": "L-2", "received_at": T.format(2), "anonymous": True,
        "classification": "pengaduan", "category": "kesehatan", "title": "Obat habis",
        "description": "Obat di puskesmas sering habis.", "history": {"state": "DITERIMA"}})
    cfg = IntakeConfig(region_code="SKD", tz=ZoneInfo("Asia/Pontianak"), reporter_ref_key="k", hop_cap=3)
    with pytest.raises(HistoryNotAllowed, match="source 'lapor'"):  # e.g. over the broker
        await submit_complaint(None, sub, cfg, datetime.now(UTC))  # type: ignore[arg-type]  # never reached
