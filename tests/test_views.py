"""The hand-off views: start, status page, live status, QR, return, callback, webhook."""

import json
from datetime import timedelta

import django
import pytest
from celery import Celery
from celery.signals import before_task_publish
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from verification_link import services
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db
Kind = VerificationEvent.Kind


@pytest.fixture
def session(fake_ooto, user):
    return services.start_verification(user=user, scopes=["liveness"])


@pytest.fixture
def owner(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def stranger(django_user_model):
    other = django_user_model.objects.create_user("bob", "bob@example.com", "pw")
    client = Client()
    client.force_login(other)
    return client


def callback_url(session, provider="ooto", secret=None):
    return f"/verify/callback/{provider}/{secret or session.callback_secret}/"


def post_json(client, url, body, **extra):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **extra)


def snapshot():
    return list(VerificationSession.objects.order_by("pk").values())


# -- start ------------------------------------------------------------------------------------------


def test_start_page_offers_both_hand_offs(owner):
    response = owner.get("/verify/start/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Continue here" in html and "Continue on my phone" in html
    assert "csrfmiddlewaretoken" in html


@pytest.mark.parametrize("method", ["get", "post"])
def test_start_sends_anonymous_users_to_login(client, fake_ooto, method):
    response = getattr(client, method)("/verify/start/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/verify/start/")
    assert not fake_ooto.calls()


def test_start_redirects_to_the_provider(owner, fake_ooto, user):
    response = owner.post("/verify/start/", {"handoff": "redirect"})
    session = VerificationSession.objects.get()
    assert response.status_code == 303
    assert response["Location"] == session.url
    assert session.user == user


def test_start_for_the_phone_shows_the_status_page(owner, fake_ooto):
    response = owner.post("/verify/start/", {"handoff": "qr", "next": "/account/"})
    session = VerificationSession.objects.get()
    assert response.status_code == 303
    assert response["Location"] == f"/verify/s/{session.pk}/"
    assert session.next_url == "/account/"


def test_start_ignores_an_unsafe_next(owner, fake_ooto):
    owner.post("/verify/start/", {"handoff": "qr", "next": "https://evil.example/"})
    assert VerificationSession.objects.get().next_url == ""


@pytest.mark.parametrize("status", [500, 503, 401, 422])
def test_start_with_the_provider_down_is_a_friendly_503(owner, fake_ooto, status):
    fake_ooto.fail_next(status)
    response = owner.post("/verify/start/", {"handoff": "redirect"})
    assert response.status_code == 503
    assert "Nothing was started" in response.content.decode()
    assert not VerificationSession.objects.exists()
    assert VerificationEvent.objects.get().kind == Kind.CREATE_FAILED


def test_start_refuses_an_unknown_hand_off(owner, fake_ooto):
    response = owner.post("/verify/start/", {"handoff": "fax"})
    assert response.status_code == 400
    assert not fake_ooto.calls()


def test_start_needs_the_csrf_token(user, fake_ooto):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/verify/start/", {"handoff": "redirect"}).status_code == 403
    assert not VerificationSession.objects.exists()


# -- status page, live status, QR ---------------------------------------------------------------------


def test_status_page_shows_the_qr_and_link_while_open(owner, session):
    response = owner.get(f"/verify/s/{session.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert f"/verify/s/{session.pk}/qr.svg" in html
    assert session.url in html
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
    assert 'name="viewport"' in html


@pytest.mark.parametrize(
    ("trait", "decision", "text", "offer"),
    [
        ({"done": True}, "approved", "You are verified.", None),
        ({"done": True}, "review", "being reviewed", None),
        ({"done": True}, "rejected", "could not verify you", "Try again"),
        ({"failed": True}, "rejected", "could not verify you", "Try again"),
        ({"status": "EXPIRED", "url": ""}, "", "expired", "Start again"),
        ({"status": "CANCELED", "url": ""}, "", "canceled", "Start again"),
    ],
)
def test_status_page_shows_the_outcome_when_final(owner, user, trait, decision, text, offer):
    session = VerificationSessionFactory(user=user, decision=decision, **trait)
    html = owner.get(f"/verify/s/{session.pk}/").content.decode()
    assert text in html
    # A failed or rejected attempt is retried (linked to it); an expired or canceled one started anew.
    assert ("Start again" in html) is (offer == "Start again")
    assert ("Try again" in html) is (offer == "Try again")
    assert (f"/verify/s/{session.pk}/retry/" in html) is (offer == "Try again")
    assert "qr.svg" not in html


def test_nobody_but_the_owner_sees_a_session(stranger, client, session):
    for path in ("", "status.json", "qr.svg"):
        assert stranger.get(f"/verify/s/{session.pk}/{path}").status_code == 404
    # Anonymous visitors are asked to log in (status page) or get nothing.
    assert client.get(f"/verify/s/{session.pk}/").status_code == 302
    assert client.get(f"/verify/s/{session.pk}/qr.svg").status_code == 404
    assert client.get(f"/verify/s/{session.pk}/status.json").status_code == 404


def test_live_status_asks_the_provider_at_most_every_live_poll_seconds(owner, fake_ooto, session, vl_settings):
    from django.core.cache import cache

    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    body = owner.get(f"/verify/s/{session.pk}/status.json").json()
    assert (body["status"], body["next_step"], body["is_final"]) == ("IN_PROGRESS", "LIVENESS", False)
    assert (body["state"], body["status_label"]) == ("in_progress", "In progress")
    assert 'id="vl-status-label">In progress<' in body["html"]  # the live part, rendered for the swap
    assert len(fake_ooto.calls("GET")) == 1
    for _ in range(3):  # a page polling every second or two, a second tab: within the window, no call
        owner.get(f"/verify/s/{session.pk}/status.json")
    assert len(fake_ooto.calls("GET")) == 1
    VerificationSession.objects.filter(pk=session.pk).update(last_polled_at=timezone.now() - timedelta(seconds=4))
    cache.clear()  # the window's claim has lapsed too
    owner.get(f"/verify/s/{session.pk}/status.json")
    assert len(fake_ooto.calls("GET")) == 2
    assert set(body) == {
        *("id", "status", "state", "status_label", "next_step", "is_final", "decision", "expires_at"),
        *("resubmission_requested", "html"),
    }


def test_live_status_off_asks_only_on_the_poll_schedule(owner, fake_ooto, session, vl_settings):
    vl_settings(LIVE_POLL_SECONDS=0)
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    assert owner.get(f"/verify/s/{session.pk}/status.json").json()["status"] == "CREATED"
    assert not fake_ooto.calls("GET")
    VerificationSession.objects.filter(pk=session.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))
    assert owner.get(f"/verify/s/{session.pk}/status.json").json()["status"] == "IN_PROGRESS"
    assert len(fake_ooto.calls("GET")) == 1


def test_live_status_of_a_final_session_asks_nobody(owner, fake_ooto, user):
    done = VerificationSessionFactory(user=user, done=True)
    body = owner.get(f"/verify/s/{done.pk}/status.json").json()
    assert (body["state"], body["is_final"]) == ("verified", True) and not fake_ooto.calls()


def test_qr_is_an_uncached_svg_of_the_link(owner, session):
    response = owner.get(f"/verify/s/{session.pk}/qr.svg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert "no-store" in response["Cache-Control"]
    assert response.content.startswith(b"<svg") or b"<svg" in response.content[:200]


def test_qr_is_gone_once_final(owner, user):
    session = VerificationSessionFactory(user=user, done=True)
    assert owner.get(f"/verify/s/{session.pk}/qr.svg").status_code == 404


def test_qr_template_tag(session):
    from django.template import Context, Template

    template = Template("{% load verification_link %}{% verification_qr session %}")
    assert "<svg" in template.render(Context({"session": session}))
    session.status = "DONE"
    assert template.render(Context({"session": session})) == ""


# -- return -------------------------------------------------------------------------------------------


def make_due(session):
    VerificationSession.objects.filter(pk=session.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))


def test_return_checks_when_a_poll_is_due_and_lands_on_the_status_page(owner, fake_ooto, session):
    fake_ooto.complete(session)
    make_due(session)
    response = owner.get(f"/verify/s/{session.pk}/return/")
    assert (response.status_code, response["Location"]) == (302, f"/verify/s/{session.pk}/")
    session.refresh_from_db()
    assert session.status == "DONE"
    assert session.events.get(kind=Kind.STATUS_CHANGED).source == "return"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?next=/account/", "/account/"),
        ("?next=https://evil.example/", None),
        ("?next=//evil.example/", None),
        ("?next=javascript:alert(1)", None),
        ("?next=http://testserver/ok/", "http://testserver/ok/"),
    ],
)
def test_return_follows_only_safe_next_urls(owner, fake_ooto, session, query, expected):
    fake_ooto.complete(session)
    make_due(session)
    response = owner.get(f"/verify/s/{session.pk}/return/{query}")
    assert response["Location"] == (expected or f"/verify/s/{session.pk}/")


def test_return_falls_back_to_the_start_next_then_the_setting(owner, fake_ooto, user, vl_settings):
    vl_settings(DEFAULT_NEXT_URL="/welcome/")
    session = services.start_verification(user=user)
    fake_ooto.complete(session)
    make_due(session)
    assert owner.get(f"/verify/s/{session.pk}/return/")["Location"] == "/welcome/"
    session = services.start_verification(user=user, next_url="/from-start/")
    fake_ooto.complete(session)
    make_due(session)
    assert owner.get(f"/verify/s/{session.pk}/return/")["Location"] == "/from-start/"


def test_a_return_before_the_end_lands_on_the_status_page_with_a_way_on(owner, fake_ooto, user):
    """The user left the provider's flow (or its result is a moment away): the status page says
    both, offers to continue with the same link, to start again, or to cancel — not the site's
    next page, which could only say "not verified yet"."""
    session = services.start_verification(user=user, next_url="/checkout/")
    response = owner.get(f"/verify/s/{session.pk}/return/")
    assert response["Location"] == f"/verify/s/{session.pk}/?returned=1"
    page = owner.get(response["Location"]).content.decode()
    assert 'id="vl-returned"' in page and "Did you leave before the end?" in page
    assert f'href="{session.url}"' in page and "Continue where you left off" in page
    assert f'name="restart" value="{session.pk}"' in page
    assert f'action="/verify/s/{session.pk}/cancel/"' in page


def test_return_on_another_device_shows_a_neutral_page(client, fake_ooto, session):
    fake_ooto.fail(session)
    response = client.get(f"/verify/s/{session.pk}/return/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "close this page" in html
    assert "FAILED" not in html and "not verified" not in html.lower()


def test_return_survives_a_provider_outage(owner, fake_ooto, session):
    fake_ooto.fail_next(503)
    make_due(session)
    response = owner.get(f"/verify/s/{session.pk}/return/")
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.status == "CREATED"


def test_return_is_never_evidence(owner, fake_ooto, session, signal_log):
    owner.get(f"/verify/s/{session.pk}/return/?status=DONE")
    session.refresh_from_db()
    assert session.status == "CREATED"
    assert signal_log == []


def test_seven_anonymous_return_hits_make_at_most_one_provider_call(client, fake_ooto, session):
    """A return is a hint, and anyone may hit it: it asks the provider only when a poll is due."""
    make_due(session)
    for _ in range(7):
        assert client.get(f"/verify/s/{session.pk}/return/").status_code == 200
    assert len(fake_ooto.calls("GET")) == 1
    assert session.events.filter(kind=Kind.POLL).count() == 1  # one event per real provider answer
    assert session.events.count() == 2  # created, and that answer


def test_a_return_when_no_poll_is_due_asks_nothing_and_pulls_the_poll_forward(client, fake_ooto, session):
    later = timezone.now() + timedelta(seconds=300)
    VerificationSession.objects.filter(pk=session.pk).update(next_poll_at=later)
    fake_ooto.complete(session)
    client.get(f"/verify/s/{session.pk}/return/")
    assert not fake_ooto.calls("GET")
    session.refresh_from_db()
    assert session.status == "CREATED"
    assert session.next_poll_at <= timezone.now() + timedelta(seconds=10)  # POLL_INTERVAL: soon, not now
    before = VerificationSession.objects.filter(pk=session.pk).values().get()
    for _ in range(6):
        client.get(f"/verify/s/{session.pk}/return/")
    assert VerificationSession.objects.filter(pk=session.pk).values().get() == before  # writes nothing
    assert not fake_ooto.calls("GET") and session.events.count() == 1
    # The pulled-forward poll confirms the outcome.
    assert services.run_poll_sweep(now=session.next_poll_at).processed == 1
    session.refresh_from_db()
    assert session.status == "DONE"


def test_concurrent_due_returns_claim_one_provider_call(fake_ooto, session):
    """Two hits that both read "due": the claim (a conditional UPDATE) lets one of them ask."""
    make_due(session)
    stale = VerificationSession.objects.get(pk=session.pk)
    assert services.refresh_on_return(stale).pk == session.pk
    assert services.refresh_on_return(stale).pk == session.pk  # read as due, but claimed meanwhile
    assert len(fake_ooto.calls("GET")) == 1


# -- callback -----------------------------------------------------------------------------------------


def test_a_forged_done_is_never_applied(client, fake_ooto, session, signal_log, django_capture_on_commit_callbacks):
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    forged = {"status": "DONE", "result": {"liveness": {"fine": True, "score": 1.0}}}
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(client, callback_url(session), forged)
    assert response.status_code == 202
    session.refresh_from_db()
    assert session.status == "IN_PROGRESS"
    assert session.result == {}
    assert [k["new_status"] for k in signal_log.of("verification_status_changed")] == ["IN_PROGRESS"]
    event = session.events.get(kind=Kind.CALLBACK)
    assert json.loads(event.body) == forged
    assert (event.valid, event.processed) == (True, True)


def test_callback_confirms_by_asking_the_provider(client, fake_ooto, session):
    fake_ooto.complete(session)
    response = post_json(client, callback_url(session), fake_ooto.status_body(session))
    assert (response.status_code, response.json()) == (202, {"status": "accepted"})
    session.refresh_from_db()
    assert session.status == "DONE"
    assert session.events.get(kind=Kind.STATUS_CHANGED).source == "callback"
    again = post_json(client, callback_url(session), fake_ooto.status_body(session))
    assert (again.status_code, again.json()) == (200, {"status": "already final"})
    assert len(fake_ooto.calls("GET")) == 1


def test_callback_is_recorded_even_when_confirmation_fails(client, fake_ooto, session):
    fake_ooto.fail_next(503)
    response = post_json(client, callback_url(session), {"status": "DONE"})
    assert response.status_code == 202
    event = session.events.get(kind=Kind.CALLBACK)
    assert (event.valid, event.processed) == (True, False)
    assert session.events.filter(kind=Kind.POLL_FAILED).exists()


def test_callback_needs_no_csrf_token_and_no_login(fake_ooto, session):
    fake_ooto.complete(session)
    client = Client(enforce_csrf_checks=True)
    assert post_json(client, callback_url(session), {}).status_code == 202


@pytest.mark.skipif(django.VERSION < (5, 1), reason="LoginRequiredMiddleware is Django 5.1+")
def test_callback_and_return_work_under_login_required_middleware(settings, fake_ooto, session, client):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
    assert post_json(client, callback_url(session), {}).status_code == 202
    assert client.get(f"/verify/s/{session.pk}/return/").status_code == 200


@pytest.fixture
def celery_app(vl_settings):
    """A real Celery app on kombu's in-memory broker: messages are published, nothing runs."""
    vl_settings(TASKS="celery")
    from celery import current_app

    previous = current_app._get_current_object()
    app = Celery("vl-tests", broker="memory://", set_as_current=True)
    app.conf.task_always_eager = False
    published = []

    def record(sender=None, body=None, headers=None, **kwargs):
        published.append((headers["task"], list(body[0])))

    before_task_publish.connect(record, weak=False)
    yield published
    before_task_publish.disconnect(record)
    previous.set_current()


def test_callback_queues_the_confirmation_after_commit_with_celery(
    client, fake_ooto, session, celery_app, django_capture_on_commit_callbacks
):
    fake_ooto.complete(session)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(client, callback_url(session), {"status": "DONE"})
    assert response.status_code == 202
    event = session.events.get(kind=Kind.CALLBACK)
    assert celery_app == [("verification_link.process_callback", [event.pk])]
    session.refresh_from_db()
    assert session.status == "CREATED"  # the worker, not the request, confirms
    assert not fake_ooto.calls("GET")
    from verification_link.tasks import process_callback

    assert process_callback.run(event.pk) == "DONE"
    assert process_callback.run(event.pk) == "DONE"  # twice: no second provider call
    assert len(fake_ooto.calls("GET")) == 1


def test_callback_query_count_is_small_and_constant(client, fake_ooto, user, celery_app):
    def queries_for_one_callback():
        session = services.start_verification(user=user)
        with CaptureQueriesContext(connection) as ctx:
            assert post_json(client, callback_url(session), {"status": "DONE"}).status_code == 202
        return len(ctx.captured_queries)

    first = queries_for_one_callback()
    for _ in range(20):
        services.start_verification(user=user)
    assert queries_for_one_callback() == first
    assert first <= 4


def test_inline_confirmation_of_an_unchanged_status_is_one_statement_after_the_call(client, fake_ooto, session):
    """Inline (no Celery), a callback whose confirmation brings the status we hold costs, on every
    database, two statements before the provider call (find the session, record the request) and
    one after: the verdict written with the answer on the callback's own row. The session row is
    not rewritten to say nothing changed — the claim of the call (callbacks within
    ``CALLBACK_COALESCE_SECONDS`` share it) lives in the cache. ``benchmarks/run.py`` weighs this
    path against a bare view."""
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    services.refresh_session(session)
    # The last call is older than the coalescing window: this callback asks again.
    VerificationSession.objects.filter(pk=session.pk).update(last_polled_at=timezone.now() - timedelta(minutes=1))
    session.refresh_from_db()
    before = VerificationSession.objects.filter(pk=session.pk).values().get()
    with CaptureQueriesContext(connection) as ctx:
        assert post_json(client, callback_url(session), {"status": "IN_PROGRESS"}).status_code == 202
    sql = [q["sql"] for q in ctx.captured_queries]
    statements = [q.split()[0] for q in sql if not q.startswith(("SAVEPOINT", "RELEASE"))]
    assert statements == ["SELECT", "INSERT", "UPDATE"]
    event = session.events.get(kind=Kind.CALLBACK)
    assert (event.valid, event.processed, event.error, event.session_id) == (True, True, "", session.pk)
    assert event.headers["Content-Type"] == "application/json" and json.loads(event.body) == {"status": "IN_PROGRESS"}
    assert (event.old_status, event.new_status, event.applied) == ("IN_PROGRESS", "IN_PROGRESS", False)
    assert event.data["answer"]["next_step"] == "LIVENESS"
    assert not session.events.filter(kind=Kind.POLL, source="callback").exists()
    assert VerificationSession.objects.filter(pk=session.pk).values().get() == before


def test_an_unknown_secret_is_recorded_without_a_session(client, fake_ooto, session):
    response = post_json(client, callback_url(session, secret="x" * 43), {"status": "DONE"})
    assert response.status_code == 404
    event = VerificationEvent.objects.get(kind=Kind.CALLBACK)
    assert (event.session_id, event.valid, event.error) == (None, False, "unknown provider or secret")
    assert json.loads(event.body) == {"status": "DONE"}
    assert not fake_ooto.calls("GET")


def test_a_second_confirmation_of_the_same_callback_records_nothing_more(client, fake_ooto, session, celery_app):
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    services.refresh_session(session)
    # Older than the coalescing window: the confirmation asks the provider.
    VerificationSession.objects.filter(pk=session.pk).update(last_polled_at=timezone.now() - timedelta(minutes=1))
    post_json(client, callback_url(session), {"status": "IN_PROGRESS"})
    event = session.events.get(kind=Kind.CALLBACK)
    stale = VerificationEvent.objects.select_related("session").get(pk=event.pk)
    services.confirm_callback(event.pk)
    confirmed = VerificationEvent.objects.values().get(pk=event.pk)
    assert confirmed["processed"] and confirmed["data"]["answer"]["next_step"] == "LIVENESS"
    rows = VerificationEvent.objects.count()
    # A task retried with an event read before the first run finished: the statement finds it processed.
    services.confirm_callback(stale)
    assert VerificationEvent.objects.count() == rows
    assert VerificationEvent.objects.values().get(pk=event.pk) == confirmed


def test_inline_confirmation_of_a_move_marks_the_callback_processed_with_it(client, fake_ooto, session, signal_log):
    fake_ooto.complete(session)
    with CaptureQueriesContext(connection) as ctx:
        assert post_json(client, callback_url(session), {"status": "DONE"}).status_code == 202
    event = session.events.get(kind=Kind.CALLBACK)
    assert (event.valid, event.processed) == (True, True)
    session.refresh_from_db()
    assert session.status == "DONE"
    # The verdict is written inside the transaction that applies the answer, not after it.
    sql = [q["sql"] for q in ctx.captured_queries]
    judged = next(i for i, q in enumerate(sql) if q.startswith("UPDATE") and "processed" in q and "event" in q)
    saved = max(i for i, q in enumerate(sql) if q.startswith("UPDATE") and "verificationsession" in q)
    assert judged < saved


# -- webhook ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["ooto", "nope"])
def test_providers_without_webhooks_answer_404(client, alias):
    response = post_json(client, f"/verify/webhook/{alias}/", {"x": 1})
    assert response.status_code == 404
    assert not VerificationSession.objects.exists()


def test_the_callback_reads_its_session_as_the_orm_does(fake_ooto, session, rf):
    """PostgreSQL reads the session and records the request in one raw statement; the session it
    builds must hold what the ORM would (JSON decoded, types converted)."""
    request = rf.post("/cb/", data=b"{}", content_type="application/json")
    event, found = services.record_callback(request, provider="ooto", secret=session.callback_secret, body=b"{}")
    expected = VerificationSession.objects.get(pk=session.pk)
    assert found is not None and event.session_id == session.pk and event.pk
    for name in services.CALLBACK_SESSION_FIELDS:
        assert getattr(found, name) == getattr(expected, name), name
    assert found.scopes == ["liveness"]
