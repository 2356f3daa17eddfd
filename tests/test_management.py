"""``manage.py verification_link poll|expire|purge|refresh`` — summaries and exit status for cron
(progress and verbosity: tests/test_management_output.py; bad arguments: tests/test_management_usage.py)."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from verification_link import services
from verification_link.models import VerificationSession

pytestmark = pytest.mark.django_db


def run(*args):
    """The command's last stdout line (its summary); the progress lines before it are
    tests/test_management_output.py's concern."""
    from io import StringIO

    out = StringIO()
    call_command("verification_link", *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    return lines[-1] if lines else ""


def make_due(fake_ooto, user, n=2):
    sessions = [services.start_verification(user=user, reuse=False) for _ in range(n)]
    VerificationSession.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))
    return sessions


def test_poll_prints_one_summary_line(fake_ooto, user):
    first, _ = make_due(fake_ooto, user)
    fake_ooto.complete(first)
    assert run("poll") == "poll: 2 found, 2 processed, 0 failed"
    first.refresh_from_db()
    assert first.status == "DONE"


def test_poll_with_a_failure_exits_1(fake_ooto, user):
    make_due(fake_ooto, user)
    fake_ooto.fail_next(503)
    with pytest.raises(CommandError, match=r"poll: 2 found, 1 processed, 1 failed") as info:
        run("poll")
    assert info.value.returncode == 1


def test_expire(fake_ooto, user):
    session = services.start_verification(user=user)
    VerificationSession.objects.update(expires_at=timezone.now() - timedelta(days=1))
    fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS", expires_at=timezone.now() - timedelta(days=1))
    assert run("expire") == "expire: 1 found, 1 processed, 0 failed"
    assert run("expire") == "expire: 0 found, 0 processed, 0 failed"
    session.refresh_from_db()
    assert session.status == "EXPIRED"


def test_refresh_one(fake_ooto, user):
    session = services.start_verification(user=user)
    fake_ooto.complete(session)
    assert run("refresh", str(session.pk)) == f"refresh: {session.pk}: CREATED -> DONE"


@pytest.mark.parametrize(("arg", "code"), [("not-a-uuid", 2), ("6f1c2a8e-0d4b-4c9e-9a57-3b2f8e1d7c40", 2)])
def test_refresh_bad_id(arg, code):
    with pytest.raises(CommandError) as info:
        run("refresh", arg)
    assert info.value.returncode == code


def test_refresh_provider_down(fake_ooto, user):
    session = services.start_verification(user=user)
    fake_ooto.fail_next(500)
    with pytest.raises(CommandError, match="HTTP 500") as info:
        run("refresh", str(session.pk))
    assert info.value.returncode == 1


def test_exit_status_from_a_real_process(tmp_path):
    """What cron sees: the real exit code of ``manage.py``."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "manage.py", "verification_link", "refresh", "nope"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "not a session id" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "manage.py", "verification_link"], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0


def test_purge_prints_what_it_scrubbed(fake_ooto, user, client, vl_settings):
    from verification_link.models import VerificationEvent

    vl_settings(RETENTION_DAYS=1)
    session = services.start_verification(user=user)
    fake_ooto.complete(session)
    services.refresh_session(session)
    client.post("/verify/callback/ooto/" + "z" * 43 + "/", data=b"{}", content_type="application/json")
    VerificationSession.objects.update(finished_at=timezone.now() - timedelta(days=2))
    VerificationEvent.objects.update(created_at=timezone.now() - timedelta(days=2))
    assert run("purge") == "purge: 1 sessions scrubbed, 1 unmatched or unauthenticated requests scrubbed"
    assert run("purge") == "purge: 0 sessions scrubbed, 0 unmatched or unauthenticated requests scrubbed"
