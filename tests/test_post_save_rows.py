"""Every row the app writes on a request path fires Django's ``post_save`` — on every database.

A site's audit log or search index listens to ``post_save``; a row written by raw SQL (or by
``bulk_create``) would slip past it. Along start → callback → poll → finish, the test counts the
rows each table holds against the ``post_save(created=True)`` sent per model, and the statements
that change a session's status against ``post_save(created=False)`` for sessions. The
suite runs on SQLite and on PostgreSQL (CI runs it on both), so the two must agree everywhere.
"""

import re
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from verification_link import services
from verification_link.exceptions import ProviderError
from verification_link.models import VerificationEvent, VerificationSession

pytestmark = pytest.mark.django_db

TABLES = {model._meta.db_table: model.__name__ for model in (VerificationSession, VerificationEvent)}


class PostSaveLog:
    def __init__(self) -> None:
        self.created: Counter[str] = Counter()
        self.updated: Counter[str] = Counter()

    def __call__(self, sender, instance, created, **kwargs) -> None:
        (self.created if created else self.updated)[sender.__name__] += 1


@pytest.fixture
def saves():
    log = PostSaveLog()
    for model in (VerificationSession, VerificationEvent):
        post_save.connect(log, sender=model, dispatch_uid=f"test-post-save-{model.__name__}")
    yield log
    for model in (VerificationSession, VerificationEvent):
        post_save.disconnect(sender=model, dispatch_uid=f"test-post-save-{model.__name__}")


def rows_in_tables() -> Counter[str]:
    """Rows per model as the database has them: however they got there (``save()``, raw SQL,
    ``bulk_create``), every one is counted."""
    return Counter({model.__name__: model.objects.count() for model in (VerificationSession, VerificationEvent)})


def status_updates(queries) -> int:
    """Statements that set a session's status, wherever the UPDATE sits in them (a CTE too)."""
    quote = connection.ops.quote_name
    setting = re.compile(
        rf"UPDATE {re.escape(quote(VerificationSession._meta.db_table))} SET [^;]*?{quote('status')} = "
    )
    return sum(1 for query in queries if setting.search(query["sql"].split(" WHERE ")[0]))


def callback(client, session, status: str):
    url = f"/verify/callback/ooto/{session.callback_secret}/"
    return client.post(url, data=f'{{"status": "{status}"}}', content_type="application/json")


def test_start_callback_poll_finish_fires_post_save_for_every_row(client, fake_ooto, user, vl_settings, saves):
    vl_settings(CALLBACK_COALESCE_SECONDS=0)  # every callback asks the provider
    with CaptureQueriesContext(connection) as ctx:
        session = services.start_verification(user=user, scopes=["liveness"])
        fake_ooto.advance(session, "IN_PROGRESS", next_step="LIVENESS")
        assert callback(client, session, "IN_PROGRESS").status_code == 202  # CREATED -> IN_PROGRESS
        VerificationSession.objects.filter(pk=session.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))
        assert services.run_poll_sweep().processed == 1  # the same status: recorded, not a move
        fake_ooto.complete(session)
        assert callback(client, session, "DONE").status_code == 202  # IN_PROGRESS -> DONE, approved
    session.refresh_from_db()
    assert (session.status, session.decision) == ("DONE", "approved")

    # What the path wrote: the session; created, two callbacks, two moves (the poll's answer changed
    # nothing: its bookkeeping only, no event).
    assert rows_in_tables() == {"VerificationSession": 1, "VerificationEvent": 5}
    assert saves.created == rows_in_tables()
    assert status_updates(ctx.captured_queries) == 2
    assert saves.updated["VerificationSession"] == 2
    kinds = Counter(VerificationEvent.objects.values_list("kind", flat=True))
    assert kinds == {"created": 1, "callback": 2, "status_changed": 2}
    assert session.poll_attempts == 1 and session.last_polled_at is not None  # the unchanged answer, counted


def test_a_refused_start_records_its_failure_through_save(fake_ooto, saves):
    """The ``create_failed`` event of a provider refusal is a row like any other."""
    fake_ooto.fail_next(500)
    with pytest.raises(ProviderError):
        services.start_verification(scopes=["liveness"])
    assert rows_in_tables() == {"VerificationSession": 0, "VerificationEvent": 1}
    assert saves.created == {"VerificationEvent": 1}
