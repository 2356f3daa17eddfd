"""The Sumsub emulator over HTTP, driven by the real ``SumsubProvider``.

The provider's requests (and the emulator's webhook) go out through ``requests``; ``responses``
hands every one addressed to ``http://testserver`` to Django's test client, so the signed wire
— path, query, body bytes, headers — is what the emulator checks, and nothing of ours is patched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
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
ALIAS = "sandbox_sumsub"
ORIGIN = "http://testserver"
KEYS = sandbox_credentials(django_settings.SECRET_KEY)
LINK_PATH = "/sandbox/sumsub/resources/sdkIntegrations/levels/-/websdkLink"


@pytest.fixture
def wire():
    """Every request to ``http://testserver`` answered by the Django app, through its test client."""
    with site_over_requests(ORIGIN) as mock:
        yield mock


@pytest.fixture
def sandbox_alias(settings):
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True}

    def apply(**changes):
        config = dict(settings.VERIFICATION_LINK)
        alias = {
            "BACKEND": "verification_link.providers.sumsub.SumsubProvider",
            "BASE_URL": f"{ORIGIN}/sandbox/sumsub",
            "APP_TOKEN": KEYS["SUMSUB_APP_TOKEN"],
            "SECRET_KEY": KEYS["SUMSUB_SECRET_KEY"],
            "LEVEL_NAME": "basic-kyc-level",
            "WEBHOOK_SECRETS": [KEYS["SUMSUB_WEBHOOK_SECRET"]],
            **changes,
        }
        config["PROVIDERS"] = {**config["PROVIDERS"], ALIAS: alias}
        settings.VERIFICATION_LINK = config

    apply()
    return apply


def start(user, commit):
    with commit():
        return services.start_verification(user=user, provider=ALIAS)


def hosted_path(session) -> str:
    assert session.url.startswith(f"{ORIGIN}/sandbox/hosted/sumsub/")
    return urlsplit(session.url).path


def pick(client, session, outcome, commit):
    with commit():
        response = client.post(hosted_path(session), {"outcome": outcome})
    assert response.status_code == 303, response.content
    assert response["Location"] == f"https://www.example.com/verify/s/{session.pk}/return/"
    session.refresh_from_db()
    return session


@pytest.mark.parametrize(
    ("outcome", "status", "verdict", "provider_status", "reasons", "finished"),
    [
        ("pass", Status.DONE, "approved", "completed/GREEN", [], 1),
        ("fail", Status.FAILED, "declined", "completed/RED/FINAL", ["FORGERY"], 1),
        ("review", Status.IN_PROGRESS, "review", "onHold", [], 0),
        ("resubmit", Status.IN_PROGRESS, "resubmission", "completed/RED/RETRY", ["UNSATISFACTORY_PHOTOS"], 0),
    ],
)
def test_each_outcome_reaches_the_site_by_a_signed_webhook(
    client, wire, sandbox_alias, user, commit, signal_log, outcome, status, verdict, provider_status, reasons, finished
):
    session = start(user, commit)
    assert session.external_id == str(session.pk)
    page = client.get(hosted_path(session))
    assert page.status_code == 200
    for value in ("pass", "fail", "review", "resubmit"):
        assert f'value="{value}"' in page.content.decode()
    assert 'value="abandon"' not in page.content.decode() and 'value="expire"' not in page.content.decode()
    # Before the outcome there is no applicant: a poll answers 404, and the session stays CREATED.
    services.refresh_session(session)
    session.refresh_from_db()
    assert session.status == Status.CREATED
    session = pick(client, session, outcome, commit)
    assert (session.status, session.provider_verdict, session.provider_status) == (status, verdict, provider_status)
    assert session.provider_reasons == reasons
    assert len(signal_log.of("verification_finished")) == finished
    event = VerificationEvent.objects.filter(session=session, kind=VerificationEvent.Kind.WEBHOOK).get()
    assert (event.valid, event.processed, event.error) == (True, True, "")
    assert event.delivery_id.startswith("req-")


def test_resubmission_then_pass_finishes_once(client, wire, sandbox_alias, user, commit, signal_log):
    session = start(user, commit)
    session = pick(client, session, "resubmit", commit)
    assert session.status == Status.IN_PROGRESS
    session = pick(client, session, "pass", commit)
    assert (session.status, session.decision) == (Status.DONE, VerificationSession.Decision.APPROVED)
    assert len(signal_log.of("verification_finished")) == 1
    assert VerificationEvent.objects.filter(session=session, kind=VerificationEvent.Kind.WEBHOOK).count() == 2


def test_the_webhook_is_signed_as_sumsub_signs(client, wire, sandbox_alias, user, commit):
    session = start(user, commit)
    pick(client, session, "pass", commit)
    delivered = next(call.request for call in wire.calls if call.request.url.endswith(f"/verify/webhook/{ALIAS}/"))
    assert delivered.headers["X-Payload-Digest-Alg"] == "HMAC_SHA256_HEX"
    expected = hmac.new(KEYS["SUMSUB_WEBHOOK_SECRET"].encode(), delivered.body, hashlib.sha256).hexdigest()
    assert delivered.headers["X-Payload-Digest"] == expected
    payload = json.loads(delivered.body)
    assert payload["externalUserId"] == str(session.pk)
    assert payload["type"] == "applicantReviewed" and payload["sandboxMode"] is True
    assert re.fullmatch(r"[0-9a-f]{24}", payload["applicantId"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", payload["createdAtMs"])


def test_poll_without_webhook_reads_steps_and_no_personal_data(client, wire, sandbox_alias, user, commit, settings):
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True, "WEBHOOK_URLS": {"sumsub": ""}}
    session = start(user, commit)
    session = pick(client, session, "fail", commit)
    assert session.status == Status.CREATED  # no webhook was sent
    with commit():
        services.refresh_session(session)
    session.refresh_from_db()
    assert (session.status, session.decision) == (Status.FAILED, VerificationSession.Decision.REJECTED)
    rows = get_provider(ALIAS).check_rows(session.scopes, session.result)
    assert [(row.scope, row.passed, row.detail) for row in rows] == [
        ("document", False, "FORGERY"),
        ("liveness", True, ""),
    ]
    stored = json.dumps(session.result)
    assert "Jane" not in json.dumps(get_provider(ALIAS).sensitive_parts_removed(session.result))
    for personal in ("1990-01-01", "jane@example.com", "PASSPORT", "firstName"):
        assert personal not in stored


def test_cancel_deactivates_the_applicant(client, wire, sandbox_alias, user, commit):
    session = start(user, commit)
    page = hosted_path(session)
    session = pick(client, session, "resubmit", commit)  # the page stays open for a new attempt
    services.cancel_session(session)
    session.refresh_from_db()
    assert session.status == Status.CANCELED
    assert wire.calls[-1].request.method == "PATCH"
    row = SandboxHostedSession.objects.get(emulator="sumsub")
    assert row.request["deactivated"] is True
    assert client.post(page, {"outcome": "pass"}).status_code == 409


def test_cancel_before_the_user_opened_the_link(client, wire, sandbox_alias, user, commit):
    session = start(user, commit)
    services.cancel_session(session)
    session.refresh_from_db()
    assert session.status == Status.CANCELED
    assert [call.request.method for call in wire.calls[1:]] == ["GET"]


def test_a_wrong_secret_key_is_refused(wire, sandbox_alias, user, commit):
    sandbox_alias(SECRET_KEY="not-the-sandbox-key")
    with pytest.raises(ProviderAuthError) as caught:
        start(user, commit)
    assert (caught.value.status_code, caught.value.code) == (401, 4003)


def test_a_wrong_app_token_is_refused(wire, sandbox_alias, user, commit):
    sandbox_alias(APP_TOKEN="sbx:wrong")
    with pytest.raises(ProviderAuthError):
        start(user, commit)


def signed(method: str, path: str, body: bytes = b"", *, ts: int | None = None, key: str | None = None) -> dict:
    ts = int(time.time()) if ts is None else ts
    message = str(ts).encode() + method.encode() + path.encode() + body
    sig = hmac.new((key or KEYS["SUMSUB_SECRET_KEY"]).encode(), message, hashlib.sha256).hexdigest()
    return {"X-App-Token": KEYS["SUMSUB_APP_TOKEN"], "X-App-Access-Ts": str(ts), "X-App-Access-Sig": sig}


def post_link(client, body: bytes, **signing):
    return client.post(
        LINK_PATH, body, content_type="application/json", headers=signed("POST", LINK_PATH, body, **signing)
    )


def test_the_api_checks_token_timestamp_and_signature(client):
    body = json.dumps({"levelName": "l", "userId": "u"}).encode()
    assert post_link(client, body).status_code == 200
    stale = post_link(client, body, ts=int(time.time()) - 120)
    assert stale.status_code == 401
    wrong = post_link(client, body, key="wrong")
    assert wrong.status_code == 401 and wrong.json()["errorCode"] == 4003
    assert client.post(LINK_PATH, body, content_type="application/json").status_code == 401
    tampered = client.post(
        LINK_PATH, body + b" ", content_type="application/json", headers=signed("POST", LINK_PATH, body)
    )
    assert tampered.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"userId": "u"}',
        b'{"levelName": "l"}',
        b'{"levelName": "l", "userId": "u", "ttlInSecs": "x"}',
    ],
)
def test_the_api_answers_bad_input_with_400(client, body):
    response = post_link(client, body)
    assert response.status_code == 400
    assert response.json()["code"] == 400 and response.json()["description"]


def test_unknown_applicant_is_404_and_wrong_methods_405(client):
    path = "/sandbox/sumsub/resources/applicants/-;externalUserId=nobody/one"
    response = client.get(path, headers=signed("GET", path))
    assert response.status_code == 404 and response.json()["code"] == 404
    assert client.get(LINK_PATH, headers=signed("GET", LINK_PATH)).status_code == 405
