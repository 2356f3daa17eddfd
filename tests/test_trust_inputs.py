"""Hostile JSON, hostile settings and what reaches a log line — at the boundaries the inbound
contract (tests/inbound_base.py) does not reach: provider answers, the REST API, site metadata,
guarding settings read at use, reprs and third-party loggers."""

import json
import logging
import sys

import pytest
import responses
from rest_framework.test import APIClient

from verification_link import conf, services
from verification_link.exceptions import InvalidRequest, ProviderUnavailable
from verification_link.jsonbody import MAX_DEPTH, InvalidJSON, parse_json, storable, without_keys
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import CreateRequest, StatusReport, WebhookReport, get_provider
from verification_link.results import redact
from verification_link.testing import OotoServer

GET_STATUS = "https://cloud.ooto-ai.com/api/v1.0/flow/sessions/"


# -- one depth limit, finite numbers, iterative walkers ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        '{"a":' * 5000 + "1" + "}" * 5000,  # Python 3.13's json parses this without complaint
        "1e400",
        "[-1e400]",
        '{"a": NaN}',
        "1" * 101,
    ],
    ids=["just-too-deep", "5000-deep", "inf", "-inf", "nan", "101-digits"],
)
def test_parse_json_refuses_what_no_database_stores(text):
    with pytest.raises(InvalidJSON):
        parse_json(text)
    with pytest.raises(ValueError):  # InvalidJSON is a ValueError: old callers keep working
        parse_json(text.encode())


def test_brackets_inside_strings_do_not_count_and_the_limit_itself_parses():
    assert parse_json(json.dumps({"text": "[" * 10_000})) == {"text": "[" * 10_000}
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(at_limit) is not None


def test_the_walkers_are_iterative_whatever_the_interpreter_allows():
    deep: list = []
    cursor = deep
    for _ in range(sys.getrecursionlimit() * 3):
        cursor.append([])
        cursor = cursor[0]
    with pytest.raises(InvalidJSON):
        storable(deep)
    with pytest.raises(InvalidJSON):
        without_keys(deep, {"x"})
    cycle: dict = {}
    cycle["self"] = cycle
    with pytest.raises(InvalidJSON):
        storable(cycle)
    assert storable({"a": ["x\x00", {"b": "\ud800"}], "n": 1.5}) == {"a": ["x\ufffd", {"b": "\ufffd"}], "n": 1.5}
    assert without_keys({"a": {"secret": 1, "b": [{"secret": 2, "c": 3}]}}, {"secret"}) == {"a": {"b": [{"c": 3}]}}


@pytest.mark.django_db
def test_metadata_that_cannot_be_stored_is_an_invalid_request(fake_ooto, user):
    deep: dict = {}
    cursor = deep
    for _ in range(MAX_DEPTH + 5):
        cursor["a"] = {}
        cursor = cursor["a"]
    for metadata in (deep, {"score": float("inf")}):
        with pytest.raises(InvalidRequest):
            services.start_verification(user=user, metadata=metadata)
    assert not VerificationSession.objects.exists()
    assert fake_ooto.calls("POST") == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "answer",
    [
        b'{"status": "DONE", "nextStep": null, "result": {"liveness": {"fine": true, "score": 1e400}}}',
        b'{"status": "DONE", "nextStep": null, "result": {"liveness": {"fine": true, "score": NaN}}}',
        b'{"status": "DONE", "nextStep": null, "result": ' + b"[" * 100 + b"]" * 100 + b"}",
        b'{"status": "IN_PROGRESS", "nextStep": "LIVENESS", "expiresAt": "2024-02-30T00:00:00Z"}',
    ],
    ids=["1e400", "NaN", "deep", "impossible-date"],
)
def test_a_provider_answer_that_cannot_be_stored_is_provider_unavailable(fake_ooto, user, answer):
    session = services.start_verification(user=user)
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, GET_STATUS + session.token, body=answer, content_type="application/json")
        with pytest.raises(ProviderUnavailable):
            services.refresh_session(session)
    session.refresh_from_db()
    assert session.status == "CREATED"
    assert VerificationEvent.objects.filter(session=session, kind="poll_failed").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        b'{"metadata": {"score": 1e400}}',
        b'{"metadata": {"a": NaN}}',
        b'{"metadata": ' + b'{"a":' * 70 + b"1" + b"}" * 71,
    ],
    ids=["1e400", "NaN", "deep"],
)
def test_the_api_refuses_non_finite_and_deep_input_with_400(fake_ooto, user, body):
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/verify/api/sessions/", data=body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert not VerificationSession.objects.exists()
    assert fake_ooto.calls("POST") == []


# -- guarding settings, validated where they are used -------------------------------------------------


def test_sensitive_keys_given_as_a_string_still_hide_the_defaults_and_log_the_key(vl_settings, caplog):
    # set("demography") would be a set of letters: nothing would be hidden.
    vl_settings(SENSITIVE_RESULT_KEYS="demography")
    result = {"liveness": {"fine": True}, "demography": {"age": 31}, "landmarks": [[1, 2]], "box": {"x": 1}}
    with caplog.at_level(logging.ERROR, logger="verification_link"):
        shown = redact(result, sensitive=False)
    assert shown == {"liveness": {"fine": True}}
    assert 'VERIFICATION_LINK["SENSITIVE_RESULT_KEYS"]' in caplog.text
    assert "demography" not in caplog.text.replace('"SENSITIVE_RESULT_KEYS"', "")


@pytest.mark.parametrize(
    ("name", "value", "meant"),
    [
        ("MAX_EVENT_BODY_BYTES", "64k", 65536),  # unreadable: the default
        ("MAX_EVENT_BODY_BYTES", -1, 65536),
        ("MAX_EVENT_BODY_BYTES", True, 65536),
        ("MAX_EVENT_BODY_BYTES", "1024", 1024),  # an environment variable as it is read: as meant
        ("RETENTION_DAYS", "30", 30),  # never the default 90: that would keep data three times longer
        ("RETENTION_DAYS", 0, 90),
        ("PURGE_BATCH_SIZE", 50_000, 500),  # past SQLite's variables per statement
        ("DISCARD_RESULT_KEYS", "box", ["box"]),  # a string names one key, not its letters
        ("DISCARD_RESULT_KEYS", 5, []),
        ("SENSITIVE_RESULT_KEYS", "selfie", ["box", "demography", "landmarks", "selfie"]),
        ("CALLBACK_COALESCE_SECONDS", "soon", 5),
        ("API_THROTTLE_RATE", "lots", "60/minute"),
    ],
)
def test_each_guard_reads_what_was_meant_or_its_default_and_names_the_key(vl_settings, caplog, name, value, meant):
    vl_settings(**{name: value})
    with caplog.at_level(logging.ERROR, logger="verification_link"):
        assert conf.guarded(name) == meant
    assert f'VERIFICATION_LINK["{name}"]' in caplog.text


def test_valid_guards_are_read_silently(vl_settings, caplog):
    vl_settings(RETENTION_DAYS=30, DISCARD_RESULT_KEYS=[], SENSITIVE_RESULT_KEYS=[], MAX_EVENT_BODY_BYTES=1024)
    with caplog.at_level(logging.ERROR, logger="verification_link"):
        assert conf.guarded("RETENTION_DAYS") == 30
        assert conf.guarded("DISCARD_RESULT_KEYS") == []
        assert conf.guarded("SENSITIVE_RESULT_KEYS") == []
        assert conf.guarded("MAX_EVENT_BODY_BYTES") == 1024
    assert caplog.text == ""


@pytest.mark.django_db
def test_a_callback_with_a_misconfigured_body_limit_is_still_answered(client, fake_ooto, user, vl_settings):
    session = services.start_verification(user=user)
    vl_settings(MAX_EVENT_BODY_BYTES="64k")
    url = f"/verify/callback/ooto/{session.callback_secret}/"
    assert client.post(url, data=b"{}", content_type="application/json").status_code == 202
    body = b'{"padding": "' + b"x" * 70_000 + b'"}'
    assert client.post(url, data=body, content_type="application/json").status_code == 413


# -- reprs and third-party loggers ---------------------------------------------------------------------


def test_reprs_hide_secrets_and_identity_data():
    import uuid

    create = CreateRequest(
        session_id=uuid.uuid4(),
        scopes=["liveness"],
        metadata={"email": "ann@example.com"},
        callback_url="https://site.example/verify/callback/ooto/CALLBACK-SECRET/",
        return_url="https://site.example/verify/s/x/return/",
        ttl=60,
    )
    report = StatusReport(status="DONE", result={"demography": {"age": "AGE-VALUE", "race": "RACE-VALUE"}})
    webhook = WebhookReport(token="TOKEN-SECRET", reference="ref", report=report)
    text = repr(create) + repr(report) + repr(webhook)
    for secret in ("CALLBACK-SECRET", "ann@example.com", "RACE-VALUE", "TOKEN-SECRET", "AGE-VALUE"):
        assert secret not in text
    assert "demography" in text and "DONE" in text  # still useful in a traceback


@pytest.mark.django_db
def test_urllib3_request_lines_to_a_provider_hide_the_token(settings, user, caplog):
    with OotoServer(app_id="test-app-id", app_key="test-app-key-SECRET") as server:
        config = settings.VERIFICATION_LINK
        ooto = {**config["PROVIDERS"]["ooto"], "BASE_URL": server.base_url}
        settings.VERIFICATION_LINK = {**config, "PROVIDERS": {**config["PROVIDERS"], "ooto": ooto}}
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="urllib3")
        session = services.start_verification(user=user)
        services.refresh_session(session)
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("urllib3")]
    assert any('"GET [hidden] HTTP/1.1" 200' in line for line in lines), lines
    assert session.token not in caplog.text


def test_the_provider_of_a_repr_never_shows_its_credentials():
    assert "test-app-key-SECRET" not in repr(get_provider("ooto"))


def test_failure_text_keeps_the_type_and_the_frames_not_the_message():
    from verification_link.logsafe import failure_text

    secret = "-".join(["TOKEN", "VALUE"])  # built at run time: not in any source line
    try:
        raise ValueError(f"duplicate key (token)=({secret})")
    except ValueError as exc:
        text = failure_text(exc)
    assert text.startswith("ValueError\n") and "test_trust_inputs.py" in text
    assert secret not in text
