"""The session lifecycle: start, refresh, cancel, review, sweeps; signals exactly once, on commit."""

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import transaction
from django.utils import timezone

from verification_link import services
from verification_link.exceptions import (
    ConfigurationError,
    InvalidRequest,
    InvalidTransition,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
)
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationSessionFactory, ooto_result

pytestmark = pytest.mark.django_db
Status = VerificationSession.Status
Kind = VerificationEvent.Kind


def start(user=None, **kwargs):
    kwargs.setdefault("reuse", False)  # a new session each time, unless a test asks for reuse
    return services.start_verification(user=user, **kwargs)


# -- start_verification --------------------------------------------------------------------------


def test_start_sends_callback_return_metadata_and_ttl(fake_ooto, user, commit, signal_log):
    with commit():
        session = start(user, scopes=["Liveness", "search", "liveness"], metadata={"plan": "gold"}, ttl=900)
    body = fake_ooto.calls("POST")[0][3]
    assert body["scopes"] == ["liveness", "search"]
    assert body["ttlSec"] == 900
    assert body["metadata"] == {"plan": "gold", "verification_session_id": str(session.pk)}
    assert body["callbackUrl"] == f"https://www.example.com/verify/callback/ooto/{session.callback_secret}/"
    assert body["returnUrl"] == f"https://www.example.com/verify/s/{session.pk}/return/"
    session.refresh_from_db()
    assert session.status == Status.CREATED
    assert session.user == user
    assert session.token and session.external_id and session.url.endswith(session.token)
    assert session.metadata == {"plan": "gold"}
    assert session.next_poll_at is not None
    assert timedelta(seconds=890) < session.expires_at - timezone.now() <= timedelta(seconds=900)
    assert [e.kind for e in session.events.all()] == [Kind.CREATED]
    assert signal_log.names() == ["verification_created"]
    assert signal_log.of("verification_created")[0]["session"].pk == session.pk


def test_start_stores_the_session_and_its_first_event_in_one_transaction(fake_ooto, user, commit, signal_log):
    """Two INSERTs in one transaction on every database, through ``save()``; the rows read back are
    the ORM's own."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with commit(), CaptureQueriesContext(connection) as ctx:
        session = start(user, metadata={"plan": "gold"})
    statements = [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    # The only rows written: the session and its event. Before them, in the same transaction, the
    # user's starts locked (SQLite: its write lock, an UPDATE that matches no row).
    writes = [sql.split()[0] for sql in statements if sql.startswith(("INSERT", "UPDATE", "DELETE"))]
    assert [w for w in writes if w != "UPDATE"] == ["INSERT", "INSERT"]
    assert all(" IS NULL" in sql for sql in statements if sql.startswith("UPDATE"))
    stored = VerificationSession.objects.get()
    assert [getattr(stored, f.attname) for f in stored._meta.concrete_fields] == [
        getattr(session, f.attname) for f in session._meta.concrete_fields
    ]
    event = VerificationEvent.objects.get()
    assert (event.session_id, event.kind, event.new_status, event.actor_id) == (
        session.pk,
        Kind.CREATED,
        "CREATED",
        user.pk,
    )
    assert event.data["external_id"] == session.external_id and event.created_at is not None
    assert signal_log.names() == ["verification_created"]


def test_callback_secret_is_long_unique_and_not_the_id(fake_ooto):
    secrets = {start().callback_secret for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert len(secret) >= 43  # 32 random bytes, URL-safe base64: 256 bits
        assert "/" not in secret
    field = VerificationSession._meta.get_field("callback_secret")
    assert field.unique


def test_start_uses_the_request_origin_without_public_base_url(fake_ooto, vl_settings, rf):
    vl_settings(PUBLIC_BASE_URL=None)
    request = rf.get("/", HTTP_HOST="localhost:8443", secure=True)
    start(request=request)
    callback = fake_ooto.calls("POST")[0][3]["callbackUrl"]
    assert urlsplit(callback)[:2] == ("https", "localhost:8443")


def test_start_without_any_origin_names_the_setting(fake_ooto, vl_settings):
    vl_settings(PUBLIC_BASE_URL=None)
    with pytest.raises(ConfigurationError, match=r'VERIFICATION_LINK\["PUBLIC_BASE_URL"\]'):
        start()
    assert not fake_ooto.calls()
    assert not VerificationSession.objects.exists()


def test_start_uses_default_scopes_and_ttl_from_settings(fake_ooto):
    start()
    body = fake_ooto.calls("POST")[0][3]
    assert body["scopes"] == ["liveness", "deepfake"]
    assert body["ttlSec"] == 3600


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scopes": ["liveness", "palmistry"]},
        {"scopes": []},
        {"scopes": "liveness"},
        {"scopes": [7]},
        {"ttl": 0},
        {"ttl": 86401},
        {"ttl": "60"},
        {"metadata": ["not", "an", "object"]},
        {"next_url": 42},
    ],
)
def test_start_refuses_bad_arguments_before_calling_the_provider(fake_ooto, kwargs):
    with pytest.raises(InvalidRequest):
        start(**kwargs)
    assert not fake_ooto.calls()
    assert not VerificationSession.objects.exists()
    assert not VerificationEvent.objects.exists()


def test_start_with_an_unknown_alias_is_a_configuration_error(fake_ooto):
    with pytest.raises(ConfigurationError, match="nope"):
        start(provider="nope")


@pytest.mark.parametrize(
    ("status", "error"), [(500, ProviderUnavailable), (401, ProviderAuthError), (422, ProviderRejected)]
)
def test_start_failure_leaves_no_session_and_records_an_event(fake_ooto, user, commit, signal_log, status, error):
    fake_ooto.fail_next(status)
    with commit(), pytest.raises(error):
        start(user)
    assert not VerificationSession.objects.exists()
    event = VerificationEvent.objects.get()
    assert event.kind == Kind.CREATE_FAILED
    assert event.session is None
    assert event.provider == "ooto"
    assert event.actor == user
    assert event.valid is False
    assert event.data["status_code"] == status
    assert event.data["error_type"] == error.__name__
    assert str(status) in event.error
    assert signal_log == []


def test_start_signal_is_not_sent_when_the_caller_rolls_back(fake_ooto, commit, signal_log):
    with commit(), pytest.raises(RuntimeError), transaction.atomic():
        start()
        raise RuntimeError("the caller's own failure")
    assert signal_log == []
    assert not VerificationSession.objects.exists()


# -- refresh and the state machine ----------------------------------------------------------------


@pytest.fixture
def session(fake_ooto, user):
    return start(user, scopes=["liveness", "deepfake"])


def test_refresh_applies_each_forward_move_once(fake_ooto, session, commit, signal_log):
    for status, step in [("CAPTCHA_OK", "LIVENESS"), ("IN_PROGRESS", "DEEPFAKE")]:
        fake_ooto.advance(session, status, next_step=step)
        with commit():
            session = services.refresh_session(session)
        assert (session.status, session.next_step) == (status, step)
    assert [(k["old_status"], k["new_status"], k["source"]) for k in signal_log.of("verification_status_changed")] == [
        ("CREATED", "CAPTCHA_OK", "poll"),
        ("CAPTCHA_OK", "IN_PROGRESS", "poll"),
    ]
    assert signal_log.of("verification_finished") == []
    assert session.url  # the link stays usable while the session is open


def test_refresh_to_done_finishes_once_clears_the_link_and_decides(fake_ooto, session, commit, signal_log):
    fake_ooto.complete(session)
    with commit():
        session = services.refresh_session(session, source="callback")
    session.refresh_from_db()
    assert session.status == Status.DONE
    assert session.is_final
    assert session.url == ""
    assert session.next_step == ""
    assert session.next_poll_at is None
    assert session.finished_at is not None
    assert session.result["liveness"]["fine"] is True
    assert session.decision == "approved"
    assert session.reviewed_by is None
    assert signal_log.names() == ["verification_status_changed", "verification_finished", "verification_reviewed"]
    finished = signal_log.of("verification_finished")[0]
    assert (finished["status"], finished["source"], finished["session"].pk) == ("DONE", "callback", session.pk)
    assert signal_log.of("verification_reviewed")[0] == {
        "session": signal_log.of("verification_reviewed")[0]["session"],
        "decision": "approved",
        "reviewer": None,
        "signal": signal_log.of("verification_reviewed")[0]["signal"],
    }
    kinds = list(session.events.values_list("kind", "applied", "data__decision"))
    assert kinds == [
        ("created", True, None),
        ("poll", True, None),
        ("status_changed", True, "approved"),  # the policy's decision is written with the move
    ]
    assert session.events.get(kind="status_changed").data == {"decision": "approved", "by": "policy"}


def test_duplicate_and_late_reports_are_recorded_but_not_applied(fake_ooto, session, commit, signal_log):
    fake_ooto.complete(session)
    with commit():
        services.refresh_session(session)
    signal_log.clear()
    # The provider now (wrongly or late) reports something else: a final session never changes.
    for status in ["IN_PROGRESS", "FAILED", "DONE", "CANCELED"]:
        fake_ooto.advance(session, status)
        with commit():
            # refresh_session skips final sessions; apply the provider's answer directly as a late callback would.
            report = services.get_provider("ooto").get_status(session)
            services.apply_report(session, report, source="callback")
    session.refresh_from_db()
    assert session.status == Status.DONE
    assert signal_log == []
    ignored = session.events.filter(kind=Kind.POLL, applied=False)
    assert [e.new_status for e in ignored] == ["IN_PROGRESS", "FAILED", "DONE", "CANCELED"]


def test_stale_and_equal_reports_are_ignored(fake_ooto, session, commit, signal_log):
    fake_ooto.advance(session, "IN_PROGRESS", next_step="DEEPFAKE")
    with commit():
        services.refresh_session(session)
    signal_log.clear()
    for status, step in [("CAPTCHA_OK", "LIVENESS"), ("CREATED", "LIVENESS"), ("IN_PROGRESS", "LIVENESS")]:
        fake_ooto.advance(session, status, next_step=step)
        with commit():
            services.refresh_session(session)
    session.refresh_from_db()
    assert (session.status, session.next_step) == ("IN_PROGRESS", "DEEPFAKE")
    assert signal_log == []
    assert session.events.filter(kind=Kind.POLL, applied=False).count() == 3
    assert session.events.filter(kind=Kind.STATUS_CHANGED).count() == 1


def test_progress_within_a_status_moves_the_step_forward_only(fake_ooto, session, commit, signal_log):
    """OOTO stays IN_PROGRESS through the scopes (LIVENESS, then DEEPFAKE): the step shown to the
    user follows, without a transition or a signal; a late report of an earlier step is ignored."""
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    with commit():
        services.refresh_session(session)
    signal_log.clear()
    fake_ooto.advance(session, "IN_PROGRESS", next_step="DEEPFAKE")
    with commit():
        services.refresh_session(session)
    session.refresh_from_db()
    assert (session.status, session.next_step) == ("IN_PROGRESS", "DEEPFAKE")
    assert signal_log == []
    assert session.events.filter(kind=Kind.STATUS_CHANGED).count() == 1
    for step in ("LIVENESS", "SEARCH"):  # earlier, and not a scope of this session
        fake_ooto.advance(session, "IN_PROGRESS", next_step=step)
        services.refresh_session(session)
        session.refresh_from_db()
        assert session.next_step == "DEEPFAKE", step


def test_a_callback_brings_the_step_forward_too(client, fake_ooto, session):
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    services.refresh_session(session)
    fake_ooto.advance(session, "IN_PROGRESS", next_step="DEEPFAKE")
    # Past the coalescing window of that poll (CALLBACK_COALESCE_SECONDS): the callback asks again.
    VerificationSession.objects.filter(pk=session.pk).update(last_polled_at=timezone.now() - timedelta(minutes=1))
    url = f"/verify/callback/ooto/{session.callback_secret}/"
    assert client.post(url, data=b"{}", content_type="application/json").status_code == 202
    session.refresh_from_db()
    assert session.next_step == "DEEPFAKE"
    assert session.events.get(kind=Kind.CALLBACK).processed is True


def test_out_of_order_reports_end_in_the_newest_state(fake_ooto, session, commit, signal_log):
    """IN_PROGRESS arrives after CAPTCHA_OK was skipped; the skipped step is never applied later."""
    provider = services.get_provider("ooto")
    reports = [
        provider.parse_status({"status": "IN_PROGRESS", "nextStep": "DEEPFAKE"}),
        provider.parse_status({"status": "CAPTCHA_OK", "nextStep": "LIVENESS"}),
        provider.parse_status({"status": "FAILED", "result": ooto_result(["liveness"], fine=False)}),
        provider.parse_status({"status": "IN_PROGRESS", "nextStep": "LIVENESS"}),
    ]
    with commit():
        for report in reports:
            services.apply_report(session, report, source="webhook")
    session.refresh_from_db()
    assert session.status == Status.FAILED
    assert session.decision == "rejected"
    transitions = [(k["old_status"], k["new_status"]) for k in signal_log.of("verification_status_changed")]
    assert transitions == [("CREATED", "IN_PROGRESS"), ("IN_PROGRESS", "FAILED")]
    assert len(signal_log.of("verification_finished")) == 1


def test_equal_report_updates_the_authoritative_expiry_only(fake_ooto, session, commit, signal_log):
    later = timezone.now() + timedelta(hours=5)
    fake_ooto.advance(session, "CREATED", next_step="LIVENESS", expires_at=later)
    with commit():
        session = services.refresh_session(session)
    assert abs(session.expires_at - later) < timedelta(milliseconds=1)
    assert session.status == Status.CREATED
    assert signal_log == []


def test_no_signal_when_the_surrounding_transaction_rolls_back(fake_ooto, session, commit, signal_log):
    fake_ooto.complete(session)
    with commit(), pytest.raises(RuntimeError), transaction.atomic():
        services.refresh_session(session)
        raise RuntimeError("boom")
    session.refresh_from_db()
    assert session.status == Status.CREATED
    assert signal_log == []
    # Once the rollback is over the same answer is applied, with its signals, exactly once.
    with commit():
        services.refresh_session(session)
        services.refresh_session(session)
    assert signal_log.names().count("verification_finished") == 1


def test_receiver_errors_do_not_break_the_committed_change(fake_ooto, session, commit, signal_log):
    from verification_link.signals import verification_finished

    def broken(sender, **kwargs):
        raise ValueError("site bug")

    verification_finished.connect(broken)
    try:
        fake_ooto.complete(session)
        with commit():
            services.refresh_session(session)
    finally:
        verification_finished.disconnect(broken)
    session.refresh_from_db()
    assert session.status == Status.DONE
    assert len(signal_log.of("verification_finished")) == 1


def test_refresh_of_a_final_session_calls_nobody(fake_ooto, user):
    session = VerificationSessionFactory(done=True, user=user)
    assert services.refresh_session(session).status == Status.DONE
    assert fake_ooto.calls() == []


def test_refresh_accepts_an_id(fake_ooto, session):
    fake_ooto.advance(session, "CAPTCHA_OK", next_step="LIVENESS")
    assert services.refresh_session(str(session.pk)).status == Status.CAPTCHA_OK


def test_provider_failure_on_refresh_is_recorded_and_backs_off(fake_ooto, session, signal_log):
    fake_ooto.fail_next(503)
    before = timezone.now()
    with pytest.raises(ProviderUnavailable):
        services.refresh_session(session)
    session.refresh_from_db()
    assert session.status == Status.CREATED
    event = session.events.get(kind=Kind.POLL_FAILED)
    assert event.data["status_code"] == 503
    assert event.valid is False
    assert session.poll_attempts == 1
    assert session.next_poll_at >= before + timedelta(seconds=services.poll_interval(1))
    assert signal_log == []


# -- decision policy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "status", "result", "decision"),
    [
        (["liveness", "deepfake"], "DONE", ooto_result(["liveness", "deepfake"]), "approved"),
        (["liveness", "deepfake"], "DONE", ooto_result(["liveness", "deepfake"], fine={"deepfake": False}), "review"),
        (["liveness", "deepfake"], "DONE", ooto_result(["liveness"]), "review"),  # deepfake missing
        (["liveness"], "DONE", {}, "review"),
        (["liveness", "search"], "DONE", ooto_result(["liveness", "search"]), "approved"),
        (["enroll"], "DONE", {"enroll": {}}, "review"),
        (["liveness"], "FAILED", ooto_result(["liveness"], fine=False), "rejected"),
        (["liveness"], "FAILED", ooto_result(["liveness"], fine=True), "rejected"),
        (["liveness"], "EXPIRED", {}, ""),
        (["liveness"], "CANCELED", {}, ""),
    ],
)
def test_default_decision_policy(fake_ooto, user, commit, signal_log, scopes, status, result, decision):
    session = start(user, scopes=scopes)
    fake_ooto.advance(session, status, result=result)
    with commit():
        session = services.refresh_session(session)
    assert session.status == status
    assert session.decision == decision
    reviewed = signal_log.of("verification_reviewed")
    assert [r["decision"] for r in reviewed] == ([decision] if decision else [])


def always_review(session):
    return "review"


def test_decision_policy_is_replaceable(fake_ooto, user, commit, vl_settings):
    vl_settings(DECISION_POLICY="tests.test_services.always_review")
    session = start(user)
    fake_ooto.complete(session)
    with commit():
        assert services.refresh_session(session).decision == "review"


def test_a_policy_returning_nonsense_is_a_configuration_error(fake_ooto, user, vl_settings):
    vl_settings(DECISION_POLICY="tests.test_services.nonsense_policy")
    session = start(user)
    fake_ooto.complete(session)
    with pytest.raises(ConfigurationError, match="DECISION_POLICY"):
        services.refresh_session(session)
    session.refresh_from_db()
    assert session.status == Status.CREATED  # the whole transition rolled back


def nonsense_policy(session):
    return "maybe"


# -- what is stored ---------------------------------------------------------------------------------


def test_discarded_result_keys_are_never_stored(fake_ooto, session, vl_settings):
    vl_settings(DISCARD_RESULT_KEYS=["demography", "landmarks"])
    fake_ooto.complete(session)
    session = services.refresh_session(session)
    session.refresh_from_db()
    assert "demography" not in session.result and "landmarks" not in session.result
    assert session.result["box"]["w"] == 351


# -- cancel and review -------------------------------------------------------------------------------


def test_cancel_is_local_final_and_idempotent(fake_ooto, session, commit, signal_log, admin_user):
    with commit():
        session = services.cancel_session(session, by=admin_user)
        again = services.cancel_session(session, by=admin_user)
    assert session.status == again.status == Status.CANCELED
    assert session.url == "" and session.next_poll_at is None
    assert [c for c in fake_ooto.calls() if c[0] != "POST"] == []  # OOTO has no cancel endpoint
    assert signal_log.names() == ["verification_status_changed", "verification_finished"]
    assert signal_log.of("verification_finished")[0]["source"] == "admin"
    event = session.events.get(kind=Kind.CANCELED)
    assert (event.old_status, event.new_status, event.actor) == ("CREATED", "CANCELED", admin_user)


def test_cancel_of_a_finished_session_is_refused(db):
    session = VerificationSessionFactory(done=True)
    with pytest.raises(InvalidTransition):
        services.cancel_session(session)
    session.refresh_from_db()
    assert session.status == Status.DONE


def test_review_records_the_decision_and_the_reviewer(db, admin_user, commit, signal_log):
    session = VerificationSessionFactory(done=True, decision="review")
    with commit():
        services.review_session(session, decision="rejected", reviewer=admin_user, note="photo of a photo")
    session.refresh_from_db()
    assert (session.decision, session.reviewed_by, session.review_note) == ("rejected", admin_user, "photo of a photo")
    assert session.reviewed_at is not None
    sent = signal_log.of("verification_reviewed")
    assert [(s["decision"], s["reviewer"]) for s in sent] == [("rejected", admin_user)]
    event = session.events.get(kind=Kind.REVIEWED)
    assert event.actor == admin_user
    assert event.data == {"decision": "rejected", "previous": "review", "note": "photo of a photo"}


def test_review_refuses_open_sessions_and_unknown_decisions(db, admin_user, signal_log):
    open_session = VerificationSessionFactory()
    with pytest.raises(InvalidTransition):
        services.review_session(open_session, decision="approved", reviewer=admin_user)
    done = VerificationSessionFactory(done=True)
    for bad in ["", "maybe", "APPROVED"]:
        with pytest.raises(InvalidRequest):
            services.review_session(done, decision=bad, reviewer=admin_user)
    assert not VerificationEvent.objects.filter(kind=Kind.REVIEWED).exists()
    assert signal_log == []


# -- sweeps ------------------------------------------------------------------------------------------


def test_poll_sweep_refreshes_only_due_open_sessions(fake_ooto, user, commit, signal_log):
    due, later = start(user), start(user)
    VerificationSession.objects.filter(pk=later.pk).update(next_poll_at=timezone.now() + timedelta(hours=1))
    VerificationSessionFactory(done=True)
    fake_ooto.complete(due)
    fake_ooto.complete(later)
    with commit():
        assert services.poll_due_sessions(now=timezone.now() + timedelta(seconds=60)) == 1
    due.refresh_from_db()
    later.refresh_from_db()
    assert (due.status, later.status) == (Status.DONE, Status.CREATED)
    assert len(fake_ooto.calls("GET")) == 1
    assert [k["source"] for k in signal_log.of("verification_finished")] == ["poll"]


def test_poll_sweep_backs_off_without_change_and_resets_on_a_move(fake_ooto, session, vl_settings):
    vl_settings(POLL_INTERVAL=10, POLL_MAX_INTERVAL=60)
    now = timezone.now() + timedelta(seconds=30)
    waits = []
    for _ in range(5):
        result = services.run_poll_sweep(now=now + timedelta(days=1))
        assert result.processed == 1
        session.refresh_from_db()
        waits.append(round((session.next_poll_at - session.last_polled_at).total_seconds()))
    assert waits == [20, 40, 60, 60, 60]
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    services.run_poll_sweep(now=now + timedelta(days=1))
    session.refresh_from_db()
    assert session.poll_attempts == 0
    assert round((session.next_poll_at - session.last_polled_at).total_seconds()) == 10


def test_poll_interval_arithmetic(vl_settings):
    vl_settings(POLL_INTERVAL=10, POLL_MAX_INTERVAL=300)
    assert [services.poll_interval(n) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert services.poll_interval(10_000) == 300


def test_poll_sweep_counts_failures_and_goes_on(fake_ooto, user):
    first, second = start(user), start(user)
    fake_ooto.fail_next(500)
    result = services.run_poll_sweep(now=timezone.now() + timedelta(minutes=1))
    assert (result.found, result.processed, result.failed) == (2, 1, 1)
    assert {
        first.events.filter(kind=Kind.POLL_FAILED).count(),
        second.events.filter(kind=Kind.POLL_FAILED).count(),
    } == {
        0,
        1,
    }


def test_expiry_makes_overdue_sessions_expired_once(fake_ooto, user, commit, signal_log, vl_settings):
    vl_settings(EXPIRY_GRACE=60)
    overdue, in_grace, fresh = start(user), start(user), start(user)
    now = timezone.now()
    VerificationSession.objects.filter(pk=overdue.pk).update(expires_at=now - timedelta(seconds=61))
    VerificationSession.objects.filter(pk=in_grace.pk).update(expires_at=now - timedelta(seconds=30))
    # The provider agrees the link has run out (its expiresAt is authoritative) but reports no final status.
    fake_ooto.advance(overdue, "IN_PROGRESS", next_step="LIVENESS", expires_at=now - timedelta(seconds=61))
    with commit():
        assert services.expire_sessions(now=now) == 1
        assert services.expire_sessions(now=now) == 0
    statuses = dict(VerificationSession.objects.values_list("pk", "status"))
    assert statuses == {overdue.pk: "EXPIRED", in_grace.pk: "CREATED", fresh.pk: "CREATED"}
    finished = signal_log.of("verification_finished")
    assert [(k["session"].pk, k["status"], k["source"]) for k in finished] == [(overdue.pk, "EXPIRED", "expiry")]
    # One last status check was made for the overdue session only, per run that found it open.
    assert len(fake_ooto.calls("GET")) == 1
    overdue.refresh_from_db()
    assert overdue.url == "" and overdue.decision == ""


def test_expiry_keeps_what_the_last_check_says(fake_ooto, user, commit, signal_log):
    session = start(user)
    VerificationSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(days=1))
    fake_ooto.complete(session)
    with commit():
        assert services.expire_sessions() == 0
    session.refresh_from_db()
    assert session.status == Status.DONE
    assert [k["status"] for k in signal_log.of("verification_finished")] == ["DONE"]


def test_expiry_goes_ahead_when_the_last_check_fails(fake_ooto, user):
    session = start(user)
    VerificationSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(days=1))
    fake_ooto.fail_next(502)
    result = services.run_expiry_sweep()
    assert (result.processed, result.failed) == (1, 1)
    session.refresh_from_db()
    assert session.status == Status.EXPIRED


def test_expiry_respects_an_expiry_the_provider_extended(fake_ooto, user):
    session = start(user)
    VerificationSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(days=1))
    fake_ooto.advance(session, "CREATED", next_step="LIVENESS", expires_at=timezone.now() + timedelta(hours=1))
    assert services.expire_sessions() == 0
    session.refresh_from_db()
    assert session.status == Status.CREATED
