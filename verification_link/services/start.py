"""Starting a verification: the provider's one-time link, and the session and its first event stored
together — or the user's open session again, within the attempt limit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from .. import conf, signals
from ..exceptions import InvalidRequest, ProviderError, TooManyAttempts
from ..jsonbody import InvalidJSON, storable
from ..models import VerificationEvent, VerificationSession
from ..providers import CreateRequest, get_provider
from .common import Kind, _absolute_url, _send_on_commit, logger, poll_interval
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
) -> VerificationSession:
    """Ask the provider for a new one-time link and store the session.

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
    """
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
    if user is not None and getattr(user, "pk", None) is None:
        user = None  # AnonymousUser, or an unsaved user: the session belongs to nobody
    try:
        metadata = storable(dict(metadata))
    except InvalidJSON as exc:
        raise InvalidRequest(f"metadata cannot be stored: {exc}") from None
    reuse = user is not None and (conf.lifecycle("REUSE_OPEN_SESSIONS") if reuse is None else reuse)
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
    )
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
        data={"scopes": scopes, "ttl": ttl, "external_id": session.external_id},
    )
    winner: VerificationSession | None = None
    try:
        with transaction.atomic():
            lock_user_starts(user)
            winner = reusable_session(user, alias, scopes, now=now) if reuse else None
            if winner is None:
                check_attempts(user, now=now)  # a start that raced this one may have used the last
                _insert_together(session, created_event)
    except TooManyAttempts:
        _discard_at_provider(backend, session)
        raise
    if winner is not None:
        _discard_at_provider(backend, session)
        return _reused(winner, next_url)
    _send_on_commit(signals.verification_created, session)
    logger.info("verification session %s created at %s", session.pk, alias)
    return session


def _insert_together(session: VerificationSession, event: VerificationEvent) -> None:
    """A new session and its first event, in the caller's transaction, through ``save()``: both
    fire ``pre_save`` and ``post_save`` on every database (a site's audit log or search index sees
    them)."""
    session.save(force_insert=True)
    event.save(force_insert=True)


def _reused(session: VerificationSession, next_url: str | None) -> VerificationSession:
    """The user's open session, returned by a start instead of a new one; a new ``next`` URL is
    kept (the page the user came from this time)."""
    if next_url and next_url != session.next_url:
        session.next_url = next_url
        session.save(update_fields=["next_url", "updated_at"])
    logger.info("verification session %s reused", session.pk)
    return session


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
