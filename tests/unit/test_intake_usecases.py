"""intake's use cases against the in-memory unit of work and repository: no I/O."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from services.intake import lifecycle
from services.intake.audit import AuditEntry, Origin
from services.intake.domain.complaint import Actor, ComplaintNotFound, InvalidField, OutOfScope
from services.intake.lifecycle import State
from services.intake.schemas import ACTION_BODIES, ComplaintIn, DisposeIn, RespondIn
from services.intake.scopes import SCOPES
from services.intake.usecases import (
    IntakeConfig,
    SubmissionConflict,
    UnknownComplaint,
    perform_action,
    record_event,
    submit_complaint,
)
from shared.events import (
    ComplaintRouted,
    SlaClockStarted,
    SlaReplyWindowElapsed,
    make_event,
)
from tests.unit.intake_fakes import T0, FakeIntakeRepository, FakeIntakeUnitOfWork, complaint, disposed

TZ = ZoneInfo("Asia/Pontianak")
CFG = IntakeConfig(region_code="SKD", tz=TZ, reporter_ref_key="k", hop_cap=3)
ADMIN, OPD = Actor("admin_koordinator"), Actor("opd", opd_code="dinkes")
PORTAL = Actor("portal", source="portal-sekadau")
NOW = T0 + timedelta(days=1)


def uow_with(*complaints) -> FakeIntakeUnitOfWork:
    return FakeIntakeUnitOfWork(FakeIntakeRepository(*complaints))


def submission(**overrides) -> ComplaintIn:
    return ComplaintIn.model_validate({
        "source": "portal-sekadau", "external_id": "ext-1", "received_at": T0.isoformat(),
        "classification": "pengaduan", "category": "kesehatan", "title": "Puskesmas tutup",
        "description": "Puskesmas di desa kami tutup sejak pekan lalu.",
        "location": {"kecamatan": "Sekadau Hilir", "desa": "Mungguk"},
        "reporter": {"name": "Budi", "phone": "+6281234567890"}, **overrides})


# --- submit ------------------------------------------------------------------------------

async def test_a_new_submission_is_stored_with_its_event():
    uow = uow_with()
    accepted = await submit_complaint(uow, submission(), CFG, NOW)
    assert accepted.created and accepted.status == "DITERIMA"
    assert accepted.tracking_id.startswith("SKD-261103-")  # the local date of acceptance
    [event] = uow.committed_events
    assert event.event_name == "complaint.submitted" and event.subject == str(accepted.complaint_id)
    stored = uow.repo.complaints[accepted.complaint_id]
    assert stored.status == State.DITERIMA and stored.tracking_id == accepted.tracking_id
    assert uow.repo.timeline[event.id][2] == "Laporan diterima dari portal-sekadau"
    assert "Budi" not in event.model_dump_json()  # no identity in events


async def test_a_retry_gets_the_same_ids_and_no_second_event():
    uow = uow_with()
    first = await submit_complaint(uow, submission(), CFG, NOW)
    again = await submit_complaint(uow, submission(), CFG, NOW + timedelta(minutes=1))
    assert not again.created
    assert (again.complaint_id, again.tracking_id) == (first.complaint_id, first.tracking_id)
    assert len(uow.committed_events) == 1 and len(uow.repo.complaints) == 1


async def test_reusing_an_external_id_for_other_content_names_the_fields():
    uow = uow_with()
    first = await submit_complaint(uow, submission(), CFG, NOW)
    with pytest.raises(SubmissionConflict) as err:
        await submit_complaint(uow, submission(title="Jalan berlubang", reporter={
            "name": "Ani", "phone": "+6281200000000"}), CFG, NOW)
    assert err.value.fields == ["reporter", "title"]
    assert err.value.tracking_id == first.tracking_id
    assert len(uow.committed_events) == 1


# --- lifecycle actions -------------------------------------------------------------------

async def act(uow, c, action, actor, **body):
    return await perform_action(uow, str(c.id), action, ACTION_BODIES[action](**body), actor,
                                CFG, now=NOW)


async def test_verify_moves_on_and_emits_its_event():
    c = complaint()
    uow = uow_with(c)
    done = await act(uow, c, "verify", ADMIN, title="Puskesmas Mungguk tutup")
    assert (done.previous_status, done.status) == ("DITERIMA", "TERVERIFIKASI")
    assert "dispose" in done.allowed_actions and "verify" not in done.allowed_actions
    [event] = uow.committed_events
    assert event.event_name == "complaint.verified" and event.data["title_edited"] is True
    stored = uow.repo.complaints[c.id]
    assert stored.title == "Puskesmas Mungguk tutup" and stored.original_title == "Puskesmas tutup"
    assert stored.last_transition_at == NOW and done.event_id == event.id


async def test_respond_stores_the_text_and_numbers_the_response():
    c = disposed()
    uow = uow_with(c)
    done = await perform_action(uow, c.tracking_id, "respond", RespondIn(body="Sudah dibuka"),
                                OPD, CFG, now=NOW)
    assert done.status == "DITINDAKLANJUTI"
    [event] = uow.committed_events
    assert event.data["response_no"] == 1 and event.data["opd_code"] == "dinkes"
    assert uow.repo.responses[0][1].body == "Sudah dibuka"
    assert "Sudah dibuka" not in event.model_dump_json()  # citizen/OPD text stays in intake


async def test_a_role_that_may_never_act_is_refused_before_the_lookup():
    uow = uow_with()
    with pytest.raises(lifecycle.RoleMayNot):  # 403, even for an unknown complaint
        await perform_action(uow, "SKD-000000-XXXXXX", "verify", ACTION_BODIES["verify"](),
                             PORTAL, CFG, now=NOW)
    with pytest.raises(ComplaintNotFound):  # 404
        await perform_action(uow, "SKD-000000-XXXXXX", "verify", ACTION_BODIES["verify"](),
                             ADMIN, CFG, now=NOW)


async def test_an_opd_may_not_act_on_a_complaint_not_disposed_to_it():
    c = disposed(opd_code="dpupr")
    uow = uow_with(c)
    with pytest.raises(OutOfScope):  # 403
        await perform_action(uow, str(c.id), "respond", RespondIn(body="x"), OPD, CFG, now=NOW)
    assert uow.committed_events == [] and uow.repo.responses == []


async def test_a_wrong_state_is_a_409_naming_the_allowed_actions():
    c = complaint()
    uow = uow_with(c)
    with pytest.raises(lifecycle.InvalidTransition) as err:
        await act(uow, c, "close", ADMIN)
    assert err.value.state == State.DITERIMA and "verify" in err.value.allowed
    assert uow.rollbacks == 1 and uow.committed_events == []


async def test_the_hop_cap_refuses_another_disposition():
    c = disposed(status=State.DIKEMBALIKAN, hop=3)
    with pytest.raises(lifecycle.HopCapReached):
        await act(uow_with(c), c, "dispose", ADMIN, opd_code="dinkes")


async def test_an_unknown_opd_is_a_422_and_changes_nothing():
    c = complaint()
    uow = uow_with(c)
    with pytest.raises(InvalidField) as err:
        await perform_action(uow, str(c.id), "dispose", DisposeIn(opd_code="nope"), ADMIN, CFG,
                             now=NOW)
    assert err.value.field == "opd_code"
    assert uow.repo.complaints[c.id] == c and uow.committed_events == []


async def test_an_action_dated_before_the_latest_transition_is_a_422():
    c = disposed()
    backfill = Actor("opd", opd_code="dinkes", scopes=(*SCOPES["opd"], "complaints:backdate"))
    with pytest.raises(InvalidField) as err:
        await act(uow_with(c), c, "respond", backfill, body="x", occurred_at=T0)
    assert err.value.field == "occurred_at"


async def test_an_opd_may_not_date_its_response():
    c = disposed()
    uow = uow_with(c)
    with pytest.raises(OutOfScope) as err:  # 403 naming occurred_at
        await act(uow, c, "respond", OPD, body="x", occurred_at=NOW)
    assert err.value.field == "occurred_at" and uow.committed_events == []


async def test_an_action_is_audited_with_its_key_and_request():
    c = disposed()
    uow = uow_with(c)
    opd = Actor("opd", opd_code="dinkes", name="pp-dinkes", key_id=42, scopes=SCOPES["opd"])
    await perform_action(uow, str(c.id), "respond", RespondIn(body="Sudah"), opd, CFG, now=NOW,
                         origin=Origin("req-1", "10.0.0.9"))
    assert uow.repo.audit == [AuditEntry(42, "pp-dinkes", "opd", "respond", c.id, "req-1", "10.0.0.9")]
    assert set(uow.repo.timeline_actors.values()) == {("opd", "pp-dinkes")}


# --- downstream events ---------------------------------------------------------------------

def routed(c, hop=1):
    return make_event("sp4n/routing", ComplaintRouted(
        complaint_id=c.id, opd_code="dinkes", opd_name="Dinas Kesehatan", hop=hop,
        routed_at=T0 + timedelta(minutes=5), rule_id=1, rule_version=1))


async def test_an_automatic_disposition_applies_while_the_complaint_waits():
    c = complaint()
    uow = uow_with(c)
    event = routed(c)
    assert await record_event(uow, event, TZ)
    stored = uow.repo.complaints[c.id]
    assert (stored.status, stored.opd_code, stored.hop) == (State.TERDISPOSISI, "dinkes", 1)
    assert uow.repo.timeline[event.id][2] == "Didisposisikan ke Dinas Kesehatan (disposisi ke-1)"


async def test_an_automatic_disposition_is_ignored_once_a_person_acted():
    c = complaint(status=State.DITUNDA, resume_state=State.DITERIMA)
    uow = uow_with(c)
    event = routed(c)
    assert await record_event(uow, event, TZ)
    assert uow.repo.complaints[c.id] == c
    assert uow.repo.timeline[event.id][2] == (
        "Disposisi otomatis ke Dinas Kesehatan (disposisi ke-1) diabaikan: laporan sudah "
        "berstatus DITUNDA (disposisi ke-0)")


async def test_a_redelivery_has_no_effect():
    c = complaint()
    uow = uow_with(c)
    event = make_event("sp4n/sla", SlaClockStarted(
        complaint_id=c.id, clock="verification", started_at=T0, working_days=3,
        deadline=T0 + timedelta(days=3), warn_at=None, calendar_version="v", policy_version=1))
    assert await record_event(uow, event, TZ)
    clocks = dict(uow.repo.clocks)
    uow.repo.clocks.clear()
    assert not await record_event(uow, event, TZ)
    assert uow.repo.clocks == {} and len(clocks) == 1


async def test_an_event_for_an_unknown_complaint_is_refused():
    with pytest.raises(UnknownComplaint):
        await record_event(uow_with(), routed(complaint()), TZ)


def window(c, responded_at):
    return make_event("sp4n/sla", SlaReplyWindowElapsed(
        complaint_id=c.id, responded_at=responded_at, deadline=responded_at + timedelta(days=14),
        opd_code="dinkes", hop=1, calendar_version="v", policy_version=1))


async def test_the_reply_window_closes_a_complaint_still_waiting_on_the_reporter():
    responded = T0 + timedelta(hours=2)
    c = disposed(status=State.DITINDAKLANJUTI, last_responded_at=responded,
                 last_transition_at=responded)
    uow = uow_with(c)
    event = window(c, responded)
    assert await record_event(uow, event, TZ, now=NOW)
    stored = uow.repo.complaints[c.id]
    assert (stored.status, stored.closed_by) == (State.SELESAI, "system")
    [closed] = uow.committed_events
    assert closed.event_name == "complaint.closed" and closed.data["closed_by"] == "system"
    assert stored.closed_event_id == closed.id
    assert uow.repo.timeline[event.id][2].endswith("lewat tanpa tanggapan")
    assert not await record_event(uow, event, TZ, now=NOW)  # redelivered: nothing more
    assert len(uow.committed_events) == 1


async def test_the_reply_window_leaves_a_complaint_the_reporter_answered():
    responded = T0 + timedelta(hours=2)
    c = disposed(status=State.DITANGGAPI_PELAPOR, last_responded_at=responded,
                 last_reply_at=responded + timedelta(hours=1))
    uow = uow_with(c)
    event = window(c, responded)
    assert await record_event(uow, event, TZ, now=NOW)
    assert uow.repo.complaints[c.id] == c and uow.committed_events == []
    assert "tidak ditutup: status DITANGGAPI_PELAPOR" in uow.repo.timeline[event.id][2]


async def test_intakes_own_events_coming_back_do_nothing():
    c = complaint()
    uow = uow_with(c)
    own = make_event("sp4n/intake", ComplaintRouted(
        complaint_id=c.id, opd_code="dinkes", opd_name="Dinas Kesehatan", hop=1, routed_at=T0,
        routed_by="admin"))
    assert not await record_event(uow, own, TZ)
    assert uow.repo.complaints[c.id] == c and own.id not in uow.repo.timeline
    assert own.id in uow.inbox
