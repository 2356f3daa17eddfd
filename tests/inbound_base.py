"""The contract every endpoint that providers call must keep — the OOTO callback, account-level
webhooks — as one reusable test base. A subclass says how to reach its endpoint and how to make a
request the endpoint accepts; it inherits every refusal test.

Bad input gets a clear 4xx and changes nothing; every request is recorded before it is judged.
"""

import json

import pytest
from django.test import Client

from verification_link.models import VerificationEvent, VerificationSession


class InboundEndpointContract:
    kind: str  # VerificationEvent.Kind of the recorded request
    accepted_statuses = (200, 202)

    # -- what a subclass provides -----------------------------------------------------------------

    def make_session(self):
        raise NotImplementedError

    def url(self, session) -> str:
        raise NotImplementedError

    def unknown_urls(self, session) -> list[str]:
        """URLs that must answer a generic 404 (unknown alias, unknown secret…)."""
        raise NotImplementedError

    def payload(self, session) -> dict:
        """A body the provider would send when the session is DONE."""
        raise NotImplementedError

    def headers_for(self, session, body: bytes) -> dict:
        """Headers that authenticate ``body`` (none for an unsigned callback)."""
        return {}

    def complete_at_provider(self, session) -> None:
        """Make the provider's own answer say DONE, where the app asks it."""

    def done_with_note(self, session, note: str) -> dict:
        """A DONE report whose result holds ``note`` at ``result["liveness"]["note"]``: the body to
        send, and the provider's own answer where the app asks it."""
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _client(self, db):
        self.client = Client(enforce_csrf_checks=True)

    def send(self, session, body, *, url=None, headers=None, method="post"):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = self.headers_for(session, raw) if headers is None else headers
        extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
        if method == "get":
            return self.client.get(url or self.url(session), **extra)
        return getattr(self.client, method)(
            url or self.url(session), data=raw, content_type="application/json", **extra
        )

    @staticmethod
    def state():
        return list(VerificationSession.objects.order_by("pk").values())

    def recorded(self):
        return VerificationEvent.objects.filter(kind=self.kind).order_by("id")

    # -- the contract --------------------------------------------------------------------------------

    def test_a_good_request_is_accepted_and_applied(self, signal_log, django_capture_on_commit_callbacks):
        session = self.make_session()
        self.complete_at_provider(session)
        with django_capture_on_commit_callbacks(execute=True):
            response = self.send(session, self.payload(session))
        assert response.status_code in self.accepted_statuses, response.content
        session.refresh_from_db()
        assert session.status == "DONE"
        assert len(signal_log.of("verification_finished")) == 1
        event = self.recorded().get()
        assert (event.valid, event.processed, event.session_id) == (True, True, session.pk)

    def test_a_duplicate_changes_nothing(self, signal_log, django_capture_on_commit_callbacks):
        session = self.make_session()
        self.complete_at_provider(session)
        with django_capture_on_commit_callbacks(execute=True):
            self.send(session, self.payload(session))
        before = self.state()
        with django_capture_on_commit_callbacks(execute=True):
            again = self.send(session, self.payload(session))
        assert again.status_code == 200
        assert self.state() == before
        assert len(signal_log.of("verification_finished")) == 1
        assert self.recorded().count() == 2

    @pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
    def test_only_post(self, method):
        session = self.make_session()
        before = self.state()
        assert self.send(session, self.payload(session), method=method).status_code == 405
        assert self.state() == before

    @pytest.mark.parametrize(
        "body",
        [
            b"{not json",
            b"\xff\xfe\x00",
            b"",
            b"[1, 2]",
            b'"DONE"',
            b"null",
            b"42",
            b'{"status": NaN}',  # not JSON; PostgreSQL's jsonb refuses it
            b'{"a": Infinity}',
            b"[" * 10_000 + b"]" * 10_000,  # json raises RecursionError, not ValueError, on these
            b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        ],
        ids=lambda body: repr(body[:16]),
    )
    def test_bodies_that_are_not_json_objects_are_400_and_recorded(self, body):
        session = self.make_session()
        before = self.state()
        response = self.send(session, body)
        assert response.status_code == 400
        assert set(response.json()) == {"error"}
        assert self.state() == before
        event = self.recorded().get()
        assert event.valid is False and event.error

    def test_text_no_database_stores_is_accepted_and_stored_replaced(self, django_capture_on_commit_callbacks):
        # A lone surrogate ("\\ud800") is valid JSON text but no UTF-8 encodes it; NUL is refused by
        # PostgreSQL. Either, anywhere in the body, must not turn into a 500.
        session = self.make_session()
        body = self.done_with_note(session, "lone \ud800 surrogate, NUL \x00")
        with django_capture_on_commit_callbacks(execute=True):
            response = self.send(session, body)
        assert response.status_code in self.accepted_statuses, response.content
        session.refresh_from_db()
        assert session.status == "DONE"
        assert session.result["liveness"]["note"] == "lone \ufffd surrogate, NUL \ufffd"
        assert self.recorded().get().valid is True

    def test_a_5_mb_body_is_413_and_changes_nothing(self):
        session = self.make_session()
        before = self.state()
        body = b'{"padding": "' + b"x" * (5 * 1024 * 1024) + b'"}'
        assert self.send(session, body).status_code == 413
        assert self.state() == before
        assert self.recorded().get().error == "body too large"

    def test_unknown_targets_are_a_generic_404(self):
        session = self.make_session()
        before = self.state()
        for url in self.unknown_urls(session):
            response = self.send(session, self.payload(session), url=url)
            assert (response.status_code, response.json()) == (404, {"error": "not found"}), url
        assert self.state() == before
