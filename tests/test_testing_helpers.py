"""``verification_link.testing``: what our users import to test their receivers."""

import pytest
import requests

from verification_link import services
from verification_link.exceptions import ProviderAuthError, ProviderRejected
from verification_link.models import VerificationSession
from verification_link.testing import (
    FakeOoto,
    VerificationEventFactory,
    VerificationSessionFactory,
    ooto_result,
)

pytestmark = pytest.mark.django_db


def test_fake_checks_credentials_like_the_real_service(user):
    with FakeOoto(app_id="test-app-id", app_key="another-key"), pytest.raises(ProviderAuthError) as info:
        services.start_verification(user=user)
    assert info.value.status_code == 401
    assert info.value.code == 401


def test_fake_refuses_unknown_scopes_like_the_real_service(user):
    with FakeOoto() as fake:
        provider = services.get_provider("ooto")
        from verification_link.providers import CreateRequest

        request = CreateRequest(
            session_id=None, scopes=["palm"], metadata={}, callback_url="https://x/", return_url="https://x/", ttl=60
        )
        with pytest.raises(ProviderRejected):
            provider.create_session(request)
    assert fake.calls("POST")


def test_fake_moves_a_session_to_any_status_and_result(user):
    with FakeOoto() as fake:
        session = services.start_verification(user=user, scopes=["liveness", "search"])
        body = fake.advance(session, "IN_PROGRESS", next_step="SEARCH")
        assert body["nextStep"] == "SEARCH"
        assert services.refresh_session(session).next_step == "SEARCH"
        fake.fail(session)
        session = services.refresh_session(session)
    assert session.status == "FAILED"
    assert session.result["liveness"]["fine"] is False


def test_status_body_has_the_get_status_shape(user):
    with FakeOoto() as fake:
        session = services.start_verification(user=user)
        fake.complete(session)
        body = fake.status_body(session)
    for key in ("status", "scopes", "nextStep", "expiresAt", "uiHints", "returnUrl", "result"):
        assert key in body
    assert body["expiresAt"].endswith("Z") and len(body["expiresAt"]) == 24


def test_fake_can_share_a_responses_mock_and_serve_another_base_url(user, settings):
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        eu = FakeOoto("https://eu.ooto.example", mock=mock, app_key="eu-app-key-SECRET")
        mock.get("https://unrelated.example/ping", body="pong")
        session = services.start_verification(user=user, provider="ooto_eu")
        assert requests.get("https://unrelated.example/ping", timeout=1).text == "pong"
    assert session.provider == "ooto_eu"
    assert eu.calls("POST")[0][2]["APP-KEY"] == "eu-app-key-SECRET"


def test_ooto_result_shapes():
    result = ooto_result(["liveness", "deepfake", "search", "enroll"], fine={"deepfake": False}, sensitive=False)
    assert result["liveness"]["fine"] is True and result["deepfake"]["fine"] is False
    assert "templateId" in result["search"] and "templateId" in result["enroll"]
    assert "demography" not in result


def test_factories():
    done = VerificationSessionFactory(done=True)
    assert done.is_final and done.decision == "approved" and done.url == ""
    failed = VerificationSessionFactory(failed=True)
    assert failed.status == "FAILED"
    overdue = VerificationSessionFactory(overdue=True)
    assert overdue.is_expired
    event = VerificationEventFactory(session=done)
    assert event.provider == "ooto"
    assert VerificationSession.objects.count() == 3
