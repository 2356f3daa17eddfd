"""The settings resolver (lazy, names the key to fix) and the system checks."""

import json
import logging
import re
from datetime import timedelta

import pytest
from django.core.checks import Tags, run_checks
from django.test import override_settings
from django.urls import reverse_lazy
from django.utils import timezone

from verification_link import conf, services
from verification_link.exceptions import ConfigurationError
from verification_link.models import VerificationSession
from verification_link.providers import get_provider

OOTO = {"BACKEND": "verification_link.providers.ooto.OotoProvider", "APP_ID": "id", "APP_KEY": "key"}


def vl_checks():
    # Only the settings checks: model checks may need the database (JSONField on Django 6.1+).
    return [m for m in run_checks(tags=[Tags.compatibility]) if m.id and m.id.startswith("verification_link.")]


def ids(messages):
    return sorted(m.id for m in messages)


def with_settings(**value):
    base = {"DEFAULT_PROVIDER": "ooto", "PROVIDERS": {"ooto": OOTO}, "PUBLIC_BASE_URL": "https://www.example.com"}
    base.update(value)
    return override_settings(VERIFICATION_LINK=base)


def test_the_test_settings_pass_every_check():
    assert vl_checks() == []


def test_settings_are_read_lazily():
    assert get_provider("ooto").setting("APP_KEY") == "test-app-key-SECRET"
    with with_settings(PROVIDERS={"ooto": {**OOTO, "APP_KEY": "rotated"}}):
        assert get_provider("ooto").setting("APP_KEY") == "rotated"
        assert conf.get("POLL_INTERVAL") == 10
    with override_settings(VERIFICATION_LINK={**conf.user_settings(), "POLL_INTERVAL": 3}):
        assert conf.get("POLL_INTERVAL") == 3
    assert get_provider("ooto").setting("APP_KEY") == "test-app-key-SECRET"


def test_several_aliases_share_a_backend_with_their_own_credentials():
    main, eu = get_provider("ooto"), get_provider("ooto_eu")
    assert type(main) is type(eu)
    assert main.auth_headers()["APP-KEY"] != eu.auth_headers()["APP-KEY"]
    assert eu.base_url == "https://eu.ooto.example"


def test_key_path():
    assert conf.key_path("PROVIDERS", "ooto", "APP_KEY") == 'VERIFICATION_LINK["PROVIDERS"]["ooto"]["APP_KEY"]'


def test_unknown_alias_names_the_key():
    with pytest.raises(ConfigurationError, match=r'VERIFICATION_LINK\["PROVIDERS"\].*ooto, ooto_eu'):
        get_provider("nope")


def test_single_provider_is_the_default():
    with with_settings(DEFAULT_PROVIDER=None):
        assert conf.default_provider() == "ooto"
        assert vl_checks() == []


@pytest.mark.parametrize(
    ("changes", "expected_id", "key"),
    [
        ({"DEFAULT_PROVIDER": "missing"}, "verification_link.E002", 'VERIFICATION_LINK["DEFAULT_PROVIDER"]'),
        (
            {"DEFAULT_PROVIDER": None, "PROVIDERS": {"a": OOTO, "b": OOTO}},
            "verification_link.E002",
            'VERIFICATION_LINK["DEFAULT_PROVIDER"]',
        ),
        (
            {"PROVIDERS": {"ooto": {**OOTO, "BACKEND": "nowhere.Provider"}}},
            "verification_link.E003",
            'VERIFICATION_LINK["PROVIDERS"]["ooto"]["BACKEND"]',
        ),
        (
            {"PROVIDERS": {"ooto": {**OOTO, "BACKEND": "django.http.HttpResponse"}}},
            "verification_link.E003",
            'VERIFICATION_LINK["PROVIDERS"]["ooto"]["BACKEND"]',
        ),
        (
            {"PROVIDERS": {"ooto": {k: v for k, v in OOTO.items() if k != "BACKEND"}}},
            "verification_link.E003",
            'VERIFICATION_LINK["PROVIDERS"]["ooto"]["BACKEND"]',
        ),
        (
            {"PROVIDERS": {"ooto": {**OOTO, "APP_KEY": ""}}},
            "verification_link.E004",
            'VERIFICATION_LINK["PROVIDERS"]["ooto"]["APP_KEY"]',
        ),
        (
            {"PROVIDERS": {"ooto": {k: v for k, v in OOTO.items() if k != "APP_ID"}}},
            "verification_link.E004",
            'VERIFICATION_LINK["PROVIDERS"]["ooto"]["APP_ID"]',
        ),
        (
            {"PROVIDERS": {"ooto": {**OOTO, "SCOPES": ["liveness", "palm"]}}},
            "verification_link.E005",
            'VERIFICATION_LINK["PROVIDERS"]["ooto"]["SCOPES"]',
        ),
        (
            {"PROVIDERS": {"ooto": {**OOTO, "TTL": 999999}}},
            "verification_link.E006",
            'VERIFICATION_LINK["PROVIDERS"]["ooto"]["TTL"]',
        ),
        ({"PUBLIC_BASE_URL": "www.example.com"}, "verification_link.E007", 'VERIFICATION_LINK["PUBLIC_BASE_URL"]'),
        (
            {"PUBLIC_BASE_URL": "http://www.example.com"},
            "verification_link.W001",
            'VERIFICATION_LINK["PUBLIC_BASE_URL"]',
        ),
        (
            {"PROVIDERS": {"ooto": {**OOTO, "BASE_URL": "http://cloud.example"}}},
            "verification_link.W002",
            'VERIFICATION_LINK["PROVIDERS"]["ooto"]["BASE_URL"]',
        ),
        ({"DECISION_POLICY": "nowhere.decide"}, "verification_link.E008", 'VERIFICATION_LINK["DECISION_POLICY"]'),
        ({"PROVIDERS": ["ooto"]}, "verification_link.E001", 'VERIFICATION_LINK["PROVIDERS"]'),
        ({"PROVIDERS": {"ooto": "OotoProvider"}}, "verification_link.E001", 'VERIFICATION_LINK["PROVIDERS"]["ooto"]'),
        ({"USER_PROVIDERS": "ooto"}, "verification_link.E011", 'VERIFICATION_LINK["USER_PROVIDERS"]'),
        ({"USER_PROVIDERS": ["ooto", "sandbox"]}, "verification_link.E011", 'VERIFICATION_LINK["USER_PROVIDERS"]'),
        ({"USER_PROVIDERS": [None]}, "verification_link.E011", 'VERIFICATION_LINK["USER_PROVIDERS"]'),
    ],
)
def test_each_misconfiguration_is_reported_with_the_key_to_fix(changes, expected_id, key):
    with with_settings(**changes):
        messages = vl_checks()
    assert expected_id in ids(messages)
    message = next(m for m in messages if m.id == expected_id)
    assert key in message.msg


def test_user_providers_of_configured_aliases_pass():
    with with_settings(PROVIDERS={"ooto": OOTO, "eu": OOTO}, USER_PROVIDERS=["eu", "ooto"]):
        assert vl_checks() == []
    with with_settings(USER_PROVIDERS=[]):  # users start nothing: staff code does
        assert vl_checks() == []


def test_non_https_public_url_is_fine_in_debug():
    with with_settings(PUBLIC_BASE_URL="http://localhost:8000"), override_settings(DEBUG=True):
        assert vl_checks() == []


def test_setting_that_is_not_a_dict():
    with override_settings(VERIFICATION_LINK=["ooto"]):
        assert ids(vl_checks()) == ["verification_link.E001"]


def test_no_setting_at_all_asks_for_a_provider():
    with override_settings(VERIFICATION_LINK=None):
        messages = vl_checks()
    assert ids(messages) == ["verification_link.E002"]


def test_check_messages_never_contain_secrets():
    with with_settings(PROVIDERS={"ooto": {**OOTO, "APP_KEY": "TOPSECRET", "SCOPES": ["x"], "TTL": -1}}):
        messages = vl_checks()
    assert messages
    assert all("TOPSECRET" not in f"{m.msg} {m.hint}" for m in messages)


# -- what worked before the table still works (issue 17 review) -------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "used"),
    [
        ("POLL_INTERVAL", 10.0, 10),
        ("POLL_MAX_INTERVAL", 300.0, 300),
        ("EXPIRY_GRACE", 300.0, 300),
        ("API_RETRY_AFTER", 30.0, 30),
        ("CONNECT_TIMEOUT", "2.5", 2.5),
        ("RETURN_READ_TIMEOUT", "1.5", 1.5),
        ("READ_TIMEOUT", 20, 20),
        ("EXPIRY_LAST_CHECK", 0, False),
        ("EXPIRY_LAST_CHECK", 1, True),
        ("DEFAULT_NEXT_URL", reverse_lazy("admin:index"), "/admin/"),
    ],
)
def test_values_that_worked_before_pass_the_check_and_are_used(name, value, used, caplog):
    with with_settings(**{name: value}), caplog.at_level(logging.ERROR, logger="verification_link.conf"):
        assert vl_checks() == []
        got = conf.get(name)
    assert got == used
    assert type(got) is type(used)
    assert caplog.records == []


def with_site_settings(**changes):
    """The test settings (the fake OOTO's credentials) with ``changes``."""
    return override_settings(VERIFICATION_LINK={**conf.user_settings(), **changes})


def test_a_lazy_next_url_leads_back_to_the_site(client, fake_ooto, user):
    with with_site_settings(DEFAULT_NEXT_URL=reverse_lazy("admin:index")):
        session = services.start_verification(user=user)
        fake_ooto.complete(session)
        VerificationSession.objects.filter(pk=session.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))
        client.force_login(user)
        response = client.get(f"/verify/s/{session.pk}/return/")
    assert (response.status_code, response["Location"]) == (302, "/admin/")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TASKS", "Celery"),
        ("POLL_INTERVAL", "ten"),
        ("CONNECT_TIMEOUT", "nan"),
        ("API_RETRY_AFTER", -1),
        ("DEFAULT_NEXT_URL", 12345),
        ("EXPIRY_LAST_CHECK", "False"),
    ],
)
def test_a_wrong_value_of_a_key_that_guards_nothing_is_logged_and_the_default_used(name, value, caplog):
    with with_settings(**{name: value}):
        assert [(m.id, conf.key_path(name) in m.msg) for m in vl_checks()] == [("verification_link.E014", True)]
        with caplog.at_level(logging.ERROR, logger="verification_link.conf"):
            assert conf.get(name) == conf.DEFAULTS[name]
    [record] = caplog.records
    assert conf.key_path(name) in record.getMessage()
    assert repr(value) not in record.getMessage()


def test_a_lazy_value_that_fails_when_used_is_logged_and_the_default_used(caplog):
    with with_settings(DEFAULT_NEXT_URL=reverse_lazy("no-such-page")), caplog.at_level(logging.ERROR):
        assert conf.get("DEFAULT_NEXT_URL") is None
    assert 'VERIFICATION_LINK["DEFAULT_NEXT_URL"]' in caplog.text


def test_a_callback_with_a_wrong_tasks_value_answers_normally(client, fake_ooto, user, caplog):
    session = services.start_verification(user=user, scopes=["liveness"])
    fake_ooto.complete(session)
    url = f"/verify/callback/ooto/{session.callback_secret}/"
    with with_site_settings(TASKS="Celery"), caplog.at_level(logging.ERROR, logger="verification_link.conf"):
        response = client.post(url, data=json.dumps(fake_ooto.status_body(session)), content_type="application/json")
    assert (response.status_code, response.json()) == (202, {"status": "accepted"})
    session.refresh_from_db()
    assert session.status == "DONE"  # "auto" with the eager test app: confirmed inline
    assert 'VERIFICATION_LINK["TASKS"]' in caplog.text


def test_a_wrong_next_url_setting_still_leads_back_to_the_site(client, fake_ooto, user):
    with with_site_settings(DEFAULT_NEXT_URL=12345):
        session = services.start_verification(user=user)
        fake_ooto.complete(session)
        VerificationSession.objects.filter(pk=session.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))
        client.force_login(user)
        response = client.get(f"/verify/s/{session.pk}/return/")
    assert (response.status_code, response["Location"]) == (302, f"/verify/s/{session.pk}/")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DECISION_POLICY", 42),
        ("PUBLIC_BASE_URL", "www.example.com"),
        ("MAX_ATTEMPTS", "lots"),
        ("VALID_FOR_DAYS", 0),
        ("REUSE_OPEN_SESSIONS", "False"),
    ],
)
def test_a_wrong_value_of_a_guard_still_fails_closed(name, value):
    with with_settings(**{name: value}), pytest.raises(ConfigurationError, match=re.escape(conf.key_path(name))):
        conf.get(name)


def test_the_message_about_a_wrong_next_url_says_what_it_must_be():
    with with_settings(DEFAULT_NEXT_URL=["/account/"]):
        [message] = vl_checks()
    assert message.id == "verification_link.E014"
    assert "URL of this site" in message.msg
    assert "reverse_lazy" in message.msg
