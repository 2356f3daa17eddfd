"""Issue 12, points 8 and 9: what an inbound request may leave behind, and what it may cost.

- Retention reaches everything stored: unauthenticated bodies are kept as a short prefix only
  (``UNVERIFIED_BODY_BYTES``) until the request is authenticated; a verified webhook's body follows
  the provider's sensitive-data rule; requests that matched no session, or were never
  authenticated, are scrubbed at ``RETENTION_DAYS`` like the events of finished sessions.
- No amplification: repeated callbacks with a valid secret inside ``CALLBACK_COALESCE_SECONDS``
  share one provider call, and the next poll is pulled forward so a real completion is not lost.

Provider traffic goes through the HTTP-layer fakes (``FakeOoto``, ``responses`` for Valify).
"""

import json
import threading
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from verification_link import services
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider

from .test_valify import start as start_valify
from .test_valify import valify_api, valify_result  # noqa: F401  (valify_api is a fixture)

pytestmark = pytest.mark.django_db
Kind = VerificationEvent.Kind
PREFIX = 1024  # UNVERIFIED_BODY_BYTES, the default


def callback_url(session, secret=None):
    return f"/verify/callback/ooto/{secret or session.callback_secret}/"


def post(client, url, body, headers=None):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}
    return client.post(url, data=body, content_type="application/json", **extra)


def signed(body):
    return get_provider("valify").webhook_verifier().sign(body)


def stored_bytes(events):
    return sum(len(e.body.encode()) for e in events)


@pytest.fixture
def ooto_beside_valify(valify_api):  # noqa: F811
    """FakeOoto on the Valify fixture's ``responses`` mock: two mocks at once would shadow each other."""
    from verification_link.testing import FakeOoto

    return FakeOoto(app_id="test-app-id", app_key="test-app-key-SECRET", mock=valify_api)


def with_valify(settings, **changes):
    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers["valify"] = {**providers["valify"], **changes}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}


# -- 8 (b): unauthenticated bodies are stored as a prefix only -------------------------------------------


def test_forty_unauthenticated_65_kb_posts_store_at_most_forty_prefixes(client, ooto_beside_valify, user):
    ooto = services.start_verification(user=user)
    valify = start_valify(user)
    padding = "x" * (65 * 1000)
    for n in range(20):
        body = json.dumps({"status": "DONE", "n": n, "padding": padding}).encode()
        assert post(client, callback_url(ooto, secret=f"{n:043d}"), body).status_code == 404
        body = json.dumps({"session_token": valify.token, "status": "success", "padding": padding}).encode()
        headers = {**signed(body), "X-Valify-Signature": "0" * 64}  # a wrong signature
        assert post(client, "/verify/webhook/valify/", body, headers).status_code == 401
    events = list(VerificationEvent.objects.filter(kind__in=[Kind.CALLBACK, Kind.WEBHOOK]))
    assert len(events) == 40
    assert stored_bytes(events) <= 40 * PREFIX  # 2.6 MB before
    assert all(e.body_truncated and e.valid is False and e.body for e in events)


def test_the_prefix_is_a_setting(client, fake_ooto, user, vl_settings):
    vl_settings(UNVERIFIED_BODY_BYTES=16)
    session = services.start_verification(user=user)
    post(client, callback_url(session, secret="y" * 43), b'{"status": "DONE", "padding": "xxxxxxxx"}')
    event = VerificationEvent.objects.get(kind=Kind.CALLBACK)
    assert (event.body, event.body_truncated) == ('{"status": "DONE', True)


def test_a_callback_to_a_known_secret_keeps_its_whole_body(client, fake_ooto, user):
    """The URL's secret is unguessable: such a request may keep up to MAX_EVENT_BODY_BYTES."""
    session = services.start_verification(user=user)
    body = json.dumps({"status": "DONE", "padding": "x" * 60_000}).encode()
    assert post(client, callback_url(session), body).status_code == 202
    event = session.events.get(kind=Kind.CALLBACK)
    assert (event.body, event.body_truncated) == (body.decode(), False)


def test_a_known_secret_with_a_body_that_is_not_json_keeps_it_too(client, fake_ooto, user):
    session = services.start_verification(user=user)
    body = b"[" + b"1," * 5000 + b"1]"
    assert post(client, callback_url(session), body).status_code == 400
    assert session.events.get(kind=Kind.CALLBACK).body == body.decode()


@pytest.mark.usefixtures("valify_api")
def test_a_webhook_is_stored_whole_only_once_its_signature_verified(client, user, settings):
    with_valify(settings, STORE_SENSITIVE=True)
    session = start_valify(user)
    body = json.dumps(
        {"session_token": session.token, "status": "success", "result": valify_result(), "padding": "x" * 50_000}
    ).encode()
    refused = post(client, "/verify/webhook/valify/", body, {**signed(body), "X-Valify-Signature": "0" * 64})
    assert refused.status_code == 401
    with CaptureQueriesContext(connection) as ctx:
        assert post(client, "/verify/webhook/valify/", body, signed(body)).json() == {"status": "processed"}
    first, second = VerificationEvent.objects.filter(kind=Kind.WEBHOOK).order_by("pk")
    assert (len(first.body.encode()), first.body_truncated, first.valid) == (PREFIX, True, False)
    assert (second.body, second.body_truncated, second.valid, second.processed) == (body.decode(), False, True, True)
    # The whole body is written with the verdict, not in a write of its own.
    sql = [q["sql"] for q in ctx.captured_queries]
    writes = [q for q in sql if q.startswith("UPDATE") and "verificationevent" in q]
    assert not any('"body"' in q and '"valid"' not in q for q in writes), writes
    assert any('"body"' in q and '"valid"' in q for q in writes), writes


@pytest.mark.usefixtures("valify_api")
def test_an_authenticated_webhook_body_without_identity_numbers_by_default(client, user):
    session = start_valify(user)
    body = json.dumps({"session_token": session.token, "status": "success", "result": valify_result()}).encode()
    assert post(client, "/verify/webhook/valify/", body, signed(body)).json() == {"status": "processed"}
    event = session.events.get(kind=Kind.WEBHOOK)
    assert "29901011234567" not in event.body and "aGVsbG8=" not in event.body and "d29ybGQ=" not in event.body
    kept = json.loads(event.body)
    assert kept["result"]["face_match"] == {"match": True, "score": 0.93}
    assert kept["result"]["ocr"] == {"full_name": "Ann Example"}
    assert (event.body_truncated, event.data) == (False, {"body_redacted": True})


# -- 8 (a): every stored body follows the stored result's rule, authenticated or not --------------------


def test_a_refused_webhook_keeps_no_identity_number_in_its_prefix(client, user, valify_api):  # noqa: F811
    session = start_valify(user)
    body = json.dumps({"session_token": session.token, "status": "success", "result": valify_result()}).encode()
    refused = post(client, "/verify/webhook/valify/", body, {**signed(body), "X-Valify-Signature": "0" * 64})
    assert refused.status_code == 401
    event = VerificationEvent.objects.get(kind=Kind.WEBHOOK)
    assert event.valid is False and event.body
    assert "29901011234567" not in event.body and "aGVsbG8=" not in event.body
    assert json.loads(event.body)["result"]["face_match"] == {"match": True, "score": 0.93}


@pytest.mark.parametrize("store_sensitive", ["False", "0", 1, "yes"])
def test_store_sensitive_keeps_identity_numbers_only_when_exactly_true(
    client,
    user,
    settings,
    valify_api,  # noqa: F811
    store_sensitive,
    caplog,
):
    with_valify(settings, STORE_SENSITIVE=store_sensitive)
    session = start_valify(user)
    body = json.dumps({"session_token": session.token, "status": "success", "result": valify_result()}).encode()
    assert post(client, "/verify/webhook/valify/", body, signed(body)).json() == {"status": "processed"}
    session.refresh_from_db()
    assert "national_id" not in session.result["ocr"]
    assert "29901011234567" not in session.events.get(kind=Kind.WEBHOOK).body
    assert '"STORE_SENSITIVE"' in caplog.text


def test_an_alias_sensitive_field_given_as_a_string_is_one_field(client, user, settings, valify_api):  # noqa: F811
    with_valify(settings, SENSITIVE_FIELDS="full_name")
    session = start_valify(user)
    body = json.dumps({"session_token": session.token, "status": "success", "result": valify_result()}).encode()
    assert post(client, "/verify/webhook/valify/", body, signed(body)).json() == {"status": "processed"}
    session.refresh_from_db()
    assert session.result["ocr"] == {}  # full_name (and the national id) gone, not its letters
    assert "Ann Example" not in session.events.get(kind=Kind.WEBHOOK).body


def test_a_callback_body_loses_what_is_never_stored(client, fake_ooto, user, vl_settings):
    # The OOTO callback carries the provider's whole answer: DISCARD_RESULT_KEYS keeps parts of a
    # result from ever being stored, and that includes the recorded request.
    vl_settings(DISCARD_RESULT_KEYS=["demography", "landmarks"])
    session = services.start_verification(user=user)
    fake_ooto.complete(session)
    body = fake_ooto.status_body(session)
    body["result"]["demography"] = {"age": 31, "race": "RACE-VALUE"}
    body["result"]["landmarks"] = [[288, 604]]
    assert post(client, callback_url(session), json.dumps(body).encode()).status_code == 202
    event = session.events.get(kind=Kind.CALLBACK)
    assert "RACE-VALUE" not in event.body and "landmarks" not in event.body
    assert json.loads(event.body)["status"] == "DONE"
    session.refresh_from_db()
    assert session.status == "DONE" and "demography" not in session.result


# -- 8 (b): retention of what matched no session or was never authenticated ---------------------------


def _age(events, days):
    VerificationEvent.objects.filter(pk__in=[e.pk for e in events]).update(
        created_at=timezone.now() - timedelta(days=days)
    )


def test_purge_scrubs_old_unmatched_and_unauthenticated_requests(client, ooto_beside_valify, user, vl_settings):
    fake_ooto = ooto_beside_valify
    vl_settings(RETENTION_DAYS=30)
    ooto = services.start_verification(user=user)
    valify = start_valify(user)
    post(client, callback_url(ooto, secret="u" * 43), b'{"status": "DONE"}')  # unknown secret
    post(client, callback_url(ooto), b"{not json")  # right secret, refused body
    body = json.dumps({"session_token": valify.token, "status": "success", "result": valify_result()}).encode()
    post(client, "/verify/webhook/valify/", body, {**signed(body), "X-Valify-Signature": "0" * 64})  # refused
    other = json.dumps({"session_token": "someone-else", "status": "success"}).encode()
    post(client, "/verify/webhook/valify/", other, signed(other))  # authenticated, unknown session
    fake_ooto.advance(ooto, "IN_PROGRESS", next_step="LIVENESS")
    post(client, callback_url(ooto), b'{"status": "IN_PROGRESS"}')  # valid, on an open session: kept
    inbound = list(VerificationEvent.objects.filter(kind__in=[Kind.CALLBACK, Kind.WEBHOOK]).order_by("pk"))
    assert len(inbound) == 5 and all(e.body and e.headers for e in inbound)
    _age(inbound, 31)
    fresh = post(client, callback_url(ooto, secret="v" * 43), b'{"status": "DONE"}')  # recent: kept
    assert fresh.status_code == 404

    result = services.run_purge()
    assert (result.sessions, result.inbound_events) == (0, 4)
    assert services.purge_expired_data() == 0  # still the count of sessions; nothing left to do
    for event in inbound:
        event.refresh_from_db()
    scrubbed, kept = inbound[:4], inbound[4]
    assert all((e.body, e.headers, e.body_truncated) == ("", {}, False) for e in scrubbed)
    assert all(e.error and e.created_at for e in scrubbed)  # the fact and the verdict stay
    assert kept.body == '{"status": "IN_PROGRESS"}' and kept.valid is True
    assert VerificationEvent.objects.filter(kind=Kind.CALLBACK).latest("pk").body == '{"status": "DONE"}'
    marker = VerificationEvent.objects.get(kind=Kind.PURGED, session=None)
    assert marker.data["inbound_events"] == 4
    assert services.run_purge().inbound_events == 0


def test_purge_of_unmatched_requests_goes_in_bounded_batches(client, fake_ooto, user, vl_settings):
    vl_settings(RETENTION_DAYS=1, PURGE_BATCH_SIZE=2)
    session = services.start_verification(user=user)
    for n in range(5):
        post(client, callback_url(session, secret=f"{n:043d}"), b'{"status": "DONE"}')
    _age(VerificationEvent.objects.filter(kind=Kind.CALLBACK), 2)
    with CaptureQueriesContext(connection) as ctx:
        assert services.run_purge().inbound_events == 5
    scrubs = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("UPDATE") and '"body" = ' in q["sql"]]
    assert len(scrubs) == 3  # 2 + 2 + 1
    for sql in scrubs:
        id_list = sql.split(" IN (", 1)[1].split(")", 1)[0]
        assert id_list.count(",") <= 1, sql
    assert not VerificationEvent.objects.filter(kind=Kind.CALLBACK).exclude(body="").exists()


def test_purge_counts_sessions_as_before_and_reports_both(fake_ooto, user, client, vl_settings):
    vl_settings(RETENTION_DAYS=30)
    session = services.start_verification(user=user)
    fake_ooto.complete(session)
    post(client, callback_url(session), b"{}")
    post(client, callback_url(session, secret="w" * 43), b"{}")
    VerificationSession.objects.filter(pk=session.pk).update(finished_at=timezone.now() - timedelta(days=31))
    _age(VerificationEvent.objects.filter(kind=Kind.CALLBACK), 31)
    result = services.run_purge()
    assert (result.sessions, result.inbound_events) == (1, 1)
    assert str(result) == "1 sessions scrubbed, 1 unmatched or unauthenticated requests scrubbed"


# -- 9: repeated callbacks within the window share one provider call --------------------------------------


@pytest.fixture
def open_session(fake_ooto, user):
    session = services.start_verification(user=user, scopes=["liveness"])
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    return session


def test_twenty_callbacks_within_the_window_make_one_provider_call(client, fake_ooto, open_session, vl_settings):
    vl_settings(CALLBACK_COALESCE_SECONDS=60)  # the window, not the machine's speed, decides
    for _ in range(20):
        assert post(client, callback_url(open_session), b'{"status": "IN_PROGRESS"}').status_code == 202
    assert len(fake_ooto.calls("GET")) == 1
    events = list(open_session.events.filter(kind=Kind.CALLBACK))
    assert len(events) == 20
    assert all((e.valid, e.processed, e.error) == (True, True, "") for e in events)
    assert [e.data.get("coalesced", False) for e in events] == [False] + [True] * 19
    # The one real answer is written on the callback it confirmed; the others have none.
    assert ["answer" in e.data for e in events] == [True] + [False] * 19
    assert events[0].data["answer"]["status"] == "IN_PROGRESS"
    assert not open_session.events.filter(kind=Kind.POLL, source="callback").exists()
    session = VerificationSession.objects.get(pk=open_session.pk)
    window = timedelta(seconds=60)  # CALLBACK_COALESCE_SECONDS
    assert session.status == "IN_PROGRESS"
    assert session.next_poll_at <= session.last_polled_at + window  # the next poll pulled forward


def test_after_the_window_a_callback_calls_again(client, fake_ooto, open_session, vl_settings):
    vl_settings(CALLBACK_COALESCE_SECONDS=30)
    post(client, callback_url(open_session), b"{}")
    post(client, callback_url(open_session), b"{}")
    assert len(fake_ooto.calls("GET")) == 1
    # As if the window had passed: the answer's time on the row, and the callbacks' claim in the cache.
    VerificationSession.objects.filter(pk=open_session.pk).update(last_polled_at=timezone.now() - timedelta(seconds=31))
    cache.clear()
    post(client, callback_url(open_session), b"{}")
    assert len(fake_ooto.calls("GET")) == 2


def test_a_coalesced_done_is_confirmed_by_the_next_poll(client, fake_ooto, open_session, signal_log, commit):
    post(client, callback_url(open_session), b"{}")  # asks: IN_PROGRESS
    fake_ooto.complete(open_session)  # the user finishes; the provider's DONE callback comes at once
    assert post(client, callback_url(open_session), b'{"status": "DONE"}').status_code == 202
    session = VerificationSession.objects.get(pk=open_session.pk)
    assert session.status == "IN_PROGRESS" and len(fake_ooto.calls("GET")) == 1  # coalesced: no call
    with commit():
        assert services.run_poll_sweep(now=session.last_polled_at + timedelta(seconds=5)).processed == 1
    session.refresh_from_db()
    assert session.status == "DONE"
    assert len(signal_log.of("verification_finished")) == 1


def test_a_callbacks_answer_restarts_the_back_off(client, fake_ooto, user):
    """A callback coalesced while another's provider call is in flight waits for the next poll; the
    in-flight answer must not push that poll minutes away with the back-off of a quiet session."""
    session = services.start_verification(user=user, scopes=["liveness", "deepfake"])
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    services.refresh_session(session)
    VerificationSession.objects.filter(pk=session.pk).update(poll_attempts=6, last_polled_at=None)  # quiet
    fake_ooto.advance(session, "IN_PROGRESS", next_step="DEEPFAKE")  # the user moves on
    assert post(client, callback_url(session), b"{}").status_code == 202
    session.refresh_from_db()
    assert session.next_step == "DEEPFAKE"
    assert session.next_poll_at - session.last_polled_at <= timedelta(seconds=10)  # POLL_INTERVAL


def test_a_sweep_poll_counts_as_asking(client, fake_ooto, open_session):
    services.refresh_session(open_session)
    assert post(client, callback_url(open_session), b"{}").status_code == 202
    assert len(fake_ooto.calls("GET")) == 1


def test_coalescing_can_be_turned_off(client, fake_ooto, open_session, vl_settings):
    vl_settings(CALLBACK_COALESCE_SECONDS=0)
    for _ in range(3):
        post(client, callback_url(open_session), b"{}")
    assert len(fake_ooto.calls("GET")) == 3


def test_coalescing_with_celery_workers(client, fake_ooto, open_session, vl_settings):
    """The worker decides, not the view: twenty queued confirmations, one provider call."""
    from verification_link import tasks

    vl_settings(TASKS="celery")
    events = []
    for _ in range(20):
        event, _session = services.record_callback(
            _request(), provider="ooto", secret=open_session.callback_secret, body=b"{}"
        )
        services.judge_inbound(event, valid=True)
        events.append(event.pk)
    for pk in events:
        assert tasks.process_callback.run(pk) == "IN_PROGRESS"
    assert len(fake_ooto.calls("GET")) == 1
    assert VerificationEvent.objects.filter(pk__in=events, processed=True).count() == 20


def _request():
    from django.test import RequestFactory

    return RequestFactory().post("/cb/", data=b"{}", content_type="application/json")


@pytest.mark.django_db(transaction=True)
def test_concurrent_callbacks_make_one_provider_call(user, vl_settings):
    """Twenty callbacks at once, the provider slow to answer: the claim lets one of them ask."""
    from verification_link.testing import FakeOoto

    vl_settings(CALLBACK_COALESCE_SECONDS=60)  # the window, not the machine's speed, decides

    with FakeOoto(app_id="test-app-id", app_key="test-app-key-SECRET", latency=0.3) as fake:
        session = services.start_verification(user=user, scopes=["liveness"])
        fake.advance(session, "IN_PROGRESS", next_step="LIVENESS")
        codes = []
        barrier = threading.Barrier(20)

        def hit():
            try:
                barrier.wait()
                codes.append(post(Client(), callback_url(session), b"{}").status_code)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=hit) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert codes == [202] * 20
        assert len(fake.calls("GET")) == 1
