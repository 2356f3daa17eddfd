"""Decisions that make sense (issue 12, point 12): only a completed session is approved, and an
existing decision changes only when staff confirm it — in the service and in every admin action."""

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from verification_link import services
from verification_link.exceptions import InvalidTransition
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationSessionFactory

from .test_admin import LIST, confirm, staff

pytestmark = pytest.mark.django_db
Kind = VerificationEvent.Kind


@pytest.fixture
def reviewer(django_user_model):
    """Staff who may review (view + change)."""
    return staff(django_user_model, "rita", "view_verificationsession", "change_verificationsession")


def final(status, decision="", **kwargs):
    """A finished session as the lifecycle leaves it, with the decision given (default: none)."""
    return VerificationSessionFactory(
        status=status,
        url="",
        next_step="",
        next_poll_at=None,
        finished_at=timezone.now(),
        result={} if status != "DONE" else {"liveness": {"fine": True, "score": 0.99}},
        decision=decision,
        **kwargs,
    )


def reviews(session):
    return list(session.events.filter(kind=Kind.REVIEWED).values_list("data", flat=True))


def stored(session):
    session.refresh_from_db()
    return session.decision, session.reviewed_by_id, session.review_note


# -- the service ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["CANCELED", "FAILED", "EXPIRED"])
def test_only_a_completed_session_can_be_approved(admin_user, commit, signal_log, status):
    session = final(status)
    with commit(), pytest.raises(InvalidTransition, match=f"only a completed.*{status}"):
        services.review_session(session, decision="approved", reviewer=admin_user, note="looks fine")
    assert stored(session) == ("", None, "")
    assert reviews(session) == []
    assert signal_log == []


@pytest.mark.parametrize("status", ["CANCELED", "FAILED", "EXPIRED"])
@pytest.mark.parametrize("decision", ["rejected", "review"])
def test_reject_and_review_stay_possible_on_any_final_status(admin_user, commit, signal_log, status, decision):
    session = final(status)
    with commit():
        services.review_session(session, decision=decision, reviewer=admin_user, note="n")
    assert stored(session) == (decision, admin_user.pk, "n")
    assert [s["decision"] for s in signal_log.of("verification_reviewed")] == [decision]


@pytest.mark.parametrize("previous", ["", "review"])
def test_a_completed_session_is_approved(admin_user, commit, signal_log, previous):
    session = final("DONE", previous)
    with commit():
        services.review_session(session, decision="approved", reviewer=admin_user, note="ok")
    assert stored(session) == ("approved", admin_user.pk, "ok")
    assert reviews(session) == [{"decision": "approved", "previous": previous, "note": "ok"}]
    assert [(s["decision"], s["reviewer"]) for s in signal_log.of("verification_reviewed")] == [
        ("approved", admin_user)
    ]


@pytest.mark.parametrize(
    ("previous", "decision"), [("approved", "rejected"), ("rejected", "approved"), ("approved", "review")]
)
def test_changing_a_decision_needs_a_confirmation(admin_user, commit, signal_log, previous, decision):
    session = final("DONE", previous, review_note="first look")
    with commit(), pytest.raises(InvalidTransition, match=f"already {previous}; confirm to change it"):
        services.review_session(session, decision=decision, reviewer=admin_user, note="second look")
    assert stored(session) == (previous, None, "first look")
    assert reviews(session) == []
    assert signal_log == []

    with commit():
        services.review_session(session, decision=decision, reviewer=admin_user, note="second look", replace=True)
    assert stored(session) == (decision, admin_user.pk, "second look")
    assert reviews(session) == [{"decision": decision, "previous": previous, "note": "second look"}]
    assert [s["decision"] for s in signal_log.of("verification_reviewed")] == [decision]


@pytest.mark.parametrize("replace", [False, True])
def test_the_same_decision_twice_is_recorded_once(admin_user, django_user_model, commit, signal_log, replace):
    session = final("DONE", "review")
    other = django_user_model.objects.create_user("olga", is_staff=True)
    with commit():
        first = services.review_session(session, decision="rejected", reviewer=admin_user, note="mask")
        again = services.review_session(session, decision="rejected", reviewer=other, note="mask!", replace=replace)
    assert again.decision == "rejected" and again.reviewed_at == first.reviewed_at
    assert stored(session) == ("rejected", admin_user.pk, "mask")  # the first reviewer and note stay
    assert len(reviews(session)) == 1
    assert len(signal_log.of("verification_reviewed")) == 1


def test_the_old_signature_still_works(admin_user):
    session = final("DONE", "review")
    assert services.review_session(session, decision="approved", reviewer=admin_user).decision == "approved"
    with pytest.raises(TypeError):
        services.review_session(session, "rejected", admin_user)  # still keyword-only


# -- the admin: the detail page's buttons -------------------------------------------------------------------


def object_tools(client, session):
    html = client.get(f"{LIST}{session.pk}/change/").content.decode()
    tools = html.split('class="object-tools"', 1)[1].split("</ul>", 1)[0]
    return tools


def test_approve_is_offered_only_on_completed_sessions(reviewer):
    _user, client = reviewer
    for status in ("CANCELED", "FAILED", "EXPIRED"):
        session = final(status)
        tools = object_tools(client, session)
        assert f"{session.pk}/approve/" not in tools, status
        assert f"{session.pk}/reject/" in tools, status
    undecided = final("DONE", "review")
    tools = object_tools(client, undecided)
    assert f"{undecided.pk}/approve/" in tools and f"{undecided.pk}/reject/" in tools
    assert "changes the decision" not in tools


def test_the_buttons_say_that_a_decision_exists(reviewer):
    _user, client = reviewer
    approved = final("DONE", "approved")
    tools = object_tools(client, approved)
    assert f"{approved.pk}/approve/" not in tools  # already approved: nothing to do
    assert f"{approved.pk}/reject/" in tools
    assert "Reject (changes the decision: Approved)" in tools


def test_a_direct_approve_url_of_a_canceled_session_changes_nothing(reviewer, signal_log):
    _user, client = reviewer
    session = final("CANCELED")
    for response in (
        client.get(f"{LIST}{session.pk}/approve/"),
        client.post(f"{LIST}{session.pk}/approve/", {"confirm": "yes", "note": "fine"}),
    ):
        assert response.status_code == 302
        assert response["Location"].endswith(f"{session.pk}/change/")
        assert any("not completed" in str(m) for m in get_messages(response.wsgi_request))
    assert stored(session) == ("", None, "")
    assert reviews(session) == [] and signal_log == []


def test_changing_a_decision_singly_needs_the_checkbox(reviewer, signal_log, commit):
    user, client = reviewer
    session = final("DONE", "approved", review_note="policy")
    url = f"{LIST}{session.pk}/reject/"
    page = client.get(url).content.decode()
    assert "already has a decision: Approved" in page
    assert 'name="replace"' in page and "required" in page.split('name="replace"', 1)[1].split(">", 1)[0]
    assert "Change the existing decision" in page

    refused = client.post(url, {"confirm": "yes", "note": "mask in the selfie"}, follow=True)
    html = refused.content.decode()
    assert "1 skipped: already decided" in html and "confirm" in html
    assert "rejected." not in html
    assert stored(session) == ("approved", None, "policy")
    assert reviews(session) == [] and signal_log == []

    with commit():
        done = client.post(url, {"confirm": "yes", "note": "mask in the selfie", "replace": "on"}, follow=True)
    assert "1 session rejected." in done.content.decode()
    assert stored(session) == ("rejected", user.pk, "mask in the selfie")
    assert reviews(session) == [{"decision": "rejected", "previous": "approved", "note": "mask in the selfie"}]
    assert [(s["decision"], s["reviewer"]) for s in signal_log.of("verification_reviewed")] == [("rejected", user)]


# -- the admin: in bulk ---------------------------------------------------------------------------------------


def mixed():
    return {
        "review": final("DONE", "review"),
        "undecided": final("DONE"),
        "canceled": final("CANCELED"),
        "rejected": final("DONE", "rejected"),
        "approved": final("DONE", "approved"),
    }


def test_the_bulk_confirmation_warns_about_existing_decisions(reviewer):
    _user, client = reviewer
    sessions = mixed()
    page = client.post(LIST, {"action": "approve_selected", "_selected_action": [s.pk for s in sessions.values()]})
    html = page.content.decode()
    assert page.status_code == 200
    assert "1 of these sessions is not completed" in html
    assert "1 of these sessions already has another decision" in html
    assert "1 of these sessions is already approved" in html
    assert 'name="replace"' in html
    quiet = client.post(LIST, {"action": "approve_selected", "_selected_action": [sessions["review"].pk]})
    assert 'name="replace"' not in quiet.content.decode()


def test_bulk_approve_reports_each_outcome_and_changes_no_decision_unconfirmed(reviewer, signal_log, commit):
    user, client = reviewer
    sessions = mixed()
    with commit():
        response = confirm(client, "approve", list(sessions.values()), note="looked fine")
    html = response.content.decode()
    assert "2 sessions approved." in html
    assert "1 skipped: not completed" in html
    assert "1 skipped: already decided — confirm to change it" in html
    assert "1 skipped: already approved" in html
    decisions = {name: stored(s)[0] for name, s in sessions.items()}
    assert decisions == {
        "review": "approved",
        "undecided": "approved",
        "canceled": "",
        "rejected": "rejected",
        "approved": "approved",
    }
    assert len(signal_log.of("verification_reviewed")) == 2
    assert reviews(sessions["approved"]) == [] and reviews(sessions["canceled"]) == []

    with commit():
        response = confirm(client, "approve", list(sessions.values()), note="second look", replace="on")
    html = response.content.decode()
    assert "1 session approved." in html
    assert "1 skipped: not completed" in html
    assert "3 skipped: already approved" in html
    assert stored(sessions["rejected"]) == ("approved", user.pk, "second look")
    assert reviews(sessions["rejected"]) == [{"decision": "approved", "previous": "rejected", "note": "second look"}]
    assert stored(sessions["canceled"])[0] == ""
    assert len(signal_log.of("verification_reviewed")) == 3


def test_bulk_reject_of_approved_sessions_needs_the_checkbox(reviewer):
    _user, client = reviewer
    approved = [final("DONE", "approved") for _ in range(2)]
    canceled = final("CANCELED")
    response = confirm(client, "reject", [*approved, canceled], note="fraud ring")
    html = response.content.decode()
    assert "1 session rejected." in html  # the canceled one: rejecting stays possible
    assert "2 skipped: already decided — confirm to change" in html
    assert [stored(s)[0] for s in approved] == ["approved", "approved"]
    assert VerificationSession.objects.filter(decision="rejected").count() == 1
