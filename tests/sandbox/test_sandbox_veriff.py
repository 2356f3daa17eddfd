"""The Veriff emulator driven by the real ``VeriffProvider`` over HTTP.

Every outgoing ``requests`` call (the provider's API calls, the emulator's webhook posts) is carried
by ``responses`` to this site, served by Django's test client: the bytes and headers on the wire are
the real ones, nothing of ours is patched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.test import Client

from verification_link import services
from verification_link.exceptions import ProviderAuthError
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider
from verification_link.sandbox.credentials import sandbox_credentials
from verification_link.sandbox.models import SandboxHostedSession
from verification_link.testing import site_over_requests

pytestmark = pytest.mark.django_db

Status = VerificationSession.Status
ALIAS = "sandbox_veriff"
KEYS = sandbox_credentials(django_settings.SECRET_KEY)
API_KEY, SHARED = KEYS["VERIFF_API_KEY"], KEYS["VERIFF_SHARED_SECRET"]
BASE = "http://testserver/sandbox/veriff"


def recipe(payload: str | bytes, secret: str = SHARED) -> str:
    """Veriff's js-integration-demo generateSignature: hex HMAC-SHA256, UTF-8 key and payload."""
    data = payload if isinstance(payload, bytes) else payload.encode("utf-8")
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


@pytest.fixture
def wire(settings):
    """``requests`` → this site through the test client; the delivered requests are recorded."""
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True}
    config = {"BACKEND": "verification_link.providers.veriff.VeriffProvider", "API_KEY": API_KEY}
    config |= {"SHARED_SECRET": SHARED, "BASE_URL": BASE}  # no WEBHOOK_SECRETS: the shared secret signs
    settings.VERIFICATION_LINK = {
        **settings.VERIFICATION_LINK,
        "PROVIDERS": {**settings.VERIFICATION_LINK["PROVIDERS"], ALIAS: config},
    }
    with site_over_requests() as rsps:
        yield rsps


def configure(settings, **changes: Any) -> None:
    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers[ALIAS] = {**providers[ALIAS], **changes}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}


def start(user) -> VerificationSession:
    return services.start_verification(user=user, provider=ALIAS)


def hosted_path(session: VerificationSession) -> str:
    return urlsplit(session.url).path


def pick(client, session, outcome, capture, *, deliver: bool = True):
    if not deliver:
        return client.post(hosted_path(session), {"outcome": outcome})
    with capture(execute=True):
        return client.post(hosted_path(session), {"outcome": outcome})


def webhooks(wire) -> list[Any]:
    return [r for r in [call.request for call in wire.calls] if urlsplit(r.url).path == f"/verify/webhook/{ALIAS}/"]


EXPECTED = {
    # outcome: (status, verdict, reasons, finished, webhooks: the event first, then the decision)
    "pass": (Status.DONE, "approved", [], 1, ["submitted", "approved"]),
    "fail": (Status.FAILED, "declined", ["102"], 1, ["submitted", "declined"]),
    "review": (Status.IN_PROGRESS, "review", [], 0, ["submitted", "review"]),
    "resubmit": (Status.IN_PROGRESS, "resubmission", ["204"], 0, ["submitted", "resubmission_requested"]),
    "abandon": (Status.EXPIRED, "", [], 1, ["started", "abandoned"]),
    "expire": (Status.EXPIRED, "", [], 1, ["expired"]),
}


@pytest.mark.parametrize("outcome", list(EXPECTED))
def test_each_outcome_reaches_the_session_by_signed_webhooks(
    wire, client, user, signal_log, django_capture_on_commit_callbacks, outcome
):
    status, verdict, reasons, finished, sent = EXPECTED[outcome]
    with django_capture_on_commit_callbacks(execute=True):
        session = start(user)
    create = wire.calls[0].request
    assert (create.method, create.url) == ("POST", f"{BASE}/v1/sessions")
    assert create.headers["X-HMAC-SIGNATURE"] == recipe(create.body)
    assert session.url.startswith("http://testserver/sandbox/hosted/veriff/")
    assert session.status == Status.CREATED
    assert re.fullmatch(r"[0-9a-f-]{36}", session.external_id)

    page = client.get(hosted_path(session))
    assert page.status_code == 200
    assert f'value="{outcome}"' in page.content.decode()
    response = pick(client, session, outcome, django_capture_on_commit_callbacks)
    assert (response.status_code, response["Location"]) == (
        303,
        f"https://www.example.com/verify/s/{session.pk}/return/",
    )

    delivered = webhooks(wire)
    kinds = [json.loads(r.body).get("action") or json.loads(r.body)["verification"]["status"] for r in delivered]
    assert kinds == sent
    for request in delivered:
        assert request.headers["X-HMAC-SIGNATURE"] == recipe(request.body)
        assert request.headers["X-AUTH-CLIENT"] == API_KEY
    events = VerificationEvent.objects.filter(kind=VerificationEvent.Kind.WEBHOOK, session=session)
    assert events.count() == len(sent) and all(e.valid and e.processed and not e.error for e in events)

    session.refresh_from_db()
    assert session.status == status
    assert (session.provider_verdict, list(session.provider_reasons)) == (verdict, reasons)
    assert session.provider_status == sent[-1]
    assert len(signal_log.of("verification_finished")) == finished
    if outcome == "pass":
        assert session.decision == VerificationSession.Decision.APPROVED
        assert session.result["document"]["type"] == "PASSPORT"


def test_resubmission_then_pass_finishes_once(wire, client, user, signal_log, django_capture_on_commit_callbacks):
    session = start(user)
    pick(client, session, "resubmit", django_capture_on_commit_callbacks)
    session.refresh_from_db()
    assert (session.status, session.provider_verdict) == (Status.IN_PROGRESS, "resubmission")
    assert client.get(hosted_path(session)).status_code == 200  # the same link, a new attempt
    pick(client, session, "pass", django_capture_on_commit_callbacks)
    session.refresh_from_db()
    assert session.status == Status.DONE and session.decision == VerificationSession.Decision.APPROVED
    assert len(signal_log.of("verification_finished")) == 1
    ids = [json.loads(r.body)["verification"]["attemptId"] for r in webhooks(wire) if b'"verification"' in r.body]
    assert len(set(ids)) == 2  # a new attempt: not mistaken for a redelivery


def test_signed_decisions_for_a_replaced_session_are_recorded_and_change_nothing(
    wire, client, user, signal_log, django_capture_on_commit_callbacks
):
    """Resubmission asked → "Try again" (Veriff has no cancel: the old flow stays usable there) →
    the user finishes the *old* flow after all: Veriff's signed decision webhooks for it are
    recorded, authenticated and processed, and change nothing on it or on the new attempt."""
    session = start(user)
    old_path = hosted_path(session)
    pick(client, session, "resubmit", django_capture_on_commit_callbacks)
    session.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        retry = services.retry_verification(session, user=user)
    session.refresh_from_db()
    fields = ("status", "decision", "result", "provider_status", "provider_verdict", "provider_reasons", "finished_at")
    before = {field: getattr(session, field) for field in fields}
    assert before["status"] == Status.CANCELED and before["provider_verdict"] == "resubmission"
    signal_log.clear()
    seen = len(webhooks(wire))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(old_path, {"outcome": "pass"})
    late = webhooks(wire)[seen:]
    assert [json.loads(r.body).get("action") or json.loads(r.body)["verification"]["status"] for r in late] == [
        "submitted",
        "approved",
    ]
    recorded = VerificationEvent.objects.filter(kind=VerificationEvent.Kind.WEBHOOK, session=session).order_by("-id")[
        :2
    ]
    assert all(event.valid and event.processed and not event.applied for event in recorded)
    session.refresh_from_db()
    assert {field: getattr(session, field) for field in fields} == before
    retry.refresh_from_db()
    assert retry.status == Status.CREATED and not retry.events.filter(kind=VerificationEvent.Kind.WEBHOOK).exists()
    assert signal_log.names() == []


def test_poll_reads_the_emulators_decision(wire, client, user, signal_log, django_capture_on_commit_callbacks):
    session = start(user)
    assert services.refresh_session(session).status == Status.CREATED  # verification: null
    pick(client, session, "fail", django_capture_on_commit_callbacks, deliver=False)  # no webhook delivered
    assert not webhooks(wire)
    with django_capture_on_commit_callbacks(execute=True):
        services.refresh_session(session)
    session.refresh_from_db()
    assert (session.status, list(session.provider_reasons)) == (Status.FAILED, ["102"])
    poll = [r for r in [call.request for call in wire.calls] if r.method == "GET"][-1]
    assert poll.url == f"{BASE}/v1/sessions/{session.external_id}/decision"
    assert poll.headers["X-HMAC-SIGNATURE"] == recipe(session.external_id)
    assert len(signal_log.of("verification_finished")) == 1


def test_emulator_answers_are_signed(wire, user):
    session = start(user)
    client = Client()
    headers = {"X-AUTH-CLIENT": API_KEY, "X-HMAC-SIGNATURE": recipe(session.external_id)}
    answer = client.get(f"/sandbox/veriff/v1/sessions/{session.external_id}/decision", headers=headers)
    assert answer.status_code == 200
    assert answer.json() == {"status": "success", "verification": None, "technicalData": {"ip": None}}
    assert answer["X-HMAC-SIGNATURE"] == recipe(answer.content)


def test_delete_redacts_and_expires_an_open_session(
    wire, settings, user, signal_log, django_capture_on_commit_callbacks
):
    configure(settings, DELETE_ENABLED=True)
    session = start(user)
    with django_capture_on_commit_callbacks(execute=True):
        get_provider(ALIAS).redact_session(session)
    row = SandboxHostedSession.objects.get(external_id=session.external_id)
    assert row.redacted_at is not None and row.status == "expired"
    session.refresh_from_db()
    assert session.status == Status.EXPIRED  # Veriff sends the expired decision
    assert len(signal_log.of("verification_finished")) == 1


def test_the_emulator_refuses_a_wrong_key(wire, settings, user):
    configure(settings, API_KEY="not-the-key")
    with pytest.raises(ProviderAuthError) as caught:
        start(user)
    assert (caught.value.status_code, caught.value.code) == (401, 1803)
    configure(settings, API_KEY=API_KEY, SHARED_SECRET="not-the-secret")
    with pytest.raises(ProviderAuthError) as caught:
        start(user)  # a create signed with another secret
    assert caught.value.code == 1819
    assert not SandboxHostedSession.objects.exists()


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "code"),
    [
        ("POST", "/v1/sessions", {}, {"verification": {}}, 401, 1801),
        ("POST", "/v1/sessions", {"X-AUTH-CLIENT": API_KEY.upper()}, {"verification": {}}, 401, 1803),
        ("POST", "/v1/sessions", {"X-AUTH-CLIENT": API_KEY, "X-HMAC-SIGNATURE": "zz"}, {"verification": {}}, 401, 1812),
        ("POST", "/v1/sessions", {"X-AUTH-CLIENT": API_KEY}, {"nothing": 1}, 400, 1102),
        ("POST", "/v1/sessions", {"X-AUTH-CLIENT": API_KEY}, [1], 400, 1102),
        ("POST", "/v1/sessions", {"X-AUTH-CLIENT": API_KEY}, b"{not json", 400, 1102),
        ("POST", "/v1/sessions", {"X-AUTH-CLIENT": API_KEY}, {"verification": {"vendorData": 5}}, 400, 1104),
        ("POST", "/v1/sessions", {"X-AUTH-CLIENT": API_KEY}, {"verification": {"callback": "ftp://x"}}, 400, 1104),
        ("POST", "/v1/sessions", {"X-AUTH-CLIENT": API_KEY}, {"verification": {"lang": ["en"]}}, 400, 1104),
        ("GET", "/v1/sessions/abc/decision", {"X-AUTH-CLIENT": API_KEY}, None, 401, 1812),
        (
            "GET",
            "/v1/sessions/abc/decision",
            {"X-AUTH-CLIENT": API_KEY, "X-HMAC-SIGNATURE": recipe("abd")},
            None,
            401,
            1818,
        ),
        (
            "GET",
            "/v1/sessions/abc/decision",
            {"X-AUTH-CLIENT": API_KEY, "X-HMAC-SIGNATURE": recipe("abc")},
            None,
            404,
            404,
        ),
        ("DELETE", "/v1/sessions/abc", {"X-AUTH-CLIENT": API_KEY, "X-HMAC-SIGNATURE": recipe("abc")}, None, 404, 404),
        ("PUT", "/v1/sessions", {"X-AUTH-CLIENT": API_KEY}, None, 405, 405),
        ("POST", "/v1/sessions/abc/decision", {"X-AUTH-CLIENT": API_KEY}, None, 405, 405),
        ("PATCH", "/v1/sessions/abc", {"X-AUTH-CLIENT": API_KEY}, None, 405, 405),
    ],
)
def test_api_errors_are_json(settings, method, path, headers, body, status, code):
    settings.VERIFICATION_LINK_SANDBOX = {}
    data = body if body is None or isinstance(body, bytes) else json.dumps(body)
    response = Client().generic(method, f"/sandbox/veriff{path}", data or "", "application/json", headers=headers)
    assert response.status_code == status
    assert response.json() == {"status": "fail", "code": code, "message": response.json()["message"]}
    assert response.json()["message"]


def test_api_is_csrf_exempt(settings):
    settings.VERIFICATION_LINK_SANDBOX = {}
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/sandbox/veriff/v1/sessions",
        json.dumps({"verification": {}}),
        "application/json",
        headers={"X-AUTH-CLIENT": API_KEY},
    )
    assert response.status_code == 201
    assert response.json()["verification"]["status"] == "created"


def test_no_webhook_without_a_shared_secret(wire, settings, client, user, django_capture_on_commit_callbacks):
    session = start(user)
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True, "VERIFF_SHARED_SECRET": ""}
    pick(client, session, "pass", django_capture_on_commit_callbacks)
    assert not webhooks(wire)
