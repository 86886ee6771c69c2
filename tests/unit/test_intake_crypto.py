"""Envelope encryption of reporter data (services/intake/crypto.py, reporter_data.py)."""

from __future__ import annotations

import base64
import dataclasses
import uuid

import pytest

from services.intake.crypto import (
    Keyring,
    Undecryptable,
    WrappedKey,
    decode_master_key,
    field_ad,
    keyring_from,
    new_master_key,
    seal,
    unseal,
)
from services.intake.domain.model import ReporterRow, SealedReporter
from services.intake.reporter_data import open_reporter, seal_reporter
from shared.settings import IntakeSettings

K1, K2 = b"\x01" * 32, b"\x02" * 32
BUDI = ReporterRow(name="Budi Santoso", phone="+6281234567890", email="budi@example.org",
                   nik="6109011234567890")


def test_a_sealed_field_opens_only_with_its_key_and_associated_data():
    blob = seal(K1, b"6109011234567890", field_ad("reporter:a", "nik"))
    assert b"6109011234567890" not in blob
    assert unseal(K1, blob, field_ad("reporter:a", "nik")) == b"6109011234567890"
    for key, ad in ((K2, field_ad("reporter:a", "nik")), (K1, field_ad("reporter:a", "phone")),
                    (K1, field_ad("reporter:b", "nik"))):
        with pytest.raises(Undecryptable):
            unseal(key, blob, ad)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(Undecryptable):
        unseal(K1, tampered, field_ad("reporter:a", "nik"))
    with pytest.raises(Undecryptable):
        unseal(K1, b"short", field_ad("reporter:a", "nik"))
    # A fresh nonce each time: the same value never gives the same ciphertext.
    assert seal(K1, b"x", b"ad") != seal(K1, b"x", b"ad")


def test_a_reporter_roundtrips_and_every_field_is_bound_to_its_complaint_and_field():
    ring = Keyring("k1", {"k1": K1})
    cid = uuid.uuid4()
    s = seal_reporter(ring, cid, BUDI)
    assert s.key_id == "k1" and s.wrapped_key and not s.erased
    stored = b"".join(v for v in (s.name, s.phone, s.email, s.nik, s.wrapped_key) if v)
    for plain in ("Budi", "6281234567890", "budi@example.org", "6109011234567890"):
        assert plain.encode() not in stored
    assert open_reporter(ring, cid, s) == BUDI
    # The NIK's ciphertext in the phone's column, or the row under another complaint: refused.
    with pytest.raises(Undecryptable):
        open_reporter(ring, cid, dataclasses.replace(s, phone=s.nik))
    with pytest.raises(Undecryptable):
        open_reporter(ring, uuid.uuid4(), s)
    partial = seal_reporter(ring, cid, ReporterRow(name="Budi"))
    assert partial.phone is None and open_reporter(ring, cid, partial) == ReporterRow(name="Budi")
    assert seal_reporter(ring, cid, ReporterRow()) == SealedReporter()  # nothing: no key at all
    assert open_reporter(ring, cid, SealedReporter()) == ReporterRow()


def test_another_master_key_does_not_open_a_reporter():
    cid = uuid.uuid4()
    s = seal_reporter(Keyring("k1", {"k1": K1}), cid, BUDI)
    with pytest.raises(Undecryptable):
        open_reporter(Keyring("k1", {"k1": K2}), cid, s)  # same id, wrong key
    with pytest.raises(Undecryptable, match="not in the keyring"):
        open_reporter(Keyring("k2", {"k2": K2}), cid, s)


def test_an_erased_reporter_does_not_open_even_with_the_right_master_key():
    ring = Keyring("k1", {"k1": K1})
    cid = uuid.uuid4()
    s = seal_reporter(ring, cid, BUDI)
    shredded = dataclasses.replace(s, key_id=None, wrapped_key=None, erased=True)
    with pytest.raises(Undecryptable):
        open_reporter(ring, cid, shredded)
    with pytest.raises(Undecryptable):  # the key row gone but not marked: still refused
        open_reporter(ring, cid, dataclasses.replace(shredded, erased=False))


def test_rotation_rewraps_under_the_current_key_and_the_old_key_can_then_go():
    cid = uuid.uuid4()
    old = Keyring("k1", {"k1": K1})
    s = seal_reporter(old, cid, BUDI)
    both = Keyring("k2", {"k1": K1, "k2": K2})
    assert open_reporter(both, cid, s) == BUDI  # old keys still unwrap
    wrapped = both.rewrap(f"reporter:{cid}", WrappedKey(s.key_id or "", s.wrapped_key or b""))
    assert wrapped is not None and wrapped.key_id == "k2"
    assert both.rewrap(f"reporter:{cid}", wrapped) is None  # already current
    rotated = dataclasses.replace(s, key_id=wrapped.key_id, wrapped_key=wrapped.blob)
    assert open_reporter(Keyring("k2", {"k2": K2}), cid, rotated) == BUDI
    # A wrapped key relabelled with another key id does not unwrap (the id is bound too).
    with pytest.raises(Undecryptable):
        both.unwrap(f"reporter:{cid}", WrappedKey("k1", wrapped.blob))


def test_master_keys_come_from_settings_as_base64_and_never_show_in_a_repr():
    k1, k2 = new_master_key(), new_master_key()
    assert len(base64.b64decode(k1)) == 32 and k1 != k2
    settings = IntakeSettings(master_key=k2, master_key_id="2027", old_master_keys={"2026": k1})
    ring = keyring_from(settings)
    assert ring.current_id == "2027"
    assert k1 not in repr(ring) and k2 not in repr(ring)
    assert k1 not in repr(settings) and k2 not in repr(settings)
    assert keyring_from(IntakeSettings()).current_id == "dev"  # the development default
    with pytest.raises(ValueError, match="master_key: must be 32 bytes"):
        decode_master_key(base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="not base64"):
        decode_master_key("not base64!")
    with pytest.raises(ValueError, match="old_master_keys.2026"):
        keyring_from(IntakeSettings(old_master_keys={"2026": "AAAA"}))
    with pytest.raises(ValueError, match="not in the keyring"):
        Keyring("k9", {"k1": K1})


def test_who_sees_the_reporter_and_when_an_opd_stops_seeing_them():
    from datetime import timedelta

    from services.intake.domain.complaint import Actor
    from services.intake.lifecycle import State
    from services.intake.queries import reporter_answer
    from tests.unit.intake_fakes import T0, disposed

    ring = Keyring("k1", {"k1": K1})
    opd, admin, portal = Actor("opd", opd_code="dinkes"), Actor("admin_koordinator"), Actor("portal")
    closed = disposed(status=State.SELESAI, closed_at=T0)
    s = seal_reporter(ring, closed.id, BUDI)

    def answer(actor, c=closed, stored=s, now=T0 + timedelta(days=29)):
        return reporter_answer(actor, c, stored, ring, opd_contact_days=30, now=now)

    shown, withheld = answer(opd)
    assert withheld is None and shown is not None and shown.phone == BUDI.phone and shown.nik is None
    assert answer(opd, now=T0 + timedelta(days=30)) == (None, "access_expired")
    late_admin, _ = answer(admin, now=T0 + timedelta(days=400))
    assert late_admin is not None and late_admin.nik == BUDI.nik  # the admin keeps access
    assert answer(portal) == (None, None)  # portals already hold it
    assert answer(opd, c=dataclasses.replace(closed, status=State.TERDISPOSISI, closed_at=None),
                  now=T0 + timedelta(days=400))[1] is None  # open again: no expiry
    assert answer(admin, c=dataclasses.replace(closed, anonymous=True)) == (None, None)  # anonim: nobody
    erased = dataclasses.replace(s, key_id=None, wrapped_key=None, erased=True)
    assert answer(admin, stored=erased) == (None, "erased")
    foreign = seal_reporter(Keyring("k9", {"k9": K2}), closed.id, BUDI)
    assert answer(admin, stored=foreign) == (None, "undecryptable")
    legacy, _ = answer(admin, stored=BUDI)  # a row from before encryption, not yet encrypted
    assert legacy is not None and legacy.nik == BUDI.nik
