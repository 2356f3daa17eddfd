"""``beat_schedule()`` loaded by django-celery-beat's database scheduler.

django-celery-beat is not a dependency (and lags Django releases), so this runs in a CI stage of
its own where it is installed; elsewhere it is skipped, or fails with CI=true.
"""

import os

import pytest

pytestmark = pytest.mark.beat

if os.environ.get("CI") != "true":
    pytest.importorskip("django_celery_beat", reason="pip install django-celery-beat")


@pytest.mark.django_db(transaction=True)
def test_database_scheduler_imports_the_schedule(vl_settings):
    from celery import Celery
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from verification_link.tasks import beat_schedule

    vl_settings(POLL_SWEEP_EVERY=15)
    app = Celery("beat-test", broker="memory://", set_as_current=False)
    app.conf.beat_schedule = beat_schedule()
    scheduler = DatabaseScheduler(app=app, lazy=False)
    tasks = {task.task: task for task in PeriodicTask.objects.select_related("interval")}
    assert set(tasks) >= {
        "verification_link.poll_due_sessions",
        "verification_link.expire_sessions",
        "verification_link.purge_expired_data",
    }
    poll = tasks["verification_link.poll_due_sessions"]
    assert (poll.interval.every, poll.interval.period) == (15, "seconds")
    assert poll.enabled
    assert "verification-link-poll" in scheduler.schedule
