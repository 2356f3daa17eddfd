"""Starting a verification: the provider's one-time link, and the session and its first event stored
together — or the user's open session again, within the attempt limit; a retry's new attempt too."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from .. import conf, logfields, signals
from ..exceptions import InvalidRequest, InvalidTransition, ProviderError
from ..jsonbody import InvalidJSON, storable
from ..models import VerificationEvent, VerificationSession
from ..providers import CreateRequest, get_provider
from ..providers.types import Verdict
from .common import MOVED_FIELDS, Kind, Status, _absolute_url, _lock, _move, _send_on_commit, logger, poll_interval
from .lifecycle import check_attempts, lock_user_starts, reusable_session


def start_verification(
    *,
    user: Any = None,
    provider: str | None = None,
    scopes: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    next_url: str | None = None,
    ttl: int | None = None,
    request: HttpRequest | None = None,
    reuse: bool | None = None,
    language: str | None = None,
) -> VerificationSession:
    """Ask the provider for a new one-time link and store the session.

    The hosted page speaks ``language`` when the provider takes it (a code in the provider's
    spelling; Valify keeps its ``LANG`` for one other than ``en``/``ar``). Without one, a start with
    a ``request`` asks for the language ``LocaleMiddleware`` chose for the user
    (``request.LANGUAGE_CODE``) where the provider is documented to speak it (``hosted_languages``);
    otherwise the provider's default applies (the alias's ``LANGUAGE``/``LANG``, the browser's).

    With ``REUSE_OPEN_SESSIONS`` (the default), the user's open session at the same alias and
    scopes is returned instead, with no provider call, unless its link expires within
    ``REUSE_MIN_REMAINING`` seconds: double submits, the back button and a second tab share one
    session. ``reuse=False`` always starts a new one (staff code, a test making many); ``None``:
    the setting. Two starts at once give one session too: the new one is stored under a lock on the
    user's starts, after a last look for an open session; the loser's link at the provider is
    canceled there where the provider can (``supports_cancel``), and never stored.

    Raises ``InvalidRequest`` for bad arguments (nothing sent, nothing stored), ``TooManyAttempts``
    past ``MAX_ATTEMPTS`` within ``ATTEMPT_WINDOW`` (nothing sent, nothing stored), a
    ``ProviderError`` subclass when the provider fails (nothing stored but a ``create_failed``
    event), and ``ConfigurationError`` for a settings problem.

    The session returned says which it is: ``session.reused`` is True for the open one returned
    again, False for a new one.
    """
    return _start(
        user=user, provider=provider, scopes=scopes, metadata=metadata, next_url=next_url, ttl=ttl,
        request=request, reuse=reuse, language=language,
    )  # fmt: skip


@logfields.in_context(source="start", provider_kwarg="provider")
def _start(
    *,
    user: Any,
    provider: str | None,
    scopes: Iterable[str] | None,
    metadata: Mapping[str, Any] | None,
    next_url: str | None,
    ttl: int | None,
    request: HttpRequest | None,
    reuse: bool | None,
    language: str | None = None,
    previous: VerificationSession | None = None,
) -> VerificationSession:
    """``start_verification``; with ``previous`` (``retry_verification``), the new attempt replaces
    that session: linked to it, never a reuse, and stored only while ``replaceable(previous)``
    holds under its lock — a retry that raced this one wins instead, an open ``previous`` is
    canceled with the insert."""
    alias = provider or conf.default_provider()
    backend = get_provider(alias)
    scopes = backend.validate_scopes(scopes)
    ttl = backend.validate_ttl(ttl)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise InvalidRequest("metadata must be a JSON object")
    if next_url is not None and not isinstance(next_url, str):
        raise InvalidRequest("next_url must be a string")
    if language is not None and (not isinstance(language, str) or len(language) > 35):
        raise InvalidRequest("language must be a language code")
    if language is None:
        # The language LocaleMiddleware chose for this visitor; none without it (the site's own
        # LANGUAGE_CODE says nothing of the user): the alias's setting or the browser's then.
        language = backend.hosted_language(getattr(request, "LANGUAGE_CODE", None))
    if user is not None and getattr(user, "pk", None) is None:
        user = None  # AnonymousUser, or an unsaved user: the session belongs to nobody
    try:
        metadata = storable(dict(metadata))
    except InvalidJSON as exc:
        raise InvalidRequest(f"metadata cannot be stored: {exc}") from None
    if previous is not None or user is None:
        reuse = False  # a retry replaces a session; nobody's start has nothing to reuse
    elif reuse is None:
        reuse = conf.lifecycle("REUSE_OPEN_SESSIONS")
    if reuse and (open_session := reusable_session(user, alias, scopes)) is not None:
        return _reused(open_session, next_url)
    check_attempts(user)

    session = VerificationSession(
        user=user,
        provider=alias,
        scopes=scopes,
        metadata=metadata,
        next_url=next_url or "",
        reference=uuid.uuid4().hex if backend.uses_reference else "",
        previous=previous,
    )
    logfields.bind(session=session)  # its id exists already: the create's log lines carry it
    create = CreateRequest(
        session_id=session.pk,
        scopes=scopes,
        # The provider echoes metadata back: the session id there ties its records to ours.
        metadata={**session.metadata, "verification_session_id": str(session.pk)},
        callback_url=_absolute_url(
            reverse("verification_link:callback", args=[alias, session.callback_secret]), request
        ),
        return_url=_absolute_url(reverse("verification_link:return", args=[session.pk]), request),
        ttl=ttl,
        reference=session.reference,
        language=language,
    )
    try:
        created = backend.create_session(create)
    except ProviderError as exc:
        VerificationEvent.objects.create(
            session=None,
            provider=alias,
            kind=Kind.CREATE_FAILED,
            source=VerificationEvent.Source.SYSTEM,
            valid=False,
            error=str(exc),
            actor=user,
            data={
                "session_id": str(session.pk),
                "error_type": type(exc).__name__,
                "status_code": exc.status_code,
                "code": exc.code,
                "retryable": exc.retryable,
            },
        )
        logger.warning("verification session could not be created at %s: %s", alias, exc)
        raise

    now = timezone.now()
    session.external_id = created.external_id
    session.token = created.token
    session.url = created.url
    # The provider's Get Status answer is authoritative; until then, what we asked for.
    session.expires_at = created.expires_at or now + timedelta(seconds=ttl)
    session.created_at = now
    if backend.pollable:
        session.next_poll_at = now + timedelta(seconds=poll_interval(0))
    created_event = VerificationEvent(
        session=session,
        provider=alias,
        kind=Kind.CREATED,
        source=VerificationEvent.Source.SYSTEM,
        new_status=session.status,
        applied=True,
        processed=True,
        actor=user,
        data={
            "scopes": scopes,
            "ttl": ttl,
            "external_id": session.external_id,
            **({"previous": str(previous.pk)} if previous is not None else {}),
        },
    )
    winner: VerificationSession | None = None
    canceled_previous = False
    try:
        with transaction.atomic():
            # A retry locks the session it replaces before the user, as every path that writes a
            # session does (the session, then what references the user): no lock-order cycle.
            locked_previous = _lock(previous) if previous is not None else None
            lock_user_starts(user)
            if previous is not None and locked_previous is not None:  # both or neither
                winner, canceled_previous = _replace(locked_previous, session, created_event, user=user, now=now)
                previous.status, previous.url = locked_previous.status, locked_previous.url
            else:
                winner = reusable_session(user, alias, scopes, now=now) if reuse else None
                if winner is None:
                    check_attempts(user, now=now)  # a start that raced this one may have used the last
                    _insert_together(session, created_event)
    except BaseException:
        # Nothing stored (the limit, a retry refused, a database error): the link must not stay usable.
        _discard_at_provider(backend, session)
        raise
    if winner is not None:
        _discard_at_provider(backend, session)
        if previous is not None:
            winner.reused = True  # the retry that raced this one
            return winner
        return _reused(winner, next_url)
    if canceled_previous and previous is not None:  # only a retry cancels the session it replaces
        _cancel_replaced_at_provider(backend, previous)
    _send_on_commit(signals.verification_created, session)
    logger.info("verification session %s created at %s", session.pk, alias)
    session.reused = False
    return session


def replaceable(session: VerificationSession) -> bool:
    """Whether "Try again" applies to ``session``: it FAILED, finished rejected (by the policy or
    staff), or it is open and its provider asked for a resubmission (``Verdict.RESUBMISSION``).
    Approved, being reviewed, expired and canceled sessions are not retried (a new start is)."""
    if session.status == Status.FAILED:
        return True
    if session.status == Status.DONE:
        return session.decision == VerificationSession.Decision.REJECTED
    return not session.is_final and session.provider_verdict == Verdict.RESUBMISSION


def newest_retry(session: VerificationSession) -> VerificationSession | None:
    """The attempt that replaced ``session`` (the newest, should there be several), or None."""
    return VerificationSession.objects.filter(previous=session).order_by("-created_at").first()


def _replace(
    locked: VerificationSession,
    session: VerificationSession,
    created_event: VerificationEvent,
    *,
    user: Any,
    now: datetime,
) -> tuple[VerificationSession | None, bool]:
    """Store ``session`` as the attempt after ``locked`` (the replaced session, its row locked), in
    the caller's transaction, under the lock of the user's starts: the retry that raced this one
    and won is returned instead (nothing stored); ``locked`` no longer replaceable (finished
    meanwhile, decided by staff) is an ``InvalidTransition``; past the attempt limit
    ``TooManyAttempts``. An open ``locked`` (a resubmission requested) is canceled with the insert,
    the decision policy not asked (nobody is to review it): its link is forgotten and late
    deliveries for it are recorded and change nothing. Returns the winner (or None) and whether
    ``locked`` was canceled here."""
    winner = newest_retry(locked)
    if winner is not None:
        return winner, False
    if not replaceable(locked):
        raise InvalidTransition(f"a {locked.status} session is not retried")
    check_attempts(user, now=now)
    _insert_together(session, created_event)
    events = []
    if not locked.is_final:
        events = _move(locked, Status.CANCELED, source=VerificationEvent.Source.SYSTEM, now=now, actor=user,
                       kind=Kind.CANCELED, decide=False)  # fmt: skip
        locked.save(update_fields=[*MOVED_FIELDS])
    canceled = bool(events)
    events.append(
        VerificationEvent(
            session=locked,
            provider=locked.provider,
            kind=Kind.REPLACED,
            source=VerificationEvent.Source.SYSTEM,
            processed=True,
            actor=user,
            data={"replaced_by": str(session.pk)},
        )
    )
    for event in events:
        event.save(force_insert=True)
    return None, canceled


def _insert_together(session: VerificationSession, event: VerificationEvent) -> None:
    """A new session and its first event, in the caller's transaction, through ``save()``: both
    fire ``pre_save`` and ``post_save`` on every database (a site's audit log or search index sees
    them)."""
    session.save(force_insert=True)
    event.save(force_insert=True)


def _reused(session: VerificationSession, next_url: str | None) -> VerificationSession:
    """The user's open session, returned by a start instead of a new one; a new ``next`` URL is
    kept (the page the user came from this time)."""
    logfields.bind(session=session)
    if next_url and next_url != session.next_url:
        session.next_url = next_url
        session.save(update_fields=["next_url", "updated_at"])
    logger.info("verification session %s reused", session.pk)
    session.reused = True
    return session


def _cancel_replaced_at_provider(backend: Any, previous: VerificationSession) -> None:
    """The open session a retry replaced (canceled here with the insert), canceled at the provider
    too where it can: the user's old link stops working there. A failure is logged, not raised —
    the new attempt is stored, and the old one's late deliveries change nothing here anyway."""
    if not getattr(backend, "supports_cancel", False):
        return
    try:
        backend.cancel_session(previous)
    except ProviderError as exc:
        logger.warning("verification session %s replaced; canceling it at the provider failed: %s", previous.pk, exc)


def _discard_at_provider(backend: Any, session: VerificationSession) -> None:
    """A link the provider made for a start that was not stored (another start won, or the attempt
    limit was reached meanwhile): canceled at the provider where it can, so nobody can use it."""
    if not getattr(backend, "supports_cancel", False):
        logger.info("verification start at %s not stored; its link expires unused", session.provider)
        return
    try:
        backend.cancel_session(session)
    except ProviderError as exc:
        logger.warning("verification start at %s not stored; canceling its link failed: %s", session.provider, exc)
