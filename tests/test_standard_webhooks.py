"""Standard Webhooks (``WEBHOOK_AUTH = "standard"``), checked against the specification's published
test vector and the reference library ``standardwebhooks``: it signs what we verify, and verifies
what we sign. Then end to end on a Valify alias switched to the scheme: ``webhook-id`` deduplicates."""

import base64
import json
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from verification_link.models import VerificationEvent, VerificationSession
from verification_link.webhooks import WebhookRefused, WebhookVerifier

from .provider_contract import _meta_key

#: The specification's test vector (standard-webhooks, spec/standard-webhooks.md and its libraries' tests).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(b"current-standard-key-SECRET-32by").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"old-standard-key-SECRET-32bytes!").decode()


def verifier(secrets=(SECRET, OLD_SECRET), **config):
    return WebhookVerifier("std", {"WEBHOOK_AUTH": "standard", "WEBHOOK_SECRETS": list(secrets), **config})


def library_headers(secret, body, *, msg_id="msg_1", timestamp=None):
    stamp = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, tz=timezone.utc), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


def test_the_published_test_vector():
    assert "v1," + WebhookVerifier.standard_signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == (
        VECTOR_SIGNATURE
    )
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert verifier([VECTOR_SECRET]).verify(headers, VECTOR_BODY, now=VECTOR_TIMESTAMP + 10) == VECTOR_ID


def test_what_the_library_signs_we_verify_and_the_id_is_returned():
    body = b'{"type": "verification.completed"}'
    assert verifier().verify(library_headers(SECRET, body, msg_id="msg_abc"), body) == "msg_abc"
    assert verifier().verify(library_headers(OLD_SECRET, body, msg_id="msg_old"), body) == "msg_old"


def test_what_we_sign_the_library_verifies():
    body = b'{"a": 1}'
    headers = verifier().sign(body)
    assert Webhook(SECRET).verify(body, headers) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(body, headers)


def test_any_of_several_space_separated_signatures_matches():
    body = b"{}"
    good = library_headers(SECRET, body)
    good["webhook-signature"] = "v1,bm90LWl0 v2,whatever " + good["webhook-signature"]
    assert verifier().verify(good, body) == "msg_1"


# Clear of the 300 s boundary: the stamp is whole seconds, the clock read later is a float.
@pytest.mark.parametrize("offset", [-330, 330, -86400, 86400])
def test_stale_and_future_timestamps_are_refused(offset):
    body = b"{}"
    with pytest.raises(WebhookRefused, match="tolerance"):
        verifier().verify(library_headers(SECRET, body, timestamp=int(time.time()) + offset), body)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": None},
        {"webhook-timestamp": None},
        {"webhook-signature": None},
        {"webhook-id": "msg_other"},  # the id is signed
        {"webhook-signature": "v2,AAAA"},
        {"webhook-id": "é" * 3},
        {"webhook-id": "x" * 300},
        {"webhook-signature": "v1," + "A" * 5000},
        {"webhook-timestamp": "١٦١٤٢٦٥٣٣٠"},
    ],
)
def test_missing_tampered_or_hostile_headers_are_refused(change):
    body = b'{"a": 1}'
    headers = library_headers(SECRET, body)
    for name, value in change.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    with pytest.raises(WebhookRefused):
        verifier().verify(headers, body)


def test_a_tampered_body_is_refused():
    headers = library_headers(SECRET, b'{"a": 1}')
    with pytest.raises(WebhookRefused, match="does not match"):
        verifier().verify(headers, b'{"a": 2}')


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", "plain text"])
def test_a_secret_that_is_not_base64_refuses_everything_at_use(secret):
    refusing = verifier([secret])
    assert "Standard Webhooks secrets" in refusing.config_error
    with pytest.raises(WebhookRefused) as refused:
        refusing.verify(library_headers(SECRET, b"{}"), b"{}")
    assert refused.value.status_code == 403


# -- end to end: a Valify alias on the standard scheme -----------------------------------------------


@pytest.fixture
def standard_valify(settings, db):
    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers["valify"] = {**providers["valify"], "WEBHOOK_AUTH": "standard", "WEBHOOK_SECRETS": [SECRET]}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}


def valify_body(session):
    return json.dumps(
        {"event": "verification.completed", "session_token": session.token, "status": "success", "result": {}}
    ).encode()


def post(client, body, headers):
    meta = {_meta_key(name): value for name, value in headers.items()}
    return client.post("/verify/webhook/valify/", data=body, content_type="application/json", **meta)


def test_a_redelivery_with_the_same_webhook_id_is_processed_once(standard_valify, client, signal_log, commit):
    session = VerificationSession.objects.create(provider="valify", token="tok-1", status="IN_PROGRESS")
    body = valify_body(session)
    with commit():
        first = post(client, body, library_headers(SECRET, body, msg_id="msg_once"))
    with commit():
        again = post(client, body, library_headers(SECRET, body, msg_id="msg_once"))
    assert first.json() == {"status": "processed"}
    assert again.json() == {"status": "already processed"}
    session.refresh_from_db()
    assert session.status == "DONE"
    assert len(signal_log.of("verification_finished")) == 1
    kept = VerificationEvent.objects.filter(kind="webhook", delivery_id="msg_once")
    assert kept.count() == 1


def test_a_refused_delivery_does_not_take_its_id(standard_valify, client, commit):
    session = VerificationSession.objects.create(provider="valify", token="tok-2", status="IN_PROGRESS")
    body = valify_body(session)
    forged = library_headers(OLD_SECRET, body, msg_id="msg_taken")
    assert post(client, body, forged).status_code == 401
    with commit():
        assert post(client, body, library_headers(SECRET, body, msg_id="msg_taken")).json() == {"status": "processed"}


def test_a_delivery_that_failed_midway_is_processed_when_redelivered(standard_valify, signal_log, commit):
    """A site receiver failing once (any error after the id was claimed): the redelivery is
    processed, not answered "already processed"."""
    from django.db.models.signals import post_save
    from django.test import Client

    session = VerificationSession.objects.create(provider="valify", token="tok-3", status="IN_PROGRESS")
    body = valify_body(session)
    failures = []

    def flaky_receiver(sender, instance, created, **kwargs):
        if instance.kind == "status_changed" and not failures:
            failures.append(instance)
            raise RuntimeError("the site's audit log is down")

    post_save.connect(flaky_receiver, sender=VerificationEvent)
    try:
        client = Client(raise_request_exception=False)
        with commit():
            first = post(client, body, library_headers(SECRET, body, msg_id="msg_flaky"))
        assert first.status_code == 500 and failures
        session.refresh_from_db()
        assert session.status == "IN_PROGRESS"  # nothing half-applied
        with commit():
            again = post(client, body, library_headers(SECRET, body, msg_id="msg_flaky"))
    finally:
        post_save.disconnect(flaky_receiver, sender=VerificationEvent)
    assert again.json() == {"status": "processed"}
    session.refresh_from_db()
    assert session.status == "DONE"
    assert len(signal_log.of("verification_finished")) == 1


# -- the "timestamped" scheme (Stripe's, Persona's): what is hashed before authentication ----------


def timestamped(secrets=("whsec_t_SECRET",)):
    return WebhookVerifier("ts", {"WEBHOOK_AUTH": "timestamped", "WEBHOOK_SECRETS": list(secrets)})


def test_timestamped_rotation_groups_and_stale_stamps():
    import hashlib
    import hmac

    body = b'{"id": "evt_1"}'
    now = int(time.time())

    def v1(secret, stamp):
        return hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()

    good = f"t={now},v1={v1('whsec_t_SECRET', now)}"
    assert timestamped().verify({"X-Signature": good}, body) == ""
    # Persona during a rotation: two groups, the old secret's first.
    rotated = f"t={now},v1={v1('whsec_old', now)} {good}"
    assert timestamped().verify({"X-Signature": rotated}, body) == ""
    # A stale stamp is refused even with a correct signature over it.
    stale = f"t={now - 3600},v1={v1('whsec_t_SECRET', now - 3600)}"
    with pytest.raises(WebhookRefused, match="tolerance"):
        timestamped().verify({"X-Signature": stale}, body)


def test_timestamped_reads_a_few_groups_only():
    import hashlib
    import hmac

    body = b"{}"
    now = int(time.time())
    signature = hmac.new(b"whsec_t_SECRET", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    padding = " ".join(f"t={now},v1={'0' * 64}" for _ in range(10))
    # The valid group after ten forged ones is never reached: each request hashes a bounded number.
    with pytest.raises(WebhookRefused):
        timestamped().verify({"X-Signature": f"{padding} t={now},v1={signature}"}, body)
    assert timestamped().verify({"X-Signature": f"t={now},v1={signature} {padding}"}, body) == ""
