"""Sweeps under real conditions: real threads with their own connections on the SQLite *file*
database (committed transactions, Django's default deferred mode), a provider over real HTTP, and
one session whose write fails while the rest of the sweep goes on.

The provider is faked at the HTTP layer only (``OotoServer``, ``FakeOoto``); failures are provoked
from outside the package — a site's ``post_save`` receiver, a site's decision policy, the database
itself — never by patching the package's own code.
"""

import json
import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.backends.signals import connection_created
from django.db.models.signals import post_save
from django.utils import timezone

from verification_link import services
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import OotoServer

Kind = VerificationEvent.Kind
SESSIONS = 48
CONCURRENCY = 8


class CountingOotoServer(OotoServer):
    """``OotoServer`` counting the requests it is answering at once."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.in_flight = self.most_in_flight = 0
        self.counting = threading.Lock()

    def handle(self, method, path, headers, body):
        with self.counting:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return super().handle(method, path, headers, body)
        finally:
            with self.counting:
                self.in_flight -= 1


@pytest.fixture
def ooto_server(settings):
    """The ``ooto`` alias pointed at a real local HTTP server (its own threads, real sockets), with
    a little latency so that the sweep's provider calls overlap."""
    with CountingOotoServer(app_id="test-app-id", app_key="test-app-key-SECRET", latency=0.01) as server:
        config = settings.VERIFICATION_LINK
        ooto = {**config["PROVIDERS"]["ooto"], "BASE_URL": server.base_url}
        settings.VERIFICATION_LINK = {
            **config,
            "PROVIDERS": {**config["PROVIDERS"], "ooto": ooto},
            "EXPIRY_LAST_CHECK": True,
            "POLL_CONCURRENCY": CONCURRENCY,
        }
        yield server


@pytest.fixture
def statements_at_once():
    """The most SQL statements run at the same moment by connections opened from now on (the
    sweep's threads), watched with Django's own ``connection_created`` and execute wrappers."""
    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def wrapper(execute, sql, params, many, context):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            return execute(sql, params, many, context)
        finally:
            with lock:
                state["now"] -= 1

    def watch(sender, connection, **kwargs):
        connection.execute_wrappers.append(wrapper)

    connection_created.connect(watch, weak=False, dispatch_uid="test-statements-at-once")
    yield lambda: state["most"]
    connection_created.disconnect(dispatch_uid="test-statements-at-once")


def assert_serialised_where_needed(statements_at_once, server):
    if not connection.features.has_select_for_update:
        assert statements_at_once() == 1  # one sweep thread at a time on the database
    assert 1 < server.most_in_flight <= CONCURRENCY  # the provider calls overlapped, within the bound


def locked_errors(caplog):
    return [r for r in caplog.records if "database is locked" in r.getMessage() or "locked" in str(r.exc_info)]


# -- real threads, real commits ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_threaded_expiry_sweep_on_the_database_file_expires_everyone(
    ooto_server, user, caplog, signal_log, statements_at_once
):
    caplog.set_level(logging.INFO, logger="verification_link")
    sessions = [services.start_verification(user=user, reuse=False) for _ in range(SESSIONS)]
    past = timezone.now() - timedelta(days=1)
    VerificationSession.objects.update(expires_at=past)
    # Every write path of a last check at once: an unchanged answer (compare-and-set), a forward
    # move (row lock, then the batch expires it), and the provider's own EXPIRED.
    for index, session in enumerate(sessions):
        status = ("CREATED", "CREATED", "IN_PROGRESS", "EXPIRED")[index % 4]
        ooto_server.advance(session, status, next_step="LIVENESS" if status != "EXPIRED" else None, expires_at=past)

    result = services.run_expiry_sweep(concurrency=CONCURRENCY)

    assert locked_errors(caplog) == []
    assert_serialised_where_needed(statements_at_once, ooto_server)
    assert (result.found, result.processed, result.failed) == (SESSIONS, SESSIONS, 0)
    assert VerificationSession.objects.filter(status="EXPIRED").count() == SESSIONS
    assert len(ooto_server.calls("GET")) == SESSIONS  # the provider calls were made, one each
    assert not VerificationEvent.objects.filter(kind=Kind.POLL_FAILED).exists()
    assert sorted(str(k["session"].pk) for k in signal_log.of("verification_finished")) == sorted(
        str(s.pk) for s in sessions
    )


@pytest.mark.django_db(transaction=True)
def test_threaded_poll_sweep_on_the_database_file_updates_everyone(ooto_server, user, caplog, statements_at_once):
    caplog.set_level(logging.INFO, logger="verification_link")
    sessions = [services.start_verification(user=user, reuse=False) for _ in range(SESSIONS)]
    moved = {s.pk for s in sessions[::2]}
    for session in sessions:
        if session.pk in moved:
            ooto_server.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    all_due()

    result = services.run_poll_sweep(concurrency=CONCURRENCY)

    assert locked_errors(caplog) == []
    assert_serialised_where_needed(statements_at_once, ooto_server)
    assert (result.found, result.processed, result.failed) == (SESSIONS, SESSIONS, 0)
    statuses = dict(VerificationSession.objects.values_list("pk", "status"))
    assert {pk for pk, status in statuses.items() if status == "IN_PROGRESS"} == moved
    assert VerificationEvent.objects.filter(kind=Kind.POLL).count() == SESSIONS
    assert not VerificationSession.objects.filter(last_polled_at__isnull=True).exists()
    assert not VerificationEvent.objects.filter(kind=Kind.POLL_FAILED).exists()


# -- one session's failure is its own ------------------------------------------------------------------

REFUSED: set = set()


@pytest.fixture
def buggy_receiver():
    """A site's ``post_save`` receiver with a bug that hits the sessions added to the set it yields
    (as real receivers do: an audit log, a search index)."""

    def receiver(sender, instance, **kwargs):
        if instance.pk in refused:
            raise RuntimeError("site receiver bug")

    refused: set = set()
    post_save.connect(receiver, sender=VerificationSession, weak=False, dispatch_uid="test-buggy-receiver")
    yield refused
    post_save.disconnect(sender=VerificationSession, dispatch_uid="test-buggy-receiver")


def policy_with_a_bug(session):
    """A site's DECISION_POLICY that raises for the sessions in ``REFUSED``."""
    if session.pk in REFUSED:
        raise RuntimeError("site policy bug")
    return ""


@pytest.fixture
def refused_by_policy():
    REFUSED.clear()
    yield REFUSED
    REFUSED.clear()


def start_many(fake_ooto, user, n):
    return [services.start_verification(user=user, reuse=False) for _ in range(n)]


def make_overdue(fake_ooto, sessions, *, status="CREATED"):
    """Past their expiry, the provider agreeing; ``status``: what its last check answers."""
    past = (timezone.now() - timedelta(days=1)).replace(microsecond=0)
    for index, session in enumerate(sessions):
        expires_at = past + timedelta(seconds=index)  # a fixed batch order: the list's
        VerificationSession.objects.filter(pk=session.pk).update(expires_at=expires_at)
        fake_ooto.advance(session, status, next_step="LIVENESS", expires_at=expires_at)


def all_due():
    """Every session due for a poll now; polled, none is due again in the same sweep."""
    VerificationSession.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))


def failure_logs(caplog, session):
    return [
        r
        for r in caplog.records
        # logged with where it was raised (the traceback's frames), not the exception's text
        if r.levelno >= logging.ERROR and str(session.pk) in r.getMessage() and 'File "' in r.getMessage()
    ]


def recorded_failure(session, source):
    (event,) = session.events.filter(kind=Kind.POLL_FAILED, source=source)
    return event


def assert_no_secrets(caplog):
    assert "SECRET" not in caplog.text  # the test settings' keys all end so


def test_poll_sweep_goes_on_past_a_session_whose_write_fails(fake_ooto, user, vl_settings, buggy_receiver, caplog):
    vl_settings(POLL_BATCH_SIZE=2)
    sessions = start_many(fake_ooto, user, 5)
    for session in sessions:
        fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")  # a move: the row is saved
    bad = sessions[1]  # in the first batch: the later batches must still run
    buggy_receiver.add(bad.pk)

    all_due()
    result = services.run_poll_sweep()

    assert (result.found, result.processed, result.failed) == (5, 4, 1)
    statuses = dict(VerificationSession.objects.values_list("pk", "status"))
    assert statuses.pop(bad.pk) == "CREATED"  # its move rolled back whole
    assert set(statuses.values()) == {"IN_PROGRESS"}
    event = recorded_failure(bad, "poll")
    assert event.data["error_type"] == "RuntimeError" and event.valid is False
    assert len(failure_logs(caplog, bad)) == 1
    assert_no_secrets(caplog)


def test_expiry_sweep_expires_a_session_whose_last_check_failed_to_write(
    fake_ooto, user, vl_settings, buggy_receiver, caplog, commit, signal_log
):
    vl_settings(EXPIRY_BATCH_SIZE=2)
    sessions = start_many(fake_ooto, user, 5)
    make_overdue(fake_ooto, sessions, status="IN_PROGRESS")  # the last check's answer is a move
    bad = sessions[0]
    buggy_receiver.add(bad.pk)

    with commit():
        result = services.run_expiry_sweep()

    assert (result.found, result.processed, result.failed) == (5, 5, 1)
    assert VerificationSession.objects.filter(status="EXPIRED").count() == 5  # the bad one too
    assert recorded_failure(bad, "expiry").data["error_type"] == "RuntimeError"
    assert len(failure_logs(caplog, bad)) == 1
    assert len(signal_log.of("verification_finished")) == 5
    assert_no_secrets(caplog)


def test_expiry_sweep_goes_on_past_a_session_that_cannot_be_expired(
    fake_ooto, user, vl_settings, refused_by_policy, caplog, commit, signal_log
):
    vl_settings(
        EXPIRY_BATCH_SIZE=3, EXPIRY_LAST_CHECK=False, DECISION_POLICY="tests.test_sweep_robustness.policy_with_a_bug"
    )
    sessions = start_many(fake_ooto, user, 8)
    make_overdue(fake_ooto, sessions)
    bad = sessions[4]  # the second of three batches
    refused_by_policy.add(bad.pk)

    with commit():
        result = services.run_expiry_sweep()

    assert (result.found, result.processed, result.failed) == (8, 7, 1)
    statuses = dict(VerificationSession.objects.values_list("pk", "status"))
    assert statuses.pop(bad.pk) == "CREATED"  # stays open for the next sweep
    assert set(statuses.values()) == {"EXPIRED"}
    assert VerificationEvent.objects.filter(kind=Kind.EXPIRED).count() == 7
    # The failed batch's transaction rolled back: its sessions' signals went out once, on the retry.
    finished = sorted(str(k["session"].pk) for k in signal_log.of("verification_finished"))
    assert finished == sorted(str(s.pk) for s in sessions if s.pk != bad.pk)
    assert recorded_failure(bad, "expiry").data["error_type"] == "RuntimeError"
    assert len(failure_logs(caplog, bad)) == 1

    again = services.run_expiry_sweep()  # still failing: retried, still isolated
    assert (again.found, again.processed, again.failed) == (1, 0, 1)
    refused_by_policy.clear()
    assert services.expire_sessions() == 1  # fixed: expired
    assert_no_secrets(caplog)


def refuse_status_changes_of(session):
    """A database trigger refusing any change of one session's status (as a site's own trigger or
    constraint might): a failure the database itself raises, for one row, with nothing of the
    package touched. Other updates of the row (a claim, a compare-and-set poll) still pass."""
    table = connection.ops.quote_name(VerificationSession._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER vl_test_refuse BEFORE UPDATE ON {table} "
                f"WHEN OLD.id = '{session.pk.hex}' AND NEW.status IS NOT OLD.status "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
            )
        elif connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION vl_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by the test trigger'; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER vl_test_refuse BEFORE UPDATE ON {table} FOR EACH ROW "
                f"WHEN (OLD.id = '{session.pk}' AND NEW.status IS DISTINCT FROM OLD.status) "
                "EXECUTE FUNCTION vl_test_refuse()"
            )
        else:
            pytest.skip(f"no test trigger for {connection.vendor}")


def test_sweeps_go_on_past_a_row_the_database_refuses_to_change(fake_ooto, user, vl_settings, caplog):
    vl_settings(EXPIRY_BATCH_SIZE=2, POLL_BATCH_SIZE=2)
    sessions = start_many(fake_ooto, user, 5)
    bad = sessions[2]
    for session in sessions:
        fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    refuse_status_changes_of(bad)

    all_due()
    polled = services.run_poll_sweep()
    assert (polled.found, polled.processed, polled.failed) == (5, 4, 1)
    assert recorded_failure(bad, "poll").valid is False

    make_overdue(fake_ooto, sessions, status="IN_PROGRESS")  # for the bad one still a move: refused
    expired = services.run_expiry_sweep()
    # Its last check failed, then its expiry (the batch's UPDATE, then its own): counted once.
    assert (expired.found, expired.processed, expired.failed) == (5, 4, 1)
    statuses = dict(VerificationSession.objects.values_list("pk", "status"))
    assert statuses.pop(bad.pk) == "CREATED"
    assert set(statuses.values()) == {"EXPIRED"}
    assert bad.events.filter(kind=Kind.POLL_FAILED, source="expiry").count() == 2
    assert len(failure_logs(caplog, bad)) == 3  # the poll, the last check, the expiry
    assert_no_secrets(caplog)


def test_a_failure_that_cannot_even_be_recorded_is_logged(fake_ooto, user, buggy_receiver, caplog):
    sessions = start_many(fake_ooto, user, 3)
    for session in sessions:
        fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
    bad = sessions[1]
    buggy_receiver.add(bad.pk)

    def refuse_its_failure_event(sender, instance, **kwargs):
        if instance.session_id == bad.pk and instance.kind == Kind.POLL_FAILED:
            raise RuntimeError("audit log down")

    post_save.connect(refuse_its_failure_event, sender=VerificationEvent, weak=False, dispatch_uid="test-refuse-event")
    all_due()
    try:
        result = services.run_poll_sweep()
    finally:
        post_save.disconnect(sender=VerificationEvent, dispatch_uid="test-refuse-event")

    assert (result.found, result.processed, result.failed) == (3, 2, 1)
    assert not bad.events.filter(kind=Kind.POLL_FAILED).exists()
    messages = [r.getMessage() for r in failure_logs(caplog, bad)]
    assert len(messages) == 2 and "could not be recorded" in messages[1]


def test_a_provider_answer_that_breaks_the_write_is_isolated(fake_ooto, user, vl_settings, caplog):
    """A number that overflows to infinity in the provider's answer (faked at the HTTP layer): it is
    refused as an unreadable answer, or — were it parsed — the INSERT of it fails. Either way one
    session fails, is counted, and is expired all the same; the others are expired."""
    vl_settings(EXPIRY_BATCH_SIZE=2)
    sessions = start_many(fake_ooto, user, 5)
    make_overdue(fake_ooto, sessions)
    bad = sessions[0]  # the first last check of the sweep (earliest expiry), so the next answer is its
    past = VerificationSession.objects.get(pk=bad.pk).expires_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    answer = {"status": "DONE", "scopes": ["liveness"], "nextStep": None, "expiresAt": past, "uiHints": {}}
    answer["result"] = {"liveness": {"fine": True, "score": "OVERFLOW"}}
    fake_ooto.fail_next(200, json.dumps(answer).replace('"OVERFLOW"', "1e400"))  # as the provider's bytes

    result = services.run_expiry_sweep(concurrency=1)

    assert (result.found, result.processed, result.failed) == (5, 5, 1)
    assert VerificationSession.objects.filter(status="EXPIRED").count() == 5
    assert recorded_failure(bad, "expiry").data["error_type"] in {
        "ProviderUnavailable",  # refused by the parser
        "IntegrityError",  # SQLite's JSON_VALID check
        "DataError",  # PostgreSQL's jsonb
    }
    assert_no_secrets(caplog)


def test_a_dispatch_that_fails_for_one_session_fails_that_session_only(fake_ooto, user, caplog):
    sessions = start_many(fake_ooto, user, 3)
    bad = sessions[1]
    all_due()
    dispatched = []

    def dispatch(pk):
        if pk == bad.pk:
            raise ConnectionError("broker unreachable")
        dispatched.append(pk)

    result = services.run_poll_sweep(dispatch=dispatch)

    assert (result.found, result.processed, result.failed) == (3, 2, 1)
    assert sorted(dispatched) == sorted(s.pk for s in sessions if s.pk != bad.pk)
    assert recorded_failure(bad, "poll").data["error_type"] == "ConnectionError"
    assert len(failure_logs(caplog, bad)) == 1


def test_the_retention_sweep_goes_on_past_a_session_whose_purge_fails(
    fake_ooto, user, vl_settings, buggy_receiver, caplog
):
    # Pages of one session: the failing first one stays due, and must not be fetched again forever.
    vl_settings(RETENTION_DAYS=1, PURGE_BATCH_SIZE=1)
    sessions = start_many(fake_ooto, user, 4)
    for session in sessions:
        fake_ooto.complete(session)
        services.refresh_session(session)
    old = timezone.now() - timedelta(days=3)
    VerificationSession.objects.update(finished_at=old)
    bad = sessions[0]
    buggy_receiver.add(bad.pk)

    assert services.purge_expired_data() == 3

    purged = set(VerificationSession.objects.filter(purged_at__isnull=False).values_list("pk", flat=True))
    assert purged == {s.pk for s in sessions[1:]}
    failure = VerificationEvent.objects.get(session=bad, kind=Kind.POLL_FAILED)
    assert failure.data == {"error_type": "RuntimeError", "sweep": "system"}
    assert len(failure_logs(caplog, bad)) == 1
    buggy_receiver.discard(bad.pk)
    assert services.purge_expired_data() == 1  # fixed: the next run purges it
