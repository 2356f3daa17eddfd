"""A user's verifications over time: reuse of an open session, attempt limits, validity and its
lapse, and the views and API around them."""

import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.management import CommandError, call_command
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import timezone
from django.views import View
from rest_framework.test import APIClient

from verification_link import services
from verification_link.checks import check_settings
from verification_link.decorators import VerificationRequiredMixin, verification_required
from verification_link.exceptions import ConfigurationError, TooManyAttempts
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db
Kind = VerificationEvent.Kind
API = "/verify/api/sessions/"


def creates(fake_ooto):
    return len(fake_ooto.calls("POST"))


# -- reuse -----------------------------------------------------------------------------------------


def test_a_second_start_returns_the_open_session_without_a_provider_call(fake_ooto, user, signal_log, commit):
    with commit():
        first = services.start_verification(user=user, next_url="/shop/")
        again = services.start_verification(user=user, next_url="/cart/")
    assert again.pk == first.pk and creates(fake_ooto) == 1
    assert VerificationSession.objects.count() == 1
    assert signal_log.names() == ["verification_created"]
    first.refresh_from_db()
    assert first.next_url == "/cart/"  # where the user came from this time


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"scopes": ["liveness"]}, id="other scopes"),
        pytest.param({"reuse": False}, id="reuse=False"),
    ],
)
def test_a_start_for_something_else_is_a_new_session(fake_ooto, user, change):
    first = services.start_verification(user=user, scopes=["liveness", "deepfake"])
    other = services.start_verification(user=user, **{"scopes": ["liveness", "deepfake"], **change})
    assert other.pk != first.pk and creates(fake_ooto) == 2


def test_no_reuse_of_a_link_about_to_expire_a_final_session_or_with_the_setting_off(fake_ooto, user, vl_settings):
    first = services.start_verification(user=user)
    VerificationSession.objects.filter(pk=first.pk).update(expires_at=timezone.now() + timedelta(seconds=200))
    second = services.start_verification(user=user)  # within REUSE_MIN_REMAINING (300 s)
    assert second.pk != first.pk
    VerificationSession.objects.filter(pk=second.pk).update(status="FAILED", url="")
    third = services.start_verification(user=user)
    assert third.pk not in (first.pk, second.pk)
    vl_settings(REUSE_OPEN_SESSIONS=False)
    assert services.start_verification(user=user).pk != third.pk
    assert creates(fake_ooto) == 4


def test_two_starts_at_once_store_one_session(fake_ooto, user, caplog):
    """The second start stores its session while the first waits for the provider: the first,
    looking again under the lock, returns that one and stores nothing of its own."""
    answer = fake_ooto.handle
    inner = []

    def meanwhile_another_start(method, path, headers, body):
        if method == "POST" and not inner:
            inner.append(None)  # the inner start's own call goes straight through
            inner[0] = services.start_verification(user=user)
        return answer(method, path, headers, body)

    fake_ooto.handle = meanwhile_another_start
    with caplog.at_level(logging.INFO, logger="verification_link"):
        outer = services.start_verification(user=user)
    assert outer.pk == inner[0].pk
    assert VerificationSession.objects.count() == 1 and creates(fake_ooto) == 2
    assert VerificationEvent.objects.filter(kind=Kind.CREATED).count() == 1
    assert "not stored; its link expires unused" in caplog.text


def test_the_api_answers_200_with_the_open_session(fake_ooto, user):
    client = APIClient()
    client.force_authenticate(user)
    first = client.post(API, {}, format="json")
    again = client.post(API, {}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


# -- attempt limits --------------------------------------------------------------------------------


def test_one_start_past_the_limit_raises_with_when_to_try_again(fake_ooto, user, vl_settings):
    vl_settings(MAX_ATTEMPTS=2, ATTEMPT_WINDOW=3600)
    oldest = services.start_verification(user=user, reuse=False)
    services.start_verification(user=user, reuse=False)
    VerificationSession.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(minutes=50))
    with pytest.raises(TooManyAttempts) as raised:
        services.start_verification(user=user, reuse=False)
    assert creates(fake_ooto) == 2  # the provider was not asked
    assert 590 <= raised.value.retry_after <= 601  # the oldest leaves the window in 10 minutes
    assert abs((raised.value.available_at - (timezone.now() + timedelta(minutes=10))).total_seconds()) < 2
    assert services.start_verification(user=user).pk  # reusing the open one is no new attempt
    VerificationSession.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(hours=2))
    assert services.start_verification(user=user, reuse=False).pk  # out of the window: allowed again
    assert creates(fake_ooto) == 3


def test_an_attempt_used_by_a_racing_start_is_refused_and_nothing_stored(fake_ooto, user, vl_settings):
    vl_settings(MAX_ATTEMPTS=1)
    answer = fake_ooto.handle
    inner = []

    def meanwhile_another_start(method, path, headers, body):
        if method == "POST" and not inner:
            inner.append(None)  # the inner start's own call goes straight through
            inner[0] = services.start_verification(user=user, reuse=False)
        return answer(method, path, headers, body)

    fake_ooto.handle = meanwhile_another_start
    with pytest.raises(TooManyAttempts):
        services.start_verification(user=user, reuse=False)
    assert list(VerificationSession.objects.values_list("pk", flat=True)) == [inner[0].pk]


def test_the_start_page_and_the_api_answer_429_with_retry_after(fake_ooto, user, client, vl_settings):
    vl_settings(MAX_ATTEMPTS=1)
    services.start_verification(user=user, scopes=["liveness"])
    client.force_login(user)
    page = client.post("/verify/start/", {"handoff": "redirect"})
    assert page.status_code == 429 and 0 < int(page["Retry-After"]) <= 86400
    assert "try again after" in page.content.decode()
    api = APIClient()
    api.force_authenticate(user)
    response = api.post(API, {}, format="json")
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= 86400
    assert response.json()["code"] == "too_many_attempts"
    assert VerificationSession.objects.count() == 1


@pytest.mark.parametrize(
    "key, value",
    [("MAX_ATTEMPTS", "many"), ("MAX_ATTEMPTS", 0), ("ATTEMPT_WINDOW", -5), ("REUSE_OPEN_SESSIONS", "yes")],
)
def test_a_wrong_lifecycle_setting_refuses_at_use_and_in_the_checks(fake_ooto, user, client, vl_settings, key, value):
    vl_settings(**{"MAX_ATTEMPTS": 3, key: value})  # the window is read where there is a limit
    with pytest.raises(ConfigurationError, match=rf'VERIFICATION_LINK\["{key}"\]'):
        services.start_verification(user=user)
    client.force_login(user)
    assert client.post("/verify/start/", {"handoff": "redirect"}).status_code == 503
    assert [m.id for m in check_settings() if key in m.msg] == ["verification_link.E013"]
    assert creates(fake_ooto) == 0


def test_digits_in_a_string_count_as_the_number(fake_ooto, user, vl_settings):
    vl_settings(MAX_ATTEMPTS="1")
    services.start_verification(user=user)
    with pytest.raises(TooManyAttempts):
        services.start_verification(user=user, reuse=False)


# -- validity --------------------------------------------------------------------------------------


def approved(user, *, days_ago=0, provider="ooto"):
    finished = timezone.now() - timedelta(days=days_ago)
    return VerificationSessionFactory(
        user=user, done=True, provider=provider, decision="approved", finished_at=finished
    )


def test_current_verification_is_the_newest_approved_one_still_valid(user, vl_settings, django_user_model):
    assert services.current_verification(user) is None and not services.is_verified(AnonymousUser())
    VerificationSessionFactory(user=user, done=True, decision="rejected")
    assert not services.is_verified(user)
    old, new = approved(user, days_ago=40), approved(user, days_ago=10, provider="valify")
    assert services.current_verification(user) == new
    assert services.current_verification(user, provider="ooto") == old
    vl_settings(VALID_FOR_DAYS=30)
    assert services.current_verification(user) == new
    assert not services.is_verified(user, provider="ooto")  # 40 days ago: lapsed
    vl_settings(VALID_FOR_DAYS=5)
    assert not services.is_verified(user)
    stranger = django_user_model.objects.create_user("zed")
    assert not services.is_verified(stranger)


def test_lapse_sends_the_signal_once_per_session_in_batches(user, vl_settings, commit, signal_log):
    vl_settings(VALID_FOR_DAYS=30)
    same_time = timezone.now() - timedelta(days=31)
    ended = [approved(user, days_ago=31) for _ in range(2)]
    ended += [
        VerificationSessionFactory(user=user, done=True, decision="approved", finished_at=same_time) for _ in range(3)
    ]
    still_valid = approved(user, days_ago=29)
    VerificationSessionFactory(user=user, done=True, decision="rejected", finished_at=same_time)
    with commit():
        assert services.lapse_verifications(batch_size=2) == 5  # batches of 2 through ties
        assert services.lapse_verifications() == 0
    assert sorted(k["session"].pk for k in signal_log.of("verification_lapsed")) == sorted(s.pk for s in ended)
    for session in ended:
        session.refresh_from_db()
        assert session.lapsed_at is not None
        assert session.events.get(kind=Kind.LAPSED).data["valid_for_days"] == 30
    still_valid.refresh_from_db()
    assert still_valid.lapsed_at is None


def test_no_lapse_without_valid_for_days_and_the_command_runs_it(user, vl_settings, capsys):
    approved(user, days_ago=400)
    assert services.lapse_verifications() == 0
    vl_settings(VALID_FOR_DAYS=365)
    call_command("verification_link", "lapse")
    assert capsys.readouterr().out.strip().splitlines()[-1] == "lapse: 1 lapsed"


def page(request):
    return HttpResponse("members only")


class MembersView(VerificationRequiredMixin, View):
    verification_provider = "ooto"

    def get(self, request):
        return HttpResponse("members only")


@pytest.mark.parametrize("view", [verification_required(page), MembersView.as_view()], ids=["decorator", "mixin"])
def test_verification_required_sends_others_to_start_with_next(user, view):
    request = RequestFactory().get("/members/?tab=1")
    request.user = AnonymousUser()
    assert view(request).status_code == 302 and "/login" in view(request)["Location"]
    request.user = user
    response = view(request)
    assert response.status_code == 302
    assert response["Location"] == "/verify/start/?next=%2Fmembers%2F%3Ftab%3D1"
    approved(user)
    assert view(request).content == b"members only"


@pytest.mark.parametrize("view", [verification_required(page), MembersView.as_view()], ids=["decorator", "mixin"])
def test_verification_required_with_a_broken_setting_answers_the_friendly_page_closed(user, view, vl_settings, caplog):
    approved(user)
    vl_settings(VALID_FOR_DAYS="a month")
    request = RequestFactory().get("/members/")
    request.user = user
    with caplog.at_level(logging.ERROR, logger="verification_link"):
        response = view(request)
    assert response.status_code == 503 and b"members only" not in response.content
    assert b'href="/" id="vl-continue"' in response.content  # a way out, not back to the guarded page
    assert 'VERIFICATION_LINK["VALID_FOR_DAYS"]' in caplog.text


def test_verification_required_at_a_provider(user):
    guarded = verification_required(provider="valify")(page)
    request = RequestFactory().get("/members/")
    request.user = user
    approved(user, provider="ooto")
    assert guarded(request).status_code == 302
    approved(user, provider="valify")
    assert guarded(request).status_code == 200


def test_a_wrong_lifecycle_setting_answers_503_in_the_api_and_one_line_in_the_command(fake_ooto, user, vl_settings):
    vl_settings(MAX_ATTEMPTS="many", VALID_FOR_DAYS=-1)
    client = APIClient()
    client.force_authenticate(user)
    response = client.post(API, {}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "unavailable"
    with pytest.raises(CommandError, match=r'lapse: VERIFICATION_LINK\["(MAX_ATTEMPTS|VALID_FOR_DAYS)"\]') as raised:
        call_command("verification_link", "lapse")
    assert raised.value.returncode == 2


def test_a_session_re_decided_before_its_lapse_batch_does_not_lapse(user, vl_settings, commit, signal_log):
    vl_settings(VALID_FOR_DAYS=30)
    session = approved(user, days_ago=40)
    from verification_link.services.lifecycle import _lapse_batch

    VerificationSession.objects.filter(pk=session.pk).update(decision="rejected")  # after the page was read
    with commit():
        assert _lapse_batch([session.pk], now=timezone.now()) == 0
    assert signal_log.of("verification_lapsed") == []
