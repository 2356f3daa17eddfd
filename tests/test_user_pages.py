"""What a user meets after the start: distinct outcome pages with a way on, one vocabulary of
states, the user's cancel, "Start again" without orphans, what each provider needs, and pages
that follow the language's direction."""

import re
from datetime import datetime
from datetime import timezone as dt_timezone

import pytest
from django.test import Client
from django.utils import translation

from verification_link import services
from verification_link.labels import STATES, user_state
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db
Status = VerificationSession.Status


@pytest.fixture
def owner(client, user):
    client.force_login(user)
    return client


def page(client, session, query=""):
    return client.get(f"/verify/s/{session.pk}/{query}").content.decode()


# -- outcome pages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trait", "state", "tone", "heading", "button"),
    [
        ({"done": True}, "verified", "success", "You are verified.", "Continue"),
        (
            {"done": True, "decision": "review"},
            "in_review",
            "warning",
            "Your verification is being reviewed.",
            "Continue",
        ),
        ({"failed": True}, "not_verified", "danger", "We could not verify you this time.", "Back to the site"),
        ({"status": Status.EXPIRED, "url": ""}, "expired", "neutral", "The link expired", "Back to the site"),
        (
            {"status": Status.CANCELED, "url": ""},
            "canceled",
            "neutral",
            "This verification was canceled.",
            "Back to the site",
        ),
    ],
)
def test_each_outcome_has_its_own_heading_tone_sentence_and_a_way_on(owner, user, trait, state, tone, heading, button):
    session = VerificationSessionFactory(user=user, **trait)
    html = page(owner, session)
    assert f'class="vl-state vl-tone-{tone}" data-state="{state}"' in html
    assert re.search(rf'<h2 class="vl-outcome" id="vl-outcome"[^>]*>{re.escape(heading)}', html)
    assert str(STATES[state].sentence).replace("'", "&#x27;") in html
    assert re.search(rf'<a class="vl-button[^"]*" href="/" id="vl-continue">{button}</a>', html)


def test_continue_leads_to_the_next_url_then_the_setting_then_home(owner, user, vl_settings):
    with_next = VerificationSessionFactory(user=user, done=True, next_url="/checkout/?step=2")
    assert 'href="/checkout/?step=2" id="vl-continue"' in page(owner, with_next)
    unsafe = VerificationSessionFactory(user=user, done=True, next_url="https://evil.example/")
    assert 'href="/" id="vl-continue"' in page(owner, unsafe)
    vl_settings(DEFAULT_NEXT_URL="/account/")
    assert 'href="/account/" id="vl-continue"' in page(owner, unsafe)


def test_one_vocabulary_of_states_for_pages_the_json_and_a_sites_templates(owner, user):
    from django.template import engines

    done = VerificationSessionFactory(user=user, done=True)
    review = VerificationSessionFactory(user=user, done=True, decision="review")
    template = engines["django"].from_string("{% load verification_link %}{{ s|vl_status_label }}")
    for session, label in ((done, "Verified"), (review, "Being reviewed")):
        assert template.render({"s": session}) == label
        assert owner.get(f"/verify/s/{session.pk}/status.json").json()["status_label"] == label
        assert f'id="vl-status-label">{label}<' in page(owner, session)
    assert "Completed" not in page(owner, done)  # the model's word for DONE is for staff


def test_every_state_a_session_can_be_in_has_a_user_state():
    for status in Status.values:
        for decision in VerificationSession.Decision.values:
            for verdict in ("", "resubmission"):
                session = VerificationSession(status=status, decision=decision, provider_verdict=verdict)
                assert user_state(session).key in STATES


def test_times_carry_their_timezone_and_no_double_stop(owner, fake_ooto, user, settings):
    settings.TIME_ZONE = "Africa/Cairo"
    session = services.start_verification(user=user)
    VerificationSession.objects.filter(pk=session.pk).update(
        expires_at=datetime(2026, 12, 2, 19, 30, tzinfo=dt_timezone.utc)
    )
    html = page(owner, session)
    hint = re.search(r'<p class="vl-hint">([^<]*)</p>', html).group(1)
    assert "EET" in hint and "9:30" in hint and ".." not in hint


# -- the user's cancel and "Start again" -----------------------------------------------------------------


def test_the_owner_cancels_an_open_session(owner, fake_ooto, user, signal_log, commit):
    session = services.start_verification(user=user)
    assert f'action="/verify/s/{session.pk}/cancel/"' in page(owner, session)
    assert owner.get(f"/verify/s/{session.pk}/cancel/").status_code == 405
    with commit():
        response = owner.post(f"/verify/s/{session.pk}/cancel/")
    assert (response.status_code, response["Location"]) == (303, f"/verify/s/{session.pk}/")
    session.refresh_from_db()
    assert session.status == Status.CANCELED and session.url == ""
    assert session.events.get(kind=VerificationEvent.Kind.CANCELED).source == "user"
    assert signal_log.of("verification_finished")
    again = owner.post(f"/verify/s/{session.pk}/cancel/")  # a second click: nothing more happens
    assert again.status_code == 303 and session.events.filter(kind="canceled").count() == 1
    assert "Cancel this verification" not in page(owner, session)


def test_nobody_else_cancels(fake_ooto, user, django_user_model, client):
    session = services.start_verification(user=user)
    assert client.post(f"/verify/s/{session.pk}/cancel/").status_code == 302  # to the login
    other = django_user_model.objects.create_user("mallory", password="pw")
    stranger = Client()
    stranger.force_login(other)
    assert stranger.post(f"/verify/s/{session.pk}/cancel/").status_code == 404
    session.refresh_from_db()
    assert session.status == Status.CREATED


def test_start_again_from_an_open_session_leaves_no_orphan_even_after_back(owner, fake_ooto, user):
    first = services.start_verification(user=user)
    form = {"handoff": "qr", "restart": str(first.pk), "provider": "ooto"}
    response = owner.post("/verify/start/", form)
    second = VerificationSession.objects.exclude(pk=first.pk).get()
    assert response["Location"] == f"/verify/s/{second.pk}/"
    first.refresh_from_db()
    assert first.status == Status.CANCELED
    # Back to the old page, "Start again" once more: the new session is returned, none is added.
    owner.post("/verify/start/", form)
    assert VerificationSession.objects.filter(status__in=VerificationSession.OPEN_STATUSES).count() == 1
    assert len(fake_ooto.calls("POST")) == 2


def test_start_again_offers_both_hand_offs(owner, user):
    expired = VerificationSessionFactory(user=user, status=Status.EXPIRED, url="")
    html = page(owner, expired)
    form = html[html.index('action="/verify/start/"') :]
    form = form[: form.index("</form>")]
    assert 'value="redirect"' in form and 'value="qr"' in form and 'name="provider" value="ooto"' in form


def test_a_restart_naming_someone_elses_session_cancels_nothing(owner, fake_ooto, django_user_model):
    other = django_user_model.objects.create_user("mallory", password="pw")
    theirs = VerificationSessionFactory(user=other)
    owner.post("/verify/start/", {"handoff": "qr", "restart": str(theirs.pk)})
    owner.post("/verify/start/", {"handoff": "qr", "restart": "not-a-uuid" * 50})
    theirs.refresh_from_db()
    assert theirs.status == Status.CREATED


# -- what the user will need -------------------------------------------------------------------------


def test_the_start_page_says_what_each_provider_needs(owner, vl_settings):
    html = owner.get("/verify/start/").content.decode()
    assert "a camera, for a short selfie video" in html and "national ID" not in html
    vl_settings(USER_PROVIDERS=["valify"], DEFAULT_PROVIDER="valify")
    html = owner.get("/verify/start/").content.decode()
    assert "your national ID card" in html and "your phone, to receive a code" in html
    assert "selfie check" not in html  # the OOTO wording is not the ID-card flow's
    vl_settings(USER_PROVIDERS=["ooto", "valify"], DEFAULT_PROVIDER="ooto")
    html = owner.get("/verify/start/").content.decode()
    needs = html[html.index('id="vl-needs"') :]
    assert needs.index("OOTO") < needs.index("a camera") < needs.index("Valify") < needs.index("national ID")


# -- direction ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("language", "direction"), [("ar", "rtl"), ("fr", "ltr"), ("en", "ltr")])
def test_our_pages_follow_the_languages_direction(owner, fake_ooto, user, language, direction):
    session = services.start_verification(user=user)
    with translation.override(language):
        for html in (owner.get("/verify/start/").content.decode(), page(owner, session)):
            assert f'<html lang="{language}" dir="{direction}">' in html


# -- starts refused ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("next_url", "default_next", "back"),
    [
        ("/shop/checkout/", None, "/shop/checkout/"),
        ("https://evil.example/", "/account/", "/account/"),
        ("", None, "/"),
    ],
)
def test_a_start_the_provider_refused_says_so_and_leads_back_to_the_site(
    owner, fake_ooto, vl_settings, next_url, default_next, back
):
    vl_settings(DEFAULT_NEXT_URL=default_next)
    fake_ooto.fail_next(503)
    response = owner.post("/verify/start/", {"handoff": "redirect", "next": next_url})
    html = response.content.decode()
    assert response.status_code == 503
    assert 'class="vl-state vl-tone-warning" data-state="unavailable"' in html
    assert f'href="{back}" id="vl-continue"' in html
    try_again = re.search(r'href="([^"]*)" id="vl-try-again"', html).group(1)
    assert try_again == "/verify/start/" + (f"?next={next_url}" if back == next_url else "")
    assert not VerificationSession.objects.exists()


def test_a_start_past_the_attempt_limit_says_when_and_leads_back_to_the_site(owner, user, fake_ooto, vl_settings):
    vl_settings(MAX_ATTEMPTS=1, DEFAULT_NEXT_URL="/account/")
    VerificationSessionFactory(user=user, failed=True)
    response = owner.post("/verify/start/", {"handoff": "qr"})
    html = response.content.decode()
    assert response.status_code == 429
    assert 'class="vl-state vl-tone-warning" data-state="too_many_attempts"' in html
    assert "You can try again after" in html and 'href="/account/" id="vl-continue"' in html
    assert VerificationSession.objects.count() == 1 and not fake_ooto.calls()
