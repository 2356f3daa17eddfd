"""Celery tasks: thin wrappers over ``verification_link.services``.

Ids in, never model instances; every task is idempotent and safe to run twice or concurrently
(the services lock the row and ignore what is already applied). ``acks_late`` so a worker that
dies mid-task leaves the message to be redelivered. Provider outages (``ProviderUnavailable``) are
retried with exponential back-off and jitter; refusals (``ProviderRejected``, ``ProviderAuthError``)
are not, since asking again cannot change the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.db import transaction

from . import conf, services
from .exceptions import ProviderError, ProviderUnavailable
from .models import VerificationEvent, VerificationSession

logger = logging.getLogger("verification_link.tasks")

RETRY_OPTIONS: dict[str, Any] = {
    "autoretry_for": (ProviderUnavailable,),
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
}
TASK_OPTIONS: dict[str, Any] = {"acks_late": True, "ignore_result": True}


@shared_task(name="verification_link.refresh_session", **TASK_OPTIONS, **RETRY_OPTIONS)
def refresh_session(session_id: str, source: str = "poll") -> str | None:
    """Ask the provider about one session and apply the answer; returns the status after it."""
    try:
        return services.refresh_session(session_id, source=source).status
    except VerificationSession.DoesNotExist:
        logger.info("refresh_session: session %s no longer exists", session_id)
        return None


@shared_task(name="verification_link.process_callback", **TASK_OPTIONS, **RETRY_OPTIONS)
def process_callback(event_id: int) -> str | None:
    """Confirm a recorded callback by a provider pull."""
    try:
        session = services.confirm_callback(event_id)
    except VerificationEvent.DoesNotExist:
        logger.info("process_callback: event %s no longer exists", event_id)
        return None
    return session.status if session else None


@shared_task(name="verification_link.poll_due_sessions", **TASK_OPTIONS)
def poll_due_sessions() -> int:
    """Claim the due sessions and fan them out as ``refresh_session`` tasks (one per session, so
    workers poll in parallel and a slow provider answer never blocks the sweep)."""
    return services.run_poll_sweep(dispatch=lambda pk: refresh_session.delay(str(pk), "poll")).found


@shared_task(name="verification_link.expire_sessions", **TASK_OPTIONS)
def expire_sessions() -> int:
    return services.expire_sessions()


@shared_task(name="verification_link.purge_expired_data", **TASK_OPTIONS)
def purge_expired_data() -> int:
    return services.purge_expired_data()


@shared_task(name="verification_link.lapse_verifications", **TASK_OPTIONS)
def lapse_verifications() -> int:
    """Send ``verification_lapsed`` for every approved verification whose validity ended."""
    return services.lapse_verifications()


def beat_schedule() -> dict[str, dict[str, Any]]:
    """A ready Celery beat schedule to merge into ``CELERY_BEAT_SCHEDULE`` (or
    ``app.conf.beat_schedule``); django-celery-beat picks it up from there too. A wrong
    ``*_SWEEP_EVERY`` is a ``ConfigurationError`` naming the key (check E013 says so earlier)."""
    return {
        "verification-link-poll": {
            "task": "verification_link.poll_due_sessions",
            "schedule": timedelta(seconds=conf.lifecycle("POLL_SWEEP_EVERY")),
        },
        "verification-link-expire": {
            "task": "verification_link.expire_sessions",
            "schedule": timedelta(seconds=conf.lifecycle("EXPIRE_SWEEP_EVERY")),
        },
        "verification-link-purge": {
            "task": "verification_link.purge_expired_data",
            "schedule": timedelta(seconds=conf.lifecycle("PURGE_SWEEP_EVERY")),
        },
        "verification-link-lapse": {
            "task": "verification_link.lapse_verifications",
            "schedule": timedelta(seconds=conf.lifecycle("LAPSE_SWEEP_EVERY")),
        },
    }


# -- dispatch ---------------------------------------------------------------------------------------


def celery_in_use() -> bool:
    """Whether background work goes to a Celery worker.

    ``VERIFICATION_LINK["TASKS"]``: ``"celery"``, ``"inline"``, or ``"auto"`` (default): Celery when
    the site created a Celery app that does not run tasks eagerly, inline otherwise.
    """
    mode = conf.get("TASKS")
    if mode in ("celery", "inline"):
        return mode == "celery"
    from celery import _state

    app = _state.get_current_app()  # what ``current_app`` stands for, as a ``Celery`` itself
    # celery-types leaves out ``_state.default_app`` (Celery's fallback app, there at runtime).
    return app is not _state.default_app and not app.conf.task_always_eager  # type: ignore[attr-defined]


def run_later(task: Any, *args: Any, inline: Callable[..., Any]) -> None:
    """Queue ``task`` once the current transaction commits, or run ``inline`` now without Celery.

    Inline runs swallow provider errors: the poll sweep asks again later, and the HTTP request that
    triggered the work (a callback) must not fail for it.
    """
    if celery_in_use():
        transaction.on_commit(lambda: task.delay(*args))
        return
    try:
        inline(*args)
    except ProviderError as exc:
        logger.info("%s%r deferred to polling: %s", task.name, args, exc)
