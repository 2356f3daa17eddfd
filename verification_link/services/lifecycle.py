"""A user's verifications over time: reusing an open session, the attempt limit, how long an
approved verification counts (``VALID_FOR_DAYS``), and the sweep that sees validity end."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import connection, transaction
from django.utils import timezone

from .. import conf, logfields, metrics, signals
from ..exceptions import TooManyAttempts
from ..models import VerificationEvent, VerificationSession
from .common import Kind, _send_on_commit, logger, take_write_lock
from .sweeps import OnBatch, SweepBatch, SweepResult, _failure_word

Decision = VerificationSession.Decision


def reusable_session(
    user: Any, provider: str, scopes: Iterable[str], *, now: datetime | None = None
) -> VerificationSession | None:
    """The user's newest open session at ``provider`` for exactly ``scopes`` whose link still
    works for ``REUSE_MIN_REMAINING`` seconds, or None. One indexed query (the user's recent
    sessions), the scopes compared here: JSON equality is not portable across databases."""
    now = now or timezone.now()
    margin = timedelta(seconds=conf.lifecycle("REUSE_MIN_REMAINING"))
    wanted = list(scopes)
    candidates = (
        VerificationSession.objects.filter(
            user=user, provider=provider, status__in=VerificationSession.OPEN_STATUSES, expires_at__gt=now + margin
        )
        .exclude(url="")
        .order_by("-created_at")[:20]
    )
    return next((session for session in candidates if list(session.scopes or ()) == wanted), None)


def check_attempts(user: Any, *, now: datetime | None = None) -> None:
    """Raise ``TooManyAttempts`` when the user started ``MAX_ATTEMPTS`` sessions (any provider)
    within the last ``ATTEMPT_WINDOW`` seconds; its ``available_at`` is when the oldest of them
    leaves the window. Nothing to do without a limit or a user."""
    limit = conf.lifecycle("MAX_ATTEMPTS")
    if limit is None or user is None:
        return
    now = now or timezone.now()
    window = timedelta(seconds=conf.lifecycle("ATTEMPT_WINDOW"))
    recent = list(
        VerificationSession.objects.filter(user=user, created_at__gt=now - window)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(recent) < limit:
        return
    available_at = recent[-1] + window  # the limit-th newest: once it leaves, one more start fits
    retry_after = max(1, int((available_at - now).total_seconds() + 0.999))
    raise TooManyAttempts(
        f"{limit} verification attempts within {window.total_seconds():.0f} s; next at {available_at.isoformat()}",
        available_at=available_at,
        retry_after=retry_after,
    )


def lock_user_starts(user: Any) -> None:
    """Serialise the starts of one user, inside the caller's transaction: the user's row locked
    ``FOR NO KEY UPDATE`` where the database has row locks (rows that reference the user may still
    be inserted; a login's ``last_login`` update waits for this short transaction only), SQLite's
    write lock otherwise. A start without a user reads nothing before it writes: no lock."""
    if user is None:
        return  # nothing of the user's to look at again: nothing to serialise
    take_write_lock()
    if not connection.features.has_select_for_update:
        return
    manager = user._meta.model._default_manager  # request.user is a lazy proxy: not type(user)
    no_key = connection.features.has_select_for_no_key_update
    list(manager.select_for_update(no_key=no_key).filter(pk=user.pk).values_list("pk", flat=True))


def current_verification(user: Any, *, provider: str | None = None) -> VerificationSession | None:
    """The user's newest approved session still valid (``VALID_FOR_DAYS`` after it finished), or
    None — for an anonymous user too. ``provider``: only sessions of that alias count."""
    if user is None or getattr(user, "pk", None) is None:
        return None
    sessions = VerificationSession.objects.filter(user=user, decision=Decision.APPROVED)
    if provider is not None:
        sessions = sessions.filter(provider=provider)
    days = conf.lifecycle("VALID_FOR_DAYS")
    if days is not None:
        sessions = sessions.filter(finished_at__gt=timezone.now() - timedelta(days=days))
    return sessions.order_by("-finished_at").first()


def is_verified(user: Any, *, provider: str | None = None) -> bool:
    """Whether ``current_verification(user, provider=provider)`` is a session."""
    return current_verification(user, provider=provider) is not None


@metrics.timed_sweep("lapse")
@logfields.in_context(source="lapse")
def lapse_verifications(*, now: datetime | None = None, batch_size: int = 500, on_batch: OnBatch | None = None) -> int:
    """Record the end of every approved verification's validity that has ended and was not seen
    yet: ``lapsed_at`` set, a ``lapsed`` event, ``verification_lapsed(session)`` sent — exactly
    once per session, whichever sweeps race (the row locked, ``lapsed_at`` checked under the lock).
    Nothing without ``VALID_FOR_DAYS``. Batches of ``batch_size``, one transaction each: bulk
    ``update()`` and ``bulk_create()``, so no ``post_save`` for these rows. Returns how many lapsed.

    ``on_batch``: called with a ``sweeps.SweepBatch`` after each batch (progress reports: a batch
    whose transaction failed counts all its sessions as ``failed``).
    """
    progress, number = SweepResult(), 0
    days = conf.lifecycle("VALID_FOR_DAYS")
    if days is None:
        return 0
    now = now or timezone.now()
    ended = VerificationSession.objects.filter(
        decision=Decision.APPROVED, lapsed_at=None, finished_at__lte=now - timedelta(days=days)
    ).order_by("finished_at", "pk")
    lapsed = 0
    # (finished_at, pk) of the last row seen; finished_at is never None here (the filter above),
    # but the column is nullable.
    last: tuple[datetime | None, Any] | None = None
    while True:
        page = ended
        if last is not None:
            page = page.filter(finished_at__gte=last[0]).exclude(finished_at=last[0], pk__lte=last[1])
        batch = list(page.values_list("pk", "finished_at")[:batch_size])
        if not batch:
            return lapsed
        ids = [pk for pk, _ in batch]
        done: list[Any] = []
        try:
            lapsed += _lapse_batch(ids, now=now, lapsed=done)
        except Exception as exc:
            # One bad batch (a database error) does not stop the sweep; the next sweep retries it.
            logger.exception("lapse sweep: a batch of %d sessions failed; the sweep goes on", len(batch))
            progress.failed += len(ids)
            outcomes = [(pk, _failure_word(exc)) for pk in ids]
        else:
            progress.processed += len(done)
            seen = set(done)
            outcomes = [(pk, "lapsed" if pk in seen else "skipped") for pk in ids]  # skipped: re-decided meanwhile
        progress.found += len(ids)
        if on_batch is not None:
            number += 1
            on_batch(SweepBatch(number, outcomes, SweepResult(progress.found, progress.processed, progress.failed)))
        if len(batch) < batch_size:
            return lapsed
        last = (batch[-1][1], batch[-1][0])


def _lapse_batch(ids: list[Any], *, now: datetime, lapsed: list[Any] | None = None) -> int:
    with transaction.atomic():
        take_write_lock()
        days = conf.lifecycle("VALID_FOR_DAYS")
        # Checked again under the lock: a session re-decided meanwhile has not lapsed.
        locking = VerificationSession.objects.filter(
            pk__in=ids, lapsed_at=None, decision=Decision.APPROVED, finished_at__lte=now - timedelta(days=days)
        ).order_by()
        if connection.features.has_select_for_update:
            locking = locking.select_for_update(skip_locked=connection.features.has_select_for_update_skip_locked)
        sessions = list(locking)
        if not sessions:
            return 0
        VerificationSession.objects.filter(pk__in=[s.pk for s in sessions]).update(lapsed_at=now, updated_at=now)
        events = []
        for session in sessions:
            session.lapsed_at = session.updated_at = now
            events.append(
                VerificationEvent(
                    session=session,
                    provider=session.provider,
                    kind=Kind.LAPSED,
                    source=VerificationEvent.Source.SYSTEM,
                    processed=True,
                    # finished_at__lte above: never None here
                    data={"valid_for_days": days, "finished_at": cast("datetime", session.finished_at).isoformat()},
                )
            )
            _send_on_commit(signals.verification_lapsed, session)
        VerificationEvent.objects.bulk_create(events)
    if lapsed is not None:
        lapsed.extend(session.pk for session in sessions)
    logger.info("%d verifications lapsed", len(sessions))
    return len(sessions)
