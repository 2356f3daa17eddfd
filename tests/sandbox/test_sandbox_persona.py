"""The Persona emulator of ``verification_link.sandbox``, driven by the real ``PersonaProvider``.

Every HTTP request the provider (and the emulator's webhook delivery) makes through ``requests``
to ``http://testserver`` is answered by Django's test client (``responses`` forwards it), so the
whole flow runs over HTTP in the test's own transaction: create → one-time link → the hosted page →
an outcome → the emulator's signed webhook at ``webhook/sandbox_persona/`` (or a status pull).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings

from verification_link import services
from verification_link.exceptions import ProviderAuthError
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider
from verification_link.sandbox.credentials import sandbox_credentials
from verification_link.sandbox.models import SandboxHostedSession
from verification_link.testing import site_over_requests

pytestmark = pytest.mark.django_db

Status = VerificationSession.Status
KEYS = sandbox_credentials(django_settings.SECRET_KEY)
ORIGIN = "http://testserver"
BASE = f"{ORIGIN}/sandbox/persona"
ALIAS = "sandbox_persona"
TWO_TEMPLATES = b'{"data": {"attributes": {"inquiryTemplateId": "itmpl_a", "template_id": "tmpl_b"}}}'
NEGATIVE_TTL = (
    b'{"data": {"attributes": {"inquiry_template_id": "i"}}, "meta": {"expirationAfterCreateIntervalSeconds": -1}}'
)


@pytest.fixture
def bridge():
    """``requests`` to ``http://testserver`` answered by the Django test client."""
    with site_over_requests(ORIGIN) as mock:
        yield mock


@pytest.fixture(autouse=True)
def persona_alias(settings):
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True}
    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers[ALIAS] = {
        "BACKEND": "verification_link.providers.persona.PersonaProvider",
        "API_KEY": KEYS["PERSONA_API_KEY"],
        "TEMPLATE_ID": "itmpl_sandbox",
        "BASE_URL": BASE,
        "HOSTED_URL": f"{BASE}/verify",
        "WEBHOOK_SECRETS": [KEYS["PERSONA_WEBHOOK_SECRET"]],
    }
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
    return providers[ALIAS]


def configure(settings, **changes):
    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers[ALIAS] = {**providers[ALIAS], **changes}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}


def start(user):
    return services.start_verification(user=user, provider=ALIAS)


def pick(client, commit, session, outcome):
    path = urlsplit(session.url).path
    page = client.get(path)
    assert page.status_code == 200 and b"Sandbox" in page.content
    with commit():
        return client.post(path, {"outcome": outcome})


def webhooks(session):
    return VerificationEvent.objects.filter(kind="webhook", session=session)


@pytest.mark.parametrize(
    ("outcome", "status", "provider_status", "verdict", "finished"),
    [
        ("pass", Status.DONE, "approved", "approved", 1),
        ("fail", Status.FAILED, "declined", "declined", 1),
        ("review", Status.IN_PROGRESS, "needs_review", "review", 0),
        ("resubmit", Status.IN_PROGRESS, "pending", "resubmission", 0),
        ("expire", Status.EXPIRED, "expired", "", 1),
    ],
)
def test_each_outcome_reaches_the_site_by_signed_webhook(
    bridge, client, user, commit, signal_log, outcome, status, provider_status, verdict, finished
):
    session = start(user)
    assert session.url.startswith(f"{ORIGIN}/sandbox/hosted/persona/")
    assert session.external_id.startswith("inq_") and len(session.external_id) == 32
    response = pick(client, commit, session, outcome)
    assert response.status_code == 303
    assert response["Location"] == f"https://www.example.com/verify/s/{session.pk}/return/"
    session.refresh_from_db()
    assert (session.status, session.provider_status, session.provider_verdict) == (status, provider_status, verdict)
    assert len(signal_log.of("verification_finished")) == finished
    (delivery,) = webhooks(session)
    assert delivery.valid is True and delivery.processed
    if outcome == "fail":
        assert session.provider_reasons == ["face_mismatch"]
        assert session.decision == VerificationSession.Decision.REJECTED
    if outcome == "pass":
        assert session.decision == VerificationSession.Decision.APPROVED
        rows = {row.scope: row.passed for row in get_provider(ALIAS).check_rows(session.scopes, session.result)}
        assert rows == {"document": True, "liveness": True, "face_match": True}
        assert "JANE" not in json.dumps(session.result) and "JANE" not in delivery.body
    if outcome == "resubmit":  # a verification event: the site asked the emulator for the inquiry
        assert session.provider_reasons == ["blurry"]
        assert delivery.delivery_id.startswith("evt_")


def test_resubmit_then_pass_finishes_once(bridge, client, user, commit, signal_log):
    session = start(user)
    pick(client, commit, session, "resubmit")
    pick(client, commit, session, "pass")
    session.refresh_from_db()
    assert session.status == Status.DONE and session.provider_verdict == "approved"
    assert len(signal_log.of("verification_finished")) == 1
    assert webhooks(session).count() == 2


def test_abandon_is_not_offered(bridge, client, user, commit):
    session = start(user)
    assert b'value="abandon"' not in client.get(urlsplit(session.url).path).content
    assert pick(client, commit, session, "abandon").status_code == 400


def test_webhook_signed_as_persona_documents(bridge, client, user, commit):
    session = start(user)
    emulated = SandboxHostedSession.objects.get(external_id=session.external_id)
    from verification_link.sandbox.emulators.persona import EMULATOR

    emulated.outcome, emulated.status = "pass", "approved"
    body, headers = EMULATOR.webhook(emulated, event="outcome")
    t, v1 = [value.split("=")[1] for value in headers["Persona-Signature"].split(",")]
    secret = KEYS["PERSONA_WEBHOOK_SECRET"]
    assert secret.startswith("wbhsec_")
    digest = hmac.new(secret.encode(), (t + "." + body.decode("utf-8")).encode(), "sha256").hexdigest()
    assert hmac.compare_digest(v1, digest)
    event = json.loads(body)["data"]
    assert event["type"] == "event" and event["id"].startswith("evt_")
    assert event["attributes"]["name"] == "inquiry.approved"
    assert event["attributes"]["payload"]["data"]["id"] == session.external_id
    assert hashlib.sha256(body).hexdigest()  # the raw bytes are what was signed


def test_a_refused_webhook_leaves_it_to_the_poll(bridge, client, user, commit, settings, signal_log):
    configure(settings, WEBHOOK_SECRETS=["wbhsec_not-the-emulators"])
    session = start(user)
    pick(client, commit, session, "pass")
    session.refresh_from_db()
    assert session.status == Status.CREATED
    assert webhooks(session).count() == 0
    assert VerificationEvent.objects.filter(kind="webhook", valid=False).count() == 1
    with commit():
        services.refresh_session(session)
    session.refresh_from_db()
    assert session.status == Status.DONE and session.provider_status == "approved"
    assert len(signal_log.of("verification_finished")) == 1


def test_inquiry_id_link(bridge, client, user, commit, settings):
    configure(settings, LINK="inquiry_id")
    session = start(user)
    assert session.url == f"{BASE}/verify?inquiry-id={session.external_id}"
    assert len([c for c in bridge.calls if "generate-one-time-link" in c.request.url]) == 0
    hop = client.get(urlsplit(session.url).path, {"inquiry-id": session.external_id})
    assert hop.status_code == 303 and "/sandbox/hosted/persona/" in hop["Location"]
    assert client.get("/sandbox/persona/verify", {"inquiry-id": "inq_unknown"}).status_code == 404


def test_cancel_expires_the_emulated_inquiry(bridge, client, user, commit):
    session = start(user)
    hosted = urlsplit(session.url).path
    with commit():
        services.cancel_session(session)
    session.refresh_from_db()
    assert session.status == Status.CANCELED
    assert SandboxHostedSession.objects.get(external_id=session.external_id).status == "expired"
    expired = webhooks(session).get()  # Persona's inquiry.expired arrives after the cancel: changes nothing
    assert expired.valid is True and expired.processed and '"inquiry.expired"' in expired.body
    assert not session.url  # the link is cleared once final; the emulator's page is closed too
    assert client.post(hosted, {"outcome": "pass"}).status_code == 409


def test_redaction_over_http(bridge, client, user, commit):
    session = start(user)
    pick(client, commit, session, "pass")
    get_provider(ALIAS).redact_session(session)
    headers = {"Authorization": f"Bearer {KEYS['PERSONA_API_KEY']}"}
    answer = client.get(f"/sandbox/persona/inquiries/{session.external_id}", headers=headers).json()
    assert answer["data"]["attributes"]["redacted-at"]
    assert answer["data"]["attributes"]["name-first"] is None
    assert all(item["attributes"].get("name-first") is None for item in answer["included"])


def test_the_api_refuses_a_wrong_key(bridge, client, user, settings):
    for headers in ({}, {"Authorization": "Bearer persona_sandbox_wrong"}, {"Authorization": KEYS["PERSONA_API_KEY"]}):
        response = client.post("/sandbox/persona/inquiries", b"{}", content_type="application/json", headers=headers)
        assert response.status_code == 401
        assert response.json()["errors"][0]["title"] == "Unauthorized"
    configure(settings, API_KEY="persona_sandbox_wrong")
    with pytest.raises(ProviderAuthError):
        start(user)
    assert not SandboxHostedSession.objects.exists()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "inquiries", b"not json", 400),
        ("POST", "inquiries", b"[]", 400),
        ("POST", "inquiries", b'{"data": {"attributes": {}}}', 400),
        ("POST", "inquiries", TWO_TEMPLATES, 400),
        ("POST", "inquiries", NEGATIVE_TTL, 422),
        ("GET", "inquiries", b"", 405),
        ("GET", "inquiries/inq_missing", b"", 404),
        ("POST", "inquiries/inq_missing/expire", b"", 404),
        ("POST", "inquiries/inq_missing/generate-one-time-link", b"", 404),
    ],
)  # fmt: skip
def test_the_api_answers_json_errors_for_bad_input(client, method, path, body, status):
    headers = {"Authorization": f"Bearer {KEYS['PERSONA_API_KEY']}"}
    response = client.generic(
        method, f"/sandbox/persona/{path}", body, content_type="application/json", headers=headers
    )
    assert response.status_code == status
    assert response.json()["errors"][0]["title"]


def test_create_accepts_every_key_casing(client):
    headers = {"Authorization": f"Bearer {KEYS['PERSONA_API_KEY']}"}
    body = {"data": {"attributes": {"inquiryTemplateId": "itmpl_a", "redirectUri": "https://x.example/r"}}}
    response = client.post("/sandbox/persona/inquiries", body, content_type="application/json", headers=headers)
    assert response.status_code == 201
    assert SandboxHostedSession.objects.get().return_url == "https://x.example/r"
