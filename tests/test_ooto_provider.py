"""OotoProvider: the wire format of both calls and the mapping of every failure to a typed error."""

import json
import uuid
from datetime import datetime, timezone

import pytest
import requests
import responses

from verification_link.exceptions import (
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from verification_link.providers import CreateRequest, get_provider
from verification_link.providers.ooto import OotoProvider
from verification_link.testing import VerificationSessionFactory

BASE = "https://cloud.ooto-ai.com"
CREATE_URL = BASE + "/api/v1.0/flow/sessions"


def status_url(token):
    return f"{CREATE_URL}/{token}"


@pytest.fixture
def ooto():
    return get_provider("ooto")


@pytest.fixture
def mocked():
    with responses.RequestsMock() as rsps:
        yield rsps


def create_request(**overrides):
    values = {
        "session_id": uuid.uuid4(),
        "scopes": ["liveness", "deepfake"],
        "metadata": {"order": 7},
        "callback_url": "https://www.example.com/verify/callback/ooto/s3cr3t/",
        "return_url": "https://www.example.com/verify/s/x/return/",
        "ttl": 600,
    }
    values.update(overrides)
    return CreateRequest(**values)


def test_create_wire_format(ooto, mocked):
    mocked.post(CREATE_URL, json={"sessionId": "sid-1", "token": "tok-1", "url": f"{BASE}/flow/tok-1"})
    created = ooto.create_session(create_request())
    call = mocked.calls[0]
    assert call.request.method == "POST"
    assert call.request.url == CREATE_URL
    assert call.request.headers["APP-ID"] == "test-app-id"
    assert call.request.headers["APP-KEY"] == "test-app-key-SECRET"
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.body) == {
        "scopes": ["liveness", "deepfake"],
        "metadata": {"order": 7},
        "callbackUrl": "https://www.example.com/verify/callback/ooto/s3cr3t/",
        "returnUrl": "https://www.example.com/verify/s/x/return/",
        "ttlSec": 600,
    }
    assert (created.external_id, created.token, created.url) == ("sid-1", "tok-1", f"{BASE}/flow/tok-1")


def test_status_is_looked_up_by_token_in_the_path(ooto, mocked, db):
    session = VerificationSessionFactory(token="tok/with?odd#chars", external_id="sid-9")
    mocked.get(
        status_url("tok%2Fwith%3Fodd%23chars"),
        json={
            "status": "IN_PROGRESS",
            "scopes": ["liveness"],
            "nextStep": "LIVENESS",
            "expiresAt": "2025-09-23T13:43:31.114Z",
            "uiHints": {"needCaptcha": False},
            "returnUrl": None,
            "result": None,
        },
    )
    report = ooto.get_status(session)
    call = mocked.calls[0]
    assert call.request.method == "GET"
    assert call.request.headers["APP-ID"] == "test-app-id"
    assert call.request.headers["APP-KEY"] == "test-app-key-SECRET"
    assert "sid-9" not in call.request.url
    assert report.status == "IN_PROGRESS"
    assert report.next_step == "LIVENESS"
    assert report.result == {}
    assert report.expires_at == datetime(2025, 9, 23, 13, 43, 31, 114000, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-09-23T13:43:31.114Z", datetime(2025, 9, 23, 13, 43, 31, 114000, tzinfo=timezone.utc)),
        ("2025-09-23T13:43:31Z", datetime(2025, 9, 23, 13, 43, 31, tzinfo=timezone.utc)),
        ("2025-09-23T15:43:31.5+02:00", datetime(2025, 9, 23, 13, 43, 31, 500000, tzinfo=timezone.utc)),
        (None, None),
    ],
)
def test_expires_at_parsing(ooto, raw, expected):
    report = ooto.parse_status({"status": "CREATED", "nextStep": None, "expiresAt": raw})
    assert report.expires_at == expected


def test_timeouts_are_explicit_and_configurable(ooto, mocked, vl_settings, settings):
    mocked.post(CREATE_URL, json={"sessionId": "s", "token": "t", "url": f"{BASE}/flow/t"})
    ooto.create_session(create_request())
    assert mocked.calls[0].request.req_kwargs["timeout"] == (5.0, 15.0)

    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers["ooto"] = {**providers["ooto"], "CONNECT_TIMEOUT": 1.5, "READ_TIMEOUT": 2.5}
    vl_settings(PROVIDERS=providers)
    get_provider("ooto").create_session(create_request())
    assert mocked.calls[1].request.req_kwargs["timeout"] == (1.5, 2.5)


def test_one_pooled_http_session_per_provider_instance(ooto, mocked, db):
    mocked.post(CREATE_URL, json={"sessionId": "s", "token": "t", "url": f"{BASE}/flow/t"})
    assert get_provider("ooto") is ooto
    assert isinstance(ooto.http, requests.Session)
    http_before = ooto.http
    ooto.create_session(create_request())
    ooto.create_session(create_request())
    assert ooto.http is http_before
    assert ooto.http.get_adapter("https://cloud.ooto-ai.com")._pool_maxsize == OotoProvider.pool_size
    assert get_provider("ooto_eu") is not ooto
    assert get_provider("ooto_eu").http is not ooto.http


ERROR_BODY = {"transactionId": "x", "result": {"status": "error", "code": 37, "info": "bad scope"}}


@pytest.mark.parametrize(
    ("status", "body", "error", "code", "retryable"),
    [
        (401, ERROR_BODY, ProviderAuthError, 37, False),
        (403, None, ProviderAuthError, None, False),
        (400, ERROR_BODY, ProviderRejected, 37, False),
        (404, {"code": "not_found"}, ProviderRejected, "not_found", False),
        (409, "plain text", ProviderRejected, None, False),
        (422, ERROR_BODY, ProviderRejected, 37, False),
        (429, None, ProviderRejected, None, True),
        (500, ERROR_BODY, ProviderUnavailable, 37, True),
        (502, "<html>bad gateway</html>", ProviderUnavailable, None, True),
        (503, None, ProviderUnavailable, None, True),
        (302, None, ProviderUnavailable, None, True),
    ],
)
def test_http_error_mapping(ooto, mocked, status, body, error, code, retryable):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body or ""}
    mocked.post(CREATE_URL, status=status, **kwargs)
    with pytest.raises(error) as info:
        ooto.create_session(create_request())
    assert info.value.status_code == status
    assert info.value.code == code
    assert info.value.retryable is retryable
    assert info.value.provider == "ooto"
    assert type(info.value) is error


@pytest.mark.parametrize(
    ("exception", "message"),
    [
        (requests.ConnectTimeout("connect timed out"), "timed out"),
        (requests.ReadTimeout("read timed out"), "timed out"),
        (requests.ConnectionError("refused"), "connection failed"),
        (requests.exceptions.SSLError("bad cert"), "connection failed"),
    ],
)
def test_network_failures_are_unavailable(ooto, mocked, exception, message):
    mocked.post(CREATE_URL, body=exception)
    with pytest.raises(ProviderUnavailable) as info:
        ooto.create_session(create_request())
    assert message in str(info.value)
    assert info.value.status_code is None
    assert info.value.retryable is True
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        "[1, 2, 3]",
        json.dumps({"sessionId": "s", "url": f"{BASE}/flow/t"}),  # no token
        json.dumps({"sessionId": "s", "token": "t"}),  # no url
        json.dumps({"sessionId": "s", "token": "t", "url": "javascript:alert(1)"}),
        json.dumps({"sessionId": 5, "token": "t", "url": f"{BASE}/flow/t"}),
    ],
)
def test_create_answers_of_the_wrong_shape_are_unavailable(ooto, mocked, body):
    mocked.post(CREATE_URL, body=body, content_type="application/json")
    with pytest.raises(ProviderUnavailable):
        ooto.create_session(create_request())


@pytest.mark.parametrize(
    "body",
    [
        {"status": "WEIRD"},
        {"status": "DONE", "nextStep": "DANCE"},
        {"status": "DONE", "result": [1]},
        {"status": "DONE", "expiresAt": "yesterday"},
        {"status": "DONE", "expiresAt": "2025-09-23T13:43:31"},  # no zone
        {"nextStep": None},
    ],
)
def test_status_answers_of_the_wrong_shape_are_unavailable(ooto, mocked, db, body):
    session = VerificationSessionFactory(token="tok")
    mocked.get(status_url("tok"), json=body)
    with pytest.raises(ProviderUnavailable):
        ooto.get_status(session)


def test_every_provider_error_is_a_provider_error():
    for cls in (ProviderAuthError, ProviderRejected, ProviderUnavailable):
        assert issubclass(cls, ProviderError)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"liveness": {"fine": True, "score": 0.1}}, {"liveness": True}),  # fine decides, not the score
        ({"liveness": {"fine": False, "score": 0.99}}, {"liveness": False}),
        ({}, {"liveness": None}),
        ({"liveness": {"score": 0.9}}, {"liveness": None}),
    ],
)
def test_scope_outcomes_read_fine_not_score(ooto, result, expected):
    assert ooto.scope_outcomes(["liveness"], result) == expected


def test_scope_outcomes_of_search_and_enroll(ooto):
    result = {"search": {"similarity": 0.9, "templateId": "t"}, "enroll": {}}
    assert ooto.scope_outcomes(["search", "enroll", "deepfake"], result) == {
        "search": True,
        "enroll": None,
        "deepfake": None,
    }


def test_adding_a_provider_needs_no_change_elsewhere(db, settings, mocked):
    """A provider defined only in a test module is configured, created, polled and decided on."""
    settings.VERIFICATION_LINK = {
        **settings.VERIFICATION_LINK,
        "DEFAULT_PROVIDER": "acme",
        "PROVIDERS": {"acme": {"BACKEND": "tests.acme_provider.AcmeProvider", "API_TOKEN": "k"}},
    }
    from django.core.management import call_command

    from verification_link import services

    mocked.post("https://acme.example/sessions", json={"id": "a1", "link": "https://acme.example/go/a1"})
    session = services.start_verification(scopes=["face"])
    assert session.url == "https://acme.example/go/a1"
    mocked.get("https://acme.example/sessions/a1", json={"state": "ok"})
    session = services.refresh_session(session)
    assert (session.status, session.decision) == ("DONE", "approved")
    call_command("check")
