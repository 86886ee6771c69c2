"""API-key roles and scopes (pure parts, with a fake connection)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.intake import lifecycle
from services.intake.apikeys import SCOPES, ApiKey, check_key_spec, create_api_key
from services.intake.auth import KeyCache, UsageRecorder
from services.intake.domain.complaint import Actor, OutOfScope
from services.intake.errors import field_errors
from services.intake.lifecycle import ACTIONS, role_may
from services.intake.schemas import RateIn, RespondIn, ReturnIn, VerifyIn
from services.intake.usecases import check_may_act


class FakeConn:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    async def fetchval(self, _sql: str, *args):
        self.rows.append(args)
        return len(self.rows)


async def test_opd_key_is_scoped_to_its_opd():
    conn = FakeConn()
    key, plaintext = await create_api_key(conn, "pp-dinkes", "opd", opd_code="dinkes")
    assert key.role == "opd" and key.opd_code == "dinkes" and key.source is None
    assert key.may("complaints:read") and not key.may("complaints:submit")
    assert plaintext.startswith("sp4n_") and plaintext not in repr(conn.rows)
    assert conn.rows[0][3:] == ("opd", ["complaints:read", "complaints:respond", "complaints:return",
                                        "identity:read"], None, "dinkes", None)


async def test_opd_colon_code_form_is_accepted():
    key, _ = await create_api_key(FakeConn(), "pp-dpupr", "opd:dpupr")
    assert (key.role, key.opd_code) == ("opd", "dpupr")


@pytest.mark.parametrize("role,source,opd_code", [
    ("opd", None, None),             # an OPD key needs its OPD
    ("opd", None, "Dinas Kesehatan"),  # not a code
    ("opd", "portal-sekadau", "dinkes"),  # OPD keys are not portal-bound
    ("portal", "portal-sekadau", "dinkes"),  # only OPD keys carry an OPD
    ("admin_koordinator", None, "dinkes"),
    ("superuser", None, None),
    ("portal", None, None),          # a portal key without a source would see every portal's
    ("portal", "", None),
    ("importer", None, None),        # so would an importer's
    ("admin_koordinator", "portal-sekadau", None),  # only portal/importer keys have a source
])
async def test_inconsistent_keys_are_refused(role, source, opd_code):
    conn = FakeConn()
    with pytest.raises(ValueError):
        await create_api_key(conn, "x", role, source, opd_code)
    assert conn.rows == []


def test_existing_roles_keep_their_scopes():
    assert SCOPES["portal"][:2] == ("complaints:submit", "complaints:read")
    assert "audit:read" in SCOPES["admin_koordinator"]


def test_a_field_called_body_is_still_named():
    errors = field_errors([{"loc": ("body", "body"), "msg": "too long", "type": "string_too_long"},
                           {"loc": ("body", "attachments", 0), "msg": "bad url", "type": "url"},
                           {"loc": ("query", "status"), "msg": "bad", "type": "enum"},
                           {"loc": ("body",), "msg": "Value error, broken", "type": "value_error"}])
    assert [e["field"] for e in errors] == ["body", "attachments.0", "status", "(body)"]
    assert errors[3]["reason"] == "broken"


# --- scopes, expiry, batched last_used_at (issue 8) ---------------------------------------

def test_action_scopes_follow_the_lifecycle_table():
    """A role's default action scopes are exactly the actions the lifecycle lets it take."""
    for role, scopes in SCOPES.items():
        actions = {s.removeprefix("complaints:") for s in scopes} & set(ACTIONS)
        assert actions == {a for a in ACTIONS if role_may(role, a)}, role
    assert "complaints:backdate" in SCOPES["importer"]
    assert "complaints:backdate" in SCOPES["admin_koordinator"]
    assert not any("complaints:backdate" in SCOPES[r] for r in ("portal", "opd"))
    assert [r for r, s in SCOPES.items() if "audit:read" in s] == ["admin_koordinator"]
    assert [r for r, s in SCOPES.items() if "identity:nik" in s] == ["admin_koordinator"]


def test_migrations_give_existing_keys_the_same_scopes():
    """0005 sets every role's scopes, 0009 adds identity:erase to admin keys: applied in
    order, the last statement for a role wins."""
    found: dict[str, tuple[str, ...]] = {}
    for name in ("0005_keys_audit.sql", "0009_erase_scope.sql"):
        sql = (Path(__file__).parents[2] / "services/intake/migrations" / name).read_text()
        found |= {m.group(2): tuple(re.findall(r"'([a-z:_]+)'", m.group(1)))
                  for m in re.finditer(r"SET scopes = ARRAY\[(.*?)\]\s*WHERE role = '(\w+)'", sql, re.S)}
    assert found == SCOPES


async def test_scopes_may_be_narrowed_never_widened():
    key, _ = await create_api_key(FakeConn(), "ro", "opd", opd_code="dinkes", scopes=["complaints:read"])
    assert key.scopes == ("complaints:read",) and not key.may("complaints:respond")
    with pytest.raises(ValueError, match="--scopes"):
        await create_api_key(FakeConn(), "x", "opd", opd_code="dinkes", scopes=["audit:read"])
    with pytest.raises(ValueError, match="--scopes"):
        check_key_spec("portal", "p", None, [])


def test_an_actor_is_refused_an_action_outside_its_scopes():
    narrowed = Actor("opd", opd_code="dinkes", scopes=("complaints:read", "complaints:return"))
    with pytest.raises(OutOfScope, match="complaints:respond"):
        check_may_act(narrowed, "respond", RespondIn(body="x"))
    check_may_act(narrowed, "return", ReturnIn(reason="bukan wewenang"))
    with pytest.raises(lifecycle.RoleMayNot):
        check_may_act(Actor("importer", source="lapor", scopes=SCOPES["importer"]), "verify", VerifyIn())


@pytest.mark.parametrize("role,extra", [("opd", {"opd_code": "dinkes"}), ("portal", {"source": "p"})])
def test_occurred_at_is_refused_naming_the_field_unless_the_key_may_backdate(role, extra):
    actor = Actor(role, scopes=SCOPES[role], **extra)
    action = "respond" if role == "opd" else "rate"
    body = RespondIn(body="x", occurred_at=datetime(2026, 1, 5, tzinfo=UTC)) if role == "opd" \
        else RateIn(rating=5, occurred_at=datetime(2026, 1, 5, tzinfo=UTC))
    with pytest.raises(OutOfScope) as exc:
        check_may_act(actor, action, body)
    assert exc.value.field == "occurred_at"
    check_may_act(Actor("admin_koordinator", scopes=SCOPES["admin_koordinator"]), "verify",
                  VerifyIn(occurred_at=datetime(2026, 1, 5, tzinfo=UTC)))


def test_a_key_expires_at_its_instant():
    at = datetime(2027, 1, 1, tzinfo=UTC)
    key = ApiKey(1, "k", "portal", SCOPES["portal"], "p", expires_at=at)
    assert not key.expired(at - timedelta(seconds=1)) and key.expired(at)
    assert not ApiKey(2, "k", "portal", SCOPES["portal"], "p").expired(at)


class FakeKeyPool:
    """``lookup_api_key``'s row and ``mark_used``'s statements."""

    def __init__(self, row: dict | None) -> None:
        self.row, self.executed = row, []

    async def fetchrow(self, _sql, *_args):
        return self.row

    async def execute(self, sql, *args):
        self.executed.append((sql, args))
        return "UPDATE 1"


async def test_an_expired_key_is_refused_even_from_the_cache():
    plaintext = "sp4n_abcd_secret"
    row = {"id": 7, "name": "k", "role": "portal", "scopes": list(SCOPES["portal"]), "source": "p",
           "opd_code": None, "expires_at": datetime.now(UTC) + timedelta(hours=1),
           "secret_hash": hashlib.sha256(plaintext.encode()).hexdigest()}
    pool = FakeKeyPool(row)
    cache = KeyCache(ttl_s=60)
    assert (await cache.verify(pool, plaintext)).id == 7
    # Expired while cached: the cache still holds the row, verification refuses it.
    cache._cache = {d: (t, replace(k, expires_at=datetime.now(UTC) - timedelta(seconds=1)))
                    for d, (t, k) in cache._cache.items()}
    pool.row = None  # not asked again within the TTL
    assert await cache.verify(pool, plaintext) is None
    assert (await cache.lookup(pool, plaintext)).expired(datetime.now(UTC))


async def test_usage_is_flushed_in_one_update_per_batch():
    usage = UsageRecorder()
    for key_id in (3, 1, 3, 3, 2, 1):  # six requests by three keys
        usage.seen(key_id)
    pool = FakeKeyPool(None)
    assert await usage.flush(pool) == 3
    [(sql, args)] = pool.executed
    assert sql.startswith("UPDATE api_keys SET last_used_at") and args == ([1, 2, 3],)
    assert await usage.flush(pool) == 0 and len(pool.executed) == 1  # nothing new: no statement


async def test_a_failed_flush_keeps_its_ids_for_the_next():
    class Down(FakeKeyPool):
        async def execute(self, sql, *args):
            raise OSError("connection refused")

    usage = UsageRecorder()
    usage.seen(5)
    with pytest.raises(OSError):
        await usage.flush(Down(None))
    assert usage.pending == {5}


async def test_only_live_keys_count_as_used():
    plaintext = "sp4n_abcd_secret"
    row = {"id": 9, "name": "k", "role": "portal", "scopes": list(SCOPES["portal"]), "source": "p",
           "opd_code": None, "expires_at": datetime.now(UTC) - timedelta(days=1),
           "secret_hash": hashlib.sha256(plaintext.encode()).hexdigest()}
    usage = UsageRecorder()
    assert await KeyCache(60, usage).verify(FakeKeyPool(row), plaintext) is None
    assert usage.pending == frozenset()
