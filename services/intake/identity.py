"""Identifiers intake hands out: tracking ids for people, pseudonymous reporter references
for events."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import datetime
from zoneinfo import ZoneInfo

# Crockford base32 without I, L, O, U: readable over the phone.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_tracking_id(region_code: str, at: datetime, tz: ZoneInfo) -> str:
    """``SKD-261128-7K3QX9``: regency, local date of acceptance, 30 random bits."""
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    return f"{region_code}-{at.astimezone(tz):%y%m%d}-{suffix}"


def reporter_ref(key: str, anonymous: bool, nik: str | None, phone: str | None,
                 email: str | None, name: str | None) -> str:
    """A pseudonym for the reporter.

    Named reporters get a keyed hash of their strongest identifier, so repeated reports by
    one person can be linked without revealing who. Anonim reporters get a random reference:
    nothing downstream can link their reports together or back to them.
    """
    if anonymous:
        return "anon_" + secrets.token_hex(8)
    ident = nik or (phone and "".join(ch for ch in phone if ch.isdigit())) or email or (name or "").lower()
    return "rep_" + hmac.new(key.encode(), ident.encode(), hashlib.sha256).hexdigest()[:20]


def fingerprint(data: object, key: str = "") -> str:
    """Stable digest of JSON-able data; keyed when it covers personal data."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
