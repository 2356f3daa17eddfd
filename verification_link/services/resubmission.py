"""Trying again: a new attempt after a failed, rejected or resubmission-requested one, linked to it
(``previous``), and the chain of attempts the status page and the admin show."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from ..exceptions import InvalidRequest, InvalidTransition
from ..models import VerificationSession
from .common import SessionRef, _pk
from .start import _start, newest_retry, replaceable

#: How many attempts of a chain the status page and the admin show (the newest ones).
CHAIN_SHOWN = 20


def retry_verification(
    session: SessionRef, *, user: Any, next_url: str | None = None, request: HttpRequest | None = None
) -> VerificationSession:
    """Start the attempt that replaces ``session`` ("Try again"): the same alias, scopes and
    metadata, ``previous`` set to it; the ``next`` URL given, else the one it had.

    Allowed when ``replaceable(session)``: it FAILED, finished rejected, or it is open and the
    provider asked for a resubmission. Any alias: a site's pages offer it only at the aliases users
    may pick (``USER_PROVIDERS``). An open ``session`` (a resubmission requested) is canceled when the new attempt
    is stored: from then on its deliveries are recorded and change nothing. A session already
    replaced returns its newest replacement, with no provider call (a double click, the back
    button, a second tab): ``reused`` tells which (True: the replacement that was there).

    Raises ``InvalidRequest`` when ``session`` is not ``user``'s, ``InvalidTransition`` when it is
    not replaceable (nothing sent, nothing stored), and what ``start_verification`` raises —
    ``TooManyAttempts`` included: a retry is an attempt.
    """
    if user is None or getattr(user, "pk", None) is None:
        raise InvalidRequest("only a session's owner can try again")
    current = VerificationSession.objects.filter(pk=_pk(session), user=user).first()
    if current is None:
        raise InvalidRequest("not a session of this user")
    replacement = newest_retry(current)
    if replacement is not None:
        replacement.reused = True
        return replacement
    if not replaceable(current):
        raise InvalidTransition(f"a {current.status} session is not retried")
    return _start(
        user=user,
        provider=current.provider,
        scopes=current.scopes,
        metadata=current.metadata,
        next_url=next_url or current.next_url or None,
        ttl=None,
        request=request,
        reuse=False,
        previous=current,
    )


def attempt_chain(session: VerificationSession) -> list[VerificationSession]:
    """The attempts linked to ``session`` through ``previous``, oldest first, ``session`` among them:
    the ones it replaced, then the ones that replaced it — at most ``CHAIN_SHOWN`` in all (the
    nearest earlier ones first). One query per attempt (a chain is a handful of retries; the attempt limit
    caps it)."""
    earlier: list[VerificationSession] = []
    cursor = session
    seen = {session.pk}
    while cursor.previous_id is not None and len(earlier) < CHAIN_SHOWN - 1:
        found = VerificationSession.objects.filter(pk=cursor.previous_id).first()
        if found is None or found.pk in seen:
            break
        seen.add(found.pk)
        earlier.append(found)
        cursor = found
    later: list[VerificationSession] = []
    cursor = session
    while len(earlier) + len(later) < CHAIN_SHOWN - 1:
        found = newest_retry(cursor)
        if found is None or found.pk in seen:
            break
        seen.add(found.pk)
        later.append(found)
        cursor = found
    chain = [*reversed(earlier), session, *later]
    return chain if len(chain) > 1 else []
