"""The complaint lifecycle as a pure state machine: states, actions, who may take them.

No I/O. The use cases ask ``decide`` whether an action is allowed and where it leads; the
HTTP layer answers 403 when the role can never take the action (``RoleMayNot``) and 409
when the role could, but not in the complaint's current state (``InvalidTransition``,
``HopCapReached``), naming the actions that *are* allowed now.

States follow LAPOR!'s export strings (DESIGN §2):

- DITERIMA            received, waiting for the admin koordinator
- TERVERIFIKASI       verified by the admin koordinator; also where a withdrawal (``withdraw``)
                      puts a complaint the admin pulled back from an OPD: it waits for the
                      next disposition (DIKEMBALIKAN would say the OPD declined it, which it
                      did not; DITERIMA would ask for a verification the admin has done)
- DITUNDA             tunda: waiting for information from the reporter (clocks paused)
- DIARSIPKAN          archived with a reason (terminal)
- DILIMPAHKAN         forwarded to an instansi outside the regency (terminal)
- TERDISPOSISI        disposed to an OPD (hop = how many dispositions so far)
- DIKEMBALIKAN        returned by the OPD as bukan wewenang; back with the admin koordinator
- DITINDAKLANJUTI     the OPD posted its final response (tindak lanjut akhir); a progress update
                      (``respond`` with ``final: false``) leaves the state where it was
- DITANGGAPI_PELAPOR  the reporter replied to the response: the OPD's turn again
- SELESAI             closed (by the admin koordinator or by the system); may be reopened

Besides the transitions, ``reclassify`` (the admin koordinator corrects classification,
berkadar pengawasan, category, anonim, rahasia) changes no state: it is allowed while the
complaint is still being handled, not once it is closed, archived or forwarded.

The hop cap counts the dispositions an OPD could decline: a disposition the admin withdrew
(``withdraw``) does not count toward it (``counted_hops``), so correcting a mis-disposition
never traps a complaint at the cap; ``hop`` itself still grows with every disposition, so
each hop keeps its own number (sla's per-hop clocks, the events).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class State(StrEnum):
    DITERIMA = "DITERIMA"
    TERVERIFIKASI = "TERVERIFIKASI"
    DITUNDA = "DITUNDA"
    DIARSIPKAN = "DIARSIPKAN"
    DILIMPAHKAN = "DILIMPAHKAN"
    TERDISPOSISI = "TERDISPOSISI"
    DIKEMBALIKAN = "DIKEMBALIKAN"
    DITINDAKLANJUTI = "DITINDAKLANJUTI"
    DITANGGAPI_PELAPOR = "DITANGGAPI_PELAPOR"
    SELESAI = "SELESAI"


# The states in which a complaint may be shown publicly (Open311 reads): verified, and not
# archived (DITERIMA and DITUNDA are not verified yet; DIARSIPKAN was judged not to be a
# complaint for the regency). Rahasia complaints are never public in any state.
PUBLIC_STATES: frozenset[State] = frozenset({
    State.TERVERIFIKASI, State.DILIMPAHKAN, State.TERDISPOSISI, State.DIKEMBALIKAN,
    State.DITINDAKLANJUTI, State.DITANGGAPI_PELAPOR, State.SELESAI})

# "importer" submits another system's complaints with their history (a backfill) and takes
# no lifecycle action of its own; "system" acts inside intake and has no key.
Role = Literal["admin_koordinator", "opd", "portal", "importer", "system"]
ROLES: tuple[Role, ...] = ("admin_koordinator", "opd", "portal", "importer", "system")
# Roles whose key speaks for exactly one portal source: it submits for that source and sees
# only that source's complaints (no source never means "any").
SOURCE_BOUND_ROLES: tuple[Role, ...] = ("portal", "importer")
Action = Literal["verify", "defer", "resume", "archive", "dispose", "forward", "close", "reopen",
                 "respond", "return", "reply", "rate", "reclassify", "withdraw"]
ACTIONS: tuple[Action, ...] = ("verify", "defer", "resume", "archive", "dispose", "forward",
                               "close", "reopen", "respond", "return", "reply", "rate",
                               "reclassify", "withdraw")

# "Same state" marker: the action records something (a rating) without a transition.
STAY = "STAY"
# "Back to the state before the deferral" marker.
RESUME = "RESUME"

S = State
# (action, role) -> {from state: to state | STAY | RESUME}. Anything absent is refused.
TRANSITIONS: dict[tuple[str, str], dict[State, str]] = {
    ("verify", "admin_koordinator"): {S.DITERIMA: S.TERVERIFIKASI, S.DITUNDA: S.TERVERIFIKASI},
    ("defer", "admin_koordinator"): {S.DITERIMA: S.DITUNDA, S.TERVERIFIKASI: S.DITUNDA},
    ("resume", "admin_koordinator"): {S.DITUNDA: RESUME},
    ("archive", "admin_koordinator"): {s: S.DIARSIPKAN for s in (
        S.DITERIMA, S.TERVERIFIKASI, S.DITUNDA, S.DIKEMBALIKAN)},
    ("dispose", "admin_koordinator"): {s: S.TERDISPOSISI for s in (
        S.DITERIMA, S.TERVERIFIKASI, S.DIKEMBALIKAN)},
    ("forward", "admin_koordinator"): {s: S.DILIMPAHKAN for s in (
        S.DITERIMA, S.TERVERIFIKASI, S.DIKEMBALIKAN)},
    ("close", "admin_koordinator"): {S.DITINDAKLANJUTI: S.SELESAI,
                                     S.DITANGGAPI_PELAPOR: S.SELESAI},
    ("close", "system"): {S.DITINDAKLANJUTI: S.SELESAI},
    # sla.deferral_expired: DITUNDA too long without the reporter's answer.
    ("archive", "system"): {S.DITUNDA: S.DIARSIPKAN},
    ("reopen", "admin_koordinator"): {S.SELESAI: S.TERDISPOSISI},
    ("reopen", "portal"): {S.SELESAI: S.TERDISPOSISI},
    ("respond", "opd"): {S.TERDISPOSISI: S.DITINDAKLANJUTI,
                         S.DITANGGAPI_PELAPOR: S.DITINDAKLANJUTI},
    ("return", "opd"): {S.TERDISPOSISI: S.DIKEMBALIKAN},
    ("reply", "portal"): {S.DITINDAKLANJUTI: S.DITANGGAPI_PELAPOR, S.DITUNDA: RESUME},
    ("rate", "portal"): {S.DITINDAKLANJUTI: STAY, S.DITANGGAPI_PELAPOR: STAY, S.SELESAI: STAY},
    # Corrections while the complaint is being handled; not once closed, archived or forwarded.
    ("reclassify", "admin_koordinator"): {s: STAY for s in (
        S.DITERIMA, S.TERVERIFIKASI, S.DITUNDA, S.TERDISPOSISI, S.DIKEMBALIKAN,
        S.DITINDAKLANJUTI, S.DITANGGAPI_PELAPOR)},
    # Pull a mis-disposed complaint back from the OPD before its final tindak lanjut (progress
    # updates keep it TERDISPOSISI): it waits for the next disposition (see TERVERIFIKASI).
    ("withdraw", "admin_koordinator"): {S.TERDISPOSISI: S.TERVERIFIKASI},
}

# Variants of an action whose outcome depends on its body, not on who takes it: the variant
# is allowed exactly where the action is, and leads elsewhere. ``respond`` with
# ``final: false`` is a progress update (perkembangan tindak lanjut): it records the text and
# leaves the complaint with the OPD, waiting for the final tindak lanjut.
PROGRESS = "progress"
VARIANTS: dict[tuple[str, str], dict[State, str]] = {
    ("respond", PROGRESS): {S.TERDISPOSISI: STAY, S.DITANGGAPI_PELAPOR: STAY},
}


def _variants_follow_their_action() -> None:
    for (action, variant), table in VARIANTS.items():
        for (a, _role), main in TRANSITIONS.items():
            if a == action:
                assert set(table) == set(main), (action, variant)


_variants_follow_their_action()

# States in which a complaint is "currently disposed to" its OPD: the OPD may read it and act
# on it. After a return (DIKEMBALIKAN) it is back with the admin koordinator.
OPD_SCOPE_STATES = frozenset({S.TERDISPOSISI, S.DITINDAKLANJUTI, S.DITANGGAPI_PELAPOR, S.SELESAI})
TERMINAL_STATES = frozenset({S.DIARSIPKAN, S.DILIMPAHKAN})
# Where every complaint starts.
INITIAL_STATE = S.DITERIMA
# routing's automatic disposition (``complaint.routed`` by a rule) applies only while the
# complaint waits for its first disposition; any person's action since then wins.
AUTO_ROUTING_FROM = frozenset({S.DITERIMA, S.TERVERIFIKASI})
AUTO_ROUTING_TO = S.TERDISPOSISI
# A routing suggestion puts a complaint never disposed (hop 0) in these states on the admin
# koordinator's triage list.
TRIAGE_STATES = frozenset({S.DITERIMA, S.TERVERIFIKASI, S.DITUNDA})


class LifecycleError(Exception):
    pass


class RoleMayNot(LifecycleError):
    """The role may never take this action (→ 403)."""

    def __init__(self, role: str, action: str) -> None:
        super().__init__(f"peran '{role}' tidak berwenang melakukan aksi '{action}'")
        self.role, self.action = role, action


class InvalidTransition(LifecycleError):
    """Not from the current state (→ 409 with the allowed actions)."""

    def __init__(self, state: State, action: str, allowed: list[str], message: str | None = None) -> None:
        super().__init__(message or (
            f"Aksi '{action}' tidak dapat dilakukan pada laporan berstatus {state.value}."
            + (f" Aksi yang dapat dilakukan: {', '.join(allowed)}." if allowed
               else " Tidak ada aksi yang dapat Anda lakukan pada status ini.")))
        self.state, self.action, self.allowed = state, action, allowed


class HopCapReached(InvalidTransition):
    def __init__(self, state: State, hop: int, hop_cap: int, allowed: list[str]) -> None:
        super().__init__(state, "dispose", allowed, (
            f"Laporan ini sudah didisposisikan {hop} kali (batas {hop_cap}); "
            "sekarang hanya dapat ditangani oleh admin koordinator (arsipkan atau limpahkan)."))
        self.hop, self.hop_cap = hop, hop_cap


def role_may(role: str, action: str) -> bool:
    return (action, role) in TRANSITIONS


def allowed_actions(state: State | str, role: str, *, hop: int = 0,
                    hop_cap: int | None = None) -> list[str]:
    """Actions ``role`` may take now, in a stable order (``ACTIONS`` order)."""
    state = State(state)
    out: list[str] = []
    for action in ACTIONS:
        table = TRANSITIONS.get((action, role))
        if table is None or state not in table:
            continue
        if action == "dispose" and hop_cap is not None and hop >= hop_cap:
            continue
        out.append(action)
    return out


@dataclass(frozen=True)
class Transition:
    action: str
    role: str
    from_state: State
    to_state: State
    changes_state: bool


def decide(state: State | str, role: str, action: str, *, hop: int = 0, hop_cap: int | None = None,
           resume_state: State | str | None = None, variant: str | None = None) -> Transition:
    """Where ``action`` by ``role`` leads from ``state``; raises when it is not allowed.

    ``resume_state`` is the state a deferral interrupted (DITERIMA or TERVERIFIKASI);
    ``hop`` the number of dispositions that count toward ``hop_cap`` (withdrawn ones do not);
    ``variant`` one of ``VARIANTS`` for this action (e.g. ``PROGRESS`` for ``respond``).
    """
    state = State(state)
    if not role_may(role, action):
        raise RoleMayNot(role, action)
    table = TRANSITIONS[(action, role)]
    allowed = allowed_actions(state, role, hop=hop, hop_cap=hop_cap)
    if state not in table:
        raise InvalidTransition(state, action, allowed)
    if action == "dispose" and hop_cap is not None and hop >= hop_cap:
        raise HopCapReached(state, hop, hop_cap, allowed)
    target = table[state]
    if variant is not None:
        target = VARIANTS[(action, variant)][state]
    if target == STAY:
        return Transition(action, role, state, state, False)
    if target == RESUME:
        resumed = State(resume_state) if resume_state else State.DITERIMA
        if resumed not in (State.DITERIMA, State.TERVERIFIKASI):
            resumed = State.DITERIMA
        return Transition(action, role, state, resumed, True)
    return Transition(action, role, state, State(target), True)


__all__ = [
    "ACTIONS", "AUTO_ROUTING_FROM", "AUTO_ROUTING_TO", "INITIAL_STATE", "OPD_SCOPE_STATES",
    "PROGRESS", "ROLES", "SOURCE_BOUND_ROLES", "TERMINAL_STATES", "TRANSITIONS", "TRIAGE_STATES", "VARIANTS",
    "HopCapReached",
    "InvalidTransition", "LifecycleError", "RoleMayNot", "State", "Transition",
    "allowed_actions", "decide", "role_may",
]
