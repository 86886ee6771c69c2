"""A reporter's identity sealed for storage and opened for an answer (``crypto``).

Every field (name, phone, e-mail, NIK) is sealed under the reporter's own data key, with
associated data naming the complaint and the field; the name is personal data like the
rest (UU PDP), so it is sealed too. Nothing here touches the database.
"""

from __future__ import annotations

import uuid

from services.intake.crypto import Keyring, Undecryptable, WrappedKey, field_ad, seal, unseal
from services.intake.domain.model import REPORTER_FIELDS, ReporterRow, SealedReporter


def reporter_owner(complaint_id: uuid.UUID) -> str:
    return f"reporter:{complaint_id}"


def seal_reporter(keyring: Keyring, complaint_id: uuid.UUID, r: ReporterRow) -> SealedReporter:
    """``r`` sealed under a fresh data key; no key at all when there is nothing to seal."""
    values = {f: getattr(r, f) for f in REPORTER_FIELDS}
    if all(v is None for v in values.values()):
        return SealedReporter()
    owner = reporter_owner(complaint_id)
    dek, wrapped = keyring.new_data_key(owner)

    def sealed(f: str) -> bytes | None:
        v = values[f]
        return None if v is None else seal(dek, v.encode(), field_ad(owner, f))

    return SealedReporter(name=sealed("name"), phone=sealed("phone"), email=sealed("email"),
                          nik=sealed("nik"), key_id=wrapped.key_id, wrapped_key=wrapped.blob)


def open_reporter(keyring: Keyring, complaint_id: uuid.UUID, s: SealedReporter) -> ReporterRow:
    """The plain identity; raises ``Undecryptable`` for an erased reporter (its data key is
    gone) or a ciphertext that does not open under this keyring."""
    if s.erased:
        raise Undecryptable("reporter erased")
    fields = {f: getattr(s, f) for f in REPORTER_FIELDS}
    if all(v is None for v in fields.values()):
        return ReporterRow()
    if s.key_id is None or s.wrapped_key is None:
        raise Undecryptable("no data key")
    owner = reporter_owner(complaint_id)
    dek = keyring.unwrap(owner, WrappedKey(s.key_id, s.wrapped_key))
    return ReporterRow(**{f: None if v is None else unseal(dek, v, field_ad(owner, f)).decode()
                          for f, v in fields.items()})
