"""The OOTO emulator of ``verification_link.sandbox``: API wire format, hosted flow, callback, and
every outcome of the picker reaching a site's session through the real ``OotoProvider``.

The callback endpoint is faked at the HTTP layer with ``responses``; nothing of ours is patched.
The end-to-end cases answer every ``requests`` call to ``http://testserver`` with this site itself
(``site_over_requests``): the provider's calls, the sandbox's callback to the site.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import responses
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from verification_link.sandbox import callbacks
from verification_link.sandbox.credentials import sandbox_credentials
from verification_link.sandbox.models import SandboxSession
from verification_link.testing import site_over_requests

# Own URLconf: the tests do not depend on where (or whether) the site settings mount the sandbox.
pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.sandbox.urls_sandbox")]

# The sandbox's defaults, derived from the test settings' SECRET_KEY.
APP_ID = sandbox_credentials(django_settings.SECRET_KEY)["OOTO_APP_ID"]
APP_KEY = sandbox_credentials(django_settings.SECRET_KEY)["OOTO_APP_KEY"]
APP_HEADERS = {"APP-ID": APP_ID, "APP-KEY": APP_KEY}
CALLBACK_URL = "https://site.example/verify/callback/ooto/per-session-secret-xyz/"
RETURN_URL = "https://site.example/verify/s/1/return/"
ALL_SCOPES = ["liveness", "deepfake", "search", "enroll"]
EXPIRES_AT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --- helpers -----------------------------------------------------------------------------------


def create_url() -> str:
    return reverse("verification_link_sandbox:ooto_create")


def status_url(token: str) -> str:
    return reverse("verification_link_sandbox:ooto_status", args=[token])


def flow_url(token: str) -> str:
    return reverse("verification_link_sandbox:ooto_flow", args=[token])


def api_create(client: Client, body: Any, *, headers: dict[str, str] | None = None, **extra: Any):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(
        create_url(),
        data=data,
        content_type="application/json",
        headers=APP_HEADERS if headers is None else headers,
        **extra,
    )


def create_session(client: Client, **body: Any) -> dict[str, Any]:
    body.setdefault("scopes", ["liveness", "deepfake"])
    response = api_create(client, body)
    assert response.status_code == 200, response.content
    return response.json()


def get_status(client: Client, token: str) -> dict[str, Any]:
    response = client.get(status_url(token), headers=APP_HEADERS)
    assert response.status_code == 200, response.content
    return response.json()


def post_step(client: Client, token: str, step: str, **data: str):
    return client.post(flow_url(token), {"step": step, **data})


def walk_to_outcome(client: Client, token: str, scopes: list[str]) -> None:
    """Captcha, start page and every scope page, asserting the status on the way."""
    assert post_step(client, token, "captcha", not_a_robot="yes").status_code == 303
    assert post_step(client, token, "start").status_code == 303
    for index in range(len(scopes)):
        assert post_step(client, token, f"scope-{index}").status_code == 303
    page = client.get(flow_url(token))
    assert page.status_code == 200
    assert "Pass all" in page.content.decode()


def assert_error(response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert UUID_RE.match(body["transactionId"])
    assert body["result"]["status"] == "error"
    assert body["result"]["code"] == status
    assert isinstance(body["result"]["info"], str) and body["result"]["info"]
    return body


@pytest.fixture
def fake_http():
    """Every outgoing ``requests`` call hits this fake; unregistered URLs fail to connect."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def sync_callbacks(settings):
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True}


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"APP-ID": APP_ID},
        {"APP-KEY": APP_KEY},
        {"APP-ID": APP_ID, "APP-KEY": "wrong"},
        {"APP-ID": "other-app", "APP-KEY": APP_KEY},
        {"APP-ID": APP_ID, "APP-KEY": APP_KEY + "-longer"},
        {"APP-ID": "sandbox-app", "APP-KEY": "sandbox-key"},  # the fixed pair of earlier versions
    ],
)
def test_create_and_status_refuse_bad_credentials(client, headers):
    assert_error(api_create(client, {"scopes": ["liveness"]}, headers=headers), 401)
    token = create_session(client)["token"]
    assert_error(client.get(status_url(token), headers=headers), 401)
    assert SandboxSession.objects.count() == 1


def test_unauthorized_before_validation(client):
    # Bad credentials with a bad body: the caller learns nothing about the input.
    assert_error(api_create(client, b"not json", headers={}), 401)


def test_credentials_come_from_settings_at_request_time(client, settings):
    settings.VERIFICATION_LINK_SANDBOX = {"OOTO_APP_ID": "my-app", "OOTO_APP_KEY": "my-key"}
    assert_error(api_create(client, {"scopes": ["liveness"]}), 401)
    response = api_create(client, {"scopes": ["liveness"]}, headers={"APP-ID": "my-app", "APP-KEY": "my-key"})
    assert response.status_code == 200


def test_empty_configured_key_refuses_everything(client, settings):
    settings.VERIFICATION_LINK_SANDBOX = {"OOTO_APP_ID": "", "OOTO_APP_KEY": ""}
    assert_error(api_create(client, {"scopes": ["liveness"]}, headers={"APP-ID": "", "APP-KEY": ""}), 401)


def test_app_key_never_logged(client, caplog, fake_http, sync_callbacks, django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)
    created = create_session(client, callbackUrl=CALLBACK_URL)
    token = created["token"]
    assert_error(api_create(client, {"scopes": ["liveness"]}, headers={"APP-ID": "x", "APP-KEY": "x"}), 401)
    walk_to_outcome(client, token, ["liveness", "deepfake"])
    with django_capture_on_commit_callbacks(execute=True):
        post_step(client, token, "outcome", outcome="pass")  # callback URL unregistered: fails
    assert APP_KEY not in caplog.text
    assert token not in caplog.text
    assert "per-session-secret" not in caplog.text


# --- create: validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe\xfa", id="not-utf8"),
        pytest.param(b"[" * 100_000, id="deeply-nested"),
        pytest.param(b'{"scopes": ["liveness"], "ttlSec": NaN}', id="nan"),
        pytest.param([{"scopes": ["liveness"]}], id="array"),
        pytest.param("just a string", id="json-string"),
        pytest.param({}, id="no-scopes"),
        pytest.param({"scopes": None}, id="null-scopes"),
        pytest.param({"scopes": []}, id="empty-scopes"),
        pytest.param({"scopes": "liveness"}, id="scopes-not-list"),
        pytest.param({"scopes": ["face"]}, id="unknown-scope"),
        pytest.param({"scopes": ["LIVENESS"]}, id="upper-case-scope"),
        pytest.param({"scopes": ["liveness", 1]}, id="non-string-scope"),
        pytest.param({"scopes": [["liveness"]]}, id="nested-scope"),
        pytest.param({"scopes": ["liveness"], "metadata": []}, id="metadata-list"),
        pytest.param({"scopes": ["liveness"], "metadata": "x"}, id="metadata-string"),
        pytest.param({"scopes": ["liveness"], "metadata": {"a": ["x\u0000y"]}}, id="metadata-nul"),
        pytest.param({"scopes": ["liveness"], "ttlSec": 0}, id="ttl-zero"),
        pytest.param({"scopes": ["liveness"], "ttlSec": -5}, id="ttl-negative"),
        pytest.param({"scopes": ["liveness"], "ttlSec": 86401}, id="ttl-too-long"),
        pytest.param({"scopes": ["liveness"], "ttlSec": "600"}, id="ttl-string"),
        pytest.param({"scopes": ["liveness"], "ttlSec": 600.5}, id="ttl-float"),
        pytest.param({"scopes": ["liveness"], "ttlSec": True}, id="ttl-bool"),
        pytest.param({"scopes": ["liveness"], "callbackUrl": "/relative/path"}, id="callback-relative"),
        pytest.param({"scopes": ["liveness"], "callbackUrl": "ftp://site.example/x"}, id="callback-ftp"),
        pytest.param({"scopes": ["liveness"], "callbackUrl": "javascript:alert(1)"}, id="callback-js"),
        pytest.param({"scopes": ["liveness"], "callbackUrl": 42}, id="callback-number"),
        pytest.param({"scopes": ["liveness"], "returnUrl": "https://a.example/" + "x" * 3000}, id="return-long"),
        pytest.param({"scopes": ["liveness"], "returnUrl": "https://a.example/a b"}, id="return-space"),
        pytest.param({"scopes": ["liveness"], "returnUrl": "javascript:alert(1)"}, id="return-js"),
        pytest.param({"scopes": ["liveness"], "returnUrl": "https://a.example/\u0000"}, id="return-nul"),
        pytest.param({"scopes": ["liveness"], "callbackUrl": "https://a.example/\r\nX: y"}, id="callback-crlf"),
    ],
)
def test_create_rejects_bad_input(client, body):
    assert_error(api_create(client, body), 400)
    assert not SandboxSession.objects.exists()


def test_create_rejects_oversized_body(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = {"scopes": ["liveness"], "metadata": {"pad": "x" * 200}}
    assert_error(api_create(client, body), 400)


# --- create: happy path ------------------------------------------------------------------------


def test_create_answers_session_id_token_and_absolute_url(client):
    before = timezone.now()
    body = create_session(
        client,
        scopes=["liveness", "search"],
        metadata={"user": 7, "nested": {"a": [1, 2]}},
        callbackUrl=CALLBACK_URL,
        returnUrl=RETURN_URL,
        ttlSec=600,
    )
    assert set(body) == {"sessionId", "token", "url"}
    assert UUID_RE.match(body["sessionId"])
    token = body["token"]
    # At least 128 bits of URL-safe randomness.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", token)
    assert body["url"] == f"http://testserver{flow_url(token)}"
    assert urlsplit(body["url"]).path.endswith(f"/ooto/flow/{token}")

    session = SandboxSession.objects.get()
    assert str(session.session_id) == body["sessionId"]
    assert session.token == token
    assert session.scopes == ["liveness", "search"]
    assert session.metadata == {"user": 7, "nested": {"a": [1, 2]}}
    assert session.callback_url == CALLBACK_URL
    assert session.return_url == RETURN_URL
    assert before + datetime.timedelta(seconds=600) <= session.expires_at
    assert session.expires_at <= timezone.now() + datetime.timedelta(seconds=600)


def test_create_url_follows_request_origin(client):
    response = api_create(client, {"scopes": ["liveness"]}, secure=True, HTTP_HOST="localhost:8443")
    body = response.json()
    assert body["url"] == f"https://localhost:8443{flow_url(body['token'])}"


def test_create_defaults_and_unique_tokens(client):
    first = create_session(client, scopes=["enroll"], metadata=None, callbackUrl=None, returnUrl=None)
    second = create_session(client, scopes=["enroll", "enroll", "liveness"])
    assert first["token"] != second["token"]
    assert first["sessionId"] != second["sessionId"]
    session = SandboxSession.objects.get(token=first["token"])
    assert session.metadata == {}
    assert session.callback_url == "" and session.return_url == ""
    remaining = (session.expires_at - timezone.now()).total_seconds()
    assert 86400 - 60 < remaining <= 86400
    # A repeated scope is one step.
    assert get_status(client, second["token"])["scopes"] == ["enroll", "liveness"]


def test_create_ignores_content_type_and_unknown_keys(client):
    response = client.post(
        create_url(),
        data=json.dumps({"scopes": ["deepfake"], "somethingNew": 1}),
        content_type="text/plain",
        headers=APP_HEADERS,
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


def test_api_is_csrf_exempt(fake_http):
    client = Client(enforce_csrf_checks=True)
    assert api_create(client, {"scopes": ["liveness"]}).status_code == 200


# --- status --------------------------------------------------------------------------------------


def test_status_of_a_new_session(client):
    created = create_session(client, scopes=["deepfake", "liveness"], returnUrl=RETURN_URL, ttlSec=3600)
    body = get_status(client, created["token"])
    assert set(body) == {"status", "scopes", "nextStep", "expiresAt", "uiHints", "returnUrl", "result"}
    assert body["status"] == "CREATED"
    assert body["scopes"] == ["deepfake", "liveness"]
    assert body["nextStep"] == "DEEPFAKE"
    assert body["uiHints"] == {"needCaptcha": True}
    assert body["returnUrl"] == RETURN_URL
    assert body["result"] == {}
    assert EXPIRES_AT_RE.match(body["expiresAt"])
    expires_at = datetime.datetime.strptime(body["expiresAt"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc
    )
    stored = SandboxSession.objects.get().expires_at
    assert abs((expires_at - stored).total_seconds()) < 0.001


def test_status_without_return_url_is_null(client):
    token = create_session(client)["token"]
    assert get_status(client, token)["returnUrl"] is None


def test_status_unknown_token_is_404(client):
    assert_error(client.get(status_url("no-such-token"), headers=APP_HEADERS), 404)


# --- the hosted walk -----------------------------------------------------------------------------


def test_hosted_walk_moves_status_and_next_step(client):
    scopes = ["liveness", "deepfake", "search", "enroll"]
    token = create_session(client, scopes=scopes, returnUrl=RETURN_URL)["token"]

    page = client.get(flow_url(token))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Sandbox — not a real verification" in html
    assert '<meta name="viewport"' in html
    assert '<label for="not-a-robot">I am not a robot</label>' in html
    assert 'id="not-a-robot"' in html
    assert "csrfmiddlewaretoken" in html
    assert "<script" not in html

    # Captcha: the box must be ticked.
    page = post_step(client, token, "captcha")
    assert page.status_code == 200
    assert "Tick the box" in page.content.decode()
    assert get_status(client, token)["status"] == "CREATED"

    response = post_step(client, token, "captcha", not_a_robot="yes")
    assert response.status_code == 303
    assert response["Location"] == flow_url(token)
    status = get_status(client, token)
    assert (status["status"], status["nextStep"], status["uiHints"]) == (
        "CAPTCHA_OK",
        "LIVENESS",
        {"needCaptcha": False},
    )
    assert "Continue" in client.get(flow_url(token)).content.decode()

    assert post_step(client, token, "start").status_code == 303
    for index, scope in enumerate(scopes):
        status = get_status(client, token)
        assert (status["status"], status["nextStep"], status["result"]) == ("IN_PROGRESS", scope.upper(), {})
        page = client.get(flow_url(token)).content.decode()
        assert f"Step {index + 1} of {len(scopes)}" in page
        assert ">Continue</button>" in page
        assert post_step(client, token, f"scope-{index}").status_code == 303

    # On the picker the last step's analysis is still pending.
    status = get_status(client, token)
    assert (status["status"], status["nextStep"]) == ("IN_PROGRESS", "ENROLL")
    page = client.get(flow_url(token)).content.decode()
    for label in ("Pass all", "Liveness fails", "Deepfake detected", "Poor quality", "Abandon", "Cancel"):
        assert f">{label}</button>" in page

    response = post_step(client, token, "outcome", outcome="pass")
    assert response.status_code == 303
    assert response["Location"] == RETURN_URL
    status = get_status(client, token)
    assert (status["status"], status["nextStep"]) == ("DONE", None)
    assert status["uiHints"] == {"needCaptcha": False}
    assert SandboxSession.objects.get().finished_at is not None


def assert_scope_results(result: dict[str, Any], scopes: list[str], *, failing: str = "") -> None:
    for scope in ("liveness", "deepfake"):
        if scope not in scopes:
            assert scope not in result
            continue
        entry = result[scope]
        assert set(entry) == {"fine", "score"}
        if scope == failing:
            assert entry["fine"] is False and entry["score"] < 0.5
        else:
            assert entry["fine"] is True and entry["score"] >= 0.9
    if "search" in scopes:
        assert set(result["search"]) == {"similarity", "templateId"}
        assert 0.8 < result["search"]["similarity"] < 1
        uuid.UUID(result["search"]["templateId"])
    else:
        assert "search" not in result
    if "enroll" in scopes:
        assert set(result["enroll"]) == {"templateId"}
        uuid.UUID(result["enroll"]["templateId"])
    else:
        assert "enroll" not in result


def assert_face_parts(result: dict[str, Any]) -> None:
    quality = result["quality"]
    for angle in ("yaw", "pitch", "roll"):
        assert isinstance(quality[angle], float)
    checks = {key: value for key, value in quality.items() if key not in ("yaw", "pitch", "roll")}
    assert {"blur", "flare", "exposure", "occlusion", "leftEyeClosed", "rightEyeClosed"} <= set(checks)
    for check in checks.values():
        assert isinstance(check["fine"], bool) and isinstance(check["score"], float)
    assert set(result["box"]) == {"x", "y", "w", "h"}
    assert all(len(point) == 2 for point in result["landmarks"]) and result["landmarks"]
    assert set(result["demography"]) == {"age", "race", "gender"}


def finish(client: Client, scopes: list[str], outcome: str, **body: Any):
    token = create_session(client, scopes=scopes, **body)["token"]
    walk_to_outcome(client, token, scopes)
    response = post_step(client, token, "outcome", outcome=outcome)
    return token, response


@pytest.mark.parametrize("scopes", [ALL_SCOPES, ["liveness"], ["search", "enroll"]])
def test_outcome_pass_all(client, scopes):
    token, _ = finish(client, scopes, "pass")
    status = get_status(client, token)
    assert status["status"] == "DONE"
    assert_scope_results(status["result"], scopes)
    assert_face_parts(status["result"])
    assert all(
        check["fine"] for key, check in status["result"]["quality"].items() if key not in ("yaw", "pitch", "roll")
    )


def test_outcome_liveness_fails(client):
    token, _ = finish(client, ALL_SCOPES, "liveness_fails")
    status = get_status(client, token)
    assert (status["status"], status["nextStep"]) == ("FAILED", None)
    assert_scope_results(status["result"], ALL_SCOPES, failing="liveness")
    assert_face_parts(status["result"])


def test_outcome_deepfake_detected(client):
    token, _ = finish(client, ["liveness", "deepfake"], "deepfake_detected")
    status = get_status(client, token)
    assert status["status"] == "FAILED"
    assert_scope_results(status["result"], ["liveness", "deepfake"], failing="deepfake")


def test_outcome_poor_quality(client):
    token, _ = finish(client, ["liveness", "deepfake"], "poor_quality")
    status = get_status(client, token)
    assert status["status"] == "DONE"
    assert_scope_results(status["result"], ["liveness", "deepfake"])
    assert_face_parts(status["result"])
    quality = status["result"]["quality"]
    failing = [key for key, value in quality.items() if isinstance(value, dict) and not value["fine"]]
    assert len(failing) >= 2


def test_outcome_cancel(client):
    token, response = finish(client, ["liveness"], "cancel", returnUrl=RETURN_URL)
    assert (response.status_code, response["Location"]) == (303, RETURN_URL)
    status = get_status(client, token)
    assert (status["status"], status["nextStep"], status["result"]) == ("CANCELED", None, {})


def test_outcome_abandon_changes_nothing(client, fake_http, sync_callbacks, django_capture_on_commit_callbacks):
    fake_http.post(CALLBACK_URL, status=204)
    token = create_session(client, scopes=["liveness"], callbackUrl=CALLBACK_URL, returnUrl=RETURN_URL)["token"]
    walk_to_outcome(client, token, ["liveness"])
    before = get_status(client, token)
    with django_capture_on_commit_callbacks(execute=True) as scheduled:
        response = post_step(client, token, "outcome", outcome="abandon")
    assert (response.status_code, response["Location"]) == (303, RETURN_URL)
    assert scheduled == []
    assert len(fake_http.calls) == 0
    assert get_status(client, token) == before
    assert before["status"] == "IN_PROGRESS"
    # The link still works until it expires.
    assert client.get(flow_url(token)).status_code == 200
    SandboxSession.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert get_status(client, token)["status"] == "EXPIRED"


def test_final_outcome_without_return_url_shows_closing_page(client):
    _, response = finish(client, ["liveness"], "pass")
    assert response.status_code == 200
    assert "You can close this page" in response.content.decode()
    _, response = finish(client, ["liveness"], "abandon")
    assert response.status_code == 200
    assert "You can close this page" in response.content.decode()


def test_outcomes_for_missing_scopes_are_not_offered(client):
    token = create_session(client, scopes=["search"])["token"]
    walk_to_outcome(client, token, ["search"])
    page = client.get(flow_url(token)).content.decode()
    assert "Liveness fails" not in page and "Deepfake detected" not in page
    for outcome in ("liveness_fails", "deepfake_detected", "", "explode"):
        response = post_step(client, token, "outcome", outcome=outcome)
        assert response.status_code == 200
        assert "Choose one of the outcomes." in response.content.decode()
    assert get_status(client, token)["status"] == "IN_PROGRESS"


def test_stale_or_repeated_posts_change_nothing(client):
    token = create_session(client, scopes=["liveness", "deepfake"])["token"]
    # An outcome before the steps, a missing step field, a step from elsewhere.
    for data in ({"step": "outcome", "outcome": "pass"}, {}, {"step": "scope-0"}):
        response = client.post(flow_url(token), data)
        assert (response.status_code, response["Location"]) == (303, flow_url(token))
    assert get_status(client, token)["status"] == "CREATED"

    post_step(client, token, "captcha", not_a_robot="yes")
    post_step(client, token, "start")
    # A double submit of the first step advances once.
    post_step(client, token, "scope-0")
    post_step(client, token, "scope-0")
    assert get_status(client, token)["nextStep"] == "DEEPFAKE"
    assert SandboxSession.objects.get().step_index == 1


def test_hosted_page_headers(client):
    token = create_session(client)["token"]
    response = client.get(flow_url(token))
    assert "no-store" in response["Cache-Control"]
    assert response["Referrer-Policy"] == "same-origin"
    assert "noindex" in response["X-Robots-Tag"]


def test_hosted_page_enforces_csrf():
    client = Client(enforce_csrf_checks=True)
    token = create_session(client)["token"]
    assert client.post(flow_url(token), {"step": "captcha", "not_a_robot": "yes"}).status_code == 403
    assert get_status(client, token)["status"] == "CREATED"


def test_hosted_page_unknown_token_is_404(client):
    response = client.get(flow_url("no-such-token"))
    assert response.status_code == 404
    assert client.post(flow_url("no-such-token"), {"step": "captcha"}).status_code == 404


# --- one-time link and expiry ------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["pass", "liveness_fails", "poor_quality", "cancel"])
def test_link_is_gone_after_a_final_outcome(client, outcome):
    token, _ = finish(client, ["liveness"], outcome)
    final = get_status(client, token)
    response = client.get(flow_url(token))
    assert response.status_code == 410
    assert "This link is no longer valid" in response.content.decode()
    for step in ("outcome", "captcha", "start"):
        response = post_step(client, token, step, outcome="cancel", not_a_robot="yes")
        assert response.status_code == 410
    assert get_status(client, token) == final


def test_expired_session_reports_expired_and_link_is_gone(client):
    token = create_session(client, scopes=["liveness"], ttlSec=60)["token"]
    post_step(client, token, "captcha", not_a_robot="yes")
    SandboxSession.objects.update(expires_at=timezone.now() - datetime.timedelta(milliseconds=5))
    status = get_status(client, token)
    assert (status["status"], status["nextStep"], status["uiHints"]) == ("EXPIRED", None, {"needCaptcha": False})
    assert client.get(flow_url(token)).status_code == 410
    assert post_step(client, token, "start").status_code == 410
    # Reading never wrote: the stored row keeps its last real status.
    assert SandboxSession.objects.get().status == "CAPTCHA_OK"


def test_expiry_does_not_touch_a_final_status(client):
    token, _ = finish(client, ["liveness"], "pass")
    SandboxSession.objects.update(expires_at=timezone.now() - datetime.timedelta(hours=1))
    assert get_status(client, token)["status"] == "DONE"


# --- callback -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [("pass", "DONE"), ("liveness_fails", "FAILED"), ("poor_quality", "DONE"), ("cancel", "CANCELED")],
)
def test_callback_posted_once_with_status_body(
    client, fake_http, sync_callbacks, django_capture_on_commit_callbacks, outcome, expected
):
    fake_http.post(CALLBACK_URL, status=200)
    scopes = ["liveness", "deepfake"]
    token = create_session(client, scopes=scopes, callbackUrl=CALLBACK_URL, returnUrl=RETURN_URL)["token"]
    walk_to_outcome(client, token, scopes)
    assert len(fake_http.calls) == 0

    with django_capture_on_commit_callbacks(execute=True) as scheduled:
        response = post_step(client, token, "outcome", outcome=outcome)
    assert (response.status_code, response["Location"]) == (303, RETURN_URL)
    assert len(scheduled) == 1
    assert len(fake_http.calls) == 1
    request = fake_http.calls[0].request
    assert request.method == "POST"
    assert request.url == CALLBACK_URL
    assert request.headers["Content-Type"] == "application/json"
    assert not any(name.lower().startswith(("app-", "x-signature", "webhook-")) for name in request.headers)
    assert 0 < request.req_kwargs["timeout"] <= 10
    body = json.loads(request.body)
    assert body == get_status(client, token)
    assert body["status"] == expected

    # Replays and later reads send nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        assert post_step(client, token, "outcome", outcome=outcome).status_code == 410
        get_status(client, token)
    assert len(fake_http.calls) == 1


def test_callback_waits_for_commit(client, fake_http, sync_callbacks, django_capture_on_commit_callbacks):
    fake_http.post(CALLBACK_URL, status=200)
    token = create_session(client, scopes=["liveness"], callbackUrl=CALLBACK_URL)["token"]
    walk_to_outcome(client, token, ["liveness"])
    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        post_step(client, token, "outcome", outcome="pass")
    assert len(scheduled) == 1
    assert len(fake_http.calls) == 0
    scheduled[0]()
    assert len(fake_http.calls) == 1


def test_no_callback_without_callback_url(client, fake_http, sync_callbacks, django_capture_on_commit_callbacks):
    token = create_session(client, scopes=["liveness"])["token"]
    walk_to_outcome(client, token, ["liveness"])
    with django_capture_on_commit_callbacks(execute=True) as scheduled:
        post_step(client, token, "outcome", outcome="pass")
    assert scheduled == []
    assert len(fake_http.calls) == 0


def test_callback_runs_in_a_background_thread_by_default(client, fake_http, django_capture_on_commit_callbacks):
    senders: list[threading.Thread] = []
    delivered = threading.Event()

    def receiver(request):
        senders.append(threading.current_thread())
        delivered.set()
        return 200, {}, ""

    fake_http.add_callback(responses.POST, CALLBACK_URL, callback=receiver)
    token = create_session(client, scopes=["liveness"], callbackUrl=CALLBACK_URL)["token"]
    walk_to_outcome(client, token, ["liveness"])
    with django_capture_on_commit_callbacks(execute=True):
        post_step(client, token, "outcome", outcome="pass")
    assert delivered.wait(timeout=5)
    senders[0].join(timeout=5)
    assert senders[0] is not threading.main_thread()
    assert senders[0].name == callbacks.THREAD_NAME and senders[0].daemon
    assert len(fake_http.calls) == 1
    assert json.loads(fake_http.calls[0].request.body)["status"] == "DONE"


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 500},
        {"status": 404},
        {"body": requests.ConnectionError("connection refused to " + CALLBACK_URL)},
        {"body": requests.Timeout("read timed out")},
    ],
)
def test_callback_failure_is_swallowed_logged_and_not_retried(fake_http, caplog, reply):
    fake_http.post(CALLBACK_URL, **reply)
    caplog.set_level(logging.INFO, logger="verification_link.sandbox")
    outcome = callbacks.send_callback(CALLBACK_URL, {"status": "DONE"}, session_id="sid-1")
    assert outcome == reply.get("status")
    assert len(fake_http.calls) == 1
    assert "sid-1" in caplog.text and "https://site.example" in caplog.text
    assert "per-session-secret" not in caplog.text


def test_callback_failure_does_not_break_the_page(
    client, fake_http, sync_callbacks, django_capture_on_commit_callbacks
):
    fake_http.post(CALLBACK_URL, body=requests.ConnectionError("down"))
    token = create_session(client, scopes=["liveness"], callbackUrl=CALLBACK_URL, returnUrl=RETURN_URL)["token"]
    walk_to_outcome(client, token, ["liveness"])
    with django_capture_on_commit_callbacks(execute=True):
        response = post_step(client, token, "outcome", outcome="pass")
    assert (response.status_code, response["Location"]) == (303, RETURN_URL)
    assert get_status(client, token)["status"] == "DONE"


# --- methods ------------------------------------------------------------------------------------------


def test_wrong_methods_are_405(client):
    token = create_session(client)["token"]
    cases = [
        ("get", create_url(), "POST"),
        ("put", create_url(), "POST"),
        ("delete", create_url(), "POST"),
        ("post", status_url(token), "GET"),
        ("put", status_url(token), "GET"),
        ("patch", status_url(token), "GET"),
        ("delete", status_url(token), "GET"),
    ]
    for method, url, allowed in cases:
        response = getattr(client, method)(url, headers=APP_HEADERS)
        assert_error(response, 405)
        assert response["Allow"] == allowed
    # Even without credentials the method is checked first.
    assert client.get(create_url()).status_code == 405
    for method in ("put", "delete", "patch"):
        assert getattr(client, method)(flow_url(token)).status_code == 405
    assert get_status(client, token)["status"] == "CREATED"


# --- every outcome, reaching the site's session through the real provider -------------------------------

E2E_ALIAS = "sandbox"
E2E_ORIGIN = "http://testserver"


@pytest.fixture
def site(settings):
    """An OOTO alias pointed at this very sandbox; callbacks posted inline to the site's callback URL
    (``PUBLIC_BASE_URL`` is the test client's origin) and confirmed by a Get Status at once."""
    providers = {
        **settings.VERIFICATION_LINK["PROVIDERS"],
        E2E_ALIAS: {
            "BACKEND": "verification_link.providers.ooto.OotoProvider",
            "APP_ID": APP_ID,
            "APP_KEY": APP_KEY,
            "BASE_URL": f"{E2E_ORIGIN}/sandbox/ooto",
            "SCOPES": ["liveness", "deepfake"],
            "TTL": 3600,
        },
    }
    settings.VERIFICATION_LINK = {
        **settings.VERIFICATION_LINK,
        "PROVIDERS": providers,
        "PUBLIC_BASE_URL": E2E_ORIGIN,
        "CALLBACK_COALESCE_SECONDS": 0,  # the callback asks the provider, however recent the create
    }
    settings.VERIFICATION_LINK_SANDBOX = {"CALLBACK_SYNC": True}
    with site_over_requests(E2E_ORIGIN) as wire:
        yield wire


def start_and_walk(client: Client, user, scopes: list[str] | None = None):
    from verification_link import services

    session = services.start_verification(user=user, provider=E2E_ALIAS, scopes=scopes)
    assert session.url == f"{E2E_ORIGIN}{flow_url(session.token)}"
    walk_to_outcome(client, session.token, session.scopes)
    return session


@pytest.mark.urls("tests.urls")
@pytest.mark.parametrize(
    ("outcome", "status", "decision"),
    [
        ("pass", "DONE", "approved"),
        ("needs_review", "DONE", "review"),
        ("liveness_fails", "FAILED", "rejected"),
        ("deepfake_detected", "FAILED", "rejected"),
        ("poor_quality", "DONE", "approved"),  # as its hint says: quality warnings alone do not fail
        ("expire_now", "EXPIRED", ""),
        ("cancel", "CANCELED", ""),
    ],
)
def test_each_outcome_reaches_the_session_by_the_callback(
    client, site, user, signal_log, commit, outcome, status, decision
):
    from verification_link.models import VerificationEvent

    session = start_and_walk(client, user)
    with commit():
        response = post_step(client, session.token, "outcome", outcome=outcome)
    assert (response.status_code, response["Location"]) == (303, f"{E2E_ORIGIN}/verify/s/{session.pk}/return/")

    session.refresh_from_db()
    assert (session.status, session.decision) == (status, decision)
    callback = VerificationEvent.objects.get(session=session, kind=VerificationEvent.Kind.CALLBACK)
    assert (callback.valid, callback.processed) == (True, True)
    assert [kwargs["status"] for kwargs in signal_log.of("verification_finished")] == [status]
    assert [kwargs["source"] for kwargs in signal_log.of("verification_finished")] == ["callback"]


@pytest.mark.urls("tests.urls")
@pytest.mark.parametrize("scopes", [["liveness", "deepfake"], ["deepfake", "liveness"], ["search"], ["enroll"]])
def test_needs_review_leaves_the_first_check_inconclusive_for_any_scopes(client, site, user, commit, scopes):
    from verification_link.providers import get_provider

    session = start_and_walk(client, user, scopes=scopes)
    with commit():
        post_step(client, session.token, "outcome", outcome="needs_review")
    session.refresh_from_db()
    assert (session.status, session.decision) == ("DONE", "review")
    checks = get_provider(E2E_ALIAS).scope_outcomes(session.scopes, session.result)
    assert checks[scopes[0]] is not True  # the one the policy cannot approve
    assert all(checks[scope] is True for scope in scopes[1:])
    assert_face_parts(session.result)


@pytest.mark.urls("tests.urls")
def test_expire_now_is_learned_by_a_poll_when_no_callback_arrives(client, site, user, signal_log, commit):
    from verification_link import services

    session = start_and_walk(client, user)
    # The test's transaction never commits: the sandbox's on-commit callback is never sent.
    post_step(client, session.token, "outcome", outcome="expire_now")
    session.refresh_from_db()
    assert session.status == "CREATED"  # nothing told the site yet
    status = get_status(client, session.token)
    assert (status["status"], status["nextStep"], status["result"]) == ("EXPIRED", None, {})
    assert client.get(flow_url(session.token)).status_code == 410

    with commit():
        session = services.refresh_session(session, source="poll")
    assert (session.status, session.decision) == ("EXPIRED", "")
    assert [kwargs["source"] for kwargs in signal_log.of("verification_finished")] == ["poll"]


def test_expire_now_on_the_wire(client, fake_http, sync_callbacks, django_capture_on_commit_callbacks):
    fake_http.post(CALLBACK_URL, status=204)
    token = create_session(client, scopes=["liveness"], callbackUrl=CALLBACK_URL, returnUrl=RETURN_URL)["token"]
    walk_to_outcome(client, token, ["liveness"])
    with django_capture_on_commit_callbacks(execute=True):
        response = post_step(client, token, "outcome", outcome="expire_now")
    assert (response.status_code, response["Location"]) == (303, RETURN_URL)
    body = json.loads(fake_http.calls[0].request.body)
    assert (body["status"], body["nextStep"], body["result"]) == ("EXPIRED", None, {})
    stored = SandboxSession.objects.get()
    assert stored.status == "EXPIRED" and stored.expires_at <= timezone.now()
    assert body == get_status(client, token)


def test_the_picker_says_what_the_default_policy_decides(client):
    token = create_session(client, scopes=["liveness", "deepfake"])["token"]
    walk_to_outcome(client, token, ["liveness", "deepfake"])
    html = client.get(flow_url(token)).content.decode()
    for value, label in (("needs_review", "Needs review"), ("expire_now", "Let it expire now")):
        assert f'value="{value}" aria-describedby="hint-{value}"' in html
        assert f">{label}</button>" in html
    hint = re.search(r'<p class="hint" id="hint-poor_quality">([^<]+)</p>', html).group(1)
    assert "Quality warnings alone do not fail the check" in hint and "approves" in hint
    assert "sends the session to review" in re.search(r'id="hint-needs_review">([^<]+)<', html).group(1)
    assert "rejects" in re.search(r'id="hint-liveness_fails">([^<]+)<', html).group(1)
    assert 'id="custom-policy"' not in html


def test_the_picker_warns_when_the_site_replaced_the_policy(client, settings):
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "DECISION_POLICY": "myshop.policy.decide"}
    token = create_session(client, scopes=["liveness"])["token"]
    walk_to_outcome(client, token, ["liveness"])
    html = client.get(flow_url(token)).content.decode()
    assert 'id="custom-policy"' in html and "myshop.policy.decide" in html
