"""Racing writers on PostgreSQL: row locks turn many simultaneous reports into one transition.

Run with VL_TEST_DATABASE=postgres (``.ci/run`` starts a throwaway cluster). SQLite serialises
writers itself and proves nothing here.
"""

import contextlib
import json
import random
import threading

import pytest
from django.db import connection
from django.test import Client

from verification_link import services
from verification_link.exceptions import InvalidTransition, TooManyAttempts
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import FakeOoto

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 16
SESSIONS = 10


def race(jobs):
    """Run each job in its own thread, all released at once; re-raise the first error."""
    barrier = threading.Barrier(len(jobs))
    errors = []

    def run(job):
        try:
            barrier.wait(timeout=30)
            job()
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a racing thread hung"
    if errors:
        raise errors[0]


def jobs_for(session, fake, index):
    """16 writers on one session: callbacks (HTTP and direct), polls, and poll sweeps."""
    rng = random.Random(index)

    def refresh(source):
        return lambda: services.refresh_session(session.pk, source=source)

    def callback_view():
        response = Client().post(
            f"/verify/callback/ooto/{session.callback_secret}/",
            data=json.dumps(fake.status_body(session)),
            content_type="application/json",
        )
        assert response.status_code in (200, 202), response.content

    jobs = [refresh("callback")] * 6 + [refresh("poll")] * 5 + [services.run_poll_sweep] * 2 + [callback_view] * 3
    rng.shuffle(jobs)
    return jobs


def test_postgres_is_in_use():
    assert connection.vendor == "postgresql"


def test_racing_callbacks_and_polls_give_one_transition_each(user, signal_log):
    with FakeOoto(app_id="test-app-id", app_key="test-app-key-SECRET", latency=0.005) as fake:
        sessions = [services.start_verification(user=user, reuse=False) for _ in range(SESSIONS)]
        VerificationSession.objects.update(next_poll_at=None)  # only the racing sweeps' own picks
        VerificationSession.objects.filter(pk__in=[s.pk for s in sessions[::2]]).update(
            next_poll_at="2000-01-01T00:00:00Z"
        )
        for index, session in enumerate(sessions):
            fake.complete(session, fine=index % 3 != 0)
            race(jobs_for(session, fake, index))
    for index, session in enumerate(sessions):
        session.refresh_from_db()
        assert session.status == "DONE"
        changes = session.events.filter(kind=VerificationEvent.Kind.STATUS_CHANGED)
        assert changes.count() == 1
        # One applied answer: a poll's own event, or the callback whose confirmation it was (the
        # answer is written on the callback's row then).
        answers = session.events.filter(kind__in=[VerificationEvent.Kind.POLL, VerificationEvent.Kind.CALLBACK])
        assert answers.filter(applied=True).count() == 1
        assert session.decision == ("approved" if index % 3 else "review")
    for name in ("verification_status_changed", "verification_finished", "verification_reviewed"):
        sent = sorted(str(k["session"].pk) for k in signal_log.of(name))
        assert sent == sorted(str(s.pk) for s in sessions), name


def test_cancel_racing_a_finish_yields_one_final_status(user, signal_log):
    admin = type(user).objects.create_superuser("boss", "boss@example.com", "pw")
    with FakeOoto(app_id="test-app-id", app_key="test-app-key-SECRET", latency=0.003) as fake:
        sessions = [services.start_verification(user=user, reuse=False) for _ in range(SESSIONS)]
        for session in sessions:
            fake.complete(session)

            def cancel(session=session):
                with contextlib.suppress(InvalidTransition):  # the finish may win
                    services.cancel_session(session.pk, by=admin)

            race([cancel] * 8 + [lambda session=session: services.refresh_session(session.pk)] * 8)
    finished = [k["session"].pk for k in signal_log.of("verification_finished")]
    assert sorted(map(str, finished)) == sorted(str(s.pk) for s in sessions)
    for session in sessions:
        session.refresh_from_db()
        assert session.status in ("DONE", "CANCELED")
        assert session.events.filter(kind__in=["status_changed", "canceled"]).count() == 1


def test_concurrent_claims_take_disjoint_batches(user):
    with FakeOoto(app_id="test-app-id", app_key="test-app-key-SECRET"):
        sessions = [services.start_verification(user=user, reuse=False) for _ in range(40)]
    VerificationSession.objects.update(next_poll_at="2000-01-01T00:00:00Z")
    claims = []
    race([lambda: claims.append(services.claim_due_sessions(limit=10))] * 4)
    claimed = [session.pk for claim in claims for session in claim]
    assert len(claimed) == len(set(claimed)) == 40
    assert set(claimed) == {s.pk for s in sessions}


def test_concurrent_poll_sweeps_never_poll_a_session_twice(user):
    with FakeOoto(app_id="test-app-id", app_key="test-app-key-SECRET", latency=0.01) as fake:
        sessions = [services.start_verification(user=user, reuse=False) for _ in range(60)]
        VerificationSession.objects.update(next_poll_at="2000-01-01T00:00:00Z")
        race([lambda: services.run_poll_sweep(concurrency=4)] * 4)
        polled = [path for _, path, _, _ in fake.calls("GET")]
    assert len(polled) == len(set(polled)) == 60
    assert VerificationEvent.objects.filter(kind=VerificationEvent.Kind.POLL).count() == 60
    assert all(s.next_poll_at is not None for s in VerificationSession.objects.filter(pk__in=[s.pk for s in sessions]))


def test_expiry_sweeps_racing_expire_each_session_once(user, signal_log):
    with FakeOoto(app_id="test-app-id", app_key="test-app-key-SECRET"):
        sessions = [services.start_verification(user=user, reuse=False) for _ in range(30)]
    VerificationSession.objects.update(expires_at="2000-01-01T00:00:00Z")
    race([lambda: services.run_expiry_sweep(last_check=False)] * 4)
    assert VerificationSession.objects.filter(status="EXPIRED").count() == 30
    assert VerificationEvent.objects.filter(kind=VerificationEvent.Kind.EXPIRED).count() == 30
    finished = sorted(str(k["session"].pk) for k in signal_log.of("verification_finished"))
    assert finished == sorted(str(s.pk) for s in sessions)


def test_starts_racing_for_one_user_store_one_session(user, signal_log):
    """Eight starts at once (a double submit, a second tab): the provider is asked by each that
    found no open session, and one session is stored; the others return it."""
    with FakeOoto(app_id="test-app-id", app_key="test-app-key-SECRET", latency=0.05):
        started = []
        race([lambda: started.append(services.start_verification(user=user))] * 8)
    assert len({session.pk for session in started}) == 1
    assert VerificationSession.objects.count() == 1
    assert VerificationEvent.objects.filter(kind="created").count() == 1
    assert signal_log.names() == ["verification_created"]


def test_starts_racing_for_the_last_attempt_store_one(user, settings):
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "MAX_ATTEMPTS": 1}
    refused = []

    def start():
        try:
            services.start_verification(user=user, reuse=False)
        except TooManyAttempts:
            refused.append(True)

    with FakeOoto(app_id="test-app-id", app_key="test-app-key-SECRET", latency=0.05):
        race([start] * 6)
    assert VerificationSession.objects.count() == 1 and len(refused) == 5


def test_reviewers_racing_to_assign_one_session_one_wins_the_others_are_told(django_user_model):
    from verification_link.testing import VerificationSessionFactory

    session = VerificationSessionFactory(done=True, decision="review")
    reviewers = [django_user_model.objects.create_user(f"rev{n}", is_staff=True) for n in range(6)]
    told = []

    def claim(reviewer):
        def job():
            try:
                services.assign_review(session.pk, reviewer)
            except InvalidTransition as exc:
                told.append(str(exc))

        return job

    race([claim(reviewer) for reviewer in reviewers])
    session.refresh_from_db()
    assert session.assigned_to in reviewers and len(told) == 5
    assert all(message == f"already assigned to {session.assigned_to.username}" for message in told)
    assert session.events.filter(kind="assigned").count() == 1


def test_try_again_racing_itself_stores_one_attempt(user, signal_log):
    """Six "Try again" at once on one failed session (a double click, two tabs): one new attempt,
    linked to it; the others return that one."""
    with FakeOoto(app_id="test-app-id", app_key="test-app-key-SECRET", latency=0.05) as fake:
        failed = services.start_verification(user=user)
        fake.fail(failed)
        services.refresh_session(failed)
        retries = []
        race([lambda: retries.append(services.retry_verification(failed.pk, user=user))] * 6)
    assert len({retry.pk for retry in retries}) == 1
    assert VerificationSession.objects.filter(previous=failed).count() == 1
    assert VerificationEvent.objects.filter(session=failed, kind="replaced").count() == 1
    assert len(signal_log.of("verification_created")) == 2  # the failed one's, the retry's


def test_reviewers_deciding_at_once_give_one_decision_the_others_are_told(django_user_model, signal_log):
    """Six reviewers decide one queued session at once, half approving, half rejecting: the first
    decision holds; an equal one is the same decision (not recorded again), a different one is told
    to confirm a change."""
    from verification_link.testing import VerificationSessionFactory

    session = VerificationSessionFactory(done=True, decision="review")
    reviewers = [django_user_model.objects.create_user(f"judge{n}", is_staff=True) for n in range(6)]
    told = []

    def decide(reviewer, decision):
        def job():
            try:
                services.review_session(session.pk, decision=decision, reviewer=reviewer, note="checked the photo")
            except InvalidTransition as exc:
                told.append(str(exc))

        return job

    race([decide(reviewer, ("approved", "rejected")[n % 2]) for n, reviewer in enumerate(reviewers)])
    session.refresh_from_db()
    assert session.decision in ("approved", "rejected") and session.reviewed_by in reviewers
    assert session.events.filter(kind="reviewed").count() == 1
    assert len(signal_log.of("verification_reviewed")) == 1
    assert told == [f"already {session.decision}; confirm to change it"] * 3
