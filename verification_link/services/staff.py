"""Staff's part in a session beyond the decision: the review queue (who owns a session), the audit
of who was shown sensitive results, and erasure of a user's identity data on request."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import logfields
from ..exceptions import ConfigurationError, InvalidTransition, ProviderError
from ..models import VerificationEvent, VerificationSession
from ..providers import get_provider
from .common import Kind, SessionRef, _is_user, _lock, logger, take_write_lock
from .reviews import cancel_session

#: Within this long, one staff member's repeated looks at one session are one ``viewed`` event.
VIEW_COALESCE = timedelta(hours=1)

#: What an event's ``data`` keeps through erasure: the facts of the record (what happened, when,
#: decided how), none of what the provider or the user said about the person.
KEPT_EVENT_DATA = frozenset(
    {
        *("decision", "previous", "replaced_by", "by", "status", "new_status", "error_type", "status_code"),
        *("sweep", "scopes", "ttl"),
    }
)


@logfields.about_session(default_source="admin")
def assign_review(session: SessionRef, reviewer: Any, *, by: Any = None, replace: bool = False) -> VerificationSession:
    """Put ``session`` in ``reviewer``'s queue (``assigned_to``; ``None`` takes it out of every
    queue), recorded as an ``assigned`` event with who did it (``by``, or the reviewer).

    Racing reviewers: the row is locked, and a session another reviewer holds is not taken from
    them unless ``replace=True`` — the second one gets an ``InvalidTransition`` naming the holder.
    Assigning it to whom it is already assigned changes and records nothing."""
    actor = by if _is_user(by) else (reviewer if _is_user(reviewer) else None)
    with transaction.atomic():
        locked = _lock(session)
        holder_id = locked.assigned_to_id
        wanted_id = reviewer.pk if _is_user(reviewer) else None
        if holder_id == wanted_id:
            return locked
        if holder_id is not None and wanted_id is not None and not replace:
            holder = reviewer._meta.model._default_manager.filter(pk=holder_id).first()
            raise InvalidTransition(f"already assigned to {holder.get_username() if holder else holder_id}")
        locked.assigned_to = reviewer if _is_user(reviewer) else None
        locked.save(update_fields=["assigned_to", "updated_at"])
        VerificationEvent.objects.create(
            session=locked,
            provider=locked.provider,
            kind=Kind.ASSIGNED,
            source=VerificationEvent.Source.ADMIN,
            applied=True,
            processed=True,
            actor=actor,
            data={"assigned_to": wanted_id, "previous": holder_id},
        )
    return locked


def record_sensitive_view(session: VerificationSession, viewer: Any, *, where: str) -> VerificationEvent | None:
    """Record that ``viewer`` (staff) was shown ``session``'s sensitive results (``where``: the
    admin page, an export): one ``viewed`` event per staff member per session per hour, the later
    looks of that hour coalesced into it (``data["views"]`` counts them). Returns the event."""
    if not _is_user(viewer):
        return None
    now = timezone.now()
    with transaction.atomic():
        take_write_lock()  # reads, then writes: on SQLite the write lock must come first
        _lock(session)  # two first looks at once: one event (the second finds it under the lock)
        recent = (
            VerificationEvent.objects.select_for_update()
            .filter(session=session, kind=Kind.VIEWED, actor=viewer, created_at__gte=now - VIEW_COALESCE)
            .order_by("-created_at")
            .first()
        )
        if recent is not None:
            recent.data = {**recent.data, "views": int(recent.data.get("views", 1)) + 1, "last": now.isoformat()}
            places = set(recent.data.get("where", []))
            recent.data["where"] = sorted(places | {where})
            recent.save(update_fields=["data"])
            return recent
        return VerificationEvent.objects.create(
            session=session,
            provider=session.provider,
            kind=Kind.VIEWED,
            source=VerificationEvent.Source.ADMIN,
            processed=True,
            actor=viewer,
            data={"views": 1, "where": [where]},
        )


def erase_user_data(user: Any, *, by: Any = None, dry_run: bool = False) -> int:
    """Scrub every identity datum of ``user``'s sessions and events; returns how many sessions.

    Gone: the result, the metadata, the one-time link, the ``next`` URL, the review note (staff's
    text can quote the person), and from every event its body, headers, remote address, error text
    and data but the facts of
    ``KEPT_EVENT_DATA``; the provider's copy too, where it has a redaction API
    (``supports_redaction``: then the provider's handles, ``token`` and ``external_id``, go as well).
    Kept: status, decision, reviewer, timestamps — the record that a verification happened and
    what was decided, which a site may have to keep (docs: "Erasure"). Each session gets an
    ``erased`` event (with ``by``); a session erased before is erased again (a late webhook may
    have brought data since). An open session is canceled first: it would fill up again when the
    provider finishes it. ``dry_run``: count, change nothing, call nobody.
    """
    sessions = list(VerificationSession.objects.filter(user=user).order_by("created_at").values_list("pk", flat=True))
    if dry_run:
        return len(sessions)
    actor = by if _is_user(by) else None
    for pk in sessions:
        _erase_session(pk, actor=actor)
    # A start that failed at the provider has no session; its event names the user as actor.
    for event in VerificationEvent.objects.filter(session=None, actor=user).exclude(kind=Kind.ERASED):
        _scrub_event(event)
    return len(sessions)


@logfields.about_session(default_source="admin")
def _erase_session(pk: Any, *, actor: Any) -> None:
    session = VerificationSession.objects.get(pk=pk)
    if not session.is_final:
        # An open session would fill up again when the provider finishes it: the user asked to be
        # forgotten, so their verification in flight is abandoned (canceled there where it can be).
        try:
            session = cancel_session(session, by=actor, source=VerificationEvent.Source.ADMIN)
        except (InvalidTransition, ProviderError, ConfigurationError) as exc:
            logger.warning("verification session %s: not canceled before its erasure: %s", pk, exc)
    try:
        backend = get_provider(session.provider)
    except ConfigurationError:
        backend = None  # an alias no longer configured: nothing to redact there, the rest goes on
    redacted: bool | None = None
    if backend is not None and getattr(backend, "supports_redaction", False):
        try:
            backend.redact_session(session)  # outside the transaction: a slow provider locks nothing
            redacted = True
        except (ProviderError, NotImplementedError) as exc:
            redacted = False
            logger.warning("verification session %s: the provider's redaction failed: %s", pk, exc)
    now = timezone.now()
    with transaction.atomic():
        locked = _lock(session)
        locked.result, locked.metadata, locked.url, locked.review_note = {}, {}, "", ""
        locked.provider_reasons, locked.next_url = [], ""
        locked.erased_at = now
        fields = ["result", "metadata", "url", "review_note", "provider_reasons", "next_url", "erased_at", "updated_at"]
        if redacted:
            locked.token, locked.external_id = "", ""
            fields += ["token", "external_id"]
        locked.save(update_fields=fields)
        for event in VerificationEvent.objects.filter(session=locked).exclude(kind=Kind.ERASED):
            _scrub_event(event)
        VerificationEvent.objects.create(
            session=locked,
            provider=locked.provider,
            kind=Kind.ERASED,
            source=VerificationEvent.Source.ADMIN if actor else VerificationEvent.Source.SYSTEM,
            applied=True,
            processed=True,
            actor=actor,
            data={"provider_redacted": redacted},
        )


def _scrub_event(event: VerificationEvent) -> None:
    event.body, event.headers, event.error, event.remote_addr = "", {}, "", None
    event.data = {key: value for key, value in (event.data or {}).items() if key in KEPT_EVENT_DATA}
    event.save(update_fields=["body", "headers", "error", "remote_addr", "data"])
