"""Staff's part beyond the decision: the review queue, the audit of sensitive views, and erasure
of a user's identity data on request."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client

from verification_link import services
from verification_link.exceptions import InvalidTransition
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db
Kind = VerificationEvent.Kind


def staff(django_user_model, username, *perms):
    user = django_user_model.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def rita(django_user_model):
    return staff(django_user_model, "rita", "view_verificationsession", "change_verificationsession")


@pytest.fixture
def sam(django_user_model):
    return staff(django_user_model, "sam", "view_verificationsession", "change_verificationsession")


@pytest.fixture
def vera(django_user_model):
    """Staff allowed to see biometric results."""
    return staff(
        django_user_model, "vera", "view_verificationsession", "view_verificationevent", "view_sensitive_result"
    )


# -- review queue ------------------------------------------------------------------------------------


def test_assigning_records_who_and_a_second_reviewer_is_told(rita, sam):
    session = VerificationSessionFactory(done=True, decision="review")
    services.assign_review(session, rita)
    assert VerificationSession.objects.get(pk=session.pk).assigned_to == rita
    with pytest.raises(InvalidTransition, match="already assigned to rita"):
        services.assign_review(session, sam)
    services.assign_review(session, rita)  # again: nothing new
    services.assign_review(session, sam, by=rita, replace=True)  # handed over deliberately
    services.assign_review(session, None, by=sam)
    events = list(session.events.filter(kind=Kind.ASSIGNED).order_by("id").values_list("actor__username", "data"))
    assert events == [
        ("rita", {"assigned_to": rita.pk, "previous": None}),
        ("rita", {"assigned_to": sam.pk, "previous": rita.pk}),
        ("sam", {"assigned_to": None, "previous": sam.pk}),
    ]


# -- the audit of sensitive views -------------------------------------------------------------------------


def test_viewing_sensitive_results_is_recorded_once_an_hour_per_person(vera, rita):
    session = VerificationSessionFactory(done=True)
    client = Client()
    client.force_login(vera)
    page = f"/admin/verification_link/verificationsession/{session.pk}/change/"
    assert client.get(page).status_code == 200
    assert client.get(page).status_code == 200
    (viewed,) = session.events.filter(kind=Kind.VIEWED)
    assert (viewed.actor, viewed.data["views"], viewed.data["where"]) == (vera, 2, ["admin"])
    VerificationEvent.objects.filter(pk=viewed.pk).update(created_at=viewed.created_at - timedelta(hours=2))
    client.get(page)
    assert session.events.filter(kind=Kind.VIEWED).count() == 2  # a new hour, a new event
    # Staff without the permission are not shown sensitive results: nothing to record.
    other = Client()
    other.force_login(rita)
    assert other.get(page).status_code == 200
    assert not session.events.filter(kind=Kind.VIEWED, actor=rita).exists()


def test_an_export_with_sensitive_results_is_recorded_per_session(vera):
    sessions = VerificationSessionFactory.create_batch(2, done=True)
    client = Client()
    client.force_login(vera)
    response = client.post(
        "/admin/verification_link/verificationsession/",
        {"action": "export_json", "_selected_action": [str(s.pk) for s in sessions]},
    )
    assert response.status_code == 200
    for session in sessions:
        assert session.events.get(kind=Kind.VIEWED).data["where"] == ["export"]


# -- erasure -----------------------------------------------------------------------------------------------


def test_erasure_scrubs_identity_data_and_keeps_the_record(user, rita, capsys):
    session = VerificationSessionFactory(
        user=user, done=True, decision="rejected", reviewed_by=rita, review_note="face of Ann Lee does not match"
    )
    VerificationSession.objects.filter(pk=session.pk).update(metadata={"first_name": "Ann"})
    VerificationEvent.objects.create(
        session=session,
        provider="ooto",
        kind=Kind.WEBHOOK,
        body='{"name": "Ann Lee"}',
        headers={"X-Sig": "s"},
        data={"status": "DONE", "name": "Ann Lee"},
        error="",
    )
    other = VerificationSessionFactory(done=True)
    call_command("verification_link", "erase", "--user", str(user.pk), "--dry-run")
    assert "would erase the identity data of 1 session" in capsys.readouterr().out
    assert VerificationSession.objects.get(pk=session.pk).result  # a dry run changes nothing

    assert services.erase_user_data(user, by=rita) == 1
    session.refresh_from_db()
    assert (session.result, session.metadata, session.url, session.review_note) == ({}, {}, "", "")
    assert (session.status, session.decision, session.reviewed_by, session.finished_at is not None) == (
        "DONE",
        "rejected",
        rita,
        True,
    )
    assert session.erased_at is not None
    webhook = session.events.get(kind=Kind.WEBHOOK)
    assert (webhook.body, webhook.headers, webhook.data) == ("", {}, {"status": "DONE"})
    erased = session.events.get(kind=Kind.ERASED)
    assert (erased.actor, erased.data) == (rita, {"provider_redacted": None})  # OOTO has no redaction API
    other.refresh_from_db()
    assert other.result  # nobody else's


def test_the_erase_command_refuses_an_unknown_user_in_one_line():
    with pytest.raises(CommandError, match="no user 'nobody'") as raised:
        call_command("verification_link", "erase", "--user", "nobody")
    assert raised.value.returncode == 2


# -- the admin: "Assign to me", "My queue", erasure behind a confirmation -------------------------------

CHANGELIST = "/admin/verification_link/verificationsession/"


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_assign_to_me_then_my_queue_and_a_second_reviewer_is_told(rita, sam):
    waiting = VerificationSessionFactory.create_batch(2, done=True, decision="review")
    button = f"{CHANGELIST}{waiting[0].pk}/assign/"
    assert button in logged_in(rita).get(f"{CHANGELIST}{waiting[0].pk}/change/").content.decode()
    response = logged_in(rita).post(button, {"confirm": "yes"}, follow=True)
    assert "1 session assigned to you." in response.content.decode()
    mine = logged_in(rita).get(CHANGELIST, {"queue": "mine"}).context["cl"].result_list
    assert [s.pk for s in mine] == [waiting[0].pk]
    unassigned = logged_in(sam).get(CHANGELIST, {"queue": "unassigned"}).context["cl"].result_list
    assert [s.pk for s in unassigned] == [waiting[1].pk]
    taken = logged_in(sam).post(button, {"confirm": "yes"}, follow=True)
    assert "another reviewer has it in their queue" in taken.content.decode()
    assert VerificationSession.objects.get(pk=waiting[0].pk).assigned_to == rita
    timeline = logged_in(sam).get(f"{CHANGELIST}{waiting[0].pk}/change/").content.decode()
    assert "Assigned for review" in timeline and "rita" in timeline


def test_the_erase_action_asks_first_then_erases(user, rita):
    session = VerificationSessionFactory(user=user, done=True)
    selected = {"action": "erase_selected", "_selected_action": [str(session.pk)]}
    page = logged_in(rita).post(CHANGELIST, selected)
    assert page.status_code == 200 and "Erase the user" in page.content.decode()  # the confirmation
    assert VerificationSession.objects.get(pk=session.pk).result  # nothing erased yet
    logged_in(rita).post(CHANGELIST, {**selected, "confirm": "yes"})
    session.refresh_from_db()
    assert session.result == {} and session.erased_at is not None
    assert session.events.get(kind=Kind.ERASED).actor == rita


def test_erasure_cancels_an_open_session_and_scrubs_addresses_and_next(fake_ooto, user, vl_settings):
    open_session = services.start_verification(user=user, next_url="/shop/?email=ann@example.com")
    VerificationEvent.objects.filter(session=open_session).update(remote_addr="203.0.113.7")
    gone = VerificationSessionFactory(user=user, done=True, provider="gone")  # an alias since removed
    assert services.erase_user_data(user) == 2
    open_session.refresh_from_db()
    assert (open_session.status, open_session.next_url, open_session.url) == ("CANCELED", "", "")
    assert not VerificationEvent.objects.filter(session__user=user, remote_addr__isnull=False).exists()
    gone.refresh_from_db()
    assert gone.result == {} and gone.erased_at is not None


def test_an_event_page_showing_a_raw_body_is_recorded_as_a_view(vera):
    session = VerificationSessionFactory(done=True)
    event = VerificationEvent.objects.create(session=session, provider="ooto", kind=Kind.WEBHOOK, body="{}")
    assert logged_in(vera).get(f"/admin/verification_link/verificationevent/{event.pk}/change/").status_code == 200
    assert session.events.get(kind=Kind.VIEWED).data["where"] == ["event"]


def test_an_erased_session_keeps_nothing_the_provider_sends_later(fake_ooto, user, commit):
    """A flow the provider could not cancel before the erasure finishes afterwards: the status
    moves (the record), the result it brings is not stored."""
    session = services.start_verification(user=user)
    VerificationSession.objects.filter(pk=session.pk).update(erased_at="2026-01-01T00:00:00Z")
    fake_ooto.complete(session)
    with commit():
        session = services.refresh_session(session)
    assert session.status == "DONE" and session.result == {}
    session.refresh_from_db()
    assert session.result == {} and session.decision  # decided on what it knew: nothing to approve


def test_an_erased_session_keeps_no_reason_codes_sent_later(user):
    from verification_link.providers import StatusReport

    session = VerificationSessionFactory(user=user, status="IN_PROGRESS", erased_at="2026-01-01T00:00:00Z")
    report = StatusReport(status="DONE", verdict="declined", provider_status="declined", reasons=["face_mismatch"])
    session = services.apply_report(session, report, source="webhook")
    session.refresh_from_db()
    assert (session.status, session.provider_verdict, session.provider_reasons) == ("DONE", "declined", [])
