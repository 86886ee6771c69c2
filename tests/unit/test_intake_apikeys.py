"""API-key roles and scopes (pure parts, with a fake connection)."""

from __future__ import annotations

import pytest

from services.intake.apikeys import SCOPES, create_api_key
from services.intake.errors import field_errors


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
    assert conn.rows[0][3:] == ("opd", ["complaints:read"], None, "dinkes")


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
])
async def test_inconsistent_keys_are_refused(role, source, opd_code):
    conn = FakeConn()
    with pytest.raises(ValueError):
        await create_api_key(conn, "x", role, source, opd_code)
    assert conn.rows == []


def test_existing_roles_keep_their_scopes():
    assert SCOPES["portal"] == ("complaints:submit", "complaints:read")
    assert "complaints:admin" in SCOPES["admin_koordinator"]


def test_a_field_called_body_is_still_named():
    errors = field_errors([{"loc": ("body", "body"), "msg": "too long", "type": "string_too_long"},
                           {"loc": ("body", "attachments", 0), "msg": "bad url", "type": "url"},
                           {"loc": ("query", "status"), "msg": "bad", "type": "enum"},
                           {"loc": ("body",), "msg": "Value error, broken", "type": "value_error"}])
    assert [e["field"] for e in errors] == ["body", "attachments.0", "status", "(body)"]
    assert errors[3]["reason"] == "broken"
