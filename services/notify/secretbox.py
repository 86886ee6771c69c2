"""Webhook signing secrets encrypted at rest (AES-256-GCM from ``cryptography``).

A stored secret is ``enc:v1:<base64(nonce ‖ ciphertext)>``; the associated data binds it to
its subscription and column, so a ciphertext copied onto another subscription does not
decrypt. The key is ``SP4N_NOTIFY__SECRETS_KEY`` (base64 of 32 bytes). A database dump, a
backup or another role that can read the table learns no secret; the notify process, which
must sign with them, holds the key.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"
_NONCE_BYTES = 12


class SecretBox:
    def __init__(self, key_b64: str) -> None:
        try:
            key = base64.b64decode(key_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("SP4N_NOTIFY__SECRETS_KEY must be base64 of 32 bytes") from exc
        if len(key) != 32:
            raise ValueError(f"SP4N_NOTIFY__SECRETS_KEY must be 32 bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @staticmethod
    def sealed(stored: str) -> bool:
        return stored.startswith(PREFIX)

    def seal(self, subscription: str, column: str, secret: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        ct = self._aead.encrypt(nonce, secret.encode(), _ad(subscription, column))
        return PREFIX + base64.b64encode(nonce + ct).decode()

    def open(self, subscription: str, column: str, stored: str) -> str:
        """The plaintext of a sealed secret; a plaintext ``whsec_`` value (a row written
        before encryption, sealed at the next start) is returned as it is."""
        if not self.sealed(stored):
            return stored
        raw = base64.b64decode(stored[len(PREFIX):])
        try:
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                      _ad(subscription, column)).decode()
        except InvalidTag as exc:
            raise ValueError(f"the secret of subscription {subscription!r} does not decrypt with"
                             " SP4N_NOTIFY__SECRETS_KEY (wrong key?)") from exc


def _ad(subscription: str, column: str) -> bytes:
    return f"sp4n.notify.subscriptions.{column}\x00{subscription}".encode()
