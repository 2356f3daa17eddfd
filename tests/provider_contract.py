"""The contract every provider module keeps, as one reusable test base (django-anymail's pattern):
each provider's tests subclass ``ProviderContract``, say how its wire looks (the fakes at the HTTP
layer, with ``responses``) and how its webhooks are signed (by the provider's SDK where there is
one), and inherit every test here:

- the wire format of create (and of status and cancel where the provider has them);
- error mapping: a wrong key is ``ProviderAuthError``, other 4xx ``ProviderRejected``, 5xx and
  timeouts ``ProviderUnavailable``;
- webhooks: good (the session finishes, exactly one ``verification_finished``), wrong secret,
  missing header, stale (where the scheme signs a time), rotated (the old secret of the list still
  accepted); duplicate deliveries processed once; out-of-order deliveries never move a session back;
- polling to a final status;
- secrets absent from log lines and reprs.

Subclasses are plain pytest classes (``class TestStripe(ProviderContract)``); every test runs
with the alias configured by ``alias_config`` under ``ALIAS``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests
import responses

from verification_link import services
from verification_link.exceptions import ProviderAuthError, ProviderRejected, ProviderUnavailable
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider

Status = VerificationSession.Status
APPROVED, DECLINED, OPEN = "approved", "declined", "open"


class ProviderContract:
    """Subclass, set the class attributes, implement the hooks; see the module docstring."""

    #: The alias the tests configure, and its settings (``BASE_URL`` pointing at the fake).
    ALIAS = "provider_under_test"
    BASE_URL = "https://provider.test"
    #: The webhook secrets configured (the first current, the second the one being rotated out).
    SECRET = "current-webhook-SECRET"
    OLD_SECRET = "old-webhook-SECRET"
    #: Whether the webhook scheme signs a timestamp (then a stale delivery is refused).
    SIGNS_TIMESTAMP = False
    #: Whether a webhook body only hints and the services confirm it by a status call (Onfido).
    WEBHOOK_PULLS = False
    #: The create endpoint (method, URL), for the error-mapping tests.
    CREATE_ENDPOINT: tuple[str, str] = ("POST", "")
    #: The header whose absence must refuse a webhook ("": the scheme has none, e.g. a path secret).
    SIGNATURE_HEADER = ""
    #: The answers of an accepted delivery (OOTO's callback: 202, then 200 once final).
    ACCEPTED_CODES: tuple[int, ...] = (200,)
    #: Whether several secrets can be configured side by side (a rotation).
    ROTATES = True
    #: Whether the provider gives its own verdict and reasons (OOTO, Valify: the checks decide).
    HAS_VERDICT = True
    #: Whether ``provider_status`` is kept (OOTO's statuses are ours one to one: nothing to keep).
    KEEPS_PROVIDER_STATUS = True
    #: Whether a delivery is named (an event id, or a key of object, action and status): then a
    #: redelivery is answered "already processed" even while the session is open.
    HAS_DELIVERY_ID = True

    # -- what a subclass provides ---------------------------------------------------------------

    def alias_config(self) -> dict[str, Any]:
        """The alias's settings: ``BACKEND``, credentials, ``BASE_URL`` = ``self.BASE_URL``,
        ``WEBHOOK_SECRETS`` = [``SECRET``, ``OLD_SECRET``] (or the provider's own secret key)."""
        raise NotImplementedError

    def mock_create(self, rsps: responses.RequestsMock) -> None:
        """Register the provider's answer(s) to a create: a session the provider calls
        ``self.external_id()`` with the hosted URL ``self.hosted_url()``."""
        raise NotImplementedError

    def assert_create_request(self, calls: list[Any]) -> None:
        """Check the create call(s) the provider received (``rsps.calls``): path, headers, body."""
        raise NotImplementedError

    def mock_status(self, rsps: responses.RequestsMock, session: VerificationSession, outcome: str) -> None:
        """Register the status answer for ``outcome`` (``OPEN``, ``APPROVED``, ``DECLINED``)."""
        raise NotImplementedError

    def webhook(
        self,
        session: VerificationSession,
        outcome: str,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        delivery: str = "evt_1",
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook the provider would send for ``outcome``: the raw body and its headers, signed
        with ``secret`` (default ``SECRET``) at ``timestamp`` (default now); ``delivery`` names
        the delivery where the provider sends an id (the same value: the same delivery)."""
        raise NotImplementedError

    def mock_cancel(self, rsps: responses.RequestsMock, session: VerificationSession) -> None:
        """Register the cancel answer (providers with ``supports_cancel``)."""
        raise NotImplementedError

    def external_id(self) -> str:
        return "ext_0001"

    def hosted_url(self) -> str:
        return "https://hosted.provider.test/flow/abc"

    def secret_values(self) -> list[str]:
        """Every secret of ``alias_config``: none may reach a log line or a repr."""
        config = self.alias_config()
        values = [self.SECRET, self.OLD_SECRET]
        for key in get_provider_class(config).secret_settings:
            if isinstance(config.get(key), str):
                values.append(config[key])
        return values

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _alias(self, settings, db):
        config = dict(settings.VERIFICATION_LINK)
        config["PROVIDERS"] = {**config["PROVIDERS"], self.ALIAS: self.alias_config()}
        settings.VERIFICATION_LINK = config

    @pytest.fixture
    def rsps(self):
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            yield mock

    @pytest.fixture
    def backend(self):
        return get_provider(self.ALIAS)

    @pytest.fixture
    def started(self, rsps, user, commit):
        self.mock_create(rsps)
        with commit():
            session = services.start_verification(user=user, provider=self.ALIAS)
        return session

    def inbound_url(self, session: VerificationSession, secret: str | None = None) -> str:
        """Where the provider posts (``secret``: the one the delivery is signed with, for
        providers whose secret is in the URL)."""
        return f"/verify/webhook/{self.ALIAS}/"

    def post_webhook(self, client, body: bytes, headers: dict[str, str], url: str | None = None):
        meta = {_meta_key(name): value for name, value in headers.items()}
        url = url or f"/verify/webhook/{self.ALIAS}/"
        return client.generic("POST", url, body, content_type="application/json", **meta)

    def deliver(self, client, rsps, session, outcome, commit, **signing):
        if self.WEBHOOK_PULLS:
            rsps.reset()
            self.mock_status(rsps, session, outcome)
        body, headers = self.webhook(session, outcome, **signing)
        with commit():
            return self.post_webhook(client, body, headers, self.inbound_url(session, signing.get("secret")))

    # -- create -----------------------------------------------------------------------------------

    def test_create_wire_format(self, rsps, started):
        assert started.url == self.hosted_url()
        assert started.external_id == self.external_id()
        assert started.status in (Status.CREATED, Status.IN_PROGRESS)
        self.assert_create_request(list(rsps.calls))

    @pytest.mark.parametrize(
        ("status", "error"),
        [
            *((401, ProviderAuthError), (403, ProviderAuthError), (422, ProviderRejected), (400, ProviderRejected)),
            *((500, ProviderUnavailable), (503, ProviderUnavailable)),
        ],
    )
    def test_create_error_mapping(self, rsps, user, status, error):
        method, url = self.CREATE_ENDPOINT
        rsps.add(method, url, json={"error": "no"}, status=status)
        with pytest.raises(error) as caught:
            services.start_verification(user=user, provider=self.ALIAS)
        assert caught.value.status_code == status
        assert not VerificationSession.objects.filter(status=Status.CREATED, url__gt="").exists()

    def test_create_timeout_is_unavailable(self, rsps, user):
        method, url = self.CREATE_ENDPOINT
        rsps.add(method, url, body=requests.Timeout("slow"))
        with pytest.raises(ProviderUnavailable):
            services.start_verification(user=user, provider=self.ALIAS)

    # -- webhooks ---------------------------------------------------------------------------------

    def test_webhook_approved_finishes_once(self, client, rsps, started, signal_log, commit):
        response = self.deliver(client, rsps, started, APPROVED, commit)
        assert response.status_code in self.ACCEPTED_CODES, response.content
        started.refresh_from_db()
        assert started.status == Status.DONE
        assert started.decision == VerificationSession.Decision.APPROVED
        if self.KEEPS_PROVIDER_STATUS:
            assert started.provider_status, "the provider's own status is kept"
        assert len(signal_log.of("verification_finished")) == 1

    def test_webhook_declined_fails_with_reasons(self, client, rsps, started, signal_log, commit):
        response = self.deliver(client, rsps, started, DECLINED, commit)
        assert response.status_code in self.ACCEPTED_CODES, response.content
        started.refresh_from_db()
        assert started.is_final
        assert started.decision == VerificationSession.Decision.REJECTED
        if self.HAS_VERDICT:
            assert started.provider_verdict == "declined"
            assert started.provider_reasons, "the provider's reason reaches the session"
        assert len(signal_log.of("verification_finished")) == 1

    def test_webhook_wrong_secret_is_refused(self, client, rsps, started, commit):
        response = self.deliver(client, rsps, started, APPROVED, commit, secret="not-the-SECRET")
        assert response.status_code in (401, 403, 404)
        started.refresh_from_db()
        assert started.status in (Status.CREATED, Status.IN_PROGRESS)
        event = VerificationEvent.objects.filter(kind__in=("webhook", "callback")).latest("id")
        assert event.valid is False

    def test_webhook_without_signature_header_is_refused(self, client, started):
        if not self.SIGNATURE_HEADER:
            pytest.skip("the provider's scheme sends no signature header")
        body, headers = self.webhook(started, APPROVED)
        headers = {name: value for name, value in headers.items() if name.lower() != self.SIGNATURE_HEADER.lower()}
        assert self.post_webhook(client, body, headers).status_code in (401, 403)
        started.refresh_from_db()
        assert not started.is_final

    def test_webhook_stale_is_refused(self, client, rsps, started, commit):
        if not self.SIGNS_TIMESTAMP:
            pytest.skip("the provider's scheme signs no timestamp")
        import time

        response = self.deliver(client, rsps, started, APPROVED, commit, timestamp=int(time.time()) - 3600)
        assert response.status_code == 401
        started.refresh_from_db()
        assert not started.is_final

    def test_webhook_signed_with_the_rotated_secret_is_accepted(self, client, rsps, started, commit):
        if not self.ROTATES:
            pytest.skip("the provider has one secret per session, nothing to rotate")
        response = self.deliver(client, rsps, started, APPROVED, commit, secret=self.OLD_SECRET)
        assert response.status_code in self.ACCEPTED_CODES, response.content
        started.refresh_from_db()
        assert started.status == Status.DONE

    def test_duplicate_delivery_is_processed_once(self, client, rsps, started, signal_log, commit):
        first = self.deliver(client, rsps, started, APPROVED, commit, delivery="evt_same")
        again = self.deliver(client, rsps, started, APPROVED, commit, delivery="evt_same")
        assert first.status_code in self.ACCEPTED_CODES and again.status_code == 200
        assert json.loads(again.content)["status"] in ("already processed", "already final")
        assert len(signal_log.of("verification_finished")) == 1
        moves = VerificationEvent.objects.filter(session=started, kind=VerificationEvent.Kind.STATUS_CHANGED)
        assert moves.filter(new_status=Status.DONE).count() == 1

    def test_a_redelivered_open_event_is_already_processed(self, client, rsps, started, commit):
        if not self.HAS_DELIVERY_ID:
            pytest.skip("the provider names no delivery")
        first = self.deliver(client, rsps, started, OPEN, commit, delivery="evt_open_twice")
        assert first.status_code in self.ACCEPTED_CODES, first.content
        events_before = VerificationEvent.objects.filter(session=started).exclude(kind="webhook").count()
        again = self.deliver(client, rsps, started, OPEN, commit, delivery="evt_open_twice")
        assert again.status_code == 200
        assert json.loads(again.content)["status"] == "already processed"
        # Nothing applied a second time: no answer, no move, no poll recorded for it.
        assert VerificationEvent.objects.filter(session=started).exclude(kind="webhook").count() == events_before

    def test_late_open_delivery_never_moves_back(self, client, rsps, started, commit):
        first = self.deliver(client, rsps, started, APPROVED, commit, delivery="evt_late_2")
        assert first.status_code in self.ACCEPTED_CODES
        late = self.deliver(client, rsps, started, OPEN, commit, delivery="evt_late_1")
        assert late.status_code in self.ACCEPTED_CODES
        started.refresh_from_db()
        assert started.status == Status.DONE

    # -- polling, cancel --------------------------------------------------------------------------

    def test_poll_reaches_the_final_status(self, rsps, started, signal_log, backend, commit):
        if not backend.pollable:
            pytest.skip("the provider cannot be polled")
        self.mock_status(rsps, started, OPEN)
        services.refresh_session(started)
        started.refresh_from_db()
        assert not started.is_final
        rsps.reset()
        self.mock_status(rsps, started, APPROVED)
        with commit():
            services.refresh_session(started)
        started.refresh_from_db()
        assert started.status == Status.DONE
        assert len(signal_log.of("verification_finished")) == 1

    def test_cancel(self, rsps, started, backend):
        if backend.supports_cancel:
            self.mock_cancel(rsps, started)
        before = len(rsps.calls)
        services.cancel_session(started)
        started.refresh_from_db()
        assert started.status == Status.CANCELED
        # Cancelled at the provider where it can be, locally only where it cannot.
        assert (len(rsps.calls) > before) is backend.supports_cancel

    def test_admin_shows_the_check_rows_and_the_providers_words(
        self, client, rsps, started, backend, commit, admin_user
    ):
        assert self.deliver(client, rsps, started, APPROVED, commit).status_code in self.ACCEPTED_CODES
        started.refresh_from_db()
        rows = backend.check_rows(started.scopes or [], started.result or {})
        assert rows, "a finished session has readable check rows"
        client.force_login(admin_user)
        html = client.get(f"/admin/verification_link/verificationsession/{started.pk}/change/").content.decode()
        for row in rows:
            assert row.scope in html, row.scope
        if self.KEEPS_PROVIDER_STATUS:
            assert started.provider_status and started.provider_status in html
        for reason in started.provider_reasons:
            assert reason in html, reason

    def test_a_hint_the_provider_cannot_confirm_answers_503_and_is_redelivered(self, client, rsps, started, commit):
        if not self.WEBHOOK_PULLS or self.inbound_url(started) != f"/verify/webhook/{self.ALIAS}/":
            pytest.skip("the provider's webhooks are applied from their signed body")
        body, headers = self.webhook(started, APPROVED, delivery="evt_retried")
        rsps.reset()
        rsps.add_passthru("http://never.example")  # nothing mocked: the confirming call fails
        with commit():
            response = self.post_webhook(client, body, headers)
        assert response.status_code == 503
        started.refresh_from_db()
        assert not started.is_final
        self.mock_status(rsps, started, APPROVED)
        with commit():
            again = self.post_webhook(client, body, headers)
        assert again.status_code == 200, again.content
        started.refresh_from_db()
        assert started.status == Status.DONE

    # -- secrets ----------------------------------------------------------------------------------

    def test_secrets_absent_from_logs_and_reprs(self, client, rsps, started, backend, commit, caplog):
        caplog.set_level(logging.DEBUG)
        self.deliver(client, rsps, started, APPROVED, commit, secret="not-the-SECRET")
        self.deliver(client, rsps, started, APPROVED, commit)
        texts = [caplog.text, repr(backend), repr(started), repr(backend.webhook_verifier())]
        for secret in self.secret_values():
            for text in texts:
                assert secret not in text
        assert self.hosted_url() not in caplog.text, "the one-time link is a bearer secret"

    def test_missing_credentials_name_their_key(self):
        config = self.alias_config()
        backend = get_provider_class(config)
        for key in backend.required_settings:
            messages = backend.check_config(self.ALIAS, {**config, key: ""})
            assert any(key in message.msg for message in messages), key

    def test_live_and_test_keys_are_warned_about_by_debug(self, settings):
        config = self.alias_config()
        backend = get_provider_class(config)
        if not backend.key_prefixes:
            pytest.skip("the provider's keys do not tell live from test")
        for key, (live, test) in backend.key_prefixes.items():
            settings.DEBUG = True
            ids = [m.id for m in backend.check_config(self.ALIAS, {**config, key: live + "abc123"})]
            assert "verification_link.W005" in ids, key
            settings.DEBUG = False
            ids = [m.id for m in backend.check_config(self.ALIAS, {**config, key: test + "abc123"})]
            assert "verification_link.W006" in ids, key
            assert "verification_link.W005" not in ids

    def test_a_webhook_under_broken_secret_settings_is_refused_403(self, client, rsps, started, settings, commit):
        if self.inbound_url(started) != f"/verify/webhook/{self.ALIAS}/":
            pytest.skip("the provider's inbound request is authenticated by its URL")
        config = dict(settings.VERIFICATION_LINK)
        broken = {**self.alias_config(), "WEBHOOK_SECRETS": self.SECRET}  # a string, not a list
        config["PROVIDERS"] = {**config["PROVIDERS"], self.ALIAS: broken}
        settings.VERIFICATION_LINK = config
        response = self.deliver(client, rsps, started, APPROVED, commit)
        assert response.status_code == 403
        started.refresh_from_db()
        assert not started.is_final

    def test_webhook_secrets_are_checked_where_they_are_used_and_by_manage_check(self):
        config = self.alias_config()
        backend = get_provider_class(config)
        if not backend.receives_webhooks:
            pytest.skip("the provider sends no webhooks")
        wrong = {**config, "WEBHOOK_SECRETS": "a string, not a list"}
        assert "verification_link.E009" in [m.id for m in backend.check_config(self.ALIAS, wrong)]
        if backend.webhook_secret_prefixes:
            pasted = {**config, "WEBHOOK_SECRETS": ["sk_live_pasted_in_the_wrong_place"]}
            messages = backend.check_config(self.ALIAS, pasted)
            assert "verification_link.W007" in [m.id for m in messages]
            assert all("pasted_in_the_wrong_place" not in m.msg for m in messages)


def get_provider_class(config: dict[str, Any]):
    from django.utils.module_loading import import_string

    return import_string(config["BACKEND"])


def _meta_key(header: str) -> str:
    key = header.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
