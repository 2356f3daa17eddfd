"""The OOTO callback keeps the same inbound-endpoint contract as the webhooks (shared test base)."""

import pytest

from verification_link import services
from verification_link.models import VerificationEvent

from .inbound_base import InboundEndpointContract


class TestOotoCallback(InboundEndpointContract):
    kind = VerificationEvent.Kind.CALLBACK
    accepted_statuses = (202,)

    @pytest.fixture(autouse=True)
    def _fake(self, fake_ooto, user):
        self.fake, self.user = fake_ooto, user

    def make_session(self):
        return services.start_verification(user=self.user, scopes=["liveness"])

    def url(self, session):
        return f"/verify/callback/ooto/{session.callback_secret}/"

    def unknown_urls(self, session):
        return [
            f"/verify/callback/ooto/{'x' * 43}/",  # unknown secret
            f"/verify/callback/ooto_eu/{session.callback_secret}/",  # right secret, other alias
            f"/verify/callback/nope/{session.callback_secret}/",  # unknown alias
        ]

    def payload(self, session):
        return self.fake.status_body(session)

    def complete_at_provider(self, session):
        self.fake.complete(session)  # the callback body is never applied: the app asks the provider

    def done_with_note(self, session, note):
        self.fake.advance(session, "DONE", result={"liveness": {"fine": True, "note": note}})
        return self.fake.status_body(session)


@pytest.mark.django_db
def test_nul_bytes_anywhere_are_refused_or_stored_safely(client, fake_ooto, user):
    """PostgreSQL stores no NUL: a path, body or provider answer with one must not become a 500."""
    session = services.start_verification(user=user)
    assert client.post("/verify/callback/oo%00to/x/", data=b"{}", content_type="application/json").status_code == 404
    url = f"/verify/callback/ooto/{session.callback_secret}/"
    assert client.post(url, data=b'{"a": "\\u0000"}', content_type="application/json").status_code == 202
    assert client.post(url, data=b"\x00\x00", content_type="application/json").status_code == 400
    fake_ooto.advance(session, "DONE", result={"liveness": {"fine": True, "note": "a\x00b"}})
    session = services.refresh_session(session)
    session.refresh_from_db()
    assert session.result["liveness"]["note"] == "a\ufffdb"


@pytest.mark.django_db(transaction=True)
def test_the_record_survives_a_failure_under_atomic_requests(client, fake_ooto, user, monkeypatch):
    """Sites with ATOMIC_REQUESTS: the callback is recorded in its own commit, before processing."""
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    session = services.start_verification(user=user)
    fake_ooto.fail_next(RuntimeError("a bug below us"))
    with pytest.raises(RuntimeError):
        client.post(f"/verify/callback/ooto/{session.callback_secret}/", data=b"{}", content_type="application/json")
    event = VerificationEvent.objects.get(kind="callback")
    assert event.body == "{}" and event.session_id == session.pk
