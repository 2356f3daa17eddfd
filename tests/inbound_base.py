"""The contract every endpoint that providers call must keep — the OOTO callback, account-level
webhooks — as one reusable test base. A subclass says how to reach its endpoint and how to make a
request the endpoint accepts; it inherits every refusal test.

Bad input gets a clear 4xx and changes nothing; every request is recorded before it is judged.
"""

import json
import logging

import pytest
from django.test import Client

from verification_link.jsonbody import MAX_DEPTH
from verification_link.models import VerificationEvent, VerificationSession

#: Header values of any length and alphabet: other scripts' digits, signs, exponents, hex, blanks.
HOSTILE_HEADER_VALUES = [
    "9" * 400,
    "-" + "9" * 400,
    "1" * 20,
    "١٧٠٠٠٠٠٠٠٠",  # Arabic-Indic digits: int() takes them
    "²",  # isdigit() is True, int() refuses it
    "+1700000000",
    " 1700000000 ",
    "1_700_000_000",
    "1e9",
    "0x1f",
    "-1",
    "",
    " ",
    "\u00e9" * 2000,
    "x" * 20_000,
    "sha256=" + "f" * 5000,
    "v1," + "A" * 5000 + " v1,",
]


def _meta_key(header: str) -> str:
    key = header.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"


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

    #: Headers the endpoint reads (besides the body's): each gets values of any length and alphabet.
    read_headers: tuple[str, ...] = ("Content-Type", "Content-Length")

    def use_string_secret(self, settings, secret: str) -> bool:
        """Configure the endpoint's secrets as the *string* ``secret`` (not a list) and return True;
        False for an endpoint without secrets."""
        return False

    def secrets(self, session) -> list[str]:
        """Every secret the endpoint's requests and answers may touch: the session's own, and the
        configured credentials of every alias."""
        from django.conf import settings

        found = [session.callback_secret, session.token, session.url]
        for config in settings.VERIFICATION_LINK["PROVIDERS"].values():
            for key in ("APP_KEY", "API_KEY", "WEBHOOK_SECRETS"):
                value = config.get(key)
                found += value if isinstance(value, list) else [value]
        return [secret for secret in found if isinstance(secret, str) and len(secret) >= 8]

    # -- helpers -----------------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _client(self, db):
        self.client = Client(enforce_csrf_checks=True)

    def send(self, session, body, *, url=None, headers=None, method="post"):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = self.headers_for(session, raw) if headers is None else headers
        extra = {_meta_key(name): value for name, value in headers.items()}
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
            b'{"a":' * 5_000 + b"1" + b"}" * 5_000,  # Python 3.13's json parses it; walking it overflows
            b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),  # just past the one depth limit
            b'{"status": "DONE", "score": 1e400}',  # parses to inf: no database stores it
            b'{"score": -1e400}',
            b'{"score": [1.5e309]}',
            b'{"id": 1' + b"0" * 200 + b"}",  # no float holds it
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

    # -- hostile headers, settings and the logs ----------------------------------------------------------

    @pytest.mark.parametrize("value", HOSTILE_HEADER_VALUES, ids=lambda value: repr(value[:12]) + f"x{len(value)}")
    def test_headers_of_any_length_and_alphabet_are_never_a_5xx(self, value):
        session = self.make_session()
        body = json.dumps(self.payload(session)).encode()
        for name in self.read_headers:
            if name == "Content-Type" and len(value) > 10_000:
                continue  # Django 6.1 raises BadRequest while building the request: no app code runs (docs)
            headers = {**self.headers_for(session, body), name: value}
            before = self.state()
            response = self.send(session, body, headers=headers)
            assert response.status_code < 500, (name, response.status_code)
            if response.status_code >= 400:
                assert self.state() == before, name
                assert set(response.json()) == {"error"}

    def test_secrets_given_as_a_string_refuse_every_request(self, settings, caplog):
        # Iterating a string would make each of its characters a secret: a body signed with "b"
        # would pass. The verifier checks the setting where it is used (gunicorn runs no checks).
        session = self.make_session()
        if not self.use_string_secret(settings, "abc"):
            pytest.skip("this endpoint has no secrets")
        before = self.state()
        body = json.dumps(self.payload(session)).encode()
        with caplog.at_level(logging.ERROR):
            for key in ("abc", "b"):
                url = self.url_with_secret(session, key)
                response = self.send(session, body, url=url, headers=self.signed_with(session, body, key))
                assert response.status_code == 403, key
        assert self.state() == before
        assert "WEBHOOK_SECRETS" in caplog.text and '"PROVIDERS"' in caplog.text
        assert all(event.valid is False for event in self.recorded())

    def signed_with(self, session, body: bytes, secret: str) -> dict:
        """Headers that authenticate ``body`` under ``secret``."""
        raise NotImplementedError

    def url_with_secret(self, session, secret: str) -> str:
        """The endpoint's URL when ``secret`` is what authenticates (schemes with a path secret)."""
        return self.url(session)

    def test_no_secret_reaches_any_log_line(self, caplog, django_capture_on_commit_callbacks):
        """Every logger, Django's own included, at DEBUG, through every kind of answer."""
        session = self.make_session()
        secrets = self.secrets(session)
        assert secrets, "nothing to look for"
        for name in ("", "django", "django.request", "django.security", "urllib3", "verification_link"):
            caplog.set_level(logging.DEBUG, logger=name)
        body = json.dumps(self.payload(session)).encode()
        answers = [self.send(session, body, method=method).status_code for method in ("get", "put", "delete")]
        answers += [
            self.send(session, b"{not json").status_code,
            self.send(session, b'{"a": 1e400}').status_code,
            self.send(session, b"[" * 100 + b"]" * 100).status_code,
            self.send(session, body, url=self.url(session) + "extra/").status_code,
            self.send(session, body, url=self.url(session).rstrip("/") + "x/").status_code,
            self.send(session, b'{"padding": "' + b"x" * 70_000 + b'"}').status_code,
        ]
        with django_capture_on_commit_callbacks(execute=True):
            answers.append(self.send(session, body).status_code)
        assert {405, 400, 404, 413} <= set(answers), answers
        logged = "\n".join(
            record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
            for record in caplog.records
        )
        assert "405" in logged  # the capture sees the refusals at all
        for secret in secrets:
            assert secret not in logged
