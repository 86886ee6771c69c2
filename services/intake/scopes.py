"""What an API key may do: its scopes, and each role's defaults. Pure: no I/O.

A lifecycle action's scope is ``complaints:<action>``, and a role's default action scopes
are exactly the actions ``lifecycle.TRANSITIONS`` lets it take, so the scope check (does
this key carry it?) and the lifecycle's (may this role ever?) agree for every default key;
a key created with fewer scopes (``sp4n create-api-key --scopes``) is refused the rest.
"""

from __future__ import annotations

from services.intake.lifecycle import ACTIONS, ROLES, role_may

SUBMIT = "complaints:submit"
READ = "complaints:read"
# Say when something happened (``occurred_at`` on an action): backfills only.
BACKDATE = "complaints:backdate"
# Send imported history with a submission (``services.intake.history``).
HISTORY = "complaints:history"
# The reporter's name, phone and e-mail; the NIK needs ``identity:nik`` as well.
IDENTITY = "identity:read"
NIK = "identity:nik"
# Read the audit trail (``GET /v1/audit``).
AUDIT = "audit:read"
# Erase a reporter's identity (crypto-shredding, ``POST /v1/reporters/{key}/erase``).
ERASE = "identity:erase"


def action_scope(action: str) -> str:
    return f"complaints:{action}"


def _actions_of(role: str) -> tuple[str, ...]:
    """The scopes of the lifecycle actions ``role`` may take (``lifecycle.TRANSITIONS``)."""
    return tuple(action_scope(a) for a in ACTIONS if role_may(role, a))


# The scopes a key of each role carries by default ("system" acts inside intake, no key).
# intake's migrations 0005 and 0009 give existing keys exactly these (a unit test compares them).
SCOPES: dict[str, tuple[str, ...]] = {
    "portal": (SUBMIT, READ, *_actions_of("portal")),
    # A backfill of another system's complaints (the LAPOR! import): submits with history
    # and may date what it sends; takes no lifecycle action itself.
    "importer": (SUBMIT, READ, HISTORY, BACKDATE),
    "admin_koordinator": (SUBMIT, READ, *_actions_of("admin_koordinator"), BACKDATE, IDENTITY,
                          NIK, AUDIT, ERASE),
    # pejabat penghubung of one OPD: reads and acts on complaints currently disposed to it.
    "opd": (READ, *_actions_of("opd"), IDENTITY),
}
assert set(SCOPES) <= set(ROLES)
ALL_SCOPES: tuple[str, ...] = tuple(dict.fromkeys(s for scopes in SCOPES.values() for s in scopes))


def default_scopes(role: str) -> tuple[str, ...]:
    return SCOPES.get(role, ())
