"""Real Celery worker, real Redis: callbacks confirmed by the worker, sweeps run by the worker."""

import json

import pytest
import requests

from tests.servers import wait_for

pytestmark = pytest.mark.celery

START = (
    "from django.contrib.auth.models import User; from verification_link.services import start_verification; "
    "print(start_verification(user=User.objects.get(username='{user}')).pk)"
)


def start(stack, user="demo"):
    """Start a session in the site; returns (session id, provider token)."""
    session_id = stack.shell(START.format(user=user))
    token = stack.query(
        "SELECT token FROM verification_link_verificationsession WHERE id = ?", session_id.replace("-", "")
    )
    return session_id.replace("-", ""), token[0][0]


def status(stack, session_id):
    rows = stack.query("SELECT status FROM verification_link_verificationsession WHERE id = ?", session_id)
    return rows[0][0] if rows else None


def test_a_callback_is_confirmed_by_the_worker(stack):
    session_id, token = start(stack)
    stack.provider.complete(token)
    callback_url = stack.provider.sessions[token]["callbackUrl"]
    assert callback_url.startswith(stack.base_url + "/verify/callback/ooto/")

    gets_before = len(stack.provider.calls("GET"))
    response = requests.post(
        callback_url,
        data=json.dumps(stack.provider.status_body(token)),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 202, response.text

    # The request only recorded and queued; the worker asks the provider and applies the answer.
    wait_for(lambda: status(stack, session_id) == "DONE", timeout=60, what="the worker to confirm the callback")
    assert len(stack.provider.calls("GET")) > gets_before
    changes = stack.query(
        "SELECT source, old_status, new_status FROM verification_link_verificationevent "
        "WHERE session_id = ? AND kind = 'status_changed'",
        session_id,
    )
    assert changes == [("callback", "CREATED", "DONE")]
    callback_event = stack.query(
        "SELECT valid, processed FROM verification_link_verificationevent WHERE session_id = ? AND kind = 'callback'",
        session_id,
    )
    assert callback_event == [(1, 1)]
    # verification_finished ran in the worker, after commit: the demo receiver marked the user verified.
    verified = wait_for(
        lambda: stack.query(
            "SELECT identity_verified FROM demo_profile p JOIN auth_user u ON u.id = p.user_id "
            "WHERE u.username = 'demo'"
        ),
        timeout=30,
        what="the verification_finished receiver",
    )
    assert verified == [(1,)]


def test_the_worker_expires_an_overdue_session(stack):
    session_id, token = start(stack)
    stack.query(
        "UPDATE verification_link_verificationsession SET expires_at = '2001-01-01 00:00:00' WHERE id = ?", session_id
    )
    # The provider agrees the link ran out without a final status (the last check changes nothing).
    from datetime import datetime, timezone

    stack.provider.advance(
        token, "IN_PROGRESS", next_step="LIVENESS", expires_at=datetime(2001, 1, 1, tzinfo=timezone.utc)
    )
    stack.call_task("verification_link.expire_sessions")
    wait_for(lambda: status(stack, session_id) == "EXPIRED", timeout=60, what="the worker to expire the session")
    kinds = [
        row[0]
        for row in stack.query(
            "SELECT kind FROM verification_link_verificationevent WHERE session_id = ? ORDER BY id", session_id
        )
    ]
    assert kinds.count("expired") == 1
    # A second run is a no-op.
    stack.call_task("verification_link.expire_sessions")
    stack.call_task("verification_link.poll_due_sessions")
    wait_for(
        lambda: "verification_link.poll_due_sessions" in (stack.tmp / "worker.log").read_text(),
        timeout=30,
        what="the second sweep",
    )
    assert [
        row[0]
        for row in stack.query(
            "SELECT kind FROM verification_link_verificationevent WHERE session_id = ? ORDER BY id", session_id
        )
    ].count("expired") == 1


def test_the_worker_polls_a_session_whose_callback_was_lost(stack):
    session_id, token = start(stack, user="admin")
    stack.provider.fail(token)  # FAILED at the provider; its callback never arrives
    stack.query(
        "UPDATE verification_link_verificationsession SET next_poll_at = '2001-01-01 00:00:00' WHERE id = ?", session_id
    )
    stack.call_task("verification_link.poll_due_sessions")
    wait_for(lambda: status(stack, session_id) == "FAILED", timeout=60, what="the poll sweep's refresh task")
    decision = stack.query("SELECT decision FROM verification_link_verificationsession WHERE id = ?", session_id)
    assert decision == [("rejected",)]
