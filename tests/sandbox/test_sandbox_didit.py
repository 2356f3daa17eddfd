"""The Didit emulator over HTTP: the real ``DiditProvider`` against the emulator on a live server,
the shared hosted page, and the emulator's signed webhook reaching ``webhook/<alias>/``.

The webhook is posted inline (``CALLBACK_SYNC``) by the hosted page's request to the live server,
where the site verifies it; the community SDK ``didit`` (0.4.0) checks the same signatures."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import responses
from didit.webhooks import verify_webhook_signature
from django.conf import settings as django_settings

from verification_link import services
from verification_link.exceptions import ProviderAuthError, ProviderRejected
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider
from verification_link.sandbox.credentials import sandbox_credentials
from verification_link.sandbox.models import SandboxHostedSession

pytestmark = pytest.mark.django_db(transaction=True)
Status = VerificationSession.Status
ALIAS = "sandbox_didit"
KEYS = sandbox_credentials(django_settings.SECRET_KEY)


@pytest.fixture
def site(django_db_setup, settings, live_server):
    """The alias pointed at the emulator on the live server, and the emulator's webhooks at the site.

    ``django_db_setup`` first: a live server started before the test database exists would share
    the main thread's SQLite connection (still named ``:memory:``) with its own thread."""
    base = dict(settings.VERIFICATION_LINK)
    settings.VERIFICATION_LINK = {
        **base,
        "PUBLIC_BASE_URL": live_server.url,
        "PROVIDERS": {
            **base["PROVIDERS"],
            ALIAS: {
                "BACKEND": "verification_link.providers.didit.DiditProvider",
                "API_KEY": KEYS["DIDIT_API_KEY"],
                "WORKFLOW_ID": "wf-sandbox",
                "BASE_URL": f"{live_server.url}/sandbox/didit",
                "WEBHOOK_SECRETS": [KEYS["DIDIT_WEBHOOK_SECRET"]],
            },
        },
    }
    settings.VERIFICATION_LINK_SANDBOX = {
        "CALLBACK_SYNC": True,
        "WEBHOOK_URLS": {"didit": f"{live_server.url}/verify/webhook/{ALIAS}/"},
    }
    return live_server


def hosted_path(session: VerificationSession) -> str:
    return urlsplit(session.url).path


@pytest.mark.parametrize(
    ("outcome", "status", "raw", "verdict", "finished"),
    [
        ("pass", Status.DONE, "Approved", "approved", 1),
        ("fail", Status.FAILED, "Declined", "declined", 1),
        ("review", Status.IN_PROGRESS, "In Review", "review", 0),
        ("resubmit", Status.IN_PROGRESS, "Resubmitted", "resubmission", 0),
        ("abandon", Status.EXPIRED, "Abandoned", "", 1),
        ("expire", Status.EXPIRED, "Expired", "", 1),
    ],
)
def test_outcome_reaches_the_site(site, client, user, signal_log, outcome, status, raw, verdict, finished):
    session = services.start_verification(user=user, provider=ALIAS)
    assert session.status == Status.CREATED and session.url.startswith(site.url)
    emulated = SandboxHostedSession.objects.get(emulator="didit", external_id=session.external_id)
    assert emulated.request["vendor_data"] == str(session.pk)
    assert emulated.request["workflow_id"] == "wf-sandbox"

    page = client.get(hosted_path(session))
    assert page.status_code == 200
    assert 'value="pass"' in page.content.decode()
    answer = client.post(hosted_path(session), {"outcome": outcome})
    assert answer.status_code == 303 and answer["Location"] == f"{site.url}/verify/s/{session.pk}/return/"

    session.refresh_from_db()
    assert (session.status, session.provider_status, session.provider_verdict) == (status, raw, verdict)
    assert len(signal_log.of("verification_finished")) == finished
    webhook = VerificationEvent.objects.get(kind=VerificationEvent.Kind.WEBHOOK, session=session)
    assert webhook.valid and webhook.processed and webhook.delivery_id
    assert "Sandbox" not in webhook.body  # the emulator's name and document number are not kept
    if outcome == "fail":
        assert session.provider_reasons == ["LOW_FACE_MATCH_SIMILARITY", "face_match_declined"]
        assert session.decision == VerificationSession.Decision.REJECTED
    if outcome == "pass":
        assert session.decision == VerificationSession.Decision.APPROVED
        rows = {row.scope: row.passed for row in get_provider(ALIAS).check_rows(session.scopes, session.result)}
        assert rows == {"document": True, "liveness": True, "face_match": True}


def test_poll_and_redaction_against_the_emulator(site, client, user):
    session = services.start_verification(user=user, provider=ALIAS)
    backend = get_provider(ALIAS)
    assert backend.get_status(session).provider_status == "Not Started"
    settings_sandbox = django_settings.VERIFICATION_LINK_SANDBOX
    django_settings.VERIFICATION_LINK_SANDBOX = {**settings_sandbox, "WEBHOOK_URLS": {"didit": ""}}
    try:
        client.post(hosted_path(session), {"outcome": "pass"})
    finally:
        django_settings.VERIFICATION_LINK_SANDBOX = settings_sandbox
    session.refresh_from_db()
    assert session.status == Status.CREATED  # no webhook this time: the poll finds the outcome
    services.refresh_session(session)
    session.refresh_from_db()
    assert session.status == Status.DONE and session.provider_verdict == "approved"
    backend.redact_session(session)
    with pytest.raises(ProviderRejected) as info:
        backend.get_status(session)
    assert info.value.status_code == 404
    backend.redact_session(session)  # deleted before: still done


def test_create_repeats_the_open_session_of_the_same_vendor_data(site):
    url = f"{site.url}/sandbox/didit/v3/session/"
    headers = {"x-api-key": KEYS["DIDIT_API_KEY"]}
    import requests

    body = {"workflow_id": "wf", "vendor_data": "v-1", "callback": "https://a.example/r"}
    first = requests.post(url, json=body, headers=headers, timeout=10)
    again = requests.post(url, json={**body, "metadata": {"n": 2}}, headers=headers, timeout=10)
    other = requests.post(url, json={**body, "vendor_data": "v-2"}, headers=headers, timeout=10)
    assert first.status_code == again.status_code == other.status_code == 201
    assert first.json()["session_id"] == again.json()["session_id"] != other.json()["session_id"]
    assert again.json()["metadata"] == {"n": 2} and first.json()["status"] == "Not Started"


@pytest.mark.parametrize(
    "headers", [{}, {"x-api-key": "wrong"}, {"x-api-key": KEYS["DIDIT_API_KEY"] + "x"}, {"Authorization": "Bearer x"}]
)
def test_emulator_refuses_a_wrong_key(client, headers):
    create = client.post(
        "/sandbox/didit/v3/session/", {"workflow_id": "w"}, content_type="application/json", headers=headers
    )
    assert create.status_code == 401 and "detail" in create.json()
    for method, path in (("get", "decision"), ("delete", "delete")):
        answer = getattr(client, method)(f"/sandbox/didit/v3/session/x/{path}/", headers=headers)
        assert answer.status_code == 401


def test_the_provider_maps_the_emulators_refusal(site, user, settings):
    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers[ALIAS] = {**providers[ALIAS], "API_KEY": "not-the-key"}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
    with pytest.raises(ProviderAuthError) as info:
        services.start_verification(user=user, provider=ALIAS)
    assert info.value.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"workflow_id": ""}',
        b'{"workflow_id": "w", "vendor_data": 5}',
        b'{"workflow_id": "w", "callback": "javascript:x"}',
        b'{"workflow_id": "w", "metadata": []}',
        b'{"workflow_id": "w", "callback_method": "sometimes"}',
    ],
)
def test_emulator_answers_bad_input_with_400(client, body):
    headers = {"x-api-key": KEYS["DIDIT_API_KEY"]}
    answer = client.post("/sandbox/didit/v3/session/", body, content_type="application/json", headers=headers)
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_request"


def test_emulator_methods_and_unknown_sessions(client):
    headers = {"x-api-key": KEYS["DIDIT_API_KEY"]}
    assert client.get("/sandbox/didit/v3/session/", headers=headers).status_code == 405
    assert client.post("/sandbox/didit/v3/session/x/decision/", headers=headers).status_code == 405
    assert client.get("/sandbox/didit/v3/session/x/decision/", headers=headers).status_code == 404
    assert client.delete("/sandbox/didit/v3/session/x/delete/", headers=headers).status_code == 404


def test_the_emulators_webhook_as_posted_passes_the_sdk(client, settings):
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True, "WEBHOOK_URLS": {"didit": "https://hook.example/w"}}
    headers = {"x-api-key": KEYS["DIDIT_API_KEY"]}
    created = client.post(
        "/sandbox/didit/v3/session/",
        {"workflow_id": "w", "vendor_data": "ünïcode", "metadata": {"score": 1.0}},
        content_type="application/json",
        headers=headers,
    ).json()
    with responses.RequestsMock() as mock:
        mock.post("https://hook.example/w", status=200)
        client.post(urlsplit(created["url"]).path, {"outcome": "fail"})
        request = mock.calls[0].request
    assert verify_webhook_signature(request.body, request.headers, KEYS["DIDIT_WEBHOOK_SECRET"])
    assert not verify_webhook_signature(request.body, request.headers, "wrong")
    payload = json.loads(request.body)
    assert request.body == json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    assert payload["webhook_type"] == "status.updated" and payload["decision"]["status"] == "Declined"
    assert request.headers["User-Agent"].startswith("DiditWebhook/")
