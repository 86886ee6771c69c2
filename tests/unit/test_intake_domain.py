"""intake's domain, pure: the Complaint aggregate, the effects of downstream events, and the
repository's promise that its SQL names no lifecycle state."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from services.intake import lifecycle, repository
from services.intake.catalog import Opd
from services.intake.domain.complaint import (
    Actor,
    Complaint,
    Facts,
    InvalidField,
    OutOfScope,
    actions_for,
    check_scope,
    current_opd,
)
from services.intake.domain.effects import (
    FlagClock,
    MarkNeedsTriage,
    MarkRouted,
    SetSuggestion,
    decide,
)
from services.intake.domain.model import ReporterRow
from services.intake.lifecycle import State
from services.intake.queries import hidden_from, list_scope, reporter_view
from services.intake.schemas import ArchiveIn, DeferIn, DisposeIn, VerifyIn
from shared.events import (
    ComplaintRouted,
    ComplaintRoutingSuggested,
    ComplaintTriageRequired,
    SlaBreached,
    make_event,
)
from tests.unit.intake_fakes import T0, complaint, disposed

TZ = ZoneInfo("Asia/Pontianak")
ADMIN, OPD = Actor("admin_koordinator"), Actor("opd", opd_code="dinkes")
AT = T0 + timedelta(hours=3)


def test_defer_then_verify_resumes_and_verifies_in_one_outcome():
    c = complaint()
    deferred = Complaint(c).begin("defer", ADMIN, at=AT, hop_cap=3).apply(DeferIn(reason="foto"))
    assert deferred.after.status == State.DITUNDA and deferred.after.resume_state == State.DITERIMA
    assert [e.event_name for e in deferred.events] == ["complaint.deferred"]
    later = AT + timedelta(hours=1)
    verified = Complaint(deferred.after).begin("verify", ADMIN, at=later, hop_cap=3).apply(VerifyIn())
    assert [e.event_name for e in verified.events] == ["complaint.resumed", "complaint.verified"]
    assert verified.after.status == State.TERVERIFIKASI and verified.after.resume_state is None
    assert verified.recorded[0].summary.startswith("Laporan dilanjutkan setelah ditunda")
    assert verified.before == deferred.after  # the outcome never mutates its input


def test_dispose_takes_the_catalogue_name_and_the_next_hop():
    step = Complaint(complaint()).begin("dispose", ADMIN, at=AT, hop_cap=3)
    out = step.apply(DisposeIn(opd_code="dinkes"), Facts(opd=Opd("dinkes", "Dinas Kesehatan", "dinas")))
    assert (out.after.status, out.after.opd_name, out.after.hop) == (State.TERDISPOSISI,
                                                                    "Dinas Kesehatan", 1)
    assert out.events[0].data["routed_by"] == "admin"


def test_archive_as_duplicate_needs_another_complaint():
    c, original = complaint(), complaint()
    step = Complaint(c).begin("archive", ADMIN, at=AT, hop_cap=3)
    body = ArchiveIn(reason="duplikat", duplicate_of=original.tracking_id)
    with pytest.raises(InvalidField):
        step.apply(body, Facts(original=None))
    with pytest.raises(InvalidField):
        Complaint(c).begin("archive", ADMIN, at=AT, hop_cap=3).apply(body, Facts(original=c))
    out = Complaint(c).begin("archive", ADMIN, at=AT, hop_cap=3).apply(body, Facts(original=original))
    assert out.after.duplicate_of == original.id
    assert out.recorded[0].summary == f"Laporan diarsipkan: duplikat dari {original.tracking_id}"


def test_scope_follows_the_status_not_the_last_opd():
    assert current_opd(disposed()) == "dinkes"
    returned = disposed(status=State.DIKEMBALIKAN)
    assert current_opd(returned) is None
    with pytest.raises(OutOfScope):
        check_scope(OPD, returned)
    assert actions_for(OPD, returned, 3) == []
    assert actions_for(OPD, disposed(), 3) == ["respond", "return"]


def test_read_side_rules():
    other = complaint(source="wa-bot")
    assert hidden_from(Actor("portal", source="portal-sekadau"), other)  # 404, not 403
    assert not hidden_from(Actor("portal", source="wa-bot"), other) and not hidden_from(ADMIN, other)
    # A source-bound key without a source (the database refuses one) sees nothing, never all.
    assert hidden_from(Actor("portal"), other) and hidden_from(Actor("importer"), other)
    with pytest.raises(OutOfScope):
        list_scope(Actor("portal"), None)
    with pytest.raises(OutOfScope) as err:
        list_scope(OPD, "dpupr")
    assert err.value.field == "opd"
    assert list_scope(OPD, None).states == lifecycle.OPD_SCOPE_STATES
    r = ReporterRow(name="Budi", phone="+62812", nik="6101010101010101")
    admin_sees, opd_sees = reporter_view(ADMIN, r), reporter_view(OPD, r)
    assert admin_sees is not None and admin_sees.nik == "6101010101010101"
    assert opd_sees is not None and opd_sees.nik is None and opd_sees.name == "Budi"  # never the NIK
    assert reporter_view(OPD, ReporterRow(nik="6101010101010101")) is None


def test_routing_effects_carry_their_states_from_the_lifecycle():
    c = complaint()
    d = decide(make_event("sp4n/routing", ComplaintRouted(
        complaint_id=c.id, opd_code="dinkes", opd_name="Dinkes", hop=1, routed_at=T0)), TZ)
    assert isinstance(d.effect, MarkRouted) and d.effect.conditional
    assert set(d.effect.from_states) == lifecycle.AUTO_ROUTING_FROM
    assert d.effect.to_state == lifecycle.AUTO_ROUTING_TO
    s = decide(make_event("sp4n/routing", ComplaintRoutingSuggested(
        complaint_id=c.id, opd_code="dinkes", opd_name="Dinkes", rule_id=1, rule_version=1,
        suggested_at=T0)), TZ)
    assert isinstance(s.effect, SetSuggestion)
    assert set(s.effect.triage_states) == lifecycle.TRIAGE_STATES
    t = decide(make_event("sp4n/routing", ComplaintTriageRequired(
        complaint_id=c.id, reason="tidak ada aturan", category="kesehatan")), TZ)
    assert isinstance(t.effect, MarkNeedsTriage)
    assert t.summary == "Menunggu triase admin koordinator: tidak ada aturan"


def test_a_breach_is_a_clock_flag_with_a_local_time_summary():
    c = complaint()
    d = decide(make_event("sp4n/sla", SlaBreached(
        complaint_id=c.id, clock="verification", deadline=T0, due_at=T0, calendar_version="v",
        policy_version=1)), TZ)
    assert d.effect == FlagClock("verification", 0, None, None, breached=True, warned=False,
                                 deadline=T0)
    assert d.summary == "Tenggat verifikasi dan disposisi terlampaui (02-11-2026 08:00 WIB)"


def test_own_and_unknown_events():
    c = complaint()
    own = make_event("sp4n/intake", ComplaintRouted(
        complaint_id=c.id, opd_code="dinkes", opd_name="Dinkes", hop=1, routed_at=T0))
    assert decide(own, TZ).effect is None and decide(own, TZ).summary is None
    other = own.model_copy(update={"source": "sp4n/x", "type": "id.go.sp4n.something.new.v1"})
    assert (decide(other, TZ).effect, decide(other, TZ).summary) == (None, "something.new")


def test_effect_sql_names_no_state_and_binds_every_parameter_by_name():
    for effect, (sql, names) in repository._EFFECTS.items():
        for state in State:
            assert f"'{state.value}'" not in sql, (effect, state)
        fields = {f.name for f in dataclasses.fields(effect)}
        assert set(names) <= fields
        assert not re.search(r"(?<![:\w]):[a-z_]", sql), sql  # every :name became $n
        numbers = {int(n) for n in re.findall(r"\$(\d+)", sql)} - set(range(1, 8))
        assert sorted(numbers) == list(range(8, 8 + len(names)))
