"""``manage.py verification_link``: what each verbosity prints (progress per batch, a line per
session, timings), ``--dry-run`` changing nothing, exit status 1 on failures, and progress that
costs no query per session."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from verification_link import services
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db

RATE = r"\d+\.\d/s"


def run(*args, verbosity=1):
    """(exit status, stdout lines, the error's one line or None)."""
    out = StringIO()
    try:
        call_command("verification_link", *args, verbosity=verbosity, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue().splitlines(), str(exc)
    return 0, out.getvalue().splitlines(), None


def due(fake_ooto, user, n):
    sessions = [services.start_verification(user=user, reuse=False) for _ in range(n)]
    make_due()
    return sessions


def make_due():
    VerificationSession.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))


def overdue(fake_ooto, user, n):
    sessions = [services.start_verification(user=user, reuse=False) for _ in range(n)]
    past = timezone.now() - timedelta(days=1)
    VerificationSession.objects.update(expires_at=past)
    for session in sessions:
        fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS", expires_at=past)
    return sessions


def finished_long_ago(user, n, *, days=2):
    return [
        VerificationSessionFactory(
            user=user, done=True, result={"name": "Ann Lee"}, finished_at=timezone.now() - timedelta(days=days)
        )
        for _ in range(n)
    ]


def no_secret_in(lines, sessions):
    text = "\n".join(lines)
    for session in sessions:
        session.refresh_from_db()
        for secret in (session.url, session.token, session.external_id):
            assert not secret or secret not in text


# -- poll at each verbosity -------------------------------------------------------------------------


def test_poll_at_verbosity_1_a_progress_line_per_batch_then_the_summary(fake_ooto, user, vl_settings):
    vl_settings(POLL_BATCH_SIZE=2)
    first, *_ = due(fake_ooto, user, 3)
    fake_ooto.complete(first)
    code, lines, error = run("poll")
    assert (code, error, len(lines)) == (0, None, 3), lines
    assert re.fullmatch(rf"poll: batch 1: 2 found, 2 processed, 0 failed, {RATE}", lines[0])
    assert re.fullmatch(rf"poll: batch 2: 3 found, 3 processed, 0 failed, {RATE}", lines[1])
    assert lines[2] == "poll: 3 found, 3 processed, 0 failed"


def test_poll_at_verbosity_0_prints_nothing(fake_ooto, user):
    due(fake_ooto, user, 2)
    assert run("poll", verbosity=0) == (0, [], None)
    assert VerificationSession.objects.filter(poll_attempts=1).count() == 2  # it did poll


def test_poll_at_verbosity_2_a_line_per_session_without_secrets(fake_ooto, user):
    sessions = due(fake_ooto, user, 3)
    fake_ooto.complete(sessions[0])
    code, lines, _ = run("poll", verbosity=2)
    assert code == 0
    per_session = {line for line in lines if line.startswith("poll: session ")}
    assert per_session == {
        f"poll: session {sessions[0].pk}: DONE",
        f"poll: session {sessions[1].pk}: CREATED",  # answered: the status it has now
        f"poll: session {sessions[2].pk}: CREATED",
    }
    assert re.fullmatch(rf"poll: batch 1: 3 found, 3 processed, 0 failed, {RATE}", lines[3])
    assert lines[4:] == ["poll: 3 found, 3 processed, 0 failed"]
    no_secret_in(lines, sessions)


def test_poll_at_verbosity_3_adds_timings(fake_ooto, user, vl_settings):
    vl_settings(POLL_BATCH_SIZE=2)
    due(fake_ooto, user, 3)
    code, lines, _ = run("poll", "--concurrency", "3", verbosity=3)
    assert code == 0
    batch_lines = [line for line in lines if line.startswith("poll: batch ")]
    assert len(batch_lines) == 2
    for number, line in enumerate(batch_lines, 1):
        size = 2 if number == 1 else 1
        assert re.fullmatch(
            rf"poll: batch {number}: .*, {RATE} \(batch {size} in \d+\.\d{{3}} s, \d+\.\d{{3}} s so far\)", line
        )
    assert re.fullmatch(r"poll: \d+\.\d{3} s, 2 batches, concurrency 3", lines[-2])
    assert lines[-1] == "poll: 3 found, 3 processed, 0 failed"


def test_a_poll_with_a_failure_exits_1_with_the_summary_as_the_error_even_at_verbosity_0(fake_ooto, user):
    due(fake_ooto, user, 2)
    fake_ooto.fail_next(503)
    assert run("poll", verbosity=0) == (1, [], "poll: 2 found, 1 processed, 1 failed")


def test_a_failed_session_is_named_at_verbosity_2(fake_ooto, user):
    sessions = due(fake_ooto, user, 2)
    fake_ooto.fail_next(503)
    code, lines, error = run("poll", verbosity=2)
    assert (code, error) == (1, "poll: 2 found, 1 processed, 1 failed")
    outcomes = sorted(line.split(": ", 2)[2] for line in lines if line.startswith("poll: session "))
    assert outcomes[0] == "CREATED" and re.fullmatch(r"failed: \w+", outcomes[1])
    assert re.fullmatch(rf"poll: batch 1: 2 found, 1 processed, 1 failed, {RATE}", lines[-1])
    no_secret_in(lines, sessions)


# -- expire ------------------------------------------------------------------------------------------


def test_expire_reports_each_session_and_batch(fake_ooto, user, vl_settings):
    vl_settings(EXPIRY_BATCH_SIZE=1)
    sessions = overdue(fake_ooto, user, 2)
    code, lines, _ = run("expire", verbosity=2)
    assert code == 0
    assert lines[0] in {f"expire: session {s.pk}: expired" for s in sessions}
    assert re.fullmatch(rf"expire: batch 1: 1 found, 1 processed, 0 failed, {RATE}", lines[1])
    assert re.fullmatch(rf"expire: batch 2: 2 found, 2 processed, 0 failed, {RATE}", lines[3])
    assert lines[-1] == "expire: 2 found, 2 processed, 0 failed"


def test_expire_dry_run_counts_and_changes_nothing(fake_ooto, user, signal_log):
    sessions = overdue(fake_ooto, user, 2)
    before = list(VerificationSession.objects.order_by("pk").values_list("pk", "status", "updated_at"))
    events, provider_calls = VerificationEvent.objects.count(), len(fake_ooto.calls())
    signal_log.clear()
    code, lines, _ = run("expire", "--dry-run", verbosity=2)
    assert code == 0
    assert sorted(lines[:2]) == sorted(
        f"expire: session {s.pk}: would be expired (after a last status check)" for s in sessions
    )
    assert lines[2] == "expire: dry run: 2 sessions would be expired; nothing changed"
    assert list(VerificationSession.objects.order_by("pk").values_list("pk", "status", "updated_at")) == before
    assert VerificationEvent.objects.count() == events
    assert len(fake_ooto.calls()) == provider_calls  # no last status check either
    assert signal_log == []
    assert run("expire", "--dry-run", verbosity=0) == (0, [], None)
    assert run("expire")[1][-1] == "expire: 2 found, 2 processed, 0 failed"  # the count was right


# -- purge -------------------------------------------------------------------------------------------


def test_purge_dry_run_counts_and_changes_nothing(fake_ooto, user, client, vl_settings, signal_log):
    vl_settings(RETENTION_DAYS=1)
    sessions = finished_long_ago(user, 2)
    client.post("/verify/callback/ooto/" + "z" * 43 + "/", data=b"{}", content_type="application/json")
    VerificationEvent.objects.update(created_at=timezone.now() - timedelta(days=2))
    rows = list(VerificationSession.objects.order_by("pk").values_list("pk", "result", "purged_at", "updated_at"))
    events = list(VerificationEvent.objects.order_by("pk").values_list("pk", "body", "headers"))
    signal_log.clear()
    code, lines, _ = run("purge", "--dry-run", verbosity=2)
    assert code == 0
    assert sorted(lines[:2]) == sorted(f"purge: session {s.pk}: would be scrubbed" for s in sessions)
    assert lines[2:] == [
        "purge: dry run: 2 sessions and 1 unmatched or unauthenticated request would be scrubbed; nothing changed"
    ]
    assert (
        list(VerificationSession.objects.order_by("pk").values_list("pk", "result", "purged_at", "updated_at")) == rows
    )
    assert list(VerificationEvent.objects.order_by("pk").values_list("pk", "body", "headers")) == events
    assert signal_log == []
    summary = run("purge")[1][-1]
    assert summary == "purge: 2 sessions scrubbed, 1 unmatched or unauthenticated requests scrubbed"


def test_purge_progress_and_a_failure_exits_1(user, vl_settings):
    vl_settings(RETENTION_DAYS=1, PURGE_BATCH_SIZE=1)
    good, bad = finished_long_ago(user, 2)

    def site_receiver(sender, instance, **kwargs):  # a site's bug, on one session
        if instance.pk == bad.pk and instance.purged_at is not None:
            raise RuntimeError("the site's receiver broke")

    post_save.connect(site_receiver, sender=VerificationSession, weak=False, dispatch_uid="test-purge-failure")
    try:
        code, lines, error = run("purge", verbosity=2)
    finally:
        post_save.disconnect(sender=VerificationSession, dispatch_uid="test-purge-failure")
    assert code == 1
    assert error == "purge: 1 sessions scrubbed, 0 unmatched or unauthenticated requests scrubbed, 1 failed"
    assert lines[0] == f"purge: session {good.pk}: purged"
    assert re.fullmatch(rf"purge: batch 1: 1 found, 1 processed, 0 failed, {RATE}", lines[1])
    assert lines[2] == f"purge: session {bad.pk}: failed: RuntimeError"
    assert re.fullmatch(rf"purge: batch 2: 2 found, 1 processed, 1 failed, {RATE}", lines[3])


# -- lapse and erase ---------------------------------------------------------------------------------


def approved_long_ago(user, n):
    return [
        VerificationSessionFactory(
            user=user, done=True, decision="approved", finished_at=timezone.now() - timedelta(days=40)
        )
        for _ in range(n)
    ]


def test_lapse_at_verbosity_2(user, vl_settings):
    vl_settings(VALID_FOR_DAYS=30)
    sessions = approved_long_ago(user, 2)
    code, lines, _ = run("lapse", verbosity=2)
    assert code == 0
    assert sorted(lines[:2]) == sorted(f"lapse: session {s.pk}: lapsed" for s in sessions)
    assert re.fullmatch(rf"lapse: batch 1: 2 found, 2 processed, 0 failed, {RATE}", lines[2])
    assert lines[3:] == ["lapse: 2 lapsed"]


def test_a_lapse_batch_that_fails_exits_1(user, vl_settings):
    vl_settings(VALID_FOR_DAYS=30)
    approved_long_ago(user, 2)

    def refuse_the_lapse(execute, sql, params, many, context):  # the database itself fails
        if sql.startswith("UPDATE") and "lapsed_at" in sql:
            raise DatabaseError("disk I/O error")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse_the_lapse):
        code, lines, error = run("lapse", verbosity=0)
    assert (code, lines, error) == (1, [], "lapse: 0 lapsed, 2 failed")
    assert VerificationSession.objects.filter(lapsed_at__isnull=False).count() == 0


def test_erase_lists_the_sessions_at_verbosity_2_and_a_dry_run_changes_nothing(user):
    sessions = finished_long_ago(user, 2, days=0)
    code, lines, _ = run("erase", "--user", str(user.pk), "--dry-run", verbosity=2)
    assert code == 0
    assert sorted(lines[:2]) == sorted(f"erase: session {s.pk}: would be erased" for s in sessions)
    assert lines[2:] == ["erase: would erase the identity data of 2 sessions"]
    assert all(result == {"name": "Ann Lee"} for result in VerificationSession.objects.values_list("result", flat=True))
    assert run("erase", "--user", str(user.pk), verbosity=0) == (0, [], None)
    assert not any(VerificationSession.objects.values_list("result", flat=True))


# -- the cost of reporting ---------------------------------------------------------------------------


def queries_of(*args, verbosity):
    with CaptureQueriesContext(connection) as captured:
        assert run(*args, verbosity=verbosity)[0] == 0
    return len(captured.captured_queries)


def test_poll_and_expire_progress_costs_no_query_per_session(fake_ooto, user, vl_settings):
    """At the most talkative verbosity the same queries as silent, however many sessions: the
    per-session lines come from what the batch holds already."""
    vl_settings(EXPIRY_LAST_CHECK=False)
    counts = {}
    for n in (2, 6):
        for verbosity in (0, 2):
            VerificationSession.objects.all().delete()
            due(fake_ooto, user, n)
            counts["poll", n, verbosity] = queries_of("poll", verbosity=verbosity)
            VerificationSession.objects.update(expires_at=timezone.now() - timedelta(days=1))
            counts["expire", n, verbosity] = queries_of("expire", verbosity=verbosity)
    for action in ("poll", "expire"):
        for n in (2, 6):
            assert counts[action, n, 0] == counts[action, n, 2], counts
    assert counts["expire", 2, 2] == counts["expire", 6, 2], counts  # a batch's expiry: constant


def test_purge_and_lapse_progress_adds_no_query(user, vl_settings):
    """Purge takes a transaction per session by design: reporting adds nothing to it."""
    vl_settings(RETENTION_DAYS=1, VALID_FOR_DAYS=30)
    counts = {}
    for verbosity in (0, 2):
        VerificationSession.objects.all().delete()
        finished_long_ago(user, 3)
        counts["purge", verbosity] = queries_of("purge", verbosity=verbosity)
        approved_long_ago(user, 3)
        counts["lapse", verbosity] = queries_of("lapse", verbosity=verbosity)
    assert counts["purge", 0] == counts["purge", 2] and counts["lapse", 0] == counts["lapse", 2], counts


# -- the progress line itself ------------------------------------------------------------------------


def test_the_rate_is_sessions_gone_through_a_second_since_the_start():
    from django.core.management.base import OutputWrapper

    from verification_link.management.conventions import Progress
    from verification_link.services.sweeps import SweepBatch, SweepResult

    ticks = iter([100.0, 102.0, 106.0])
    out = StringIO()

    progress = Progress("poll", OutputWrapper(out), 3, clock=lambda: next(ticks))
    progress(SweepBatch(1, [("a", "DONE")] * 10, SweepResult(10, 8, 2)))  # 10 in 2 s
    progress(SweepBatch(2, [("b", "DONE")] * 20, SweepResult(30, 27, 3)))  # 30 in 6 s
    lines = [line for line in out.getvalue().splitlines() if "batch" in line]
    assert lines == [
        "poll: batch 1: 10 found, 8 processed, 2 failed, 5.0/s (batch 10 in 2.000 s, 2.000 s so far)",
        "poll: batch 2: 30 found, 27 processed, 3 failed, 5.0/s (batch 20 in 4.000 s, 6.000 s so far)",
    ]
