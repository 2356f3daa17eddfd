"""The provider's own words (``provider_status``, ``provider_verdict``, ``provider_reasons``) on
the session: kept from each report, never erased by a late report that says less, and replaced
by the report that moves the session."""

import pytest

from verification_link import services
from verification_link.models import VerificationSession
from verification_link.providers import StatusReport

pytestmark = pytest.mark.django_db


def words(session):
    return session.provider_status, session.provider_verdict, session.provider_reasons


def review_session():
    session = VerificationSession.objects.create(provider="ooto", token="t-words", status="IN_PROGRESS")
    return services.apply_report(
        session,
        StatusReport(status="IN_PROGRESS", provider_status="review", verdict="review", reasons=("9121",)),
        source="webhook",
    )


def test_a_same_status_report_with_a_verdict_is_kept():
    session = review_session()
    session.refresh_from_db()
    assert (session.provider_status, session.provider_verdict, session.provider_reasons) == (
        "review",
        "review",
        ["9121"],
    )


def test_a_late_report_without_a_verdict_does_not_erase_it():
    session = review_session()
    services.apply_report(session, StatusReport(status="IN_PROGRESS", provider_status="submitted"), source="webhook")
    session.refresh_from_db()
    assert (session.provider_status, session.provider_verdict, session.provider_reasons) == (
        "review",
        "review",
        ["9121"],
    )


def test_the_unchanged_poll_path_does_not_erase_it_either():
    session = review_session()
    late = StatusReport(status="IN_PROGRESS", provider_status="submitted")
    # The poll sweep's compare-and-set path: nothing to write but the bookkeeping.
    from django.utils import timezone

    from verification_link.services.reports import _record_unchanged

    assert _record_unchanged(session, late, source="poll", now=timezone.now()) is True
    session.refresh_from_db()
    assert session.provider_verdict == "review"


def test_the_report_that_moves_the_session_brings_its_own_words():
    session = review_session()
    services.apply_report(session, StatusReport(status="EXPIRED", provider_status="expired"), source="webhook")
    session.refresh_from_db()
    assert session.status == "EXPIRED"
    assert words(session) == ("expired", "", [])
