""" "Try again": a new attempt linked to a failed, rejected or resubmission-requested one — the
service, its races, the status page, the API and the admin, and what a replaced session still
accepts (late deliveries: recorded, nothing changed)."""

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from verification_link import services
from verification_link.exceptions import InvalidRequest, InvalidTransition, TooManyAttempts
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db
Kind = VerificationEvent.Kind
Status = VerificationSession.Status
API = "/verify/api/sessions/"


def creates(fake_ooto):
    return len(fake_ooto.calls("POST"))


@pytest.fixture
def failed(fake_ooto, user, commit):
    """A session started and failed through the provider, as a user meets it."""
    with commit():
        session = services.start_verification(user=user, metadata={"order": 7}, next_url="/shop/")
        fake_ooto.fail(session)
        session = services.refresh_session(session)
    assert session.status == Status.FAILED
    return session


@pytest.fixture
def resubmission(fake_ooto, user):
    """An open session whose provider asks the user to try again (Veriff ``resubmission_requested``,
    Stripe ``requires_input``): OOTO has no such word, so the verdict is set as a report would."""
    session = services.start_verification(user=user)
    VerificationSession.objects.filter(pk=session.pk).update(status=Status.IN_PROGRESS, provider_verdict="resubmission")
    session.refresh_from_db()
    return session


# -- the service -----------------------------------------------------------------------------------


def test_try_again_after_a_failure_starts_a_linked_attempt(failed, fake_ooto, user, signal_log, commit):
    signal_log.clear()
    with commit():
        retry = services.retry_verification(failed, user=user)
    assert retry.pk != failed.pk and retry.previous_id == failed.pk and retry.reused is False
    assert (retry.provider, retry.scopes, retry.metadata, retry.next_url) == (
        failed.provider,
        failed.scopes,
        failed.metadata,
        "/shop/",
    )
    assert retry.status == Status.CREATED and retry.url and creates(fake_ooto) == 2
    created = retry.events.get(kind=Kind.CREATED)
    assert created.data["previous"] == str(failed.pk)
    replaced = failed.events.get(kind=Kind.REPLACED)
    assert replaced.actor == user and replaced.data == {"replaced_by": str(retry.pk)}
    failed.refresh_from_db()
    assert failed.status == Status.FAILED  # the failure stays what it was
    assert signal_log.names() == ["verification_created"]


def test_a_second_try_again_returns_the_same_attempt_without_a_provider_call(failed, fake_ooto, user):
    first = services.retry_verification(failed, user=user)
    again = services.retry_verification(failed, user=user)  # a double click, the back button
    assert again.pk == first.pk and again.reused is True
    assert creates(fake_ooto) == 2 and VerificationSession.objects.count() == 2


@pytest.mark.parametrize(
    "state",
    [
        pytest.param({"done": True}, id="approved"),
        pytest.param({"status": Status.EXPIRED, "url": ""}, id="expired"),
        pytest.param({"status": Status.CANCELED, "url": ""}, id="canceled"),
        pytest.param({"status": Status.IN_PROGRESS}, id="open, no resubmission asked"),
        pytest.param({"done": True, "decision": "review"}, id="being reviewed"),
        # The provider's "resubmission" counts while the session is open: once staff decided, it is theirs.
        pytest.param({"done": True, "provider_verdict": "resubmission"}, id="approved, resubmission asked"),
        pytest.param({"done": True, "decision": "review", "provider_verdict": "resubmission"}, id="in review"),
        pytest.param({"status": Status.EXPIRED, "provider_verdict": "resubmission"}, id="expired, resubmission"),
    ],
)
def test_only_a_failed_rejected_or_resubmission_session_is_retried(fake_ooto, user, state):
    session = VerificationSessionFactory(user=user, **state)
    with pytest.raises(InvalidTransition):
        services.retry_verification(session, user=user)
    assert creates(fake_ooto) == 0 and VerificationSession.objects.count() == 1
    assert not VerificationEvent.objects.exists()


def test_a_rejected_finish_is_retried(fake_ooto, user):
    session = VerificationSessionFactory(user=user, done=True, decision="rejected")
    assert services.retry_verification(session, user=user).previous_id == session.pk


def test_nobody_but_the_owner_retries(failed, fake_ooto, django_user_model):
    stranger = django_user_model.objects.create_user("mallory", password="pw")
    for who in (stranger, None):
        with pytest.raises(InvalidRequest):
            services.retry_verification(failed, user=who)
    assert creates(fake_ooto) == 1 and VerificationSession.objects.count() == 1


def test_a_retry_is_an_attempt_under_the_limit(failed, fake_ooto, user, vl_settings):
    vl_settings(MAX_ATTEMPTS=1)
    with pytest.raises(TooManyAttempts):
        services.retry_verification(failed, user=user)
    assert creates(fake_ooto) == 1 and VerificationSession.objects.count() == 1
    assert not failed.events.filter(kind=Kind.REPLACED).exists()


def test_two_retries_at_once_store_one_attempt(failed, fake_ooto, user, caplog):
    """The second retry stores its attempt while the first waits for the provider: the first,
    looking again under the lock, returns that one; its own link is never stored."""
    answer = fake_ooto.handle
    inner = []

    def meanwhile_another_retry(method, path, headers, body):
        if method == "POST" and not inner:
            inner.append(None)  # the inner retry's own call goes straight through
            inner[0] = services.retry_verification(failed, user=user)
        return answer(method, path, headers, body)

    fake_ooto.handle = meanwhile_another_retry
    with caplog.at_level(logging.INFO, logger="verification_link"):
        outer = services.retry_verification(failed, user=user)
    assert outer.pk == inner[0].pk and outer.reused is True
    assert VerificationSession.objects.filter(previous=failed).count() == 1
    assert failed.events.filter(kind=Kind.REPLACED).count() == 1
    assert "not stored; its link expires unused" in caplog.text


def test_a_session_approved_while_the_provider_answered_is_not_replaced(fake_ooto, user):
    session = VerificationSessionFactory(user=user, done=True, decision="rejected")
    answer = fake_ooto.handle

    def meanwhile_staff_approve(method, path, headers, body):
        VerificationSession.objects.filter(pk=session.pk).update(decision="approved")
        return answer(method, path, headers, body)

    fake_ooto.handle = meanwhile_staff_approve
    with pytest.raises(InvalidTransition):
        services.retry_verification(session, user=user)
    assert VerificationSession.objects.count() == 1 and creates(fake_ooto) == 1


# -- an open session the provider asked to redo ------------------------------------------------------


def test_retrying_a_resubmission_cancels_the_open_session(
    resubmission, fake_ooto, user, signal_log, vl_settings, commit
):
    # A policy that would queue a canceled session for review: a replaced one is not asked about.
    vl_settings(DECISION_POLICY="tests.test_resubmission.review_everything")
    signal_log.clear()
    with commit():
        retry = services.retry_verification(resubmission, user=user)
    resubmission.refresh_from_db()
    assert resubmission.status == Status.CANCELED and resubmission.url == "" and resubmission.next_poll_at is None
    assert resubmission.decision == ""  # nobody is to review the attempt the user replaced
    kinds = list(resubmission.events.order_by("id").values_list("kind", flat=True))
    assert kinds[-2:] == [Kind.CANCELED, Kind.REPLACED]
    assert retry.previous_id == resubmission.pk and not retry.is_final
    assert signal_log.names() == ["verification_status_changed", "verification_finished", "verification_created"]


def review_everything(session):
    return "review"


def test_late_deliveries_for_a_replaced_session_are_recorded_and_change_nothing(
    resubmission, fake_ooto, user, client, signal_log, commit
):
    retry = services.retry_verification(resubmission, user=user)
    resubmission.refresh_from_db()
    before = {f: getattr(resubmission, f) for f in ("status", "result", "decision", "finished_at", "url")}
    fake_ooto.complete(resubmission)  # the old flow finishes at the provider after all
    signal_log.clear()
    with commit():
        response = client.post(
            f"/verify/callback/ooto/{resubmission.callback_secret}/",
            data=json.dumps(fake_ooto.status_body(resubmission)),
            content_type="application/json",
        )
        services.refresh_session(resubmission)  # a poll: a final session is not asked about
        services.run_poll_sweep()
    assert response.status_code in (200, 202)
    late = resubmission.events.filter(kind=Kind.CALLBACK)
    assert late.count() == 1 and late.get().processed  # recorded, judged
    resubmission.refresh_from_db()
    assert {f: getattr(resubmission, f) for f in before} == before
    retry.refresh_from_db()
    assert retry.status == Status.CREATED
    assert signal_log.names() == []
    assert not [call for call in fake_ooto.calls("GET") if resubmission.token in call[1]]


# -- the chain ---------------------------------------------------------------------------------------


def test_the_chain_lists_every_attempt_oldest_first(fake_ooto, user):
    first = VerificationSessionFactory(user=user, failed=True, created_at=timezone.now() - timedelta(hours=2))
    second = services.retry_verification(first, user=user)
    fake_ooto.fail(second)
    second = services.refresh_session(second)
    third = services.retry_verification(second, user=user)
    for attempt in (first, second, third):
        assert [a.pk for a in services.attempt_chain(attempt)] == [first.pk, second.pk, third.pk]
    assert services.attempt_chain(VerificationSessionFactory(user=user)) == []


# -- the status page and its "Try again" ----------------------------------------------------------


@pytest.fixture
def owner(client, user):
    client.force_login(user)
    return client


def test_the_status_page_offers_try_again_and_the_post_hands_off(failed, fake_ooto, owner):
    page = owner.get(f"/verify/s/{failed.pk}/").content.decode()
    assert f'action="/verify/s/{failed.pk}/retry/"' in page and "Start again" not in page
    response = owner.post(f"/verify/s/{failed.pk}/retry/", {"handoff": "redirect"})
    retry = VerificationSession.objects.get(previous=failed)
    assert (response.status_code, response["Location"]) == (303, retry.url)
    # Back, and "Try again" once more: the same attempt, on the phone this time.
    again = owner.post(f"/verify/s/{failed.pk}/retry/", {"handoff": "qr"})
    assert (again.status_code, again["Location"]) == (303, f"/verify/s/{retry.pk}/")
    assert VerificationSession.objects.count() == 2


def test_both_pages_show_the_chain(failed, fake_ooto, owner, user):
    retry = services.retry_verification(failed, user=user)
    old = owner.get(f"/verify/s/{failed.pk}/").content.decode()
    assert f'href="/verify/s/{retry.pk}/" id="vl-replaced-by"' in old
    assert "/retry/" not in old  # replaced: no second retry from here
    new = owner.get(f"/verify/s/{retry.pk}/").content.decode()
    assert f'<a href="/verify/s/{failed.pk}/">' in new and 'aria-current="page"' in new
    assert new.index(f"/verify/s/{failed.pk}/") < new.index('aria-current="page"')


def test_an_open_resubmission_page_offers_try_again(resubmission, fake_ooto, owner):
    page = owner.get(f"/verify/s/{resubmission.pk}/").content.decode()
    assert 'id="vl-resubmission"' in page and f"/verify/s/{resubmission.pk}/retry/" in page
    assert owner.get(f"/verify/s/{resubmission.pk}/status.json").json()["resubmission_requested"] is True


def test_the_retry_view_refuses_quietly(failed, fake_ooto, owner, client, django_user_model, vl_settings):
    assert owner.get(f"/verify/s/{failed.pk}/retry/").status_code == 405
    approved = VerificationSessionFactory(user=failed.user, done=True)
    response = owner.post(f"/verify/s/{approved.pk}/retry/")
    assert (response.status_code, response["Location"]) == (303, f"/verify/s/{approved.pk}/")
    vl_settings(MAX_ATTEMPTS=1)
    limited = owner.post(f"/verify/s/{failed.pk}/retry/")
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    client.logout()
    stranger = django_user_model.objects.create_user("mallory", password="pw")
    client.force_login(stranger)
    assert client.post(f"/verify/s/{failed.pk}/retry/").status_code == 404
    assert VerificationSession.objects.count() == 2 and creates(fake_ooto) == 1


def test_an_alias_users_may_no_longer_pick_is_started_anew_not_retried(failed, fake_ooto, owner, vl_settings):
    vl_settings(USER_PROVIDERS=["valify"])
    page = owner.get(f"/verify/s/{failed.pk}/").content.decode()
    assert "/retry/" not in page and "Start again" in page
    response = owner.post(f"/verify/s/{failed.pk}/retry/")
    assert (response.status_code, response["Location"]) == (303, "/verify/start/")
    assert VerificationSession.objects.count() == 1 and creates(fake_ooto) == 1


def test_scopes_the_site_dropped_send_the_retry_to_a_new_start(fake_ooto, user, owner):
    session = VerificationSessionFactory(user=user, failed=True, scopes=["palm"])  # no scope OOTO has now
    response = owner.post(f"/verify/s/{session.pk}/retry/")
    assert (response.status_code, response["Location"]) == (303, "/verify/start/")
    api = APIClient()
    api.force_authenticate(user)
    conflict = api.post(f"{API}{session.pk}/retry/")
    assert conflict.status_code == 409 and "start a new session" in conflict.json()["detail"]
    assert VerificationSession.objects.count() == 1 and creates(fake_ooto) == 0


def test_a_next_url_too_long_to_keep_is_ignored(failed, fake_ooto, owner):
    # Longer than next_url holds (PostgreSQL refuses it: a 500 and an orphan link). Django's own
    # url_has_allowed_host_and_scheme refuses such URLs since 4.2.16; ours does on any 4.2.
    response = owner.post(f"/verify/s/{failed.pk}/retry/", {"next": "/" + "a" * 5000})
    assert response.status_code == 303
    assert VerificationSession.objects.get(previous=failed).next_url == "/shop/"


def test_the_retry_view_answers_a_provider_failure_with_the_friendly_page(failed, fake_ooto, owner):
    fake_ooto.fail_next(503)
    response = owner.post(f"/verify/s/{failed.pk}/retry/")
    assert response.status_code == 503 and b"Traceback" not in response.content
    assert not VerificationSession.objects.filter(previous=failed).exists()


# -- the API and the admin -------------------------------------------------------------------------


def test_the_api_retries_for_the_owner(failed, fake_ooto, user, django_user_model):
    api = APIClient()
    api.force_authenticate(user)
    first = api.post(f"{API}{failed.pk}/retry/")
    again = api.post(f"{API}{failed.pk}/retry/")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and first.json()["previous"] == str(failed.pk)
    approved = VerificationSessionFactory(user=user, done=True)
    conflict = api.post(f"{API}{approved.pk}/retry/")
    assert conflict.status_code == 409 and conflict.json()["code"]
    staff = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    api.force_authenticate(staff)
    assert api.post(f"{API}{failed.pk}/retry/").status_code == 404  # staff start nobody's retry


def test_the_api_retry_answers_429_past_the_limit_and_503_when_the_provider_fails(fake_ooto, user, vl_settings):
    api = APIClient()
    api.force_authenticate(user)
    first = VerificationSessionFactory(user=user, failed=True)
    fake_ooto.fail_next(503)
    unavailable = api.post(f"{API}{first.pk}/retry/")
    assert unavailable.status_code == 503 and unavailable.json()["code"]
    assert VerificationEvent.objects.filter(kind=Kind.CREATE_FAILED, actor=user).count() == 1
    vl_settings(MAX_ATTEMPTS=1)
    limited = api.post(f"{API}{first.pk}/retry/")
    assert limited.status_code == 429 and limited.json()["code"] == "too_many_attempts"
    assert int(limited["Retry-After"]) > 0
    assert not VerificationSession.objects.filter(previous=first).exists()


def test_the_admin_page_shows_the_attempts(failed, fake_ooto, user, admin_client):
    retry = services.retry_verification(failed, user=user)
    page = admin_client.get(f"/admin/verification_link/verificationsession/{retry.pk}/change/").content.decode()
    assert f'href="/admin/verification_link/verificationsession/{failed.pk}/change/"' in page
    assert f'<strong aria-current="page">{retry.short_id}' in page
    old = admin_client.get(f"/admin/verification_link/verificationsession/{failed.pk}/change/").content.decode()
    assert "Replaced by a new attempt" in old  # the timeline's event
