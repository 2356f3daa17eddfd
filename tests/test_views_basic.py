"""The callback and return endpoints the services build URLs to (full hand-off views: issue 3)."""

import json

import pytest

from verification_link import services
from verification_link.models import VerificationEvent

pytestmark = pytest.mark.django_db
Kind = VerificationEvent.Kind


@pytest.fixture
def session(fake_ooto, user):
    return services.start_verification(user=user, scopes=["liveness"])


def callback_url(session, provider="ooto", secret=None):
    return f"/verify/callback/{provider}/{secret or session.callback_secret}/"


def post(client, url, body, **extra):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **extra)


def test_a_forged_done_is_never_applied(client, fake_ooto, session, signal_log, django_capture_on_commit_callbacks):
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    forged = {"status": "DONE", "result": {"liveness": {"fine": True, "score": 1.0}}}
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, callback_url(session), forged)
    assert response.status_code == 202
    session.refresh_from_db()
    assert session.status == "IN_PROGRESS"
    assert session.result == {}
    assert [k["new_status"] for k in signal_log.of("verification_status_changed")] == ["IN_PROGRESS"]
    event = session.events.get(kind=Kind.CALLBACK)
    assert json.loads(event.body) == forged
    assert (event.valid, event.processed) == (True, True)


def test_callback_confirms_by_asking_the_provider(client, fake_ooto, session):
    fake_ooto.complete(session)
    response = post(client, callback_url(session), fake_ooto.status_body(session))
    assert response.status_code == 202
    session.refresh_from_db()
    assert session.status == "DONE"
    assert len(fake_ooto.calls("GET")) == 1
    again = post(client, callback_url(session), fake_ooto.status_body(session))
    assert (again.status_code, again.json()) == (200, {"status": "already final"})
    assert len(fake_ooto.calls("GET")) == 1


@pytest.mark.parametrize("which", ["secret", "provider"])
def test_unknown_secret_or_provider_is_404_and_recorded(client, fake_ooto, session, which):
    url = callback_url(session, secret="x" * 43) if which == "secret" else callback_url(session, provider="ooto_eu")
    response = post(client, url, {"status": "DONE"})
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    event = VerificationEvent.objects.get(kind=Kind.CALLBACK)
    assert event.session is None and event.valid is False
    assert not fake_ooto.calls("GET")


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b'"DONE"', b"\xff\xfe"])
def test_malformed_bodies_are_400_and_change_nothing(client, fake_ooto, session, body):
    response = post(client, callback_url(session), body)
    assert response.status_code == 400
    session.refresh_from_db()
    assert session.status == "CREATED"
    assert not fake_ooto.calls("GET")


def test_oversized_body_is_413(client, fake_ooto, session):
    response = post(client, callback_url(session), b"{" + b" " * (70 * 1024) + b"}")
    assert response.status_code == 413
    assert not fake_ooto.calls("GET")


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_only_post(client, session, method):
    assert getattr(client, method)(callback_url(session)).status_code == 405


def test_return_refreshes_and_redirects_only_to_safe_urls(client, fake_ooto, session):
    fake_ooto.complete(session)
    response = client.get(f"/verify/s/{session.pk}/return/?next=https://evil.example/")
    assert response.status_code == 302
    assert "evil" not in response["Location"]
    session.refresh_from_db()
    assert session.status == "DONE"
    response = client.get(f"/verify/s/{session.pk}/return/?next=/account/")
    assert response["Location"] == "/account/"


def test_return_survives_a_provider_outage(client, fake_ooto, session):
    fake_ooto.fail_next(503)
    response = client.get(f"/verify/s/{session.pk}/return/")
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.status == "CREATED"
