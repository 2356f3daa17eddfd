"""Clickjacking (issue 12, point 11): the pages that show the one-time link or its QR code refuse
to be framed by themselves, whatever the site's middleware says."""

import django
import pytest
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from verification_link import services
from verification_link.framing import deny_framing, forbid_framing
from verification_link.testing import VerificationSessionFactory

from .settings import MIDDLEWARE
from .test_admin import LIST, staff

pytestmark = pytest.mark.django_db
CLICKJACKING = "django.middleware.clickjacking.XFrameOptionsMiddleware"
CSP_MIDDLEWARE = "django.middleware.csp.ContentSecurityPolicyMiddleware"


@pytest.fixture
def session(fake_ooto, user):
    return services.start_verification(user=user, scopes=["liveness"])


@pytest.fixture
def owner(client, user):
    client.force_login(user)
    return client


def pages(session):
    return {"detail": f"/verify/s/{session.pk}/", "qr": f"/verify/s/{session.pk}/qr.svg"}


def assert_unframeable(response, name):
    assert response.status_code == 200, name
    assert response["X-Frame-Options"] == "DENY", name
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"], name


def test_the_link_and_its_qr_code_cannot_be_framed(owner, session):
    for name, url in pages(session).items():
        assert_unframeable(owner.get(url), name)


def test_the_final_status_page_cannot_be_framed_either(owner, user):
    session = VerificationSessionFactory(user=user, done=True)
    assert_unframeable(owner.get(f"/verify/s/{session.pk}/"), "final detail")


@override_settings(MIDDLEWARE=[*MIDDLEWARE, CLICKJACKING], X_FRAME_OPTIONS="SAMEORIGIN")
def test_our_header_wins_over_a_site_wide_sameorigin(owner, session):
    assert owner.get("/verify/start/")["X-Frame-Options"] == "SAMEORIGIN"  # the site's setting is active
    for name, url in pages(session).items():
        assert_unframeable(owner.get(url), name)


def test_an_existing_policy_is_kept_and_extended():
    @deny_framing
    def view(request):
        response = HttpResponse("x")
        response["Content-Security-Policy"] = "default-src 'self'; frame-ancestors https://partner.example"
        response["X-Frame-Options"] = "SAMEORIGIN"
        return response

    response = view(RequestFactory().get("/"))
    policies = [p.strip() for p in response["Content-Security-Policy"].split(",")]
    # A policy of its own: a second frame-ancestors inside the site's policy would be ignored
    # (the first directive of a name wins); two policies are both enforced.
    assert policies == ["default-src 'self'; frame-ancestors https://partner.example", "frame-ancestors 'none'"]
    assert response["X-Frame-Options"] == "DENY"


def test_forbid_framing_is_idempotent():
    response = HttpResponse()
    forbid_framing(forbid_framing(response))
    assert response["Content-Security-Policy"] == "frame-ancestors 'none'"


@override_settings(
    MIDDLEWARE=[*MIDDLEWARE, CSP_MIDDLEWARE], SECURE_CSP={"default-src": ["'self'"], "frame-ancestors": ["'self'"]}
)
def test_the_sites_own_django_csp_policy_is_not_dropped():
    # Django 6's CSP middleware leaves a policy set by the view alone: the site's policy would be
    # lost on these pages. Instead, the middleware is handed the site's policy with ours merged in.
    response = forbid_framing(HttpResponse())
    assert "Content-Security-Policy" not in response
    assert response._csp_config == {"default-src": ["'self'"], "frame-ancestors": ["'none'"]}
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.skipif(django.VERSION < (6, 0), reason="Django's own CSP middleware is new in 6.0")
@override_settings(MIDDLEWARE=[*MIDDLEWARE, CSP_MIDDLEWARE], SECURE_CSP={"default-src": ["'self'"]})
def test_under_djangos_csp_middleware(owner, session):  # pragma: no cover - Django 6+
    for name, url in pages(session).items():
        response = owner.get(url)
        assert_unframeable(response, name)
        assert "default-src 'self'" in response["Content-Security-Policy"], name


def test_the_admin_page_showing_the_link_cannot_be_framed(django_user_model, session):
    _officer, client = staff(
        django_user_model, "otto", "view_verificationsession", "change_verificationsession", "view_sensitive_result"
    )
    page = client.get(f"{LIST}{session.pk}/change/")
    assert session.url in page.content.decode()
    assert_unframeable(page, "admin detail with the link")
    finished = VerificationSessionFactory(done=True)
    assert "X-Frame-Options" not in client.get(f"{LIST}{finished.pk}/change/")  # no link: the site decides
