"""The Onfido emulator over HTTP, driven by the real ``OnfidoProvider``: two-call create, the shared
hosted page, the signed ``workflow_run.completed`` webhook reaching ``webhook/<alias>/``, the pull of
the run, redaction; and the emulator API's refusals.

Every ``requests`` call to ``http://testserver`` (the provider's, the emulator's webhook, the
browser's) is answered by this site's own WSGI handler through Django's test client (``wire``): real
HTTP requests and answers, in one process and one thread (a live server thread sharing SQLite
with the test crashes at teardown).
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests
from django.conf import settings as django_settings

from verification_link import services
from verification_link.exceptions import ProviderAuthError
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider
from verification_link.sandbox.credentials import sandbox_credentials
from verification_link.sandbox.models import SandboxHostedSession
from verification_link.testing import site_over_requests

pytestmark = pytest.mark.django_db

ALIAS = "sandbox_onfido"  # the emulator's default webhook URL is webhook/sandbox_onfido/
ORIGIN = "http://testserver"
BASE = f"{ORIGIN}/sandbox/onfido"
KEYS = sandbox_credentials(django_settings.SECRET_KEY)
WORKFLOW_ID = "7d3c2b1a-0f9e-4d8c-b7a6-5f4e3d2c1b0a"
Status = VerificationSession.Status
Decision = VerificationSession.Decision
SKIPPED_HEADERS = {"host", "content-length", "content-type"}


@pytest.fixture
def site(settings):
    """The alias pointed at the emulator; webhooks posted inline to the default URL."""
    providers = {
        **settings.VERIFICATION_LINK["PROVIDERS"],
        ALIAS: {
            "BACKEND": "verification_link.providers.onfido.OnfidoProvider",
            "API_TOKEN": KEYS["ONFIDO_API_TOKEN"],
            "WORKFLOW_ID": WORKFLOW_ID,
            "BASE_URL": BASE,
            "WEBHOOK_SECRETS": [KEYS["ONFIDO_WEBHOOK_SECRET"]],
        },
    }
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True}
    with site_over_requests(ORIGIN) as wire:
        yield wire


def auth(token: str = KEYS["ONFIDO_API_TOKEN"]) -> dict[str, str]:
    return {"Authorization": f"Token token={token}"}


def pick(url: str, outcome: str) -> requests.Response:
    """The user's browser on the hosted page: GET it, then POST the outcome with its CSRF token."""
    browser = requests.Session()
    page = browser.get(url, timeout=10)
    assert page.status_code == 200
    assert f'value="{outcome}"' in page.text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return browser.post(url, data={"outcome": outcome, "csrfmiddlewaretoken": token}, allow_redirects=False, timeout=30)


@pytest.mark.parametrize(
    ("outcome", "status", "decision", "verdict", "reasons", "finished"),
    [
        ("pass", Status.DONE, Decision.APPROVED, "approved", [], 1),
        ("fail", Status.FAILED, Decision.REJECTED, "declined", ["document_rejected"], 1),
        ("review", Status.IN_PROGRESS, Decision.UNDECIDED, "review", ["face_match_inconclusive"], 0),
        ("abandon", Status.EXPIRED, Decision.UNDECIDED, "", [], 1),
    ],
)
def test_each_outcome_reaches_the_session_by_the_signed_webhook(
    site, user, signal_log, commit, outcome, status, decision, verdict, reasons, finished
):
    session = services.start_verification(user=user, provider=ALIAS, metadata={"first_name": "Zelda"})
    assert session.url.startswith(f"{ORIGIN}/sandbox/hosted/onfido/")
    assert [call.request.url for call in site.calls] == [f"{BASE}/applicants", f"{BASE}/workflow_runs"]
    assert uuid.UUID(session.external_id) and uuid.UUID(session.token)  # the run, the applicant
    assert session.status == Status.CREATED

    with commit():
        answer = pick(session.url, outcome)
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"https://www.example.com/verify/s/{session.pk}/return/"

    session.refresh_from_db()
    assert (session.status, session.decision) == (status, decision)
    assert (session.provider_status, session.provider_verdict) == (
        {"pass": "approved", "fail": "declined", "review": "review", "abandon": "abandoned"}[outcome],
        verdict,
    )
    assert session.provider_reasons == reasons
    assert len(signal_log.of("verification_finished")) == finished
    webhook = VerificationEvent.objects.get(session=session, kind=VerificationEvent.Kind.WEBHOOK)
    assert (webhook.valid, webhook.processed, webhook.error) == (True, True, "")
    assert webhook.delivery_id == f"{session.external_id}:workflow_run.completed:{session.provider_status}"
    assert "Zelda" not in webhook.body and "/sandbox/hosted/" not in webhook.body  # identity data, the link
    if outcome in ("pass", "fail"):
        assert session.result["output"]["first_name"] == "Zelda"
        rows = {row.scope: row.passed for row in get_provider(ALIAS).check_rows(session.scopes, session.result)}
        assert rows == {
            "document": outcome == "pass",
            "liveness": True,
            "face_match": True,
            "workflow": outcome == "pass",
        }


def test_a_redelivered_webhook_is_processed_once(site, user, signal_log, commit):
    session = services.start_verification(user=user, provider=ALIAS)
    with commit():
        assert pick(session.url, "pass").status_code == 303
    from verification_link.sandbox.emulators.onfido import EMULATOR

    body, headers = EMULATOR.webhook(EMULATOR.find(session.external_id), event="outcome")
    again = requests.post(f"{ORIGIN}/verify/webhook/{ALIAS}/", data=body, headers=headers)
    assert (again.status_code, again.json()["status"]) == (200, "already processed")
    assert len(signal_log.of("verification_finished")) == 1


def test_redaction_deletes_the_applicant_at_the_emulator(site, user, commit):
    session = services.start_verification(user=user, provider=ALIAS, metadata={"last_name": "Zorro"})
    with commit():
        assert pick(session.url, "pass").status_code == 303
    backend = get_provider(ALIAS)
    backend.redact_session(session)
    applicant = SandboxHostedSession.objects.get(emulator="onfido_applicant", external_id=session.token)
    assert applicant.redacted_at is not None and applicant.request == {}
    run = requests.get(f"{BASE}/workflow_runs/{session.external_id}", headers=auth(), timeout=10).json()
    assert run["output"] == {} and "Zorro" not in json.dumps(run)
    gone = requests.delete(f"{BASE}/applicants/{session.token}", headers=auth(), timeout=10)
    assert gone.status_code == 404
    backend.redact_session(session)  # already deleted counts as done


def test_the_emulator_api_refuses_a_wrong_token(site, user, settings):
    for headers in (
        {},
        auth("wrong"),
        auth(KEYS["ONFIDO_API_TOKEN"] + "x"),
        {"Authorization": KEYS["ONFIDO_API_TOKEN"]},
    ):
        for method, path in (("POST", "applicants"), ("POST", "workflow_runs"), ("GET", "workflow_runs/x")):
            answer = requests.request(method, f"{BASE}/{path}", json={}, headers=headers, timeout=10)
            assert answer.status_code == 401
            assert answer.json()["error"]["type"] == "authorization_error"
    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers[ALIAS] = {**providers[ALIAS], "API_TOKEN": "api_sandbox.wrong"}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
    with pytest.raises(ProviderAuthError):
        services.start_verification(user=user, provider=ALIAS)
    assert not VerificationSession.objects.exists()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "applicants", {"first_name": "Ann"}, 422),
        ("POST", "applicants", {"first_name": "A<b>", "last_name": "C"}, 422),
        ("POST", "applicants", [1], 422),
        ("POST", "applicants", b"{not json", 400),
        ("POST", "workflow_runs", {"workflow_id": WORKFLOW_ID}, 422),
        ("POST", "workflow_runs", {"workflow_id": "x", "applicant_id": WORKFLOW_ID}, 422),
        ("POST", "workflow_runs", {"workflow_id": WORKFLOW_ID, "applicant_id": WORKFLOW_ID}, 422),
        ("GET", "workflow_runs/0f6e5d1c-3a7b-4c2e-9d8f-1a2b3c4d5e6f", None, 404),
        ("DELETE", "applicants/0f6e5d1c-3a7b-4c2e-9d8f-1a2b3c4d5e6f", None, 404),
        ("GET", "applicants", None, 405),
        ("DELETE", "workflow_runs/x", None, 405),
    ],
)
def test_the_emulator_api_answers_json_errors(site, method, path, body, status):
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    answer = requests.request(method, f"{BASE}/{path}", headers=auth(), timeout=10, **kwargs)
    assert answer.status_code == status
    assert isinstance(answer.json()["error"]["message"], str)


def test_run_validation_of_link_and_tags(site):
    applicant = requests.post(
        f"{BASE}/applicants", json={"first_name": "A", "last_name": "B"}, headers=auth(), timeout=10
    ).json()
    base = {"workflow_id": WORKFLOW_ID, "applicant_id": applicant["id"]}
    for extra in (
        {"tags": ["x"] * 31},
        {"tags": [""]},
        {"customer_user_id": "x" * 257},
        {"link": {"language": "klingon"}},
        {"link": {"expires_at": "2000-01-01T00:00:00Z"}},
        {"link": {"completed_redirect_url": "javascript:alert(1)"}},
        {"link": "https://x"},
    ):
        answer = requests.post(f"{BASE}/workflow_runs", json={**base, **extra}, headers=auth(), timeout=10)
        assert answer.status_code == 422, extra
    good = requests.post(
        f"{BASE}/workflow_runs", json={**base, "link": {"language": "fr_FR"}}, headers=auth(), timeout=10
    )
    assert good.status_code == 201
    assert (good.json()["status"], good.json()["link"]["language"]) == ("awaiting_input", "fr_FR")
