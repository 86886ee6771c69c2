"""The web page's session: an API key, checked once at sign-in, becomes a signed, expiring
token in an HttpOnly, SameSite=Strict cookie. Pure: no I/O.

Invariants:
- the token never holds the key itself, only its id, role and OPD; every request checks the
  key is still active (a revoked key's session ends with it);
- a token is ``base64url(json).base64url(hmac-sha256)`` over the signing secret
  (``SP4N_INTAKE__WEB_SESSION_SECRET``); a tampered or expired token is no session;
- form tokens (CSRF) are bound to their purpose and, for a signed-in form, to the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

COOKIE = "sp4n_kinerja"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    key_id: int
    role: str
    opd_code: str | None
    expires_at: float


class Signer:
    def __init__(self, secret: str) -> None:
        # No secret configured: a random one per process (sessions end at restart and do not
        # cross replicas); production sets SP4N_INTAKE__WEB_SESSION_SECRET.
        self._secret = (secret or secrets.token_urlsafe(32)).encode()

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def sign(self, claims: dict[str, Any]) -> str:
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{self._mac(payload)}"

    def unsign(self, token: str | None, now: float) -> dict[str, Any] | None:
        if not token or token.count(".") != 1:
            return None
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            claims = json.loads(_unb64(payload))
        except ValueError:
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), (int, float)):
            return None
        return claims if claims["exp"] > now else None

    # --- sessions -------------------------------------------------------------------------

    def session_token(self, key_id: int, role: str, opd_code: str | None, now: float, ttl_s: float) -> str:
        return self.sign({"p": "session", "k": key_id, "r": role, "o": opd_code, "exp": now + ttl_s,
                          "n": secrets.token_urlsafe(8)})

    def session(self, token: str | None, now: float) -> Session | None:
        c = self.unsign(token, now)
        if c is None or c.get("p") != "session" or not isinstance(c.get("k"), int):
            return None
        return Session(c["k"], str(c.get("r")), c.get("o"), float(c["exp"]))

    # --- form tokens (CSRF) ---------------------------------------------------------------

    def form_token(self, purpose: str, now: float, session_token: str | None = None,
                   ttl_s: float = 3600.0) -> str:
        return self.sign({"p": purpose, "exp": now + ttl_s, "s": self._bind(session_token)})

    def form_token_ok(self, token: str | None, purpose: str, now: float,
                      session_token: str | None = None) -> bool:
        c = self.unsign(token, now)
        return c is not None and c.get("p") == purpose and c.get("s") == self._bind(session_token)

    def _bind(self, session_token: str | None) -> str:
        return self._mac(f"bind:{session_token}") if session_token else ""
