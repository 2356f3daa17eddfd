"""``VERIFICATION_LINK["USER_PROVIDERS"]``: the aliases a user may pick in the start form and the API.

A site configures aliases for staff and back-office code (a sandbox, a second account) that its
users must not reach: a user who names one gets a 400, nothing is stored and no provider is called.
The setting guards something, so it is validated where it is used, not only by ``manage.py check``.
"""

import logging

import pytest
from rest_framework.test import APIClient

from verification_link import conf, services
from verification_link.api.serializers import SessionCreateSerializer
from verification_link.models import VerificationSession
from verification_link.testing import FakeOoto

pytestmark = pytest.mark.django_db
API = "/verify/api/sessions/"
KEY = 'VERIFICATION_LINK["USER_PROVIDERS"]'

#: An alias configured for staff only: an OOTO client pointed at a sandbox nobody should reach.
SANDBOX = {
    "BACKEND": "verification_link.providers.ooto.OotoProvider",
    "APP_ID": "sandbox-app-id",
    "APP_KEY": "sandbox-app-key-SECRET",
    "BASE_URL": "https://sandbox.invalid/sandbox/ooto",
}


@pytest.fixture
def with_sandbox(settings):
    """The test settings plus a ``sandbox`` alias; ``USER_PROVIDERS`` given by the test (or not)."""
    base = settings.VERIFICATION_LINK

    def apply(**changes):
        settings.VERIFICATION_LINK = {**base, "PROVIDERS": {**base["PROVIDERS"], "sandbox": SANDBOX}, **changes}

    apply()
    return apply


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def owner(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def fake_eu(fake_ooto):
    """The ``ooto_eu`` account, answered by a second fake on the same ``responses`` mock."""
    return FakeOoto("https://eu.ooto.example", app_id="eu-app-id", app_key="eu-app-key-SECRET", mock=fake_ooto.mock)


def nothing_happened(fake_ooto):
    assert not VerificationSession.objects.exists()
    assert not fake_ooto.calls()
    assert not fake_ooto.mock.calls  # not even a call to the sandbox's (unregistered) URL


# -- the resolver ------------------------------------------------------------------------------------


def test_the_default_is_the_default_provider_only():
    assert conf.user_providers() == ["ooto"]


def test_an_explicit_list_is_used_as_given(vl_settings):
    vl_settings(USER_PROVIDERS=["ooto_eu", "ooto"])
    assert conf.user_providers() == ["ooto_eu", "ooto"]
    vl_settings(USER_PROVIDERS=("ooto_eu",))  # a tuple is a list too
    assert conf.user_providers() == ["ooto_eu"]


@pytest.mark.parametrize(
    "value",
    [
        "ooto_eu",  # a string, not a list: ("ooto_eu") without the comma
        ["ooto", "nope"],  # an alias that is not configured
        ["ooto", 3],
        {"ooto": True},
        42,
    ],
)
def test_an_invalid_setting_gives_users_only_the_default_and_logs_the_key(vl_settings, caplog, value):
    vl_settings(USER_PROVIDERS=value)
    with caplog.at_level(logging.ERROR, logger="verification_link"):
        assert conf.user_providers() == ["ooto"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and KEY in errors[0].getMessage()


def test_an_invalid_setting_without_a_usable_default_gives_users_nothing(vl_settings, caplog):
    vl_settings(USER_PROVIDERS="ooto", DEFAULT_PROVIDER="missing")
    with caplog.at_level(logging.ERROR, logger="verification_link"):
        assert conf.user_providers() == []
    assert KEY in caplog.text


def test_the_check_reports_the_same_problems(vl_settings):
    from django.core.checks import Tags, run_checks

    vl_settings(USER_PROVIDERS="ooto")
    messages = [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "verification_link.E011"]
    assert messages and KEY in messages[0].msg


# -- the REST API -----------------------------------------------------------------------------------


def test_api_refuses_a_configured_alias_outside_user_providers(api, fake_ooto, with_sandbox):
    response = api.post(API, {"provider": "sandbox"}, format="json")
    assert response.status_code == 400, response.content
    assert "provider" in response.json()
    nothing_happened(fake_ooto)


def test_api_refuses_it_when_the_setting_is_a_string(api, fake_ooto, with_sandbox, caplog):
    with_sandbox(USER_PROVIDERS="sandbox")
    with caplog.at_level(logging.ERROR, logger="verification_link"):
        response = api.post(API, {"provider": "sandbox"}, format="json")
    assert response.status_code == 400 and "provider" in response.json()
    assert KEY in caplog.text
    nothing_happened(fake_ooto)


def test_api_offers_exactly_the_user_providers(with_sandbox):
    assert SessionCreateSerializer().fields["provider"].choices == {"ooto": "ooto"}
    with_sandbox(USER_PROVIDERS=["ooto", "ooto_eu"])
    assert list(SessionCreateSerializer().fields["provider"].choices) == ["ooto", "ooto_eu"]


def test_api_accepts_an_alias_of_user_providers(api, fake_eu, with_sandbox):
    with_sandbox(USER_PROVIDERS=["ooto", "ooto_eu"])
    response = api.post(API, {"provider": "ooto_eu"}, format="json")
    assert response.status_code == 201, response.content
    assert VerificationSession.objects.get().provider == "ooto_eu"
    assert len(fake_eu.calls("POST")) == 1


def test_api_without_a_pick_uses_the_first_user_provider_when_the_default_is_not_one(api, fake_eu, with_sandbox):
    with_sandbox(USER_PROVIDERS=["ooto_eu"])
    response = api.post(API, {}, format="json")
    assert response.status_code == 201, response.content
    assert VerificationSession.objects.get().provider == "ooto_eu"


def test_api_with_no_user_provider_at_all_starts_nothing(api, fake_ooto, with_sandbox):
    with_sandbox(USER_PROVIDERS=[])
    response = api.post(API, {}, format="json")
    assert response.status_code == 400 and "provider" in response.json()
    nothing_happened(fake_ooto)


def test_staff_code_may_still_use_any_alias(fake_eu, user, with_sandbox):
    session = services.start_verification(user=user, provider="ooto_eu")
    assert session.provider == "ooto_eu"


# -- the start form ---------------------------------------------------------------------------------


def test_start_form_refuses_a_configured_alias_outside_user_providers(owner, fake_ooto, with_sandbox):
    response = owner.post("/verify/start/", {"handoff": "redirect", "provider": "sandbox"})
    assert response.status_code == 400
    assert "This verification method is not available." in response.content.decode()
    nothing_happened(fake_ooto)


def test_start_form_refuses_it_when_the_setting_is_a_string(owner, fake_ooto, with_sandbox, caplog):
    with_sandbox(USER_PROVIDERS="sandbox")
    with caplog.at_level(logging.ERROR, logger="verification_link"):
        response = owner.post("/verify/start/", {"handoff": "redirect", "provider": "sandbox"})
    assert response.status_code == 400
    assert KEY in caplog.text
    nothing_happened(fake_ooto)


def test_start_form_accepts_an_alias_of_user_providers(owner, fake_eu, with_sandbox):
    with_sandbox(USER_PROVIDERS=["ooto", "ooto_eu"])
    response = owner.post("/verify/start/", {"handoff": "redirect", "provider": "ooto_eu"})
    assert response.status_code == 303
    assert VerificationSession.objects.get().provider == "ooto_eu"


def test_start_form_without_a_pick_uses_the_default(owner, fake_ooto, with_sandbox):
    with_sandbox(USER_PROVIDERS=["ooto", "ooto_eu"])
    assert owner.post("/verify/start/", {"handoff": "redirect"}).status_code == 303
    assert VerificationSession.objects.get().provider == "ooto"


def test_start_form_with_no_user_provider_at_all_starts_nothing(owner, fake_ooto, with_sandbox):
    with_sandbox(USER_PROVIDERS=[])
    response = owner.post("/verify/start/", {"handoff": "redirect"})
    assert response.status_code == 400
    nothing_happened(fake_ooto)


def test_start_page_shows_a_choice_only_when_there_is_one(owner, with_sandbox):
    assert 'name="provider"' not in owner.get("/verify/start/").content.decode()
    with_sandbox(USER_PROVIDERS=["ooto", "ooto_eu"])
    html = owner.get("/verify/start/").content.decode()
    assert '<select name="provider"' in html
    assert 'value="ooto_eu"' in html and 'value="sandbox"' not in html
