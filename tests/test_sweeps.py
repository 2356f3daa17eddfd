"""Background work: claiming, the poll and expiry sweeps in batches, retention, and the tasks."""

import re
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from verification_link import services, tasks
from verification_link.exceptions import ProviderAuthError, ProviderRejected, ProviderUnavailable
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import StatusReport
from verification_link.testing import VerificationSessionFactory, ooto_result

pytestmark = pytest.mark.django_db
Kind = VerificationEvent.Kind


def make_sessions(fake_ooto, user, n):
    return [services.start_verification(user=user, reuse=False) for _ in range(n)]


def due_now():
    return timezone.now() + timedelta(seconds=15)  # past the first poll (10 s), before the second (+20 s)


# -- claiming -----------------------------------------------------------------------------------------


def test_claims_are_exclusive_until_the_lease_lapses(fake_ooto, user, vl_settings):
    vl_settings(POLL_CLAIM_SECONDS=120)
    sessions = make_sessions(fake_ooto, user, 3)
    now = due_now()
    first = services.claim_due_sessions(now=now, limit=2)
    second = services.claim_due_sessions(now=now, limit=10)
    assert len(first) == 2 and len(second) == 1
    assert {s.pk for s in first + second} == {s.pk for s in sessions}
    assert services.claim_due_sessions(now=now) == []
    assert len(services.claim_due_sessions(now=now + timedelta(seconds=121))) == 3


def test_claims_skip_final_sessions_and_unpollable_aliases(fake_ooto, user, vl_settings, settings):
    open_session = services.start_verification(user=user)
    VerificationSessionFactory(done=True, next_poll_at=timezone.now() - timedelta(hours=1))
    VerificationSessionFactory(provider="gone", next_poll_at=timezone.now() - timedelta(hours=1))
    assert [s.pk for s in services.claim_due_sessions(now=due_now())] == [open_session.pk]


def test_poll_sweep_runs_in_batches(fake_ooto, user, vl_settings):
    vl_settings(POLL_BATCH_SIZE=2)
    make_sessions(fake_ooto, user, 5)
    result = services.run_poll_sweep(now=due_now())
    assert (result.found, result.processed, result.failed) == (5, 5, 0)
    assert len(fake_ooto.calls("GET")) == 5


def test_poll_sweep_can_dispatch_instead_of_polling(fake_ooto, user):
    sessions = make_sessions(fake_ooto, user, 3)
    dispatched = []
    result = services.run_poll_sweep(now=due_now(), dispatch=dispatched.append)
    assert sorted(dispatched) == sorted(s.pk for s in sessions)
    assert result.found == 3
    assert fake_ooto.calls("GET") == []


def test_a_sweep_twice_polls_nobody_twice(fake_ooto, user):
    make_sessions(fake_ooto, user, 4)
    now = due_now()
    assert services.run_poll_sweep(now=now).processed == 4
    assert services.run_poll_sweep(now=now).found == 0  # each got its own next poll time
    assert len(fake_ooto.calls("GET")) == 4


def unchanged_at_the_provider(fake_ooto, sessions):
    for session in sessions:  # the provider says what we hold: no step, no new expiry (in its milliseconds)
        expires_at = session.expires_at.replace(microsecond=session.expires_at.microsecond // 1000 * 1000)
        VerificationSession.objects.filter(pk=session.pk).update(expires_at=expires_at)
        session.refresh_from_db()
        fake_ooto.advance(session, session.status, next_step=session.next_step, expires_at=expires_at)


def poll_bookkeeping_writes(ctx):
    sql = [query["sql"] for query in ctx.captured_queries]
    return [statement for statement in sql if statement.startswith("UPDATE") and '"last_polled_at" =' in statement]


def test_a_poll_batch_writes_its_unchanged_answers_in_one_statement(fake_ooto, user, vl_settings):
    vl_settings(POLL_BATCH_SIZE=3)
    sessions = make_sessions(fake_ooto, user, 6)
    unchanged_at_the_provider(fake_ooto, sessions)
    before = VerificationEvent.objects.count()
    with CaptureQueriesContext(connection) as ctx:
        result = services.run_poll_sweep(now=due_now())
    assert (result.found, result.processed, result.failed) == (6, 6, 0)
    assert len(poll_bookkeeping_writes(ctx)) == 2  # one per batch, not one per session
    assert VerificationEvent.objects.count() == before  # an answer that changes nothing is no event
    for session in sessions:
        session.refresh_from_db()
        assert (session.status, session.poll_attempts) == ("CREATED", 1)
        assert session.next_poll_at == session.last_polled_at + timedelta(seconds=services.poll_interval(1))


def test_a_session_moved_while_its_batch_was_polled_keeps_its_move_and_gets_the_answer_recorded(
    fake_ooto, user, vl_settings
):
    vl_settings(POLL_BATCH_SIZE=4)  # one batch: the moved session, due again soon, is not claimed twice
    first, second, third = make_sessions(fake_ooto, user, 3)
    unchanged_at_the_provider(fake_ooto, [first, second, third])
    answer = fake_ooto.handle

    def answer_while_a_callback_moves_the_first(method, path, headers, body):
        if third.token in path:  # the sweep polls them in order: the first has its answer already
            services.apply_report(first.pk, StatusReport(status="IN_PROGRESS"), source="callback", kind=Kind.CALLBACK)
        return answer(method, path, headers, body)

    fake_ooto.handle = answer_while_a_callback_moves_the_first
    result = services.run_poll_sweep(now=due_now())
    assert (result.found, result.processed, result.failed) == (3, 3, 0)
    first.refresh_from_db()
    assert first.status == "IN_PROGRESS"  # the older answer did not undo the move
    late = first.events.get(kind=Kind.POLL)
    assert (late.old_status, late.new_status, late.applied) == ("IN_PROGRESS", "CREATED", False)
    assert [VerificationSession.objects.get(pk=s.pk).poll_attempts for s in (second, third)] == [1, 1]


def test_a_poll_batch_whose_bookkeeping_fails_is_written_one_session_at_a_time(fake_ooto, user, vl_settings, caplog):
    vl_settings(POLL_BATCH_SIZE=3)
    sessions = make_sessions(fake_ooto, user, 3)
    unchanged_at_the_provider(fake_ooto, sessions)

    def refuse_the_batch_write(execute, sql, params, many, context):
        if sql.startswith("UPDATE") and '"last_polled_at" =' in sql and sql.count("%s") > 8:
            raise DatabaseError("the batch write fails")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse_the_batch_write):
        result = services.run_poll_sweep(now=due_now())
    assert (result.found, result.processed, result.failed) == (3, 3, 0)
    assert [VerificationSession.objects.get(pk=s.pk).poll_attempts for s in sessions] == [1, 1, 1]
    assert "writing them one at a time" in caplog.text


def test_run_concurrently_keeps_going_and_returns_errors():
    def work(n):
        if n == 2:
            raise ProviderUnavailable("down")
        return n * 10

    outcomes = services.run_concurrently(range(4), work, concurrency=3)
    assert sorted(o for o in outcomes if isinstance(o, int)) == [0, 10, 30]
    assert [type(o) for o in outcomes if not isinstance(o, int)] == [ProviderUnavailable]


# -- expiry --------------------------------------------------------------------------------------------


def overdue(fake_ooto, user, n, *, provider_agrees=True):
    sessions = make_sessions(fake_ooto, user, n)
    past = timezone.now() - timedelta(days=1)
    VerificationSession.objects.filter(pk__in=[s.pk for s in sessions]).update(expires_at=past)
    if provider_agrees:
        for session in sessions:
            fake_ooto.advance(session, "CREATED", next_step="LIVENESS", expires_at=past)
    return sessions


def test_expiry_query_count_per_batch_is_constant(fake_ooto, user, commit, signal_log):
    def expire_queries(n):
        overdue(fake_ooto, user, n)
        with CaptureQueriesContext(connection) as ctx, commit():
            assert services.run_expiry_sweep(last_check=False).processed == n
        return len(ctx.captured_queries)

    few, many = expire_queries(3), expire_queries(40)
    assert few == many
    assert len(signal_log.of("verification_finished")) == 43
    assert VerificationEvent.objects.filter(kind=Kind.EXPIRED).count() == 43


def test_expiry_batches_and_a_second_run_is_a_no_op(fake_ooto, user, vl_settings, commit, signal_log):
    vl_settings(EXPIRY_BATCH_SIZE=2)
    sessions = overdue(fake_ooto, user, 5)
    with commit():
        result = services.run_expiry_sweep()
    assert (result.found, result.processed, result.failed) == (5, 5, 0)
    assert len(fake_ooto.calls("GET")) == 5  # one last check each
    with commit():
        again = services.run_expiry_sweep()
    assert (again.found, again.processed) == (0, 0)
    assert sorted(k["session"].pk for k in signal_log.of("verification_finished")) == sorted(s.pk for s in sessions)
    for session in sessions:
        session.refresh_from_db()
        assert (session.status, session.url, session.next_poll_at) == ("EXPIRED", "", None)


def test_expiry_end_states_follow_the_last_check(fake_ooto, user, commit, signal_log):
    silent, finished, failing = overdue(fake_ooto, user, 3)
    # The sweep checks in (expires_at, id) order: the failing one first, so fail_next hits it.
    VerificationSession.objects.filter(pk=failing.pk).update(expires_at=timezone.now() - timedelta(days=2))
    fake_ooto.complete(finished)
    with commit():
        # One provider error among the last checks: that session expires all the same.
        fake_ooto.fail_next(500)
        result = services.run_expiry_sweep(concurrency=1)
    statuses = {s.pk: VerificationSession.objects.get(pk=s.pk).status for s in (silent, finished, failing)}
    assert sorted(statuses.values()) == ["DONE", "EXPIRED", "EXPIRED"]
    assert statuses[finished.pk] == "DONE"
    assert (result.found, result.processed, result.failed) == (3, 2, 1)
    assert [k["status"] for k in signal_log.of("verification_finished")].count("DONE") == 1


def test_expiry_pages_through_many_batches_with_ties_across_their_boundaries(
    fake_ooto, user, vl_settings, commit, signal_log
):
    vl_settings(EXPIRY_BATCH_SIZE=3)
    sessions = make_sessions(fake_ooto, user, 11)
    base = (timezone.now() - timedelta(days=1)).replace(microsecond=0)
    # Expiry times 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3 (minutes): batches of 3 cut through both runs of ties.
    minutes = [1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3]
    for session, minute in zip(sessions, minutes, strict=True):
        expires_at = base + timedelta(minutes=minute)
        VerificationSession.objects.filter(pk=session.pk).update(expires_at=expires_at)
        fake_ooto.advance(session, "CREATED", next_step="LIVENESS", expires_at=expires_at)  # the provider agrees
    untouched = [
        VerificationSessionFactory(overdue=False),  # open, not due
        VerificationSessionFactory(done=True, expires_at=base),  # final, past its expiry
    ]
    with commit():
        result = services.run_expiry_sweep()
    assert (result.found, result.processed, result.failed) == (11, 11, 0)
    assert len(fake_ooto.calls("GET")) == 11  # one last check each, nobody twice
    expired = VerificationSession.objects.filter(pk__in=[s.pk for s in sessions], status="EXPIRED")
    assert expired.count() == 11
    assert VerificationEvent.objects.filter(kind=Kind.EXPIRED).count() == 11
    assert sorted(str(k["session"].pk) for k in signal_log.of("verification_finished")) == sorted(
        str(s.pk) for s in sessions
    )
    assert [VerificationSession.objects.get(pk=s.pk).status for s in untouched] == ["CREATED", "DONE"]


UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
TIMESTAMP = re.compile(r"'?\d{4}-\d\d-\d\d[ T][0-9:.+]+'?(::timestamptz)?")


def test_expiry_queries_per_batch_are_constant_and_carry_no_growing_id_list(vl_settings):
    batch_size = 4
    vl_settings(EXPIRY_BATCH_SIZE=batch_size)

    def sweep(batches):
        VerificationSessionFactory.create_batch(batch_size * batches, overdue=True)
        with CaptureQueriesContext(connection) as ctx:
            assert services.run_expiry_sweep(last_check=False).processed == batch_size * batches
        return [query["sql"] for query in ctx.captured_queries]

    one, two, six = len(sweep(1)), len(sweep(2)), sweep(6)
    per_batch = two - one
    assert len(six) == one + 5 * per_batch  # each further batch adds the same queries
    # No query grows with the sessions already seen: none names more ids than one batch has, and
    # the listings (after the first) are one statement, the same but for the cursor's values.
    assert max(len(UUID.findall(sql)) for sql in six) <= batch_size
    listings = [sql for sql in six if "ORDER BY" in sql and "LIMIT" in sql]
    assert len(listings) == 6 + 1  # one per batch, and the empty one that ends the sweep
    assert all(len(UUID.findall(sql)) <= 1 for sql in listings)
    assert len({TIMESTAMP.sub("T", UUID.sub("U", sql)) for sql in listings[1:]}) == 1


def test_expiry_counts_sessions_its_last_check_found_expired(fake_ooto, user, commit, signal_log):
    silent, expired_there, finished = overdue(fake_ooto, user, 3)
    fake_ooto.advance(expired_there, "EXPIRED")
    fake_ooto.complete(finished)
    with commit():
        result = services.run_expiry_sweep()
    assert (result.found, result.processed, result.failed) == (3, 2, 0)
    statuses = dict(VerificationSession.objects.values_list("pk", "status"))
    assert (statuses[silent.pk], statuses[expired_there.pk], statuses[finished.pk]) == ("EXPIRED", "EXPIRED", "DONE")
    # The provider's EXPIRED was applied by the last check (a poll answer), not by the sweep itself.
    assert not expired_there.events.filter(kind=Kind.EXPIRED).exists()
    assert expired_there.events.get(kind=Kind.POLL, applied=True).new_status == "EXPIRED"
    assert sorted(k["status"] for k in signal_log.of("verification_finished")) == ["DONE", "EXPIRED", "EXPIRED"]
    fake_ooto.advance(silent, "CREATED")  # a second sweep finds nothing to count
    assert services.expire_sessions() == 0


def test_a_last_check_that_brings_nothing_new_is_kept_on_the_expiry_and_writes_nothing_else(
    fake_ooto, user, vl_settings
):
    vl_settings(EXPIRY_BATCH_SIZE=2)

    def sweep(last_check):
        sessions = make_sessions(fake_ooto, user, 4)
        past = (timezone.now() - timedelta(days=1)).replace(microsecond=0)  # as the provider says it
        VerificationSession.objects.filter(pk__in=[s.pk for s in sessions]).update(
            expires_at=past, next_step="LIVENESS"
        )
        for session in sessions:
            fake_ooto.advance(session, "CREATED", next_step="LIVENESS", expires_at=past)
        before = VerificationEvent.objects.count()
        with CaptureQueriesContext(connection) as ctx:
            assert services.run_expiry_sweep(last_check=last_check).processed == 4
        assert VerificationEvent.objects.count() == before + 4  # one event each: its expiry
        # Not the savepoints: a sweep run inside a transaction (this test's) confines each check in one.
        return sessions, [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]

    _, without = sweep(False)
    checked, with_checks = sweep(True)
    assert len(fake_ooto.calls("GET")) == 4
    # The checks add one read per batch (its sessions to check), and no write of their own.
    assert len(with_checks) == len(without) + 2
    assert [sql.split()[0] for sql in with_checks if sql.split()[0] in ("UPDATE", "INSERT")] == [
        sql.split()[0] for sql in without if sql.split()[0] in ("UPDATE", "INSERT")
    ]
    for session in checked:
        (expired,) = session.events.filter(kind=Kind.EXPIRED)
        assert expired.data["last_check"]["status"] == "CREATED"
        assert expired.data["last_check"]["next_step"] == "LIVENESS"
        assert not session.events.filter(kind=Kind.POLL).exists()


def test_expiry_without_the_last_check_calls_nobody(fake_ooto, user, vl_settings):
    vl_settings(EXPIRY_LAST_CHECK=False)
    overdue(fake_ooto, user, 2)
    assert services.expire_sessions() == 2
    assert fake_ooto.calls("GET") == []


def test_expiry_runs_the_decision_policy(fake_ooto, user, vl_settings, commit, signal_log):
    vl_settings(DECISION_POLICY="tests.test_sweeps.reject_expired")
    (session,) = overdue(fake_ooto, user, 1)
    with commit():
        services.run_expiry_sweep(last_check=False)
    session.refresh_from_db()
    assert session.decision == "rejected"
    assert [k["decision"] for k in signal_log.of("verification_reviewed")] == ["rejected"]


def reject_expired(session):
    return "rejected" if session.status == "EXPIRED" else ""


# -- retention -----------------------------------------------------------------------------------------


def test_purge_scrubs_sensitive_parts_and_raw_bodies_only(fake_ooto, user, client, vl_settings):
    vl_settings(RETENTION_DAYS=30)
    session = services.start_verification(user=user, scopes=["liveness", "search"])
    fake_ooto.complete(session)
    client.post(f"/verify/callback/ooto/{session.callback_secret}/", data=b'{"x": 1}', content_type="application/json")
    session.refresh_from_db()
    assert session.status == "DONE" and "demography" in session.result
    recent = services.start_verification(user=user)
    fake_ooto.complete(recent)
    services.refresh_session(recent)
    VerificationSession.objects.filter(pk=session.pk).update(finished_at=timezone.now() - timedelta(days=31))

    assert services.purge_expired_data() == 1
    assert services.purge_expired_data() == 0  # idempotent
    session.refresh_from_db()
    assert set(session.result) == {"liveness", "search", "quality"}
    assert session.result["liveness"] == {"fine": True, "score": 0.96}
    assert (session.status, session.decision) == ("DONE", "approved")
    assert session.finished_at and session.purged_at
    assert not session.events.exclude(body="").exists()
    assert not session.events.exclude(headers={}).exists()
    purged = session.events.get(kind=Kind.PURGED)
    assert purged.data == {"result_keys": ["box", "demography", "landmarks"], "event_bodies": 1}
    recent.refresh_from_db()
    assert "demography" in recent.result and recent.purged_at is None


# -- tasks -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "calls"),
    [
        (503, ProviderUnavailable, tasks.RETRY_OPTIONS["max_retries"] + 1),
        (422, ProviderRejected, 1),
        (401, ProviderAuthError, 1),
    ],
)
def test_refresh_task_retries_only_what_may_heal(fake_ooto, user, status, error, calls):
    session = services.start_verification(user=user)
    for _ in range(20):
        fake_ooto.fail_next(status)
    outcome = tasks.refresh_session.apply(args=[str(session.pk), "poll"])
    assert isinstance(outcome.result, error)
    assert len(fake_ooto.calls("GET")) == calls


def test_retry_back_off_is_exponential_with_jitter():
    for task in (tasks.refresh_session, tasks.process_callback):
        assert task.autoretry_for == (ProviderUnavailable,)
        assert task.retry_backoff and task.retry_jitter and task.retry_backoff_max == 600
        assert task.acks_late is True


def test_refresh_task_recovers_after_an_outage(fake_ooto, user):
    session = services.start_verification(user=user)
    fake_ooto.complete(session)
    fake_ooto.fail_next(503)
    fake_ooto.fail_next(502)
    assert tasks.refresh_session.apply(args=[str(session.pk), "poll"]).get() == "DONE"
    assert tasks.refresh_session.apply(args=[str(session.pk), "poll"]).get() == "DONE"  # twice: a no-op
    assert len(fake_ooto.calls("GET")) == 3


def test_tasks_take_ids_and_tolerate_vanished_rows(fake_ooto, user):
    import uuid

    assert tasks.refresh_session.apply(args=[str(uuid.uuid4())]).get() is None
    assert tasks.process_callback.apply(args=[987654]).get() is None


def test_sweep_tasks(fake_ooto, user):
    make_sessions(fake_ooto, user, 2)
    VerificationSession.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))
    assert tasks.poll_due_sessions.apply().get() == 2  # fanned out as refresh_session tasks (eager here)
    overdue(fake_ooto, user, 1)
    assert tasks.expire_sessions.apply().get() == 1
    assert tasks.purge_expired_data.apply().get() == 0


def test_beat_schedule_uses_the_settings(vl_settings):
    vl_settings(POLL_SWEEP_EVERY=7, EXPIRE_SWEEP_EVERY=70, PURGE_SWEEP_EVERY=700, LAPSE_SWEEP_EVERY=7000)
    schedule = tasks.beat_schedule()
    assert {entry["task"]: entry["schedule"].total_seconds() for entry in schedule.values()} == {
        "verification_link.poll_due_sessions": 7,
        "verification_link.expire_sessions": 70,
        "verification_link.purge_expired_data": 700,
        "verification_link.lapse_verifications": 7000,
    }
    from celery import current_app

    for entry in schedule.values():
        assert entry["task"] in current_app.tasks


@pytest.mark.parametrize("value", [0, -10, "often", 10**9, 2.5])
def test_a_wrong_sweep_interval_refuses_the_schedule_and_the_checks(vl_settings, value):
    from verification_link.checks import check_settings
    from verification_link.exceptions import ConfigurationError

    vl_settings(EXPIRE_SWEEP_EVERY=value)
    with pytest.raises(ConfigurationError, match=r'VERIFICATION_LINK\["EXPIRE_SWEEP_EVERY"\]'):
        tasks.beat_schedule()
    assert [m.id for m in check_settings() if "EXPIRE_SWEEP_EVERY" in m.msg] == ["verification_link.E013"]
    vl_settings(EXPIRE_SWEEP_EVERY="90")  # an environment variable read as it is
    assert tasks.beat_schedule()["verification-link-expire"]["schedule"].total_seconds() == 90


def test_results_are_never_stored_sensitively_when_discarded(fake_ooto, user, vl_settings):
    vl_settings(DISCARD_RESULT_KEYS=["demography"])
    session = services.start_verification(user=user)
    fake_ooto.advance(session, "DONE", result=ooto_result(["liveness", "deepfake"]))
    session = services.refresh_session(session)
    assert "demography" not in VerificationSession.objects.get(pk=session.pk).result


def test_a_failed_batch_write_of_several_groups_retries_each_without_a_false_late_answer(
    fake_ooto, user, vl_settings, caplog
):
    vl_settings(POLL_BATCH_SIZE=4)
    sessions = make_sessions(fake_ooto, user, 4)
    unchanged_at_the_provider(fake_ooto, sessions)
    VerificationSession.objects.filter(pk__in=[s.pk for s in sessions[:2]]).update(poll_attempts=3)  # two groups
    writes = []

    def refuse_the_second_group(execute, sql, params, many, context):
        if sql.startswith("UPDATE") and '"last_polled_at" =' in sql and sql.count("%s") > 6:
            writes.append(sql)
            if len(writes) == 2:
                raise DatabaseError("the second group's write fails")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse_the_second_group):
        result = services.run_poll_sweep(now=timezone.now() + timedelta(days=1))
    assert (result.found, result.processed, result.failed) == (4, 4, 0)
    attempts = sorted(
        VerificationSession.objects.filter(pk__in=[s.pk for s in sessions]).values_list("poll_attempts", flat=True)
    )
    assert attempts == [1, 1, 4, 4]
    assert not VerificationEvent.objects.filter(kind=Kind.POLL).exists()  # no answer recorded as late
