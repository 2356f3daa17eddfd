"""Prometheus metrics, read the way Prometheus reads them: every test drives a real code path (a
start faked at the HTTP layer, a webhook or callback through the test client, a sweep), then parses
``generate_latest`` with prometheus-client's own parser and checks that the samples changed by
exactly what happened — nothing more."""

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from verification_link import metrics, services
from verification_link.exceptions import ProviderError
from verification_link.metrics import metrics_view
from verification_link.models import VerificationSession

from .test_standard_webhooks import SECRET, library_headers, post, standard_valify, valify_body  # noqa: F401

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def registry():
    """A fresh registry per test: what a test sees is what the test did."""
    fresh = CollectorRegistry()
    previous = metrics.use_registry(fresh)
    yield fresh
    metrics.use_registry(previous)


def samples(registry):
    """Every sample of the exposition, as ``{(name, labels): value}``; the ``_created`` stamps,
    histogram sums and buckets left out (their values are times, not counts)."""
    text = generate_latest(registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_created", "_sum", "_bucket")):
                continue
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def changes(before, after, *, skip=("verification_link_sweep_last_run_timestamp_seconds",)):
    """What moved between two ``samples``: ``{(name, labels): difference}``."""
    moved = {}
    for key in set(before) | set(after):
        if key[0] in skip:
            continue
        delta = after.get(key, 0.0) - before.get(key, 0.0)
        if delta:
            moved[key] = delta
    return moved


def key(name, **labels):
    return (name, tuple(sorted(labels.items())))


CALLS = "verification_link_provider_request_duration_seconds_count"
ERRORS = "verification_link_provider_errors_total"
INBOUND = "verification_link_inbound_requests_total"


# -- sessions started and finished ------------------------------------------------------------------


def test_a_start_and_a_finish_are_counted_by_provider_and_status(registry, fake_ooto, user, commit):
    before = samples(registry)
    with commit():
        session = services.start_verification(user=user)
    started = samples(registry)
    assert changes(before, started) == {
        key("verification_link_sessions_started_total", provider="ooto"): 1,
        key(CALLS, provider="ooto", operation="create session"): 1,
    }
    fake_ooto.complete(session)
    with commit():
        services.refresh_session(session)
    assert changes(started, samples(registry)) == {
        key("verification_link_sessions_finished_total", provider="ooto", status="DONE"): 1,
        key(CALLS, provider="ooto", operation="get status"): 1,
    }


def test_a_reused_session_is_not_started_again(registry, fake_ooto, user, commit):
    with commit():
        services.start_verification(user=user)
    before = samples(registry)
    assert before[key("verification_link_sessions_started_total", provider="ooto")] == 1
    with commit():
        again = services.start_verification(user=user)
    assert again.reused
    assert changes(before, samples(registry)) == {}


# -- provider calls ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (500, "unavailable"),
        (401, "auth"),
        (422, "rejected"),
        (429, "throttled"),
        (requests.ReadTimeout("slow"), "timeout"),
        (requests.ConnectionError("refused"), "connection"),
    ],
)
def test_a_failed_call_is_timed_and_counted_by_kind(registry, fake_ooto, user, failure, kind):
    fake_ooto.fail_next(failure, {"message": "no"})
    before = samples(registry)
    with pytest.raises(ProviderError):
        services.start_verification(user=user)
    assert changes(before, samples(registry)) == {
        key(CALLS, provider="ooto", operation="create session"): 1,
        key(ERRORS, provider="ooto", operation="create session", kind=kind): 1,
    }


def test_an_answer_that_is_not_json_and_one_wrongly_shaped_are_told_apart(registry, fake_ooto, user, settings):
    import responses

    create = "https://cloud.ooto-ai.com/api/v1.0/flow/sessions"
    before = samples(registry)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, create, body="<html>oops</html>", status=200)
        mock.add(responses.POST, create, json={"sessionId": "s-1"}, status=200)  # no token, no url
        for _ in range(2):
            with pytest.raises(ProviderError):
                services.start_verification(user=user, reuse=False)
    assert changes(before, samples(registry)) == {
        key(CALLS, provider="ooto", operation="create session"): 2,
        key(ERRORS, provider="ooto", operation="create session", kind="unreadable"): 1,
        key(ERRORS, provider="ooto", operation="create session", kind="malformed"): 1,
    }


# -- inbound requests ------------------------------------------------------------------------------


def test_webhook_verdicts(registry, standard_valify, client, commit):  # noqa: F811
    session = VerificationSession.objects.create(provider="valify", token="tok-m1", status="IN_PROGRESS")
    body = valify_body(session)
    before = samples(registry)
    with commit():
        assert post(client, body, library_headers(SECRET, body, msg_id="msg_m1")).status_code == 200
        assert post(client, body, library_headers(SECRET, body, msg_id="msg_m1")).json() == {
            "status": "already processed"
        }
        assert post(client, body, library_headers(SECRET, body, msg_id="msg_m2")).json() == {"status": "already final"}
        assert post(client, body, library_headers("whsec_" + "A" * 32, body)).status_code == 401
        bad = b"{not json"
        assert post(client, bad, library_headers(SECRET, bad, msg_id="msg_m3")).status_code == 400
        assert client.get("/verify/webhook/valify/").status_code == 405
        assert client.post("/verify/webhook/no-such-alias/", data=b"{}", content_type="application/json").status_code
    webhook = {"kind": "webhook", "provider": "valify"}
    assert changes(before, samples(registry)) == {
        key(INBOUND, **webhook, verdict="processed"): 1,
        key(INBOUND, **webhook, verdict="duplicate"): 1,
        key(INBOUND, **webhook, verdict="already_final"): 1,
        key(INBOUND, **webhook, verdict="unauthenticated"): 1,
        key(INBOUND, **webhook, verdict="malformed"): 1,
        key(INBOUND, **webhook, verdict="method_not_allowed"): 1,
        # An alias the settings do not configure is never a label value: anyone may post there.
        key(INBOUND, kind="webhook", provider="unknown", verdict="not_found"): 1,
        key("verification_link_sessions_finished_total", provider="valify", status="DONE"): 1,
    }


def test_callback_verdicts(registry, fake_ooto, user, commit):
    client = Client()
    with commit():
        session = services.start_verification(user=user)
    url = f"/verify/callback/ooto/{session.callback_secret}/"
    before = samples(registry)
    assert client.post(url, data=b"{not json", content_type="application/json").status_code == 400
    fake_ooto.complete(session)
    with commit():
        assert client.post(url, data=b"{}", content_type="application/json").status_code == 202
    assert client.post(url, data=b"{}", content_type="application/json").status_code == 200  # final now
    unknown = f"/verify/callback/ooto/{'x' * 43}/"
    assert client.post(unknown, data=b"{}", content_type="application/json").status_code == 404
    assert client.post("/verify/callback/ooto/a/b/c/", data=b"{}", content_type="application/json").status_code == 404
    callback = {"kind": "callback", "provider": "ooto"}
    assert changes(before, samples(registry)) == {
        key(INBOUND, **callback, verdict="malformed"): 1,
        key(INBOUND, **callback, verdict="accepted"): 1,
        key(INBOUND, **callback, verdict="already_final"): 1,
        key(INBOUND, **callback, verdict="not_found"): 1,
        # Our catch-all under callback/: no alias to name (its path is not parsed for one).
        key(INBOUND, kind="callback", provider="unknown", verdict="not_found"): 1,
        key(CALLS, provider="ooto", operation="get status"): 1,  # the accepted one's confirmation
        key("verification_link_sessions_finished_total", provider="ooto", status="DONE"): 1,
    }


# -- sweeps ---------------------------------------------------------------------------------------


def test_poll_sweep_duration_backlog_and_outcomes(registry, fake_ooto, user, commit, vl_settings):
    vl_settings(REUSE_OPEN_SESSIONS=False)
    sessions = [services.start_verification(user=user) for _ in range(3)]
    fake_ooto.complete(sessions[0])
    later = timezone.now() + timedelta(hours=1)
    before = samples(registry)
    with commit():
        result = services.run_poll_sweep(now=later, concurrency=1)
    assert (result.found, result.processed, result.failed) == (3, 3, 0)
    after = samples(registry)
    assert changes(before, after) == {
        key("verification_link_sweep_duration_seconds_count", sweep="poll"): 1,
        key("verification_link_sweep_backlog", sweep="poll"): 3,
        key("verification_link_sweep_sessions_total", sweep="poll", outcome="processed"): 3,
        key(CALLS, provider="ooto", operation="get status"): 3,
        key("verification_link_sessions_finished_total", provider="ooto", status="DONE"): 1,
    }
    assert after[key("verification_link_sweep_last_run_timestamp_seconds", sweep="poll")] > 0
    # A sweep that finds nothing due says so: the gauge is the last sweep's, not a sum.
    services.run_poll_sweep(now=timezone.now(), concurrency=1)
    assert samples(registry)[key("verification_link_sweep_backlog", sweep="poll")] == 0


def test_expiry_sweep_duration_and_backlog(registry, fake_ooto, user, commit, vl_settings):
    vl_settings(REUSE_OPEN_SESSIONS=False)
    for _ in range(2):
        services.start_verification(user=user)
    overdue = timezone.now() + timedelta(days=2)
    before = samples(registry)
    with commit():
        result = services.run_expiry_sweep(now=overdue, last_check=False, concurrency=1)
    assert result.processed == 2
    assert changes(before, samples(registry)) == {
        key("verification_link_sweep_duration_seconds_count", sweep="expiry"): 1,
        key("verification_link_sweep_backlog", sweep="expiry"): 2,
        key("verification_link_sweep_sessions_total", sweep="expiry", outcome="processed"): 2,
        key("verification_link_sessions_finished_total", provider="ooto", status="EXPIRED"): 2,
    }


def test_purge_and_lapse_are_timed(registry):
    before = samples(registry)
    services.run_purge()
    services.lapse_verifications()
    assert changes(before, samples(registry)) == {
        key("verification_link_sweep_duration_seconds_count", sweep="purge"): 1,
        key("verification_link_sweep_duration_seconds_count", sweep="lapse"): 1,
    }


# -- cost -----------------------------------------------------------------------------------------


def _webhook_queries(client, session, msg_id):
    body = valify_body(session)
    with CaptureQueriesContext(connection) as queries:
        post(client, body, library_headers(SECRET, body, msg_id=msg_id))
    return len(queries)


def test_recording_adds_no_query(registry, standard_valify, client, fake_ooto, user, django_assert_num_queries):  # noqa: F811
    """The same paths, with recording off then on: the same number of queries."""
    one = VerificationSession.objects.create(provider="valify", token="tok-q1", status="IN_PROGRESS")
    two = VerificationSession.objects.create(provider="valify", token="tok-q2", status="IN_PROGRESS")
    metrics.use_registry(None)
    try:
        without = _webhook_queries(client, one, "msg_q1")
        with CaptureQueriesContext(connection) as start_queries:
            services.start_verification(user=user, reuse=False)
    finally:
        metrics.use_registry(registry)
    before = samples(registry)
    with django_assert_num_queries(without):
        _webhook_queries(client, two, "msg_q2")
    with django_assert_num_queries(len(start_queries)):
        services.start_verification(user=user, reuse=False)
    assert changes(before, samples(registry))  # it did record, with no query of its own


# -- registry and exposition ------------------------------------------------------------------------


def test_the_default_registry_holds_our_metrics():
    from prometheus_client import REGISTRY

    names = {family.name for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())}
    assert {
        "verification_link_sessions_started",
        "verification_link_sessions_finished",
        "verification_link_inbound_requests",
        "verification_link_provider_request_duration_seconds",
        "verification_link_provider_errors",
        "verification_link_sweep_duration_seconds",
        "verification_link_sweep_backlog",
    } <= names


def test_use_registry_twice_and_stopping(registry):
    assert metrics.use_registry(registry) is registry  # the same registry again: no duplicate error
    assert metrics.use_registry(None) is registry
    assert metrics.registry() is None
    metrics.record_inbound("webhook", "valify", "processed")  # a no-op, not an error
    metrics.use_registry(registry)
    assert samples(registry) == {}


def test_the_view_is_off_until_a_token_is_set(registry, vl_settings):
    factory = RequestFactory()

    def get(**headers):
        return metrics_view(factory.get("/metrics/", **headers))

    assert get().status_code == 404
    vl_settings(METRICS_TOKEN="scrape-token-SECRET")
    assert get().status_code == 401
    wrong = get(HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    posted = metrics_view(factory.post("/metrics/", HTTP_AUTHORIZATION="Bearer scrape-token-SECRET"))
    assert posted.status_code == 405
    metrics.record_inbound("webhook", "valify", "processed")
    answer = get(HTTP_AUTHORIZATION="Bearer scrape-token-SECRET")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    assert "no-store" in answer["Cache-Control"] or "max-age=0" in answer["Cache-Control"]
    parsed = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.content.decode())
        for sample in family.samples
    }
    assert parsed[key(INBOUND, kind="webhook", provider="valify", verdict="processed")] == 1
    assert b"scrape-token-SECRET" not in answer.content


def test_label_values_stay_in_their_sets(registry):
    metrics.record_inbound("webhook", "valify", "made up")
    metrics.record_provider_error("ooto", "create session", "made up")
    found = samples(registry)
    assert found[key(INBOUND, kind="webhook", provider="valify", verdict="other")] == 1
    assert found[key(ERRORS, provider="ooto", operation="create session", kind="other")] == 1


# -- without prometheus_client ----------------------------------------------------------------------

WITHOUT_PROMETHEUS = textwrap.dedent(
    """
    import sys
    sys.modules["prometheus_client"] = None  # its import now fails, as when the extra is absent
    import django
    django.setup()
    import pytest, requests
    from django.test import RequestFactory, override_settings
    from verification_link import metrics, signals
    from verification_link.exceptions import ProviderUnavailable
    from verification_link.models import VerificationSession
    from verification_link.providers import get_provider
    from verification_link.testing import FakeOoto
    from verification_link.views import webhook_view

    assert metrics.AVAILABLE is False and metrics.registry() is None
    assert metrics.use_registry(object()) is None and metrics.registry() is None
    # A real provider call, its error too, through the decorated BaseProvider.call.
    with FakeOoto() as fake:
        fake.fail_next(requests.ReadTimeout("slow"))
        provider = get_provider("ooto")
        try:
            provider.call("GET", "/api/v1.0/flow/sessions/x", operation="get status")
        except ProviderUnavailable:
            pass
        else:
            raise AssertionError("the fake's timeout was not raised")
    provider.malformed("get status", "no status")
    # Our signals, a webhook for an alias nobody configured, a sweep's decorator, the view.
    signals.verification_finished.send(sender=VerificationSession, session=VerificationSession(provider="ooto"),
                                       status="DONE", source="poll")
    request = RequestFactory().post("/verify/webhook/nope/", data=b"{}", content_type="application/json")
    assert webhook_view(request, provider="nope").status_code == 404
    assert metrics.timed_sweep("poll")(lambda: 7)() == 7
    with override_settings(VERIFICATION_LINK={"PROVIDERS": {}, "METRICS_TOKEN": "t"}):
        view_request = RequestFactory().get("/m/", HTTP_AUTHORIZATION="Bearer t")
        assert metrics.metrics_view(view_request).status_code == 404
    print("no-op ok")
    """
)


def test_without_prometheus_client_everything_is_a_no_op():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_PROMETHEUS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("no-op ok")


# -- multiprocess mode -------------------------------------------------------------------------------

IN_ONE_WORKER = textwrap.dedent(
    """
    import sys
    from types import SimpleNamespace
    import django
    django.setup()
    from django.conf import settings
    from django.test import RequestFactory, override_settings
    from prometheus_client.parser import text_string_to_metric_families
    from verification_link import metrics

    webhooks, backlog = int(sys.argv[1]), int(sys.argv[2])
    for _ in range(webhooks):
        metrics.record_inbound("webhook", "valify", "processed")
    metrics.timed_sweep("poll")(lambda: SimpleNamespace(found=backlog, processed=0, failed=0))()
    if sys.argv[3] == "scrape":
        with override_settings(VERIFICATION_LINK={**settings.VERIFICATION_LINK, "METRICS_TOKEN": "t"}):
            answer = metrics.metrics_view(RequestFactory().get("/m/", HTTP_AUTHORIZATION="Bearer t"))
        assert answer.status_code == 200, answer.status_code
        for family in text_string_to_metric_families(answer.content.decode()):
            for sample in family.samples:
                if sample.name in ("verification_link_inbound_requests_total", "verification_link_sweep_backlog"):
                    print(sample.name, sample.value)
    """
)


def test_the_view_aggregates_every_process_in_multiprocess_mode(tmp_path):
    """Two workers writing to one ``PROMETHEUS_MULTIPROC_DIR``: the scrape one of them answers
    sums both counters, and the gauge is the most recent sweep's."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)

    def worker(*args):
        run = subprocess.run(
            [sys.executable, "-c", IN_ONE_WORKER, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr[-3000:]
        return run.stdout

    worker("2", "5", "record")
    scraped = dict(line.split() for line in worker("1", "7", "scrape").splitlines())
    assert float(scraped["verification_link_inbound_requests_total"]) == 3
    assert float(scraped["verification_link_sweep_backlog"]) == 7


def test_a_multiprocess_directory_that_is_none_is_a_clear_answer(registry, vl_settings, monkeypatch, tmp_path):
    vl_settings(METRICS_TOKEN="t")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    answer = metrics_view(RequestFactory().get("/m/", HTTP_AUTHORIZATION="Bearer t"))
    assert (answer.status_code, answer.content) == (503, b"metrics directory unavailable\n")


def test_metric_help_texts_name_no_secret(registry, fake_ooto, user, commit):
    with commit():
        session = services.start_verification(user=user)
    text = generate_latest(registry).decode()
    assert samples(registry)[key("verification_link_sessions_started_total", provider="ooto")] == 1
    for secret in (session.token, session.url, session.callback_secret, "test-app-key-SECRET"):
        assert secret and secret not in text
