"""Secrets (API keys, tokens, hand-off links, callback secrets) never reach logs, errors, reprs,
events or the admin."""

import logging

import pytest
import requests

from verification_link import services
from verification_link.exceptions import ProviderError
from verification_link.models import VerificationEvent
from verification_link.providers import get_provider

pytestmark = pytest.mark.django_db
APP_KEY = "test-app-key-SECRET"


def all_event_text():
    return "\n".join(
        repr(row) for row in VerificationEvent.objects.values_list("body", "headers", "error", "data", "provider")
    )


def test_a_whole_lifecycle_with_failures_leaks_nothing(fake_ooto, user, caplog, client, admin_user):
    caplog.set_level(logging.DEBUG)
    errors = []
    fake_ooto.fail_next(401)
    fake_ooto.fail_next(500)
    for _ in range(2):
        try:
            services.start_verification(user=user)
        except ProviderError as exc:
            errors.append(exc)
    session = services.start_verification(user=user)
    fake_ooto.fail_next(requests.ConnectTimeout(f"timeout for {fake_ooto.base_url}/…/{session.token}"))
    fake_ooto.fail_next(requests.ConnectionError(f"refused: /api/v1.0/flow/sessions/{session.token}"))
    for _ in range(2):
        try:
            services.refresh_session(session)
        except ProviderError as exc:
            errors.append(exc)
    fake_ooto.complete(session)
    services.refresh_session(session)
    client.force_login(admin_user)
    pages = [
        client.get("/admin/verification_link/verificationsession/").content.decode(),
        client.get(f"/admin/verification_link/verificationsession/{session.pk}/change/").content.decode(),
        client.get("/admin/verification_link/verificationevent/").content.decode(),
    ]
    event = session.events.first()
    pages.append(client.get(f"/admin/verification_link/verificationevent/{event.pk}/change/").content.decode())

    secrets = [APP_KEY, session.token, session.callback_secret]
    texts = {
        "logs": caplog.text,
        "errors": " ".join(f"{e} {e!r} {e.args}" for e in errors),
        "provider repr": repr(get_provider("ooto")) + str(get_provider("ooto")),
        "events": all_event_text(),
        "admin": "\n".join(pages),
    }
    assert len(errors) == 4
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"
    assert "APP-KEY" not in texts["events"]


def test_error_chain_does_not_carry_the_request(fake_ooto, user):
    session = services.start_verification(user=user)
    fake_ooto.fail_next(requests.ConnectionError(f"refused: {session.token}"))
    with pytest.raises(ProviderError) as info:
        services.refresh_session(session)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True
