from datetime import timedelta

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db
Status = VerificationSession.Status


def test_status_values_are_exactly_the_providers():
    assert Status.values == ["CREATED", "CAPTCHA_OK", "IN_PROGRESS", "DONE", "FAILED", "EXPIRED", "CANCELED"]
    assert VerificationSession.NextStep.values == ["LIVENESS", "DEEPFAKE", "ENROLL", "SEARCH"]
    assert VerificationSession.Decision.values == ["", "approved", "rejected", "review"]


@pytest.mark.parametrize("status", Status.values)
def test_is_final(status):
    assert VerificationSession(status=status).is_final is (status in {"DONE", "FAILED", "EXPIRED", "CANCELED"})


def test_is_expired():
    past, future = timezone.now() - timedelta(seconds=1), timezone.now() + timedelta(hours=1)
    assert VerificationSession(status="IN_PROGRESS", expires_at=past).is_expired
    assert not VerificationSession(status="IN_PROGRESS", expires_at=future).is_expired
    assert not VerificationSession(status="IN_PROGRESS", expires_at=None).is_expired
    assert VerificationSession(status="EXPIRED", expires_at=future).is_expired
    assert not VerificationSession(status="DONE", expires_at=past).is_expired


def test_str_and_repr_hide_the_secrets():
    session = VerificationSessionFactory(token="TOKEN-XYZ")
    for text in (str(session), repr(session)):
        assert "TOKEN-XYZ" not in text
        assert session.callback_secret not in text
        assert session.url not in text
    assert str(session.pk)[:8] in str(session)


def test_provider_token_is_unique_per_provider_but_may_be_empty():
    VerificationSessionFactory(provider="ooto", token="")
    VerificationSessionFactory(provider="ooto", token="")
    VerificationSessionFactory(provider="ooto", token="same")
    VerificationSessionFactory(provider="ooto_eu", token="same")
    with pytest.raises(IntegrityError):
        VerificationSessionFactory(provider="ooto", token="same")


def test_the_hot_queries_have_indexes():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, VerificationSession._meta.db_table)
    index_names = {name for name, info in constraints.items() if info["index"] or info["unique"]}
    for name in ["vl_session_poll_due", "vl_session_overdue", "vl_session_user_recent", "vl_session_provider_token"]:
        assert name in index_names
    secret_indexes = [info for info in constraints.values() if info["columns"] == ["callback_secret"]]
    assert any(info["unique"] for info in secret_indexes)
    with connection.cursor() as cursor:
        event_constraints = connection.introspection.get_constraints(cursor, VerificationEvent._meta.db_table)
    assert "vl_event_session" in event_constraints


def test_deleting_the_user_erases_their_sessions_and_events(django_user_model):
    session = VerificationSessionFactory()
    VerificationEvent.objects.create(session=session, kind="poll")
    session.user.delete()
    assert not VerificationSession.objects.exists()
    assert not VerificationEvent.objects.exists()


def test_sensitive_permission_exists():
    assert ("view_sensitive_result", "Can view biometric and demographic results") in [
        (codename, str(name)) for codename, name in VerificationSession._meta.permissions
    ]
