"""The sandbox verifies nobody in production: a system check while it is installed with ``DEBUG``
off, and a refusal to serve at use (gunicorn runs no system checks).

``VERIFICATION_LINK_SANDBOX["ALLOW_WITHOUT_DEBUG"] = True`` (a staging site) serves it anyway and
turns the check's error into a warning.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from django.core.checks import Error, Warning, run_checks
from django.test import Client, modify_settings
from django.urls import reverse

from verification_link.sandbox.credentials import sandbox_credentials
from verification_link.sandbox.models import SandboxSession, SandboxValifySession

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.sandbox.urls_sandbox")]

SANDBOX_IDS = ("verification_link.E012", "verification_link.W004")
VALIFY_BODY = {"return_url": "https://site.example/r/", "reference_id": "ref-1", "expires_at": "2999-01-01T00:00:00Z"}


def sandbox_messages():
    return [m for m in run_checks() if m.id in SANDBOX_IDS]


@pytest.fixture
def production(settings):
    """A site in production: DEBUG off and nothing allowing the sandbox."""
    settings.DEBUG = False
    settings.VERIFICATION_LINK_SANDBOX = {}
    return settings


def headers(settings) -> tuple[dict[str, str], dict[str, str]]:
    credentials = sandbox_credentials(settings.SECRET_KEY)
    ooto = {"APP-ID": credentials["OOTO_APP_ID"], "APP-KEY": credentials["OOTO_APP_KEY"]}
    return ooto, {"X-Valify-Api-Key": credentials["VALIFY_API_KEY"]}


def every_sandbox_request(client: Client, settings) -> list[tuple[str, int]]:
    """One request of each kind the sandbox answers, with valid credentials: (what, status)."""
    ooto, valify = headers(settings)
    token = "t" * 43
    answers = [
        (
            "OOTO create",
            client.post(
                reverse("verification_link_sandbox:ooto_create"),
                data=json.dumps({"scopes": ["liveness"]}),
                content_type="application/json",
                headers=ooto,
            ),
        ),
        ("OOTO status", client.get(reverse("verification_link_sandbox:ooto_status", args=[token]), headers=ooto)),
        ("OOTO page", client.get(reverse("verification_link_sandbox:ooto_flow", args=[token]))),
        ("OOTO page POST", client.post(reverse("verification_link_sandbox:ooto_flow", args=[token]), {"step": "x"})),
        (
            "Valify create",
            client.post(
                reverse("verification_link_sandbox:valify_create") + "?lang=en",
                data=json.dumps(VALIFY_BODY),
                content_type="application/json",
                headers=valify,
            ),
        ),
        ("Valify page", client.get(reverse("verification_link_sandbox:valify_flow") + f"?token={uuid.uuid4()}")),
    ]
    return [(what, response.status_code) for what, response in answers]


# -- at use -------------------------------------------------------------------------------------------


def test_with_debug_off_every_sandbox_url_answers_404(client, production, caplog):
    with caplog.at_level(logging.WARNING, logger="verification_link"):
        answers = every_sandbox_request(client, production)
    assert answers == [(what, 404) for what, _status in answers]
    assert not SandboxSession.objects.exists() and not SandboxValifySession.objects.exists()
    # The operator learns why (a staging site that forgot the setting), the visitor does not.
    assert "ALLOW_WITHOUT_DEBUG" in caplog.text


def test_the_404_does_not_say_it_is_a_sandbox(client, production):
    response = client.get(reverse("verification_link_sandbox:ooto_flow", args=["t" * 43]))
    assert response.status_code == 404
    assert b"andbox" not in response.content


@pytest.mark.parametrize("value", [1, "1", "true", "True", "yes", [True]])
def test_only_the_boolean_true_allows_it(client, production, value):
    # An environment variable read as a string ("0" is truthy) must not open the sandbox.
    production.VERIFICATION_LINK_SANDBOX = {"ALLOW_WITHOUT_DEBUG": value}
    answers = every_sandbox_request(client, production)
    assert answers == [(what, 404) for what, _status in answers]


def test_allow_without_debug_serves_it_with_debug_off(client, production):
    production.VERIFICATION_LINK_SANDBOX = {"ALLOW_WITHOUT_DEBUG": True}
    answers = dict(every_sandbox_request(client, production))
    assert (answers["OOTO create"], answers["Valify create"]) == (200, 200)
    assert answers["OOTO page"] == 404 and answers["OOTO status"] == 404  # unknown token, as usual
    assert SandboxSession.objects.count() == 1 and SandboxValifySession.objects.count() == 1


def test_debug_on_serves_it(client, production):
    production.DEBUG = True
    answers = dict(every_sandbox_request(client, production))
    assert (answers["OOTO create"], answers["Valify create"]) == (200, 200)


def test_the_setting_is_read_at_each_request(client, production):
    ooto, _valify = headers(production)
    url = reverse("verification_link_sandbox:ooto_create")
    body = json.dumps({"scopes": ["liveness"]})
    assert client.post(url, data=body, content_type="application/json", headers=ooto).status_code == 404
    production.DEBUG = True
    assert client.post(url, data=body, content_type="application/json", headers=ooto).status_code == 200
    production.DEBUG = False
    assert client.post(url, data=body, content_type="application/json", headers=ooto).status_code == 404


# -- the system check -------------------------------------------------------------------------------


def test_check_error_while_installed_with_debug_off(production):
    messages = sandbox_messages()
    assert [(type(m), m.id) for m in messages] == [(Error, "verification_link.E012")]
    assert "verification_link.sandbox" in messages[0].msg
    assert "ALLOW_WITHOUT_DEBUG" in messages[0].hint


def test_check_warning_with_allow_without_debug(production):
    production.VERIFICATION_LINK_SANDBOX = {"ALLOW_WITHOUT_DEBUG": True}
    messages = sandbox_messages()
    assert [(type(m), m.id) for m in messages] == [(Warning, "verification_link.W004")]
    assert "verification_link.sandbox" in messages[0].msg


def test_check_error_when_allow_without_debug_is_not_the_boolean_true(production):
    production.VERIFICATION_LINK_SANDBOX = {"ALLOW_WITHOUT_DEBUG": "1"}
    messages = sandbox_messages()
    assert [m.id for m in messages] == ["verification_link.E012"]
    assert 'VERIFICATION_LINK_SANDBOX["ALLOW_WITHOUT_DEBUG"]' in messages[0].msg


def test_no_check_message_with_debug_on(production):
    production.DEBUG = True
    assert sandbox_messages() == []


def test_no_check_message_when_not_installed(production):
    with modify_settings(INSTALLED_APPS={"remove": ["verification_link.sandbox"]}):
        assert sandbox_messages() == []
