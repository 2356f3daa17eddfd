"""Concurrent callbacks on the database as Django configures it by default — on SQLite, deferred
transactions (no ``transaction_mode``) — and on PostgreSQL alike.

In a deferred SQLite transaction the first read takes a shared lock and the first write must
upgrade it; while another connection writes, SQLite refuses that upgrade at once ("database is
locked", no busy timeout). Every state-changing transaction of the app therefore starts with its
write (``services.take_write_lock``). Real threads, real commits, each with its own connection.
"""

import json
import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import Client

from verification_link import services
from verification_link.models import VerificationEvent, VerificationSession

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 8
SESSIONS = 10
CALLBACKS = 200


def test_the_test_database_is_in_django_default_mode():
    """What the rest of this module proves depends on it: no IMMEDIATE transactions configured."""
    assert "transaction_mode" not in connection.settings_dict.get("OPTIONS", {})
    if connection.vendor == "sqlite":
        assert not connection.is_in_memory_db()  # a file, as a site has it, not the shared cache


def test_200_concurrent_callbacks_over_10_sessions(fake_ooto, user, signal_log):
    sessions = [services.start_verification(user=user, scopes=["liveness"], reuse=False) for _ in range(SESSIONS)]
    for session in sessions:
        fake_ooto.complete(session)
    work = [sessions[n % SESSIONS] for n in range(CALLBACKS)]
    answers: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def run(share):
        client = Client()
        try:
            barrier.wait(timeout=30)
            for session in share:
                response = client.post(
                    f"/verify/callback/ooto/{session.callback_secret}/",
                    data=json.dumps(fake_ooto.status_body(session)),
                    content_type="application/json",
                )
                with lock:
                    answers.append(response.status_code)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(work[n::THREADS],)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a callback thread hung"
    if errors:
        raise errors[0]

    assert len(answers) == CALLBACKS
    assert not [code for code in answers if code >= 500], Counter(answers)
    assert set(answers) <= {200, 202}, Counter(answers)
    for session in sessions:
        session.refresh_from_db()
        assert session.status == "DONE"
        moves = VerificationEvent.objects.filter(session=session, kind="status_changed", applied=True)
        assert moves.count() == 1, session
    finished = Counter(str(kwargs["session"].pk) for kwargs in signal_log.of("verification_finished"))
    assert finished == Counter({str(session.pk): 1 for session in sessions})
    # Every callback was recorded, and none was left unprocessed.
    callbacks = VerificationEvent.objects.filter(kind="callback")
    assert callbacks.count() == CALLBACKS
    assert not callbacks.filter(processed=False).exists()
    assert VerificationSession.objects.filter(status="DONE").count() == SESSIONS
