"""The Stripe Identity emulator, driven by the real ``StripeIdentityProvider`` over HTTP: every
``requests`` call to ``http://testserver`` (the provider's, and the emulator's webhook delivery) is
answered by Django's test client, so create → hosted page → outcome → the emulator's signed webhook
at ``webhook/sandbox_stripe_identity/`` (→ a retrieve for open states) all run in the test.
Nothing of ours is patched; Stripe's SDK parses what the emulator signs."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import pytest
import stripe
from django.conf import settings as django_settings

from verification_link import services
from verification_link.exceptions import ProviderAuthError, ProviderRejected
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider
from verification_link.sandbox.credentials import sandbox_credentials
from verification_link.sandbox.emulators.stripe_identity import EMULATOR
from verification_link.sandbox.models import SandboxHostedSession
from verification_link.testing import site_over_requests

pytestmark = pytest.mark.django_db

Status = VerificationSession.Status
ALIAS = "sandbox_stripe_identity"  # where the emulator posts by default: webhook/sandbox_stripe_identity/
KEYS = sandbox_credentials(django_settings.SECRET_KEY)
API_KEY = KEYS["STRIPE_IDENTITY_API_KEY"]
WEBHOOK_SECRET = KEYS["STRIPE_IDENTITY_WEBHOOK_SECRET"]
ORIGIN = "http://testserver"
API = "/sandbox/stripe_identity/v1/identity/verification_sessions"
BEARER = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def bridge():
    """``requests`` to ``http://testserver`` answered by the Django test client."""
    with site_over_requests(ORIGIN) as mock:
        yield mock


@pytest.fixture
def site(settings, bridge):
    """The alias as the example project configures it, against the emulator."""
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True}
    settings.VERIFICATION_LINK = {
        **settings.VERIFICATION_LINK,
        "PROVIDERS": {
            **settings.VERIFICATION_LINK["PROVIDERS"],
            ALIAS: {
                "BACKEND": "verification_link.providers.stripe_identity.StripeIdentityProvider",
                "API_KEY": API_KEY,
                "BASE_URL": f"{ORIGIN}/sandbox/stripe_identity",
                "WEBHOOK_SECRETS": [WEBHOOK_SECRET],
                "SCOPES": ["document", "face_match"],
            },
        },
    }
    return bridge


@pytest.fixture
def start(user, commit):
    def start():
        with commit():
            return services.start_verification(user=user, provider=ALIAS)

    return start


@pytest.fixture
def pick(client, commit):
    """The user on the hosted page: load it, press the outcome's button."""

    def pick(url, outcome):
        path = urlsplit(url).path
        page = client.get(path)
        assert page.status_code == 200
        with commit():
            return client.post(path, {"outcome": outcome})

    return pick


def webhooks(session):
    return list(VerificationEvent.objects.filter(kind=VerificationEvent.Kind.WEBHOOK, session=session).order_by("id"))


@pytest.mark.parametrize(
    ("outcome", "status", "verdict", "reasons", "finished"),
    [
        ("pass", Status.DONE, "approved", [], 1),
        ("fail", Status.IN_PROGRESS, "resubmission", ["selfie_face_mismatch"], 0),
        ("resubmit", Status.IN_PROGRESS, "resubmission", ["document_unverified_other"], 0),
        ("abandon", Status.IN_PROGRESS, "resubmission", ["abandoned"], 0),
    ],
)
def test_each_outcome_reaches_the_site(site, start, pick, signal_log, outcome, status, verdict, reasons, finished):
    session = start()
    assert session.external_id.startswith("vs_") and session.url.startswith(f"{ORIGIN}/sandbox/hosted/")
    assert session.status == Status.CREATED
    url = session.url
    response = pick(url, outcome)
    assert (response.status_code, response["Location"]) == (
        303,
        f"https://www.example.com/verify/s/{session.pk}/return/",
    )
    session.refresh_from_db()
    assert (session.status, session.provider_verdict, session.provider_reasons) == (status, verdict, reasons)
    assert session.provider_status == ("verified" if outcome == "pass" else "requires_input")
    assert len(signal_log.of("verification_finished")) == finished
    received = webhooks(session)
    # ".created", then ".processing" for a submission, then the outcome's event
    assert len(received) == (2 if outcome == "abandon" else 3)
    assert all(event.valid and event.processed and not event.error for event in received), received
    assert all(event.delivery_id.startswith("evt_") for event in received)
    if outcome == "pass":
        assert session.decision == VerificationSession.Decision.APPROVED
        assert session.result["selfie"]["status"] == "verified"  # the .processing event pulled the report
        assert session.result["verified_outputs"]["first_name"] == "Jenny"
        assert "Jenny" not in "".join(event.body for event in received)  # identity data not kept in bodies
    else:
        assert session.decision == ""


def test_a_failed_check_is_retried_in_the_same_session(site, start, pick, signal_log):
    session = start()
    url = session.url
    pick(url, "fail")
    session.refresh_from_db()
    assert session.status == Status.IN_PROGRESS
    assert session.result["selfie"]["status"] == "unverified"
    assert session.result["document"]["status"] == "verified"
    rows = {row.scope: row.passed for row in get_provider(ALIAS).check_rows(session.scopes, session.result)}
    assert rows == {"document": True, "face_match": False}
    assert pick(url, "pass").status_code == 303  # the same page takes the new attempt
    session.refresh_from_db()
    assert (session.status, session.decision, session.provider_reasons) == (Status.DONE, "approved", [])
    assert len(signal_log.of("verification_finished")) == 1
    assert pick(url, "pass").status_code == 409  # verified: the page takes no more attempts


def test_without_webhooks_the_poll_reads_the_emulator(site, start, pick, settings, signal_log, commit):
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True, "WEBHOOK_URLS": {"stripe_identity": ""}}
    session = start()
    pick(session.url, "pass")
    session.refresh_from_db()
    assert session.status == Status.CREATED and not webhooks(session)
    with commit():
        services.refresh_session(session)
    session.refresh_from_db()
    assert (session.status, session.decision) == (Status.DONE, "approved")
    assert session.result["document"]["first_name"] == "Jenny"
    assert len(signal_log.of("verification_finished")) == 1


def test_cancel_and_redact_at_the_emulator(site, start, pick, signal_log, commit):
    session = start()
    with commit():
        services.cancel_session(session)
    session.refresh_from_db()
    assert session.status == Status.CANCELED
    assert SandboxHostedSession.objects.get(external_id=session.external_id).status == "canceled"
    assert len(signal_log.of("verification_finished")) == 1  # the ".canceled" webhook changes nothing more
    backend = get_provider(ALIAS)
    with pytest.raises(ProviderRejected) as info:  # Stripe redacts only requires_input or verified
        backend.redact_session(session)
    assert info.value.status_code == 400
    passed = start()
    url = passed.url
    pick(url, "pass")
    with commit():
        backend.redact_session(passed)
    row = SandboxHostedSession.objects.get(external_id=passed.external_id)
    assert row.redacted_at is not None and row.status == "verified"
    last = VerificationEvent.objects.filter(kind=VerificationEvent.Kind.WEBHOOK).latest("id")
    assert (last.valid, last.error) == (True, "ignored event type")  # ".redacted" says nothing of the state
    assert pick(url, "pass").status_code == 409


def test_the_sdk_parses_what_the_emulator_signs(site, start):
    session = start()
    row = SandboxHostedSession.objects.get(external_id=session.external_id)
    for event_name in ("created", "processing", "outcome"):
        body, headers = EMULATOR.webhook(row, event=event_name)
        parsed = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], WEBHOOK_SECRET)
        assert parsed.id.startswith("evt_")
        assert parsed.data.object.id == session.external_id
        assert parsed.data.object.client_reference_id == str(session.pk)
        assert parsed.data.object.metadata["verification_session_id"] == str(session.pk)
    assert parsed.type == "identity.verification_session.requires_input"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_wrong")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer ",
        "Bearer sk_test_wrong",
        f"Bearer {API_KEY}x",
        f"Bearer {API_KEY.upper()}",
        API_KEY,
        f"Basic {base64.b64encode(b'sk_test_wrong:').decode()}",
        "Basic !!!",
    ],
)
def test_the_api_refuses_a_wrong_key(site, client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.post(API, {"type": "document"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert API_KEY not in response.content.decode()
    assert not SandboxHostedSession.objects.exists()


def test_the_provider_with_a_wrong_key_gets_an_auth_error(site, settings, user):
    config = settings.VERIFICATION_LINK["PROVIDERS"][ALIAS]
    settings.VERIFICATION_LINK = {
        **settings.VERIFICATION_LINK,
        "PROVIDERS": {**settings.VERIFICATION_LINK["PROVIDERS"], ALIAS: {**config, "API_KEY": "sk_test_wrong"}},
    }
    with pytest.raises(ProviderAuthError) as info:
        services.start_verification(user=user, provider=ALIAS)
    assert info.value.code == "invalid_request_error"


def test_basic_auth_and_the_wire_format(site, client):
    basic = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    data = {"type": "id_number", "client_reference_id": "ref-1", "metadata[a]": "b"}
    created = client.post(API, data, headers={"Authorization": basic})
    assert created.status_code == 200, created.content
    body = created.json()
    assert (body["object"], body["status"], body["type"], body["metadata"], body["client_reference_id"]) == (
        "identity.verification_session",
        "requires_input",
        "id_number",
        {"a": "b"},
        "ref-1",
    )
    assert body["client_secret"].startswith(body["id"] + "_secret_")
    assert body["last_error"] is None and body["last_verification_report"] is None
    again = client.get(f"{API}/{body['id']}", headers=BEARER).json()
    assert (again["id"], again["url"]) == (body["id"], body["url"])


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, "parameter_missing"),
        ({"type": "selfie"}, "parameter_missing"),
        ({"type": "document", "colour": "red"}, "parameter_unknown"),
        ({"type": "document", "options[document][require_matching_selfie]": "yes"}, "parameter_invalid"),
        ({"type": "document", "options[document][allowed_types][]": "library_card"}, "parameter_invalid"),
        ({"type": "document", "return_url": "javascript:alert(1)"}, "url_invalid"),
        ({"type": "document", "metadata[k]": "v" * 501}, "parameter_invalid"),
        ({"type": "document", "expand[]": "verified_outputs.dob"}, "parameter_invalid"),
    ],
)
def test_bad_input_is_a_json_400(site, client, data, code):
    response = client.post(API, data, headers=BEARER)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_unknown_ids_methods_and_states(site, client):
    missing = client.get(f"{API}/vs_nope", headers=BEARER)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "resource_missing")
    assert client.delete(f"{API}/vs_nope", headers=BEARER).status_code == 404
    assert client.get(API, headers=BEARER).status_code == 404  # the list is not emulated
    as_json = client.post(API, {"type": "document"}, content_type="application/json", headers=BEARER)
    assert as_json.status_code == 400
    created = client.post(API, {"type": "document"}, headers=BEARER).json()
    canceled = client.post(f"{API}/{created['id']}/cancel", headers=BEARER).json()
    assert (canceled["status"], canceled["url"], canceled["client_secret"]) == ("canceled", None, None)
    twice = client.post(f"{API}/{created['id']}/cancel", headers=BEARER)
    assert twice.status_code == 400 and "error" in twice.json()
    assert client.post(f"{API}/{created['id']}/approve", headers=BEARER).status_code == 404
    assert client.post(f"{API}/{created['id']}/cancel", {"x": "1"}, headers=BEARER).status_code == 400


def test_try_again_after_requires_input_cancels_the_old_session_there(site, start, pick, user, commit, signal_log):
    """Stripe keeps a declined attempt open (``requires_input``): "Try again" starts a new session
    linked to it and cancels the old one at Stripe too (its ``/cancel``); the ``canceled`` webhook
    the emulator then sends is recorded and changes nothing here."""
    session = start()
    pick(session.url, "fail")
    session.refresh_from_db()
    assert services.replaceable(session) and not session.is_final
    with commit():
        retry = services.retry_verification(session, user=user)
    assert retry.previous_id == session.pk and retry.external_id != session.external_id
    cancels = [c.request for c in site.calls if c.request.url.endswith(f"/{session.external_id}/cancel")]
    assert len(cancels) == 1 and cancels[0].method == "POST"
    assert SandboxHostedSession.objects.get(external_id=session.external_id).status == "canceled"
    session.refresh_from_db()
    assert session.status == Status.CANCELED
    late = webhooks(session)[-1]
    assert json.loads(late.body)["type"] == "identity.verification_session.canceled"
    assert late.valid and late.processed and not late.error
    assert (late.applied, session.provider_status) == (False, "requires_input")  # nothing changed
    assert len(signal_log.of("verification_finished")) == 1  # the cancel of the retry, once
    pick(retry.url, "pass")
    retry.refresh_from_db()
    assert retry.status == Status.DONE and retry.decision == VerificationSession.Decision.APPROVED
    assert services.is_verified(user)
