"""The Valify emulator of ``verification_link.sandbox``: Create link, hosted flow, signed webhook.

The webhook endpoint is faked at the HTTP layer with ``responses``; nothing of ours is patched.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from typing import Any

import pytest
import requests
import responses
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from verification_link.sandbox import callbacks, sign_valify_webhook
from verification_link.sandbox.credentials import sandbox_credentials
from verification_link.sandbox.models import SandboxValifySession
from verification_link.sandbox.signing import sign_valify_webhook as sign_from_module

# Own URLconf: the tests do not depend on where (or whether) the site settings mount the sandbox.
pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.sandbox.urls_sandbox")]

# The sandbox's defaults, derived from the test settings' SECRET_KEY.
API_KEY = sandbox_credentials(django_settings.SECRET_KEY)["VALIFY_API_KEY"]
API_HEADERS = {"X-Valify-Api-Key": API_KEY}
WEBHOOK_SECRET = sandbox_credentials(django_settings.SECRET_KEY)["VALIFY_WEBHOOK_SECRET"]
WEBHOOK_URL = "https://site.example/verify/webhook/valify/account-secret-xyz/"
RETURN_URL = "https://site.example/verify/s/1/return/"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ISO_Z_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
STEPS = ["scan_id", "face_match", "phone"]
STEP_TITLES = ["Scan your national ID", "Face match", "Verify your phone"]
OUTCOME_LABELS = ["Pass all", "ID unreadable", "Face mismatch", "Abandon", "Cancel"]


# --- helpers -----------------------------------------------------------------------------------


def create_url(lang: str | None = "en") -> str:
    url = reverse("verification_link_sandbox:valify_create")
    return url if lang is None else f"{url}?lang={lang}"


def flow_path() -> str:
    return reverse("verification_link_sandbox:valify_flow")


def flow_url(token: str) -> str:
    return f"{flow_path()}?token={token}"


def in_future(**delta: float) -> str:
    value = timezone.now() + datetime.timedelta(**(delta or {"hours": 1}))
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def link_body(**overrides: Any) -> dict[str, Any]:
    body = {"return_url": RETURN_URL, "reference_id": f"ref-{uuid.uuid4()}", "expires_at": in_future()}
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


def api_create(
    client: Client,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    lang: str | None = "en",
    content_type: str = "application/json",
    **extra: Any,
):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(
        create_url(lang),
        data=data,
        content_type=content_type,
        headers=API_HEADERS if headers is None else headers,
        **extra,
    )


def create_session(client: Client, **overrides: Any) -> dict[str, Any]:
    response = api_create(client, link_body(**overrides))
    assert response.status_code == 200, response.content
    return response.json()


def post_step(client: Client, token: str, step: str, **data: str):
    return client.post(flow_url(token), {"step": step, **data})


def walk_to_outcome(client: Client, token: str) -> None:
    """The three step pages, asserting each one on the way."""
    for index, (step, title) in enumerate(zip(STEPS, STEP_TITLES, strict=True)):
        page = client.get(flow_url(token))
        html = page.content.decode()
        assert page.status_code == 200
        assert f"<h1>{title}</h1>" in html
        assert f"Step {index + 1} of 3" in html
        assert ">Continue</button>" in html
        assert f'name="step" value="{step}"' in html
        response = post_step(client, token, step)
        assert (response.status_code, response["Location"]) == (303, flow_url(token))
    page = client.get(flow_url(token))
    assert page.status_code == 200
    for label in OUTCOME_LABELS:
        assert f">{label}</button>" in page.content.decode()


def finish(client: Client, outcome: str, **overrides: Any):
    token = create_session(client, **overrides)["session_token"]
    walk_to_outcome(client, token)
    return token, post_step(client, token, "outcome", outcome=outcome)


def assert_message(response, status: int, *, error_code: int | None = None) -> dict[str, Any]:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["message"], str) and body["message"]
    if error_code is None:
        assert set(body) == {"message"}
    else:
        assert body["error_code"] == error_code
        assert set(body) == {"message", "error_code"}
    return body


def assert_valid_signature(request, secret: str = WEBHOOK_SECRET) -> None:
    timestamp = request.headers["X-Valify-Timestamp"]
    assert re.fullmatch(r"\d+", timestamp)
    assert abs(int(timestamp) - time.time()) < 60
    signature = request.headers["X-Valify-Signature"]
    assert re.fullmatch(r"[0-9a-f]{64}", signature)
    assert hmac.compare_digest(signature, sign_valify_webhook(secret, int(timestamp), request.body))


@pytest.fixture
def fake_http():
    """Every outgoing ``requests`` call hits this fake; unregistered URLs fail to connect."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def sandbox_settings(settings):
    """Set VERIFICATION_LINK_SANDBOX keys for one test, on top of CALLBACK_SYNC."""

    def apply(**values: Any) -> None:
        settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True, **values}

    apply()
    return apply


@pytest.fixture
def webhook(fake_http, sandbox_settings):
    """A synchronous webhook to WEBHOOK_URL, answered 200 by the fake endpoint."""
    sandbox_settings(VALIFY_WEBHOOK_URL=WEBHOOK_URL)
    fake_http.post(WEBHOOK_URL, status=200)
    return fake_http


# --- signing -------------------------------------------------------------------------------------


def test_sign_valify_webhook_is_hmac_sha256_hex_of_timestamp_dot_body():
    body = b'{"status": "success"}'
    expected = hmac.new(b"s3cret", b'1700000000.{"status": "success"}', hashlib.sha256).hexdigest()
    assert sign_valify_webhook("s3cret", 1700000000, body) == expected
    assert sign_from_module is sign_valify_webhook
    assert sign_valify_webhook("other", 1700000000, body) != expected
    assert sign_valify_webhook("s3cret", 1700000001, body) != expected


# --- authentication, content type, method ----------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Valify-Api-Key": ""},
        {"X-Valify-Api-Key": "wrong"},
        {"X-Valify-Api-Key": API_KEY + "-longer"},
        {"X-Valify-Api-Key": API_KEY.upper()},
        {"APP-KEY": API_KEY},
    ],
)
def test_create_refuses_bad_key(client, headers):
    assert_message(api_create(client, link_body(), headers=headers), 401)
    assert not SandboxValifySession.objects.exists()


def test_unauthorized_before_validation(client):
    # Bad key with a bad body, content type and lang: the caller learns nothing about the input.
    response = api_create(client, b"not json", headers={}, lang="xx", content_type="text/plain")
    assert_message(response, 401)


def test_key_comes_from_settings_at_request_time(client, settings):
    settings.VERIFICATION_LINK_SANDBOX = {"VALIFY_API_KEY": "my-key"}
    assert_message(api_create(client, link_body()), 401)
    assert api_create(client, link_body(), headers={"X-Valify-Api-Key": "my-key"}).status_code == 200


def test_empty_configured_key_refuses_everything(client, settings):
    settings.VERIFICATION_LINK_SANDBOX = {"VALIFY_API_KEY": ""}
    assert_message(api_create(client, link_body(), headers={"X-Valify-Api-Key": ""}), 401)
    assert_message(api_create(client, link_body(), headers={}), 401)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", ""])
def test_create_requires_json_content_type(client, content_type):
    response = api_create(client, link_body(), content_type=content_type)
    assert_message(response, 415)
    assert not SandboxValifySession.objects.exists()


def test_create_accepts_json_content_type_with_charset(client):
    response = api_create(client, link_body(), content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_wrong_methods_are_405(client):
    for method in ("get", "put", "patch", "delete"):
        response = getattr(client, method)(create_url(), headers=API_HEADERS)
        assert_message(response, 405)
        assert response["Allow"] == "POST"
    # Even without a key the method is checked first.
    assert client.get(create_url()).status_code == 405
    token = create_session(client)["session_token"]
    for method in ("put", "delete", "patch"):
        assert getattr(client, method)(flow_url(token)).status_code == 405
    assert SandboxValifySession.objects.get().step == 0


def test_api_is_csrf_exempt():
    client = Client(enforce_csrf_checks=True)
    assert api_create(client, link_body()).status_code == 200


# --- create: validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"  ", id="blank"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe\xfa", id="not-utf8"),
        pytest.param(b"[" * 100_000, id="deeply-nested"),
        pytest.param(b'{"return_url": NaN}', id="nan"),
        pytest.param([link_body()], id="array"),
        pytest.param("just a string", id="json-string"),
        pytest.param({}, id="empty-object"),
        pytest.param(link_body(return_url=...), id="no-return-url"),
        pytest.param(link_body(return_url=None), id="null-return-url"),
        pytest.param(link_body(return_url=""), id="empty-return-url"),
        pytest.param(link_body(return_url="/relative/return"), id="relative-return-url"),
        pytest.param(link_body(return_url="javascript:alert(1)"), id="js-return-url"),
        pytest.param(link_body(return_url="ftp://site.example/x"), id="ftp-return-url"),
        pytest.param(link_body(return_url="https://a.example/a b"), id="space-return-url"),
        pytest.param(link_body(return_url="https://a.example/\r\nX: y"), id="crlf-return-url"),
        pytest.param(link_body(return_url="https://a.example/" + "x" * 3000), id="long-return-url"),
        pytest.param(link_body(return_url=["https://a.example/"]), id="list-return-url"),
        pytest.param(link_body(reference_id=...), id="no-reference"),
        pytest.param(link_body(reference_id=""), id="empty-reference"),
        pytest.param(link_body(reference_id="   "), id="blank-reference"),
        pytest.param(link_body(reference_id=42), id="number-reference"),
        pytest.param(link_body(reference_id="x" * 256), id="long-reference"),
        pytest.param(link_body(reference_id="a\u0000b"), id="nul-reference"),
        pytest.param(link_body(reference_id="\ud800"), id="surrogate-reference"),
        pytest.param(link_body(expires_at=...), id="no-expires-at"),
        pytest.param(link_body(expires_at=None), id="null-expires-at"),
        pytest.param(link_body(expires_at=1768377474), id="number-expires-at"),
        pytest.param(link_body(expires_at="tomorrow"), id="word-expires-at"),
        pytest.param(link_body(expires_at="2099-01-14T07:57:54.972"), id="naive-expires-at"),
        pytest.param(link_body(expires_at="2099-01-14"), id="date-only-expires-at"),
        pytest.param(link_body(expires_at="2099-02-30T07:57:54Z"), id="impossible-expires-at"),
        pytest.param(link_body(expires_at="2099-01-14T07:57:54+25:00"), id="bad-offset-expires-at"),
        pytest.param(link_body(expires_at="9999-12-31T23:59:59-05:00"), id="overflow-expires-at"),
        pytest.param(link_body(expires_at="0001-01-01T00:00:00+01:00"), id="underflow-expires-at"),
        pytest.param(link_body(flow="not-a-uuid"), id="bad-flow"),
        pytest.param(link_body(flow=12), id="number-flow"),
        pytest.param(link_body(flow={"id": str(uuid.uuid4())}), id="object-flow"),
    ],
)
def test_create_rejects_bad_input(client, body):
    assert_message(api_create(client, body), 400)
    assert not SandboxValifySession.objects.exists()


@pytest.mark.parametrize("lang", ["fr", "EN", "", "en-us"])
def test_create_rejects_unknown_lang(client, lang):
    assert_message(api_create(client, link_body(), lang=lang), 400)
    assert not SandboxValifySession.objects.exists()


def test_create_rejects_oversized_body(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    assert_message(api_create(client, link_body(reference_id="x" * 200)), 400)


@pytest.mark.parametrize(
    "expires_at",
    ["2020-01-14T07:57:54.972Z", "2026-01-14T07:57:54.972+14:00", "past"],
)
def test_create_refuses_expiry_in_the_past_with_1001(client, expires_at):
    if expires_at == "past":
        expires_at = (timezone.now() - datetime.timedelta(seconds=1)).isoformat()
    body = assert_message(api_create(client, link_body(expires_at=expires_at)), 422, error_code=1001)
    assert body["message"] == "expires_at must be in the future"
    assert not SandboxValifySession.objects.exists()


def test_create_refuses_reference_of_an_open_session_with_1002(client):
    first = create_session(client, reference_id="user-7")
    assert_message(api_create(client, link_body(reference_id="user-7")), 422, error_code=1002)
    assert SandboxValifySession.objects.count() == 1
    # Another reference is fine; so is the same one once the first session is final.
    create_session(client, reference_id="user-8")
    walk_to_outcome(client, first["session_token"])
    post_step(client, first["session_token"], "outcome", outcome="cancel")
    create_session(client, reference_id="user-7")


def test_reference_of_an_expired_or_abandoned_session(client):
    token = create_session(client, reference_id="user-9")["session_token"]
    walk_to_outcome(client, token)
    post_step(client, token, "outcome", outcome="abandon")
    # An abandoned session is still open until it expires.
    assert_message(api_create(client, link_body(reference_id="user-9")), 422, error_code=1002)
    SandboxValifySession.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    create_session(client, reference_id="user-9")


# --- create: happy path ------------------------------------------------------------------------------


def test_create_answers_token_and_absolute_redirect_url(client):
    flow = str(uuid.uuid4())
    response = api_create(
        client,
        {"return_url": RETURN_URL, "reference_id": "user-7", "expires_at": "2099-01-14T07:57:54.972Z", "flow": flow},
        lang="ar",
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert list(body) == ["session_token", "redirect_url"]
    token = body["session_token"]
    assert UUID_RE.match(token)
    assert body["redirect_url"] == f"http://testserver/sandbox/valify/?token={token}"

    session = SandboxValifySession.objects.get()
    assert str(session.token) == token
    assert session.reference_id == "user-7"
    assert session.return_url == RETURN_URL
    assert session.expires_at == datetime.datetime(2099, 1, 14, 7, 57, 54, 972000, tzinfo=datetime.timezone.utc)
    assert str(session.flow) == flow
    assert session.lang == "ar"
    assert (session.status, session.reason, session.step) == ("pending", "", 0)
    assert session.completed_at is None and session.webhook_sent_at is None
    # The link works.
    assert client.get(body["redirect_url"]).status_code == 200


def test_create_defaults_and_unique_tokens(client):
    first = api_create(client, link_body(flow=None), lang=None)
    assert first.status_code == 200
    second = create_session(client, somethingNew=1)
    assert first.json()["session_token"] != second["session_token"]
    session = SandboxValifySession.objects.get(token=first.json()["session_token"])
    assert (session.lang, session.flow) == ("en", None)


@pytest.mark.parametrize(
    "expires_at",
    ["2099-01-14T07:57:54.972Z", "2099-01-14T09:57:54.972+02:00", "2099-01-14T07:57:54Z", "2099-01-14 07:57:54.972Z"],
)
def test_create_accepts_iso_date_times_with_a_zone(client, expires_at):
    create_session(client, expires_at=expires_at)
    stored = SandboxValifySession.objects.get().expires_at
    assert stored.replace(microsecond=0) == datetime.datetime(2099, 1, 14, 7, 57, 54, tzinfo=datetime.timezone.utc)


def test_redirect_url_follows_request_origin(client):
    response = api_create(client, link_body(), secure=True, HTTP_HOST="localhost:8443")
    body = response.json()
    assert body["redirect_url"] == f"https://localhost:8443/sandbox/valify/?token={body['session_token']}"


def test_redirect_key_with_the_documentation_typo(client, settings):
    settings.VERIFICATION_LINK_SANDBOX = {"VALIFY_REDIRECT_KEY": "redirect_url "}
    body = create_session(client)
    assert set(body) == {"session_token", "redirect_url "}
    assert body["redirect_url "] == f"http://testserver/sandbox/valify/?token={body['session_token']}"


def test_redirect_key_left_out(client, settings):
    settings.VERIFICATION_LINK_SANDBOX = {"VALIFY_REDIRECT_KEY": None}
    body = create_session(client)
    assert set(body) == {"session_token"}
    # The client builds the URL from the token: <base>/?token=<session_token>.
    assert client.get(f"/sandbox/valify/?token={body['session_token']}").status_code == 200


# --- the hosted walk -------------------------------------------------------------------------------------


def test_hosted_walk_pages(client):
    token = create_session(client)["session_token"]
    page = client.get(flow_url(token))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Sandbox — not a real verification" in html
    assert '<meta name="viewport"' in html
    assert "csrfmiddlewaretoken" in html
    assert f'action="{flow_path()}?token={token}"' in html
    assert "<script" not in html
    walk_to_outcome(client, token)
    assert SandboxValifySession.objects.get().step == 3


@pytest.mark.parametrize(
    ("outcome", "status", "reason"),
    [
        ("pass", "success", ""),
        ("needs_review", "success", "needs_review"),
        ("id_unreadable", "failed", "id_unreadable"),
        ("face_mismatch", "failed", "face_mismatch"),
        ("expire_now", "expired", ""),
        ("cancel", "canceled", ""),
    ],
)
def test_final_outcomes(client, outcome, status, reason):
    token, response = finish(client, outcome)
    assert (response.status_code, response["Location"]) == (303, RETURN_URL)
    session = SandboxValifySession.objects.get(token=token)
    assert (session.status, session.reason) == (status, reason)
    assert session.completed_at is not None
    # No VALIFY_WEBHOOK_URL here: nothing was sent.
    assert session.webhook_sent_at is None


def test_unknown_outcome_changes_nothing(client):
    token = create_session(client)["session_token"]
    walk_to_outcome(client, token)
    for outcome in ("", "explode", "success"):
        response = post_step(client, token, "outcome", outcome=outcome)
        assert response.status_code == 200
        assert "Choose one of the outcomes." in response.content.decode()
    assert SandboxValifySession.objects.get().status == "pending"


def test_stale_or_repeated_posts_change_nothing(client):
    token = create_session(client)["session_token"]
    # An outcome before the steps, a missing step field, a later step.
    for data in ({"step": "outcome", "outcome": "pass"}, {}, {"step": "phone"}):
        response = client.post(flow_url(token), data)
        assert (response.status_code, response["Location"]) == (303, flow_url(token))
    assert SandboxValifySession.objects.get().step == 0
    # A double submit of the first step advances once.
    post_step(client, token, "scan_id")
    post_step(client, token, "scan_id")
    assert SandboxValifySession.objects.get().step == 1


def test_hosted_page_headers(client):
    token = create_session(client)["session_token"]
    response = client.get(flow_url(token))
    assert "no-store" in response["Cache-Control"]
    assert response["Referrer-Policy"] == "same-origin"
    assert "noindex" in response["X-Robots-Tag"]


def test_hosted_page_enforces_csrf():
    client = Client(enforce_csrf_checks=True)
    token = create_session(client)["session_token"]
    assert post_step(client, token, "scan_id").status_code == 403
    assert SandboxValifySession.objects.get().step == 0


@pytest.mark.parametrize("query", ["", "?token=", "?token=not-a-uuid", "?token=6f1c2a8e-0d4b-4c9e-9a57-3b2f8e1d7c40"])
def test_hosted_page_unknown_token_is_404(client, query):
    response = client.get(f"{flow_path()}{query}")
    assert response.status_code == 404
    assert client.post(f"{flow_path()}{query}", {"step": "scan_id"}).status_code == 404


# --- one-time link and expiry ---------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["pass", "needs_review", "id_unreadable", "face_mismatch", "expire_now", "cancel"])
def test_link_is_gone_after_a_final_outcome(client, outcome):
    token, _ = finish(client, outcome)
    response = client.get(flow_url(token))
    assert response.status_code == 410
    assert "This link is no longer valid" in response.content.decode()
    for step in ("outcome", "scan_id"):
        assert post_step(client, token, step, outcome="pass").status_code == 410
    assert SandboxValifySession.objects.get().status != "pending"


def test_expired_link_is_gone(client):
    token = create_session(client, expires_at=in_future(seconds=60))["session_token"]
    post_step(client, token, "scan_id")
    SandboxValifySession.objects.update(expires_at=timezone.now() - datetime.timedelta(milliseconds=5))
    response = client.get(flow_url(token))
    assert response.status_code == 410
    assert "This link is no longer valid" in response.content.decode()
    assert post_step(client, token, "face_match").status_code == 410
    session = SandboxValifySession.objects.get()
    assert (session.status, session.step) == ("pending", 1)


def test_abandon_keeps_the_session_open_and_sends_nothing(client, webhook, django_capture_on_commit_callbacks):
    token = create_session(client)["session_token"]
    walk_to_outcome(client, token)
    with django_capture_on_commit_callbacks(execute=True) as scheduled:
        response = post_step(client, token, "outcome", outcome="abandon")
    assert (response.status_code, response["Location"]) == (303, RETURN_URL)
    assert scheduled == []
    assert len(webhook.calls) == 0
    session = SandboxValifySession.objects.get()
    assert (session.status, session.completed_at, session.webhook_sent_at) == ("pending", None, None)
    # The link still works until it expires.
    assert client.get(flow_url(token)).status_code == 200
    SandboxValifySession.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert client.get(flow_url(token)).status_code == 410


# --- webhook ----------------------------------------------------------------------------------------------


def expected_result(status: str, reason: str | None) -> dict[str, Any]:
    if status in ("canceled", "expired"):
        return {}
    ocr = {"national_id": "29901011234567", "full_name": "Sandbox Test User", "birth_date": "1999-01-01"}
    result = {
        "ocr": ocr,
        "face_match": {"match": True, "score": 0.93},
        "liveness": {"passed": True, "score": 0.97},
        "phone_otp": {"verified": True},
    }
    if reason == "id_unreadable":
        result["ocr"] = {}
        result["face_match"] = {"match": False, "score": 0.0}
    if reason == "face_mismatch":
        result["face_match"] = {"match": False, "score": 0.21}
    if reason == "needs_review":
        result["face_match"] = {"match": False, "score": 0.62}
    return result


@pytest.mark.parametrize(
    ("outcome", "status", "reason"),
    [
        ("pass", "success", None),
        ("needs_review", "success", None),
        ("id_unreadable", "failed", "id_unreadable"),
        ("face_mismatch", "failed", "face_mismatch"),
        ("expire_now", "expired", None),
        ("cancel", "canceled", None),
    ],
)
def test_webhook_posted_once_signed_with_documented_body(
    client, webhook, django_capture_on_commit_callbacks, outcome, status, reason
):
    created = create_session(client, reference_id="user-7")
    token = created["session_token"]
    walk_to_outcome(client, token)
    assert len(webhook.calls) == 0

    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True) as scheduled:
        response = post_step(client, token, "outcome", outcome=outcome)
    assert (response.status_code, response["Location"]) == (303, RETURN_URL)
    assert len(scheduled) == 1
    assert len(webhook.calls) == 1

    request = webhook.calls[0].request
    assert request.method == "POST"
    assert request.url == WEBHOOK_URL
    assert request.headers["Content-Type"] == "application/json"
    assert UUID_RE.match(request.headers["X-Valify-Webhook-Id"])
    assert "X-Valify-Api-Key" not in request.headers
    assert 0 < request.req_kwargs["timeout"] <= 10
    assert_valid_signature(request)

    body = json.loads(request.body)
    assert set(body) == {"event", "session_token", "reference_id", "status", "reason", "completed_at", "result"}
    assert body["event"] == "verification.completed"
    assert body["session_token"] == token
    assert body["reference_id"] == "user-7"
    assert body["status"] == status
    assert body["reason"] == reason
    assert ISO_Z_RE.match(body["completed_at"])
    completed_at = datetime.datetime.strptime(body["completed_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc
    )
    assert before - datetime.timedelta(milliseconds=1) <= completed_at <= timezone.now()

    result = body["result"]
    expected = expected_result(status, outcome if outcome == "needs_review" else reason)
    if status in ("canceled", "expired"):
        assert result == {}
    else:
        images = result.pop("images")
        assert set(images) == {"front", "selfie"}
        for encoded in images.values():
            assert 0 < len(base64.b64decode(encoded, validate=True)) < 64
        ocr = result["ocr"]
        if ocr:
            assert isinstance(ocr.pop("address"), str)
        assert result == expected

    session = SandboxValifySession.objects.get()
    assert session.webhook_sent_at is not None

    # Replays and later visits send nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        assert post_step(client, token, "outcome", outcome=outcome).status_code == 410
        assert client.get(flow_url(token)).status_code == 410
    assert len(webhook.calls) == 1


def test_each_delivery_has_its_own_webhook_id(client, webhook, django_capture_on_commit_callbacks):
    for _ in range(2):
        token = create_session(client)["session_token"]
        walk_to_outcome(client, token)
        with django_capture_on_commit_callbacks(execute=True):
            post_step(client, token, "outcome", outcome="pass")
    ids = {call.request.headers["X-Valify-Webhook-Id"] for call in webhook.calls}
    assert len(ids) == 2


def test_webhook_secret_comes_from_settings(client, webhook, sandbox_settings, django_capture_on_commit_callbacks):
    sandbox_settings(VALIFY_WEBHOOK_URL=WEBHOOK_URL, VALIFY_WEBHOOK_SECRET="rotated-secret")
    token = create_session(client)["session_token"]
    walk_to_outcome(client, token)
    with django_capture_on_commit_callbacks(execute=True):
        post_step(client, token, "outcome", outcome="pass")
    request = webhook.calls[0].request
    assert_valid_signature(request, "rotated-secret")
    timestamp = int(request.headers["X-Valify-Timestamp"])
    assert request.headers["X-Valify-Signature"] != sign_valify_webhook(WEBHOOK_SECRET, timestamp, request.body)


def test_empty_webhook_secret_sends_nothing(
    client, webhook, sandbox_settings, caplog, django_capture_on_commit_callbacks
):
    sandbox_settings(VALIFY_WEBHOOK_URL=WEBHOOK_URL, VALIFY_WEBHOOK_SECRET="")
    caplog.set_level(logging.INFO, logger="verification_link.sandbox")
    token = create_session(client)["session_token"]
    walk_to_outcome(client, token)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_step(client, token, "outcome", outcome="pass").status_code == 303
    assert len(webhook.calls) == 0
    assert "VALIFY_WEBHOOK_SECRET is empty" in caplog.text


def test_relative_webhook_url_resolves_against_request_origin(
    client, fake_http, sandbox_settings, django_capture_on_commit_callbacks
):
    sandbox_settings(VALIFY_WEBHOOK_URL="/verify/webhook/valify/")
    fake_http.post("https://localhost:8443/verify/webhook/valify/", status=204)
    created = api_create(client, link_body()).json()
    token = created["session_token"]
    walk_to_outcome(client, token)
    with django_capture_on_commit_callbacks(execute=True):
        # The request that finishes the flow decides the origin.
        response = client.post(
            flow_url(token), {"step": "outcome", "outcome": "pass"}, secure=True, HTTP_HOST="localhost:8443"
        )
    assert response.status_code == 303
    assert len(fake_http.calls) == 1
    assert fake_http.calls[0].request.url == "https://localhost:8443/verify/webhook/valify/"
    assert_valid_signature(fake_http.calls[0].request)


@pytest.mark.parametrize("configured", [None, ""])
def test_no_webhook_when_unset(
    client, fake_http, sandbox_settings, caplog, django_capture_on_commit_callbacks, configured
):
    sandbox_settings(VALIFY_WEBHOOK_URL=configured)
    caplog.set_level(logging.INFO, logger="verification_link.sandbox")
    token = create_session(client)["session_token"]
    walk_to_outcome(client, token)
    with django_capture_on_commit_callbacks(execute=True) as scheduled:
        response = post_step(client, token, "outcome", outcome="pass")
    assert (response.status_code, response["Location"]) == (303, RETURN_URL)
    assert scheduled == []
    assert len(fake_http.calls) == 0
    assert "no VALIFY_WEBHOOK_URL" in caplog.text
    session = SandboxValifySession.objects.get()
    assert (session.status, session.webhook_sent_at) == ("success", None)


@pytest.mark.parametrize("configured", ["verify/webhook/", "//evil.example/hook", "ftp://site.example/hook", 42])
def test_unusable_webhook_url_sends_nothing(
    client, fake_http, sandbox_settings, caplog, django_capture_on_commit_callbacks, configured
):
    sandbox_settings(VALIFY_WEBHOOK_URL=configured)
    caplog.set_level(logging.INFO, logger="verification_link.sandbox")
    token = create_session(client)["session_token"]
    walk_to_outcome(client, token)
    with django_capture_on_commit_callbacks(execute=True) as scheduled:
        assert post_step(client, token, "outcome", outcome="pass").status_code == 303
    assert scheduled == []
    assert len(fake_http.calls) == 0
    assert "neither an absolute http(s) URL nor a path" in caplog.text
    if isinstance(configured, str):
        assert configured not in caplog.text


def test_webhook_waits_for_commit(client, webhook, django_capture_on_commit_callbacks):
    token = create_session(client)["session_token"]
    walk_to_outcome(client, token)
    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        post_step(client, token, "outcome", outcome="pass")
    assert len(scheduled) == 1
    assert len(webhook.calls) == 0
    scheduled[0]()
    assert len(webhook.calls) == 1


def test_webhook_runs_in_a_background_thread_by_default(
    client, fake_http, settings, django_capture_on_commit_callbacks
):
    settings.VERIFICATION_LINK_SANDBOX = {"VALIFY_WEBHOOK_URL": WEBHOOK_URL}
    senders: list[threading.Thread] = []
    delivered = threading.Event()

    def receiver(request):
        senders.append(threading.current_thread())
        delivered.set()
        return 200, {}, ""

    fake_http.add_callback(responses.POST, WEBHOOK_URL, callback=receiver)
    token = create_session(client)["session_token"]
    walk_to_outcome(client, token)
    with django_capture_on_commit_callbacks(execute=True):
        post_step(client, token, "outcome", outcome="pass")
    assert delivered.wait(timeout=5)
    senders[0].join(timeout=5)
    assert senders[0] is not threading.main_thread()
    assert senders[0].name == callbacks.THREAD_NAME and senders[0].daemon
    assert len(fake_http.calls) == 1
    assert json.loads(fake_http.calls[0].request.body)["status"] == "success"


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 500},
        {"status": 401},
        {"body": requests.ConnectionError("connection refused to " + WEBHOOK_URL)},
        {"body": requests.Timeout("read timed out")},
    ],
)
def test_webhook_failure_is_swallowed_logged_and_not_retried(
    client, fake_http, sandbox_settings, caplog, django_capture_on_commit_callbacks, reply
):
    sandbox_settings(VALIFY_WEBHOOK_URL=WEBHOOK_URL)
    fake_http.post(WEBHOOK_URL, **reply)
    caplog.set_level(logging.DEBUG)
    token = create_session(client)["session_token"]
    walk_to_outcome(client, token)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_step(client, token, "outcome", outcome="pass")
    assert (response.status_code, response["Location"]) == (303, RETURN_URL)
    assert len(fake_http.calls) == 1
    assert SandboxValifySession.objects.get().status == "success"
    assert "Valify webhook" in caplog.text and "https://site.example" in caplog.text
    # No secret, token, signature or path in the log.
    signature = fake_http.calls[0].request.headers["X-Valify-Signature"]
    for secret in (token, "account-secret-xyz", WEBHOOK_SECRET, API_KEY, signature):
        assert secret not in caplog.text


def test_secrets_never_logged(client, webhook, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)
    token = create_session(client)["session_token"]
    assert_message(api_create(client, link_body(), headers={"X-Valify-Api-Key": "wrong-key-123"}), 401)
    walk_to_outcome(client, token)
    with django_capture_on_commit_callbacks(execute=True):
        post_step(client, token, "outcome", outcome="pass")
    assert len(webhook.calls) == 1
    for secret in (token, API_KEY, "wrong-key-123", WEBHOOK_SECRET, "account-secret-xyz"):
        assert secret not in caplog.text


@pytest.mark.parametrize(
    ("outcome", "decision", "words"),
    [
        ("pass", "approved", "The default decision policy approves."),
        ("needs_review", "review", "The default decision policy sends the session to review"),
        ("id_unreadable", "rejected", "The default decision policy rejects."),
        ("face_mismatch", "rejected", "The default decision policy rejects."),
        ("expire_now", "", "No decision is made."),
        ("cancel", "", "No decision is made."),
    ],
)
def test_each_outcome_gets_the_decision_its_hint_names(client, outcome, decision, words):
    """The webhook of each outcome, read by our Valify client, decided by the default policy: what
    the button's hint says, and the picker shows that hint beside the button."""
    from verification_link.models import VerificationSession
    from verification_link.policy import default_decision_policy
    from verification_link.providers import get_provider
    from verification_link.sandbox import valify_outcomes

    token, _response = finish(client, outcome)
    payload = json.loads(json.dumps(SandboxValifySession.objects.get(token=token).webhook_payload()))
    report = get_provider("valify").parse_webhook(payload).report  # our client reads it as sent
    session = VerificationSession(provider="valify", status=report.status, result=report.result, scopes=[])
    assert default_decision_policy(session) == decision
    assert words in str(valify_outcomes.HINTS[outcome])
    other = create_session(client)["session_token"]
    walk_to_outcome(client, other)
    html = client.get(flow_url(other)).content.decode()
    assert f'value="{outcome}" aria-describedby="hint-{outcome}"' in html
    assert str(valify_outcomes.HINTS[outcome]) in html.replace("&#x27;", "'")
