"""Envelope encryption of personal data at rest (AES-256-GCM, ``cryptography``).

Each owner (a complaint's reporter, a failed submission) has its own random 256-bit data
key; every field is sealed under it with a fresh 96-bit nonce. The data key is stored
wrapped (sealed) by the master key of ``settings.intake``, named by its key id so the master
key can be rotated: older keys stay in the keyring for unwrapping until
``sp4n rotate-master-key`` has re-wrapped every data key under the current one.

Associated data binds each ciphertext to its owner and field (``field_ad``) and each wrapped
key to its owner and master key id: a ciphertext copied to another row or column does not
decrypt. Destroying the wrapped data key makes every field of its owner undecryptable
(crypto-shredding).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.settings import IntakeSettings

NONCE_BYTES = 12
KEY_BYTES = 32
_AD_PREFIX = "sp4n.intake"


class Undecryptable(Exception):
    """A ciphertext or wrapped key that does not open: erased, tampered with, moved to another
    owner or field, or sealed under a master key this keyring does not hold."""


@dataclass(frozen=True)
class WrappedKey:
    key_id: str  # the master key that wrapped it
    blob: bytes  # nonce || ciphertext || tag


def decode_master_key(value: str, name: str = "master_key") -> bytes:
    """A master key from its base64 text (32 bytes); ValueError names the setting."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{name}: not base64") from exc
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{name}: must be {KEY_BYTES} bytes (base64), got {len(raw)}")
    return raw


def new_master_key() -> str:
    """A fresh master key as base64 text (for ``SP4N_INTAKE__MASTER_KEY``)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def field_ad(owner: str, field: str) -> bytes:
    return f"{_AD_PREFIX}/{owner}/{field}".encode()


def _key_ad(owner: str, key_id: str) -> bytes:
    return f"{_AD_PREFIX}/{owner}/data-key/{key_id}".encode()


def seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def unseal(key: bytes, blob: bytes, ad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise Undecryptable("ciphertext too short")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], ad)
    except InvalidTag as exc:
        raise Undecryptable("authentication failed") from exc


class Keyring:
    """The master keys: ``current_id`` wraps new data keys; every key unwraps its own."""

    def __init__(self, current_id: str, keys: Mapping[str, bytes]) -> None:
        if current_id not in keys:
            raise ValueError(f"master_key_id: '{current_id}' is not in the keyring")
        for kid, k in keys.items():
            if len(k) != KEY_BYTES:
                raise ValueError(f"master key '{kid}' must be {KEY_BYTES} bytes")
        self.current_id = current_id
        self._keys = dict(keys)

    def __repr__(self) -> str:  # never the keys
        return f"Keyring(current_id={self.current_id!r}, ids={sorted(self._keys)!r})"

    def new_data_key(self, owner: str) -> tuple[bytes, WrappedKey]:
        """A fresh data key for ``owner`` and its wrapped form (what is stored)."""
        dek = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        return dek, self.wrap(owner, dek)

    def wrap(self, owner: str, dek: bytes) -> WrappedKey:
        kid = self.current_id
        return WrappedKey(kid, seal(self._keys[kid], dek, _key_ad(owner, kid)))

    def unwrap(self, owner: str, wrapped: WrappedKey) -> bytes:
        master = self._keys.get(wrapped.key_id)
        if master is None:
            raise Undecryptable(f"master key '{wrapped.key_id}' is not in the keyring")
        return unseal(master, wrapped.blob, _key_ad(owner, wrapped.key_id))

    def rewrap(self, owner: str, wrapped: WrappedKey) -> WrappedKey | None:
        """``wrapped`` under the current master key; None when it already is."""
        if wrapped.key_id == self.current_id:
            return None
        return self.wrap(owner, self.unwrap(owner, wrapped))


def keyring_from(settings: IntakeSettings) -> Keyring:
    """The keyring of ``settings.intake``: the current master key and the old ones."""
    keys = {kid: decode_master_key(v, f"old_master_keys.{kid}")
            for kid, v in settings.old_master_keys.items()}
    keys[settings.master_key_id] = decode_master_key(settings.master_key)
    return Keyring(settings.master_key_id, keys)
