"""The lifecycle state machine, exhaustively: every (state, role, action) against the table
the issue specifies, written out here independently of services.intake.lifecycle."""

from __future__ import annotations

import itertools

import pytest

from services.intake.lifecycle import (
    ACTIONS,
    PROGRESS,
    ROLES,
    HopCapReached,
    InvalidTransition,
    RoleMayNot,
    State,
    allowed_actions,
    decide,
)

S = State
ADMIN, OPD, PORTAL, SYSTEM = "admin_koordinator", "opd", "portal", "system"
RESUMES = "resume-state"
SAME = "same"

# The specification, independently: (role, action) -> {from: to}.
SPEC: dict[tuple[str, str], dict[State, object]] = {
    (ADMIN, "verify"): {S.DITERIMA: S.TERVERIFIKASI, S.DITUNDA: S.TERVERIFIKASI},
    (ADMIN, "defer"): {S.DITERIMA: S.DITUNDA, S.TERVERIFIKASI: S.DITUNDA},
    (ADMIN, "resume"): {S.DITUNDA: RESUMES},
    (ADMIN, "archive"): {S.DITERIMA: S.DIARSIPKAN, S.TERVERIFIKASI: S.DIARSIPKAN,
                         S.DITUNDA: S.DIARSIPKAN, S.DIKEMBALIKAN: S.DIARSIPKAN},
    (ADMIN, "dispose"): {S.DITERIMA: S.TERDISPOSISI, S.TERVERIFIKASI: S.TERDISPOSISI,
                         S.DIKEMBALIKAN: S.TERDISPOSISI},
    (ADMIN, "forward"): {S.DITERIMA: S.DILIMPAHKAN, S.TERVERIFIKASI: S.DILIMPAHKAN,
                         S.DIKEMBALIKAN: S.DILIMPAHKAN},
    (ADMIN, "close"): {S.DITINDAKLANJUTI: S.SELESAI, S.DITANGGAPI_PELAPOR: S.SELESAI},
    (ADMIN, "reopen"): {S.SELESAI: S.TERDISPOSISI},
    (OPD, "respond"): {S.TERDISPOSISI: S.DITINDAKLANJUTI, S.DITANGGAPI_PELAPOR: S.DITINDAKLANJUTI},
    (OPD, "return"): {S.TERDISPOSISI: S.DIKEMBALIKAN},
    (PORTAL, "reply"): {S.DITINDAKLANJUTI: S.DITANGGAPI_PELAPOR, S.DITUNDA: RESUMES},
    (PORTAL, "rate"): {S.DITINDAKLANJUTI: SAME, S.DITANGGAPI_PELAPOR: SAME, S.SELESAI: SAME},
    (PORTAL, "reopen"): {S.SELESAI: S.TERDISPOSISI},
    (SYSTEM, "close"): {S.DITINDAKLANJUTI: S.SELESAI},
    # Issue 10: the system archives an expired deferral; the admin corrects and withdraws.
    (SYSTEM, "archive"): {S.DITUNDA: S.DIARSIPKAN},
    (ADMIN, "reclassify"): {S.DITERIMA: SAME, S.TERVERIFIKASI: SAME, S.DITUNDA: SAME,
                            S.TERDISPOSISI: SAME, S.DIKEMBALIKAN: SAME, S.DITINDAKLANJUTI: SAME,
                            S.DITANGGAPI_PELAPOR: SAME},
    (ADMIN, "withdraw"): {S.TERDISPOSISI: S.TERVERIFIKASI},
}


@pytest.mark.parametrize("state,role,action", list(itertools.product(State, ROLES, ACTIONS)))
def test_every_state_role_action_follows_the_spec(state, role, action):
    rule = SPEC.get((role, action))
    if rule is None:
        with pytest.raises(RoleMayNot):
            decide(state, role, action, hop=1, hop_cap=3, resume_state=S.TERVERIFIKASI)
        assert action not in allowed_actions(state, role, hop=1, hop_cap=3)
        return
    if state not in rule:
        with pytest.raises(InvalidTransition) as err:
            decide(state, role, action, hop=1, hop_cap=3, resume_state=S.TERVERIFIKASI)
        assert err.value.state == state
        assert err.value.allowed == allowed_actions(state, role, hop=1, hop_cap=3)
        assert action not in err.value.allowed
        assert state.value in str(err.value)
        return
    t = decide(state, role, action, hop=1, hop_cap=3, resume_state=S.TERVERIFIKASI)
    expected = rule[state]
    if expected == SAME:
        assert t.to_state == state and not t.changes_state
    elif expected == RESUMES:
        assert t.to_state == S.TERVERIFIKASI and t.changes_state
    else:
        assert t.to_state == expected and t.changes_state
    assert action in allowed_actions(state, role, hop=1, hop_cap=3)


@pytest.mark.parametrize("state,role", list(itertools.product(State, ROLES)))
def test_allowed_actions_are_exactly_the_specified_ones(state, role):
    expected = [a for a in ACTIONS if state in SPEC.get((role, a), {})]
    assert allowed_actions(state, role) == expected


def test_terminal_states_allow_nothing_to_anyone():
    for state, role in itertools.product((S.DIARSIPKAN, S.DILIMPAHKAN), ROLES):
        assert allowed_actions(state, role) == []


def test_resume_goes_back_to_the_state_the_deferral_interrupted():
    assert decide(S.DITUNDA, ADMIN, "resume", resume_state=S.DITERIMA).to_state == S.DITERIMA
    assert decide(S.DITUNDA, ADMIN, "resume", resume_state="TERVERIFIKASI").to_state == S.TERVERIFIKASI
    assert decide(S.DITUNDA, PORTAL, "reply", resume_state=S.TERVERIFIKASI).to_state == S.TERVERIFIKASI
    # Unknown or nonsensical memory falls back to the start, never to an OPD state.
    assert decide(S.DITUNDA, ADMIN, "resume", resume_state=None).to_state == S.DITERIMA
    assert decide(S.DITUNDA, ADMIN, "resume", resume_state=S.SELESAI).to_state == S.DITERIMA


@pytest.mark.parametrize("state", [S.DITERIMA, S.TERVERIFIKASI, S.DIKEMBALIKAN])
def test_hop_cap_refuses_dispose_and_hides_it(state):
    assert decide(state, ADMIN, "dispose", hop=2, hop_cap=3).to_state == S.TERDISPOSISI
    with pytest.raises(HopCapReached) as err:
        decide(state, ADMIN, "dispose", hop=3, hop_cap=3)
    assert isinstance(err.value, InvalidTransition)
    assert err.value.state == state and "dispose" not in err.value.allowed
    assert "admin koordinator" in str(err.value)
    assert "dispose" not in allowed_actions(state, ADMIN, hop=3, hop_cap=3)
    assert "dispose" not in allowed_actions(state, ADMIN, hop=4, hop_cap=3)
    # The admin koordinator keeps the ways out: archive and forward.
    assert {"archive", "forward"} <= set(allowed_actions(state, ADMIN, hop=3, hop_cap=3))


def test_hop_cap_is_configurable():
    assert decide(S.DIKEMBALIKAN, ADMIN, "dispose", hop=3, hop_cap=5).to_state == S.TERDISPOSISI
    with pytest.raises(HopCapReached):
        decide(S.DIKEMBALIKAN, ADMIN, "dispose", hop=1, hop_cap=1)


def test_wrong_state_beats_hop_cap():
    # Disposing a closed complaint is a state error, whatever the hop.
    with pytest.raises(InvalidTransition) as err:
        decide(S.SELESAI, ADMIN, "dispose", hop=9, hop_cap=3)
    assert not isinstance(err.value, HopCapReached)


def test_role_errors_come_before_state_errors():
    with pytest.raises(RoleMayNot):
        decide(S.SELESAI, PORTAL, "dispose")
    with pytest.raises(RoleMayNot):
        decide(S.TERDISPOSISI, ADMIN, "respond")
    with pytest.raises(RoleMayNot):
        decide(S.DITERIMA, OPD, "verify")


def test_messages_are_in_bahasa_indonesia():
    with pytest.raises(InvalidTransition) as err:
        decide(S.DIARSIPKAN, ADMIN, "close")
    assert "tidak dapat dilakukan" in str(err.value)


@pytest.mark.parametrize("state", list(State))
def test_a_progress_update_is_allowed_where_respond_is_and_stays(state):
    if state in SPEC[(OPD, "respond")]:
        t = decide(state, OPD, "respond", variant=PROGRESS)
        assert t.to_state == state and not t.changes_state
        assert decide(state, OPD, "respond").to_state == S.DITINDAKLANJUTI
    else:
        with pytest.raises(InvalidTransition):
            decide(state, OPD, "respond", variant=PROGRESS)


def test_reclassify_is_refused_once_closed_archived_or_forwarded():
    for state in (S.SELESAI, S.DIARSIPKAN, S.DILIMPAHKAN):
        with pytest.raises(InvalidTransition):
            decide(state, ADMIN, "reclassify")
        assert "reclassify" not in allowed_actions(state, ADMIN)
    assert decide(S.DITUNDA, ADMIN, "reclassify").to_state == S.DITUNDA


def test_withdraw_leads_where_the_admin_may_dispose_again():
    t = decide(S.TERDISPOSISI, ADMIN, "withdraw")
    assert t.to_state == S.TERVERIFIKASI and t.changes_state
    assert "dispose" in allowed_actions(t.to_state, ADMIN, hop=1, hop_cap=3)
    # The cap is applied to the counted hops the caller passes (withdrawals left out).
    assert "dispose" in allowed_actions(t.to_state, ADMIN, hop=2, hop_cap=3)
    assert "dispose" not in allowed_actions(t.to_state, ADMIN, hop=3, hop_cap=3)
