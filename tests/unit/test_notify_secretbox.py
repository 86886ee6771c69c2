from __future__ import annotations

import base64
import os

import pytest

from services.notify.secretbox import SecretBox
from services.notify.signing import generate_secret

KEY = base64.b64encode(os.urandom(32)).decode()


def test_sealed_secrets_round_trip_and_never_show_the_plaintext() -> None:
    box, secret = SecretBox(KEY), generate_secret()
    stored = box.seal("wa-bot", "secret", secret)
    assert stored.startswith("enc:v1:") and secret not in stored
    assert box.seal("wa-bot", "secret", secret) != stored  # a fresh nonce each time
    assert box.open("wa-bot", "secret", stored) == secret


def test_a_ciphertext_is_bound_to_its_subscription_column_and_key() -> None:
    box, secret = SecretBox(KEY), generate_secret()
    stored = box.seal("wa-bot", "secret", secret)
    with pytest.raises(ValueError, match="does not decrypt"):
        box.open("other", "secret", stored)
    with pytest.raises(ValueError, match="does not decrypt"):
        box.open("wa-bot", "previous_secret", stored)
    with pytest.raises(ValueError, match="does not decrypt"):
        SecretBox(base64.b64encode(os.urandom(32)).decode()).open("wa-bot", "secret", stored)


def test_plaintext_rows_from_before_encryption_are_read_as_they_are() -> None:
    secret = generate_secret()
    assert SecretBox(KEY).open("wa-bot", "secret", secret) == secret


@pytest.mark.parametrize("key", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="SP4N_NOTIFY__SECRETS_KEY"):
        SecretBox(key)
