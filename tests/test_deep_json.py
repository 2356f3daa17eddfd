"""JSON nested deeper than Python's recursion limit: ``json.loads`` raises ``RecursionError`` (not a
``ValueError``) on it, so every place that parses JSON from outside must treat that as malformed —
a 4xx or a typed provider error, never a 500. Random bytes (test_properties) never nest this deep."""

import pytest

from verification_link import services
from verification_link.exceptions import ProviderUnavailable
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider

pytestmark = pytest.mark.django_db
DEEP = b"[" * 10_000 + b"]" * 10_000  # 20 kB, within MAX_EVENT_BODY_BYTES
DEEP_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_the_callback_answers_400_and_keeps_the_record(client, fake_ooto, user, body):
    session = services.start_verification(user=user)
    response = client.post(
        f"/verify/callback/ooto/{session.callback_secret}/", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {"error": "malformed JSON"}
    event = VerificationEvent.objects.get(kind="callback")
    assert (event.valid, event.processed, event.error) == (False, False, "malformed JSON")
    assert fake_ooto.calls("GET") == []


def test_a_signed_webhook_answers_400(client):
    headers = get_provider("valify").webhook_verifier().sign(DEEP)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    response = client.post("/verify/webhook/valify/", data=DEEP, content_type="application/json", **extra)
    assert response.status_code == 400
    assert VerificationEvent.objects.get(kind="webhook").error == "malformed JSON"


def test_the_api_answers_400(user):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(user)
    response = api.post("/verify/api/sessions/", data=DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert not VerificationSession.objects.exists()


def test_a_provider_answer_is_a_typed_error(fake_ooto, user):
    session = services.start_verification(user=user)
    fake_ooto.fail_next(200, DEEP.decode())
    with pytest.raises(ProviderUnavailable):
        services.refresh_session(session)
    assert session.events.filter(kind="poll_failed").count() == 1


def test_the_admin_shows_a_recorded_body_as_text(admin_client):
    event = VerificationEvent.objects.create(provider="ooto", kind="callback", source="callback", body=DEEP.decode())
    response = admin_client.get(f"/admin/verification_link/verificationevent/{event.pk}/change/")
    assert response.status_code == 200
    assert b"[[[[" in response.content
