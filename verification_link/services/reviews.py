"""Staff and user actions on one session: cancel, and the review decision."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import logfields, signals
from ..exceptions import InvalidRequest, InvalidTransition
from ..models import VerificationEvent, VerificationSession
from ..providers import get_provider
from .common import Decision, Kind, SessionRef, Status, _is_user, _lock, _send_on_commit, _transition, logger


@logfields.about_session(default_source="admin")
def cancel_session(session: SessionRef, *, by: Any = None, source: str = "admin") -> VerificationSession:
    """Cancel an open session. Cancelling a canceled session is a no-op; any other final status is
    an ``InvalidTransition``. Providers without a cancel endpoint (OOTO) are cancelled locally: the
    session stops being polled and its link is forgotten."""
    with transaction.atomic():
        locked = _lock(session)
        if locked.status == Status.CANCELED:
            return locked
        if locked.is_final:
            raise InvalidTransition(f"cannot cancel a session that is already {locked.status}")
        get_provider(locked.provider).cancel_session(locked)
        _transition(
            locked,
            Status.CANCELED,
            source=source,
            now=timezone.now(),
            actor=by if _is_user(by) else None,
            kind=Kind.CANCELED,
        )
    return locked


@logfields.about_session(default_source="admin")
def review_session(
    session: SessionRef, *, decision: str, reviewer: Any, note: str = "", replace: bool = False
) -> VerificationSession:
    """Record a staff decision on a finished session and send ``verification_reviewed``.

    - ``approved`` only for a DONE session: a failed, expired or canceled one has no result to
      approve, and receivers grant whatever an approval means. ``rejected`` and ``review`` fit any
      final status. Anything else is an ``InvalidTransition`` that changes nothing.
    - A session already ``approved`` or ``rejected`` keeps that decision unless ``replace=True``
      (the reviewer confirmed the change): a second opinion must be deliberate, not a stale page.
      ``review`` (no verdict yet) and no decision at all are decided without confirmation.
    - The decision it already has is not recorded again (no event, no signal): the session is
      returned as it is, so a double submit or two reviewers agreeing stay one decision.
    """
    if decision not in (Decision.APPROVED, Decision.REJECTED, Decision.REVIEW):
        raise InvalidRequest(f"decision must be one of approved, rejected, review; not {decision!r}")
    now = timezone.now()
    with transaction.atomic():
        locked = _lock(session)
        if not locked.is_final:
            raise InvalidTransition("only a finished session can be reviewed")
        if decision == Decision.APPROVED and locked.status != Status.DONE:
            raise InvalidTransition(f"only a completed (DONE) session can be approved; this one is {locked.status}")
        previous = locked.decision
        if previous == decision:
            logger.info("session %s is already %s; not recorded again", locked.pk, decision)
            return locked
        if previous in (Decision.APPROVED, Decision.REJECTED) and not replace:
            raise InvalidTransition(f"already {previous}; confirm to change it")
        locked.decision = decision
        locked.reviewed_by = reviewer if _is_user(reviewer) else None
        locked.reviewed_at = now
        locked.review_note = note or ""
        locked.save(update_fields=["decision", "reviewed_by", "reviewed_at", "review_note", "updated_at"])
        VerificationEvent.objects.create(
            session=locked,
            provider=locked.provider,
            kind=Kind.REVIEWED,
            source=VerificationEvent.Source.ADMIN,
            applied=True,
            processed=True,
            actor=locked.reviewed_by,
            data={"decision": decision, "previous": previous, "note": locked.review_note},
        )
        _send_on_commit(signals.verification_reviewed, locked, decision=decision, reviewer=reviewer)
    return locked
