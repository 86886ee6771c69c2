"""Webhook signing per the Standard Webhooks spec (https://www.standardwebhooks.com/).

A message is signed as ``v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`` where
``key`` is the base64-decoded part of a ``whsec_…`` secret. ``webhook-id`` stays the same
across retries of one delivery, so a receiver can deduplicate; ``webhook-timestamp`` is the
time of each attempt, so a receiver can reject replays of old requests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
# Fixed namespace: webhook ids derived from (event id, subscription) are stable across
# replicas, restarts and replays.
_WEBHOOK_ID_NAMESPACE = uuid.UUID("6d1f0c2e-2b7a-4f0e-9a51-5f4e0a6e0b17")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ``ValueError`` naming the problem if invalid."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("secret must start with 'whsec_'")
    encoded = secret[len(SECRET_PREFIX):].rstrip("=")
    try:
        # Padding is optional in the wild: strip it and add exactly what is needed.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("secret after 'whsec_' must be base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"secret key must be {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes, got {len(key)}")
    return key


def generate_secret(num_bytes: int = 32) -> str:
    """A new random ``whsec_`` secret to give to a webhook receiver."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one request."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def webhook_id(event_id: str, subscription: str) -> str:
    """Stable message id of one event's delivery to one subscription."""
    return "msg_" + uuid.uuid5(_WEBHOOK_ID_NAMESPACE, f"{event_id}\x00{subscription}").hex


def signed_headers(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes,
                   content_type: str = "application/cloudevents+json") -> dict[str, str]:
    """The headers of one request. Several secrets (the current one first, then one being
    rotated out) give several space-separated ``v1,`` signatures, as Standard Webhooks
    allows: a receiver that knows either secret verifies the request."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(k, msg_id, timestamp, body) for k in keys),
        "content-type": content_type,
    }
