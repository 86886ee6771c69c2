"""intake's side of the deadline engine (issue 10), pure and with the in-memory unit of work:
progress updates and the final tindak lanjut, the admin koordinator's corrections (at
verification and ``reclassify``), ``withdraw`` and the hop cap, the system's archive of an
expired deferral, and what sla's escalations and recomputed deadlines do to the status."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.intake import lifecycle
from services.intake.catalog import load_catalog
from services.intake.domain.complaint import (
    Actor,
    Complaint,
    Facts,
    InvalidField,
    OutOfScope,
    actions_for,
)
from services.intake.domain.effects import ChangeDeadline, EscalateClock, FlagClock, StartClock, decide
from services.intake.domain.model import ClockRow, ReporterRow
from services.intake.lifecycle import State
from services.intake.queries import clock_view, complaint_detail
from services.intake.reporter_data import seal_reporter
from services.intake.schemas import ACTION_BODIES, ReclassifyIn, RespondIn, VerifyIn
from services.intake.usecases import IntakeConfig, perform_action, record_event
from shared.events import (
    EVENT_MODELS,
    SlaBreached,
    SlaClockStarted,
    SlaClockStopped,
    SlaDeadlineChanged,
    SlaDeferralExpired,
    SlaEscalated,
    make_event,
)
from tests.unit.intake_fakes import T0, FakeIntakeRepository, FakeIntakeUnitOfWork, complaint, disposed
from tests.unit.test_intake_routes import client_for

TZ = ZoneInfo("Asia/Pontianak")
CFG = IntakeConfig(region_code="SKD", tz=TZ, reporter_ref_key="k", hop_cap=3)
ADMIN = Actor("admin_koordinator", name="diskominfo")
OPD, PORTAL = Actor("opd", opd_code="dinkes"), Actor("portal", source="portal-sekadau")
NOW = T0 + timedelta(days=1)
AT = T0 + timedelta(hours=3)
VERSIONS = {"calendar_version": "holidays-0.109+ovr-0", "policy_version": 1}
CATEGORY = load_catalog().services[0].code  # a category the catalogue knows


def uow_with(*complaints) -> FakeIntakeUnitOfWork:
    return FakeIntakeUnitOfWork(FakeIntakeRepository(*complaints))


async def act(uow, c, action, actor, **body):
    return await perform_action(uow, str(c.id), action, ACTION_BODIES[action](**body), actor,
                                CFG, now=NOW)


def summaries(uow, c) -> list[str]:
    return [s for cid, _, s in uow.repo.timeline.values() if cid == c.id]


# --- respond: progress updates and the final tindak lanjut ------------------------------

async def test_a_progress_update_keeps_the_status_and_says_final_false():
    c = disposed()
    uow = uow_with(c)
    done = await act(uow, c, "respond", OPD, body="Tim dijadwalkan turun Senin.", final=False)
    assert (done.previous_status, done.status) == ("TERDISPOSISI", "TERDISPOSISI")
    assert done.allowed_actions == ["respond", "return"]  # the final one is still to come
    [event] = uow.committed_events
    assert event.event_name == "complaint.responded" and event.data["final"] is False
    stored = uow.repo.complaints[c.id]
    # Not a transition, and not the response the reply window waits on.
    assert stored.last_responded_at is None and stored.last_transition_at == c.last_transition_at
    assert uow.repo.responses[0][1].final is False
    assert summaries(uow, c)[-1] == ("Perkembangan tindak lanjut dari Dinas Kesehatan (tanggapan "
                                     "ke-1); menunggu tindak lanjut akhir")


async def test_the_final_response_moves_to_ditindaklanjuti_and_numbers_after_the_updates():
    c = disposed()
    uow = uow_with(c)
    await act(uow, c, "respond", OPD, body="Sedang diproses.", final=False)
    done = await act(uow, c, "respond", OPD, body="Sudah diperbaiki.")
    assert done.status == "DITINDAKLANJUTI"
    final = uow.committed_events[-1]
    assert (final.data["final"], final.data["response_no"]) == (True, 2)
    assert uow.repo.complaints[c.id].last_responded_at == NOW
    assert summaries(uow, c)[-1] == "Tindak lanjut akhir dari Dinas Kesehatan (tanggapan ke-2)"


async def test_a_progress_update_after_the_reporters_reply_stays_with_the_opd():
    c = disposed(status=State.DITANGGAPI_PELAPOR)
    uow = uow_with(c)
    done = await act(uow, c, "respond", OPD, body="Masih dikerjakan.", final=False)
    assert done.status == "DITANGGAPI_PELAPOR"


async def test_no_progress_update_once_the_final_response_is_given():
    c = disposed(status=State.DITINDAKLANJUTI)
    uow = uow_with(c)
    with pytest.raises(lifecycle.InvalidTransition):
        await act(uow, c, "respond", OPD, body="Tambahan.", final=False)
    assert uow.repo.responses == [] and uow.committed_events == []


# --- corrections: reclassify and verify --------------------------------------------------

async def test_reclassify_to_berkadar_pengawasan_emits_what_sla_needs():
    c = disposed()
    uow = uow_with(c)
    done = await act(uow, c, "reclassify", ADMIN, berkadar_pengawasan=True,
                     reason="Perlu pemeriksaan lapangan oleh inspektorat")
    assert (done.previous_status, done.status) == ("TERDISPOSISI", "TERDISPOSISI")
    [event] = uow.committed_events
    assert event.event_name == "complaint.reclassified"
    assert event.data | {"reclassified_at": None} == {
        "complaint_id": str(c.id), "reclassified_at": None, "classification": "pengaduan",
        "berkadar_pengawasan": True, "category": "kesehatan", "anonymous": False,
        "confidential": False, "location_public": False, "changed_fields": ["berkadar_pengawasan"],
        "reason": "Perlu pemeriksaan lapangan oleh inspektorat", "changed_by": "diskominfo"}
    EVENT_MODELS["complaint.reclassified"].model_validate(event.data)
    assert uow.repo.complaints[c.id].berkadar_pengawasan is True
    assert summaries(uow, c)[-1] == (
        "Data laporan dikoreksi oleh admin koordinator: berkadar pengawasan tidak → ya "
        "(alasan: Perlu pemeriksaan lapangan oleh inspektorat)")


async def test_reclassify_changes_only_what_differs_and_names_the_key_or_role():
    c = complaint(anonymous=False, confidential=False)
    uow = uow_with(c)
    await perform_action(uow, str(c.id), "reclassify", ReclassifyIn(
        classification="pengaduan", anonymous=True, confidential=True, category=CATEGORY,
        reason="Pelapor meminta identitas dirahasiakan"), Actor("admin_koordinator"), CFG, now=NOW)
    [event] = uow.committed_events
    assert event.data["changed_fields"] == ["category", "anonymous", "confidential"]
    assert event.data["changed_by"] == "admin_koordinator"  # a key without a name: its role
    stored = uow.repo.complaints[c.id]
    assert (stored.anonymous, stored.confidential, stored.category) == (True, True, CATEGORY)


async def test_moving_away_from_pengaduan_clears_berkadar_pengawasan():
    c = disposed(berkadar_pengawasan=True)
    uow = uow_with(c)
    await act(uow, c, "reclassify", ADMIN, classification="aspirasi", reason="Ini usulan warga")
    [event] = uow.committed_events
    assert event.data["changed_fields"] == ["classification", "berkadar_pengawasan"]
    assert event.data["berkadar_pengawasan"] is False
    assert uow.repo.complaints[c.id].classification == "aspirasi"


@pytest.mark.parametrize("body,field", [
    ({"berkadar_pengawasan": False}, "(body)"),  # already so: nothing changes
    ({"classification": "pengaduan", "category": "kesehatan"}, "(body)"),
    ({}, "(body)"),
    ({"classification": "aspirasi", "berkadar_pengawasan": True}, "berkadar_pengawasan"),
    ({"category": "kategori_tidak_ada"}, "category"),
])
async def test_reclassify_that_changes_nothing_or_is_impossible_is_a_422(body, field):
    c = disposed()
    uow = uow_with(c)
    with pytest.raises(InvalidField) as err:
        await act(uow, c, "reclassify", ADMIN, reason="Koreksi admin", **body)
    assert err.value.field == field
    assert uow.repo.complaints[c.id] == c and uow.committed_events == []


@pytest.mark.parametrize("state", [State.SELESAI, State.DIARSIPKAN, State.DILIMPAHKAN])
async def test_reclassify_is_409_once_closed_archived_or_forwarded(state):
    c = disposed(status=state)
    with pytest.raises(lifecycle.InvalidTransition) as err:
        await act(uow_with(c), c, "reclassify", ADMIN, anonymous=True, reason="Koreksi admin")
    assert err.value.state == state and "reclassify" not in err.value.allowed


async def test_only_the_admin_koordinator_reclassifies_or_withdraws():
    c = disposed()
    for actor in (OPD, PORTAL):
        for action, body in (("reclassify", {"anonymous": True, "reason": "saya mau"}),
                             ("withdraw", {"reason": "salah"})):
            with pytest.raises(lifecycle.RoleMayNot):  # 403
                await act(uow_with(c), c, action, actor, **body)


def test_a_correction_needs_a_reason():
    with pytest.raises(ValidationError) as err:
        ReclassifyIn(anonymous=True)
    assert err.value.errors()[0]["loc"] == ("reason",)
    with pytest.raises(ValidationError) as err:
        VerifyIn(category="kesehatan")
    assert err.value.errors()[0]["loc"] == ("reason",)
    assert VerifyIn(title="Judul baru").reason is None  # a title alone needs none


async def test_verify_with_corrections_emits_verified_then_reclassified():
    c = complaint(status=State.DITUNDA, resume_state=State.DITERIMA, deferred_at=T0)
    uow = uow_with(c)
    done = await act(uow, c, "verify", ADMIN, berkadar_pengawasan=True, confidential=True,
                     reason="Perlu pemeriksaan; pelapor minta dirahasiakan")
    assert done.status == "TERVERIFIKASI"
    assert [e.event_name for e in uow.committed_events] == [
        "complaint.resumed", "complaint.verified", "complaint.reclassified"]
    assert uow.committed_events[-1].data["changed_fields"] == ["berkadar_pengawasan", "confidential"]
    stored = uow.repo.complaints[c.id]
    assert stored.berkadar_pengawasan and stored.confidential


async def test_verify_whose_corrections_change_nothing_only_verifies():
    c = complaint()
    uow = uow_with(c)
    await act(uow, c, "verify", ADMIN, classification="pengaduan", reason="sudah benar")
    assert [e.event_name for e in uow.committed_events] == ["complaint.verified"]


async def test_anonim_set_by_the_admin_hides_the_reporter_from_the_opd_at_once():
    c = disposed()
    uow = uow_with(c)
    uow.repo.reporters[c.id] = (seal_reporter(CFG.keyring, c.id, ReporterRow(name="Budi", phone="+62812")),
                                 "fp")
    before = await complaint_detail(uow, str(c.id), OPD, hop_cap=3, tz=TZ, keyring=CFG.keyring,
                                  opd_contact_days=30)
    assert before.reporter is not None and before.reporter.name == "Budi"
    await act(uow, c, "reclassify", ADMIN, anonymous=True, reason="Pelapor minta anonim")
    after = await complaint_detail(uow, str(c.id), OPD, hop_cap=3, tz=TZ, keyring=CFG.keyring,
                                  opd_contact_days=30)
    assert after.reporter is None and after.anonymous is True
    admin = await complaint_detail(uow, str(c.id), ADMIN, hop_cap=3, tz=TZ, keyring=CFG.keyring,
                                  opd_contact_days=30)
    assert admin.reporter is None  # anonim: nobody reads the identity on this API


# --- withdraw ----------------------------------------------------------------------------

async def test_withdraw_puts_the_complaint_back_for_disposition():
    c = disposed()
    uow = uow_with(c)
    done = await act(uow, c, "withdraw", ADMIN, reason="Salah disposisi: urusan PUPR")
    assert (done.previous_status, done.status, done.hop) == ("TERDISPOSISI", "TERVERIFIKASI", 1)
    assert "dispose" in done.allowed_actions
    [event] = uow.committed_events
    assert event.event_name == "complaint.withdrawn"
    assert (event.data["opd_code"], event.data["hop"]) == ("dinkes", 1)
    stored = uow.repo.complaints[c.id]
    assert stored.withdrawals == 1 and stored.counted_hops == 0
    assert summaries(uow, c)[-1] == ("Ditarik kembali oleh admin koordinator dari Dinas Kesehatan "
                                     "(disposisi ke-1): Salah disposisi: urusan PUPR; menunggu "
                                     "disposisi ulang")
    # The OPD no longer has it.
    with pytest.raises(OutOfScope):
        await act(uow, stored, "respond", OPD, body="x")
    # The next disposition is the next hop.
    again = await act(uow, stored, "dispose", ADMIN, opd_code="dpupr")
    assert (again.status, again.hop, again.opd_code) == ("TERDISPOSISI", 2, "dpupr")


@pytest.mark.parametrize("state", [s for s in State if s != State.TERDISPOSISI])
async def test_withdraw_is_409_outside_terdisposisi(state):
    c = disposed(status=state)
    with pytest.raises(lifecycle.InvalidTransition) as err:
        await act(uow_with(c), c, "withdraw", ADMIN, reason="Salah disposisi")
    assert err.value.state == state


async def test_a_withdrawn_disposition_does_not_count_toward_the_hop_cap():
    # Three dispositions, the last one withdrawn: two count, so a third OPD may still get it.
    c = disposed(hop=3)
    uow = uow_with(c)
    await act(uow, c, "withdraw", ADMIN, reason="Salah disposisi")
    stored = uow.repo.complaints[c.id]
    assert "dispose" in actions_for(ADMIN, stored, 3)
    done = await act(uow, stored, "dispose", ADMIN, opd_code="dpupr")
    assert done.hop == 4
    # Returned by that OPD, the cap (three counted) is reached.
    await act(uow, uow.repo.complaints[c.id], "return", Actor("opd", opd_code="dpupr"),
              reason="Bukan wewenang")
    with pytest.raises(lifecycle.HopCapReached):
        await act(uow, uow.repo.complaints[c.id], "dispose", ADMIN, opd_code="dinkes")


# --- DITUNDA expires: the system archives ------------------------------------------------

def expired(c, deferred_at, deadline=None):
    return make_event("sp4n/sla", SlaDeferralExpired(
        complaint_id=c.id, deferred_at=deferred_at, deadline=deadline or deferred_at + timedelta(days=14),
        **VERSIONS))


async def test_an_expired_deferral_archives_by_the_system_once():
    deferred = T0 + timedelta(hours=2)
    c = complaint(status=State.DITUNDA, resume_state=State.DITERIMA, deferred_at=deferred,
                  last_transition_at=deferred)
    uow = uow_with(c)
    event = expired(c, deferred)
    assert await record_event(uow, event, TZ, now=NOW)
    stored = uow.repo.complaints[c.id]
    assert (stored.status, stored.archive_reason, stored.archived_by) == (
        State.DIARSIPKAN, "tidak_ada_tanggapan_pelapor", "system")
    assert stored.deferred_at is None and stored.resume_state is None
    [archived] = uow.committed_events
    assert archived.event_name == "complaint.archived" and archived.source == "sp4n/intake"
    assert archived.data["reason"] == "tidak_ada_tanggapan_pelapor"
    texts = summaries(uow, c)
    assert texts[0] == ("Diarsipkan oleh sistem: tidak ada tanggapan dari pelapor hingga "
                        "16-11-2026 10:00 WIB")
    assert texts[1] == "Batas tunda menunggu pelapor (16-11-2026 10:00 WIB) lewat tanpa tanggapan"
    assert not await record_event(uow, event, TZ, now=NOW)  # redelivered: nothing more
    assert len(uow.committed_events) == 1


async def test_an_expiry_of_an_earlier_deferral_only_notes_it():
    first, second = T0 + timedelta(hours=1), T0 + timedelta(hours=5)
    c = complaint(status=State.DITUNDA, resume_state=State.DITERIMA, deferred_at=second,
                  last_transition_at=second)
    uow = uow_with(c)
    event = expired(c, first)
    assert await record_event(uow, event, TZ, now=NOW)
    assert uow.repo.complaints[c.id] == c and uow.committed_events == []
    assert uow.repo.timeline[event.id][2] == (
        "Batas tunda menunggu pelapor (16-11-2026 09:00 WIB) lewat, tetapi laporan tidak "
        "diarsipkan: ditunda lagi sejak 02-11-2026 13:00 WIB")


async def test_an_expiry_after_the_reporter_answered_only_notes_it():
    deferred = T0 + timedelta(hours=1)
    c = complaint(status=State.DITERIMA, last_transition_at=deferred + timedelta(hours=1))
    uow = uow_with(c)
    event = expired(c, deferred)
    assert await record_event(uow, event, TZ, now=NOW)
    assert uow.repo.complaints[c.id] == c and uow.committed_events == []
    assert uow.repo.timeline[event.id][2].endswith("tidak diarsipkan: status DITERIMA")


def test_the_system_archives_only_a_deferred_complaint():
    for state in State:
        c = complaint(status=state, deferred_at=T0)
        outcome, _ = Complaint(c).deferral_expired(
            expired(c, T0).data, TZ, NOW)
        assert bool(outcome.events) == (state == State.DITUNDA)


# --- sla's clock events: instances, paused days, coverage, cancellation -------------------

def started(c, **over):
    data = {"complaint_id": c.id, "clock": "completion", "started_at": T0, "working_days": 14,
            "deadline": T0 + timedelta(days=20), "warn_at": None, **VERSIONS, **over}
    return make_event("sp4n/sla", SlaClockStarted(**data))


async def test_clock_instances_are_separate_rows_with_sla_fields():
    c = disposed()
    uow = uow_with(c)
    first = started(c, clock="opd_response", hop=1, opd_code="dinkes", working_days=5)
    second = started(c, clock="opd_response", hop=1, instance=1, opd_code="dinkes", working_days=5,
                     started_at=T0 + timedelta(days=3), paused_working_days=2,
                     beyond_calendar_coverage=True)
    for e in (first, second):
        assert await record_event(uow, e, TZ)
    rows = {k.instance: k for k in await uow.repo.clocks_of(c.id)}
    assert set(rows) == {0, 1}
    assert rows[1].paused_working_days == 2 and rows[1].beyond_calendar_coverage
    assert uow.repo.timeline[second.id][2] == (
        "Tenggat tindak lanjut OPD: 22-11-2026 08:00 WIB (5 hari kerja, 2 hari kerja tertunda, "
        "melewati cakupan kalender cuti bersama)")


async def test_a_cancelled_clock_is_neither_met_nor_breached():
    c = disposed()
    uow = uow_with(c)
    stop = make_event("sp4n/sla", SlaClockStopped(
        complaint_id=c.id, clock="opd_response", hop=1, opd_code="dinkes", stopped_at=NOW,
        deadline=NOW + timedelta(days=5), on_time=True, reason="cancelled"))
    assert await record_event(uow, started(c, clock="opd_response", hop=1, opd_code="dinkes"), TZ)
    assert await record_event(uow, stop, TZ)
    [row] = await uow.repo.clocks_of(c.id)
    assert row.state == "dibatalkan" and row.cancelled and not row.breached
    assert uow.repo.timeline[stop.id][2] == "Tenggat tindak lanjut OPD dibatalkan"


# --- sla.deadline_changed and sla.escalated ----------------------------------------------

def changed(c, old, new, **over):
    data = {"complaint_id": c.id, "clock": "completion", "old_deadline": old, "new_deadline": new,
            "reason": "reclassified", "note": "Perlu pemeriksaan lapangan",
            "changed_by": "diskominfo", **VERSIONS, **over}
    return make_event("sp4n/sla", SlaDeadlineChanged(**data))


async def test_a_changed_deadline_moves_the_clock_and_says_why():
    c = disposed()
    uow = uow_with(c)
    start = started(c)
    old, new = T0 + timedelta(days=20), T0 + timedelta(days=85)
    change = changed(c, old, new, policy_version=2)
    assert await record_event(uow, start, TZ)
    assert await record_event(uow, change, TZ)
    [row] = await uow.repo.clocks_of(c.id)
    assert row.deadline == new and row.policy_version == 2 and row.working_days == 14
    assert uow.repo.timeline[change.id][2] == (
        "Tenggat penyelesaian berubah dari 22-11-2026 08:00 WIB menjadi 26-01-2027 08:00 WIB "
        "(klasifikasi laporan dikoreksi: Perlu pemeriksaan lapangan; oleh diskominfo)")


async def test_a_late_start_does_not_undo_a_recomputed_deadline():
    c = disposed()
    uow = uow_with(c)
    start = started(c)
    change = changed(c, T0 + timedelta(days=20), T0 + timedelta(days=85))
    change = change.model_copy(update={"time": start.time + timedelta(seconds=1)})
    assert await record_event(uow, change, TZ)  # delivered first
    assert await record_event(uow, start, TZ)
    [row] = await uow.repo.clocks_of(c.id)
    assert row.deadline == T0 + timedelta(days=85) and row.started_at == T0 and row.working_days == 14


def escalated(c, level, target, late):
    return make_event("sp4n/sla", SlaEscalated(
        complaint_id=c.id, clock="opd_response", hop=1, opd_code="dinkes",
        deadline=T0 + timedelta(days=7), due_at=T0 + timedelta(days=7 + late), level=level,
        target_role=target, working_days_late=late, ladder_version=1, **VERSIONS))


async def test_escalations_keep_the_highest_level_in_any_order():
    c = disposed()
    uow = uow_with(c)
    two, one, three = (escalated(c, 2, "kepala_opd", 3), escalated(c, 1, "pejabat_penghubung", 1),
                       escalated(c, 3, "sekda", 5))
    for e in (two, one):
        assert await record_event(uow, e, TZ)
    [row] = await uow.repo.clocks_of(c.id)
    assert (row.escalation_level, row.escalated_to, row.working_days_late) == (2, "kepala_opd", 3)
    assert row.breached  # an escalation follows the breach, whichever arrives first
    assert await record_event(uow, three, TZ)
    assert not await record_event(uow, three, TZ)  # redelivered
    [row] = await uow.repo.clocks_of(c.id)
    assert (row.escalation_level, row.escalated_to) == (3, "sekda")
    assert uow.repo.timeline[two.id][2] == (
        "Eskalasi tingkat 2 ke kepala OPD (dinkes): tenggat tindak lanjut OPD "
        "(09-11-2026 08:00 WIB) terlambat 3 hari kerja")
    assert uow.repo.timeline[three.id][2].startswith("Eskalasi tingkat 3 ke Sekretaris Daerah")


def test_the_new_effects_carry_the_clock_instance():
    c = complaint()
    d = decide(changed(c, T0, NOW, instance=2), TZ)
    assert isinstance(d.effect, ChangeDeadline) and d.effect.instance == 2
    e = decide(escalated(c, 1, "pejabat_penghubung", 0), TZ)
    assert isinstance(e.effect, EscalateClock) and e.effect.level == 1
    b = decide(make_event("sp4n/sla", SlaBreached(
        complaint_id=c.id, clock="completion", instance=1, deadline=T0, due_at=T0, **VERSIONS)), TZ)
    assert isinstance(b.effect, FlagClock) and b.effect.instance == 1
    s = decide(started(c, instance=3), TZ)
    assert isinstance(s.effect, StartClock) and s.effect.instance == 3


# --- the status answer -------------------------------------------------------------------

def test_a_running_clock_shows_calendar_days_left_and_local_time():
    deadline = datetime(2026, 11, 12, 16, 59, 59, tzinfo=ZoneInfo("UTC"))  # 23:59:59 WIB
    row = ClockRow("opd_response", 1, "dinkes", T0, deadline, 5, "cal-v", 1, None, False, False,
                   instance=1, paused_working_days=2)
    view = clock_view(row, TZ, datetime(2026, 11, 10, 20, 0, tzinfo=ZoneInfo("UTC")))  # 11 Nov WIB
    assert (view.label, view.instance, view.calendar_days_left) == ("tindak lanjut OPD", 1, 1)
    assert view.deadline_local == "12-11-2026 23:59 WIB" and view.paused_working_days == 2
    late = clock_view(row, TZ, deadline + timedelta(days=3))
    assert late.calendar_days_left == -3 and late.state == "berjalan"  # sla has not said so yet
    stopped = clock_view(ClockRow("opd_response", 1, "dinkes", T0, deadline, 5, "cal-v", 1, NOW,
                                  False, False), TZ, NOW)
    assert stopped.calendar_days_left is None and stopped.state == "selesai"


async def test_the_status_answer_shows_escalation_and_versions_over_http():
    c = disposed()
    client, uow = client_for(c)
    for e in (started(c, clock="opd_response", hop=1, opd_code="dinkes", working_days=5,
                      beyond_calendar_coverage=True),
              escalated(c, 1, "pejabat_penghubung", 1)):
        assert await record_event(uow, e, TZ)
    async with client:
        r = await client.get(f"/v1/complaints/{c.id}", headers={"x-api-key": "admin"})
    assert r.status_code == 200
    body = r.json()
    assert body["berkadar_pengawasan"] is False
    [clock] = body["clocks"]
    assert clock | {"deadline": None, "started_at": None, "calendar_days_left": None} == {
        "clock": "opd_response", "label": "tindak lanjut OPD", "hop": 1, "instance": 0,
        "opd_code": "dinkes", "started_at": None, "deadline": None,
        "deadline_local": "22-11-2026 08:00 WIB", "working_days": 5, "paused_working_days": 0,
        "calendar_days_left": None, "state": "terlambat", "breached": True, "warned": False,
        "stopped_at": None, "calendar_version": "holidays-0.109+ovr-0", "policy_version": 1,
        "beyond_calendar_coverage": True, "escalation_level": 1,
        "escalated_to": "pejabat_penghubung", "working_days_late": 1}


async def test_new_actions_over_http_with_their_refusals():
    c = disposed()
    client, uow = client_for(c)
    url = f"/v1/complaints/{c.id}"
    async with client:
        r = await client.post(f"{url}/reclassify", json={"anonymous": True},
                              headers={"x-api-key": "admin"})
        assert r.status_code == 422  # no reason
        r = await client.post(f"{url}/reclassify", json={"anonymous": False, "reason": "cek"},
                              headers={"x-api-key": "admin"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "(body)"
        r = await client.post(f"{url}/withdraw", json={"reason": "Salah OPD"},
                              headers={"x-api-key": "dinkes"})
        assert r.status_code == 403
        r = await client.post(f"{url}/withdraw", json={"reason": "Salah OPD"},
                              headers={"x-api-key": "admin"})
        assert r.status_code == 200 and r.json()["status"] == "TERVERIFIKASI"
        r = await client.post(f"{url}/withdraw", json={"reason": "Salah OPD"},
                              headers={"x-api-key": "admin"})
        assert r.status_code == 409 and r.json()["current_state"] == "TERVERIFIKASI"
        r = await client.post(f"{url}/reclassify", headers={"x-api-key": "admin"},
                              json={"berkadar_pengawasan": True, "reason": "Perlu pemeriksaan"})
        assert r.status_code == 200 and r.json()["status"] == "TERVERIFIKASI"
    assert [e.event_name for e in uow.committed_events] == ["complaint.withdrawn",
                                                            "complaint.reclassified"]
    assert uow.committed_events[-1].data["changed_by"] == "admin"  # the key's name


def test_openapi_documents_the_new_actions():
    from fastapi import FastAPI

    from services.intake.api import router
    app = FastAPI()
    app.include_router(router)
    paths = app.openapi()["paths"]
    for action in ("reclassify", "withdraw"):
        op = paths[f"/v1/complaints/{{key}}/{action}"]["post"]
        assert op["summary"] and "admin koordinator" in op["description"]
    schema = app.openapi()["components"]["schemas"]
    assert "final" in schema["RespondIn"]["properties"]
    assert {"reason", "berkadar_pengawasan", "anonymous"} <= set(schema["VerifyIn"]["properties"])


def test_every_action_has_a_body_a_doc_and_an_effect():
    from services.intake.api import ACTION_DOCS
    assert set(ACTION_BODIES) == set(lifecycle.ACTIONS) == set(ACTION_DOCS)
    assert isinstance(RespondIn(body="x").final, bool)


async def test_a_reclassified_event_carries_no_citizen_text():
    c = disposed()
    step = Complaint(c).begin("reclassify", ADMIN, at=AT, hop_cap=3)
    out = step.apply(ReclassifyIn(confidential=True, reason="Permintaan pelapor"), Facts())
    raw = out.events[0].model_dump_json()
    assert "Puskesmas tutup" not in raw and c.reporter_ref not in raw
    assert uuid.UUID(out.events[0].subject or "") == c.id
