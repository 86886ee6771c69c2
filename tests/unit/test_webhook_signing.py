"""Standard Webhooks signing: the spec's published example and a round trip through the
reference library's verifier."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.notify import signing

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_spec_example_signature():
    assert signing.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_spec_example_agrees_with_reference_library():
    ts = datetime.fromtimestamp(SPEC_TIMESTAMP, UTC)
    assert Webhook(SPEC_SECRET).sign(SPEC_ID, ts, SPEC_BODY.decode()) == SPEC_SIGNATURE


def test_round_trip_verified_by_reference_library():
    secret = signing.generate_secret()
    body = b'{"specversion":"1.0","id":"e-1","data":{"opd_code":"DINKES","nama":"Ibu Sri Rahayu"}}'
    headers = signing.signed_headers(secret, signing.webhook_id("e-1", "wa-bot"), int(time.time()), body)
    assert Webhook(secret).verify(body, headers)["data"]["opd_code"] == "DINKES"


def test_tampered_body_or_wrong_secret_fails_verification():
    secret = signing.generate_secret()
    body = b'{"a": 1}'
    headers = signing.signed_headers(secret, "msg_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a": 2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(body, headers)


def test_headers_and_stable_webhook_id():
    headers = signing.signed_headers(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert headers == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": "1614265330",
        "webhook-signature": SPEC_SIGNATURE,
        "content-type": "application/cloudevents+json",
    }
    assert signing.webhook_id("evt-1", "sub-a") == signing.webhook_id("evt-1", "sub-a")
    assert signing.webhook_id("evt-1", "sub-a") != signing.webhook_id("evt-1", "sub-b")
    assert signing.webhook_id("evt-1", "sub-a") != signing.webhook_id("evt-2", "sub-a")


def test_generated_secret_is_valid_whsec():
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(signing.secret_key(secret)) == 32
    assert signing.generate_secret() != secret


@pytest.mark.parametrize("bad", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!notbase64!!!",
                                 "whsec_c2hvcnQ=", "whsec_"])
def test_invalid_secrets_are_rejected(bad):
    with pytest.raises(ValueError):
        signing.secret_key(bad)
