"""The one place where verification state changes.

Views, tasks, admin actions, the API and management commands call these functions; none of them
writes ``status`` itself. The rules (DESIGN.md, "Lifecycle rules"):

- status only moves forward (CREATED → CAPTCHA_OK → IN_PROGRESS → one final status) and a final
  status never changes; an older or equal report is recorded as an event and not applied;
- every change runs in a transaction holding the session row (``select_for_update``), so racing
  callbacks, polls, returns and admin actions yield one transition; provider HTTP calls happen
  *outside* that transaction so a slow provider never holds a row lock;
- signals are sent with ``transaction.on_commit``: once per applied transition, never on rollback.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import connection, connections, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from . import conf, signals
from .exceptions import ConfigurationError, InvalidRequest, InvalidTransition, ProviderError
from .models import VerificationEvent, VerificationSession
from .providers import CreateRequest, StatusReport, get_provider, load_backend
from .providers.base import storable
from .results import redact

logger = logging.getLogger("verification_link")

Status = VerificationSession.Status
Decision = VerificationSession.Decision
Kind = VerificationEvent.Kind

SessionRef = VerificationSession | uuid.UUID | str

__all__ = [
    "SweepResult",
    "apply_report",
    "cancel_session",
    "expire_sessions",
    "poll_due_sessions",
    "poll_interval",
    "refresh_session",
    "review_session",
    "run_expiry_sweep",
    "run_poll_sweep",
    "start_verification",
]


# -- helpers -----------------------------------------------------------------------------------


def _pk(session: SessionRef) -> Any:
    return session.pk if isinstance(session, VerificationSession) else session


def _lock(session: SessionRef) -> VerificationSession:
    """The session row, locked until the surrounding transaction ends.

    ``FOR NO KEY UPDATE`` where the database has it (PostgreSQL): it serialises every writer of the
    session like ``FOR UPDATE`` does, but not the ``FOR KEY SHARE`` lock that inserting an event
    (a foreign key to the session) takes. With plain ``FOR UPDATE``, a callback being recorded while
    a poll applies an answer can deadlock on the row's update chain.
    """
    no_key = connection.features.has_select_for_no_key_update
    return VerificationSession.objects.select_for_update(no_key=no_key).get(pk=_pk(session))


def _send_on_commit(signal: Signal, session: VerificationSession, **kwargs: Any) -> None:
    def send() -> None:
        # One receiver's bug must neither hide the others nor turn a committed change into an error
        # for the provider or the user; it is logged with its traceback instead.
        for receiver, response in signal.send_robust(sender=VerificationSession, session=session, **kwargs):
            if isinstance(response, Exception):
                logger.error("signal receiver %r failed for session %s", receiver, session.pk, exc_info=response)

    transaction.on_commit(send)


def poll_interval(attempts: int) -> int:
    """Seconds before the next poll after ``attempts`` answers without a status change."""
    base = int(conf.get("POLL_INTERVAL"))
    cap = int(conf.get("POLL_MAX_INTERVAL"))
    return min(base * (2 ** min(attempts, 32)), cap)


def _schedule_next_poll(session: VerificationSession, now: datetime, *, moved: bool) -> None:
    if session.is_final or not get_provider(session.provider).pollable:
        session.next_poll_at = None
        return
    session.poll_attempts = 0 if moved else session.poll_attempts + 1
    session.next_poll_at = now + timedelta(seconds=poll_interval(session.poll_attempts))


def _stored_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a provider result the site chose to store at all."""
    discard = set(conf.get("DISCARD_RESULT_KEYS") or ())
    return {key: value for key, value in result.items() if key not in discard}


def _absolute_url(path: str, request: HttpRequest | None) -> str:
    base = conf.get("PUBLIC_BASE_URL")
    if base:
        return str(base).rstrip("/") + path
    if request is not None:
        return request.build_absolute_uri(path)
    raise ConfigurationError(
        f"Set {conf.key_path('PUBLIC_BASE_URL')} (or pass request=) so the provider can be given "
        "absolute callback and return URLs."
    )


def _decide(session: VerificationSession) -> str:
    policy = import_string(conf.get("DECISION_POLICY"))
    decision = policy(session) or Decision.UNDECIDED
    if decision not in Decision.values:
        raise ConfigurationError(
            f"{conf.key_path('DECISION_POLICY')} returned {decision!r}, not a VerificationSession.Decision value."
        )
    return decision


def _move(
    session: VerificationSession,
    new_status: str,
    *,
    source: str,
    now: datetime,
    report: StatusReport | None = None,
    actor: Any = None,
    kind: str = Kind.STATUS_CHANGED,
) -> list[VerificationEvent]:
    """Make one forward move on a *locked* session, in memory, and queue its signals.

    Returns the move's events, unsaved: the caller persists the session and the events in the same
    transaction (one by one, or in bulk for a sweep), so the signals fire only if both are durable.
    """
    old_status = session.status
    session.status = new_status
    if report is not None:
        session.next_step = report.next_step
        if report.expires_at is not None:
            session.expires_at = report.expires_at
        if report.result:
            session.result = _stored_result(report.result)
    final = session.is_final
    if final:
        session.finished_at = now
        session.next_step = ""
        session.url = ""  # the one-time link is a bearer secret with no further use
    _schedule_next_poll(session, now, moved=True)
    session.updated_at = now
    decision = Decision.UNDECIDED
    if final and not session.decision:
        decision = _decide(session)
        if decision:
            session.decision = decision
            session.reviewed_at = now
    events = [
        VerificationEvent(
            session=session,
            provider=session.provider,
            kind=kind,
            source=source,
            old_status=old_status,
            new_status=new_status,
            applied=True,
            processed=True,
            actor=actor,
        )
    ]
    logger.info("verification session %s: %s -> %s (%s)", session.pk, old_status, new_status, source)
    _send_on_commit(
        signals.verification_status_changed, session, old_status=old_status, new_status=new_status, source=source
    )
    if final:
        _send_on_commit(signals.verification_finished, session, status=new_status, source=source)
    if decision:
        events.append(
            VerificationEvent(
                session=session,
                provider=session.provider,
                kind=Kind.REVIEWED,
                source=source,
                applied=True,
                processed=True,
                data={"decision": decision, "by": "policy"},
            )
        )
        _send_on_commit(signals.verification_reviewed, session, decision=decision, reviewer=None)
    return events


def _transition(session: VerificationSession, new_status: str, **kwargs: Any) -> None:
    """Apply one forward move to a *locked* session, record it, and queue its signals."""
    events = _move(session, new_status, **kwargs)
    session.save()
    VerificationEvent.objects.bulk_create(events)


# -- start -------------------------------------------------------------------------------------


def start_verification(
    *,
    user: Any = None,
    provider: str | None = None,
    scopes: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    next_url: str | None = None,
    ttl: int | None = None,
    request: HttpRequest | None = None,
) -> VerificationSession:
    """Ask the provider for a new one-time link and store the session.

    Raises ``InvalidRequest`` for bad arguments (nothing sent, nothing stored), a ``ProviderError``
    subclass when the provider fails (nothing stored but a ``create_failed`` event), and
    ``ConfigurationError`` for a settings problem.
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

    session = VerificationSession(
        user=user,
        provider=alias,
        scopes=scopes,
        metadata=storable(dict(metadata)),
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
    _insert_together(session, created_event)
    _send_on_commit(signals.verification_created, session)
    logger.info("verification session %s created at %s", session.pk, alias)
    return session


def _insert_parts(instance: Any, *, skip: tuple[str, ...] = ()) -> tuple[str, str, list[Any]]:
    """What a raw ``INSERT`` of ``instance`` needs (the PostgreSQL one-statement paths): the quoted
    table, the quoted column list, and the values prepared as the ORM would (defaults, ``auto_now``,
    JSON adaptation). Database-generated keys and the fields named in ``skip`` are left out.
    Identifiers come from the model's own metadata; every value is a query parameter."""
    quote = connection.ops.quote_name
    fields = [
        field
        for field in instance._meta.concrete_fields
        if not getattr(field, "db_returning", False) and field.name not in skip
    ]
    values = [field.get_db_prep_save(field.pre_save(instance, add=True), connection) for field in fields]
    return quote(instance._meta.db_table), ", ".join(quote(field.column) for field in fields), values


def _params(values: list[Any]) -> str:
    return ", ".join("%s" for _ in values)


def _insert_together(session: VerificationSession, event: VerificationEvent) -> None:
    """A new session and its first event, atomically: one statement on PostgreSQL (a round trip and
    a transaction's BEGIN/COMMIT are most of what a write costs next to the provider call:
    ``benchmarks/run.py``), a transaction elsewhere."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            session.save(force_insert=True)
            event.save(force_insert=True)
        return
    session_table, session_columns, session_values = _insert_parts(session)
    event_table, event_columns, event_values = _insert_parts(event)
    sql = (
        f"WITH inserted AS (INSERT INTO {session_table} ({session_columns}) VALUES ({_params(session_values)})) "  # noqa: S608
        f"INSERT INTO {event_table} ({event_columns}) VALUES ({_params(event_values)}) "
        f"RETURNING {connection.ops.quote_name(event._meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*session_values, *event_values])
        event.pk = cursor.fetchone()[0]
    for instance in (session, event):
        instance._state.adding = False
        instance._state.db = connection.alias


# -- applying what the provider says --------------------------------------------------------------


def apply_report(
    session: SessionRef,
    report: StatusReport,
    *,
    source: str,
    kind: str = Kind.POLL,
    now: datetime | None = None,
    polled: bool = False,
    by: Any = None,
    confirms: VerificationEvent | None = None,
) -> VerificationSession:
    """Apply an *authenticated* status report (a provider answer, a verified webhook).

    ``polled``: the report is our own provider call's answer (sets ``last_polled_at``); ``by``: the
    staff user who asked for it, recorded on the events; ``confirms``: the inbound request this
    report answers, marked processed in the same transaction (processed exactly when the answer is
    durable).

    Records the report as an event whether or not it is applied. Returns the updated session.
    """
    now = now or timezone.now()
    actor = by if _is_user(by) else None
    with transaction.atomic():
        locked = _lock(session)
        if confirms is not None:
            judge_inbound(confirms, valid=True, processed=True)
        if polled:
            locked.last_polled_at = now
        old_status = locked.status
        moves_forward = (
            not locked.is_final
            and report.status in VerificationSession.STATUS_RANK
            and VerificationSession.STATUS_RANK[report.status] > VerificationSession.STATUS_RANK[old_status]
        )
        _answer_event(locked, report, kind=kind, source=source, applied=moves_forward, actor=actor).save()
        if moves_forward:
            _transition(locked, report.status, source=source, now=now, report=report, actor=actor)
        elif not locked.is_final:
            # Same or older status: not a transition. Only the provider's authoritative expiry and
            # the poll schedule are updated.
            fields = ["poll_attempts", "next_poll_at", "last_polled_at", "updated_at"]
            if report.status == old_status and report.expires_at and report.expires_at != locked.expires_at:
                locked.expires_at = report.expires_at
                fields.append("expires_at")
            if report.status == old_status and _step_advances(locked, report.next_step):
                locked.next_step = report.next_step
                fields.append("next_step")
            _schedule_next_poll(locked, now, moved=False)
            locked.save(update_fields=fields)
    return locked


def refresh_session(
    session: SessionRef, *, source: str = "poll", timeout: float | None = None, by: Any = None
) -> VerificationSession:
    """Ask the provider for the session's state now and apply the answer.

    A final session, or one whose provider cannot be polled, is returned as it is without a call.
    Provider errors are recorded (``poll_failed``), push the next poll back, and are re-raised.
    ``by``: the staff user who asked (admin), recorded on the events.
    """
    return _refresh(session, source=source, timeout=timeout, by=by)


def _refresh(
    session: SessionRef,
    *,
    source: str,
    timeout: float | None = None,
    provider_slot: AbstractContextManager[Any] | None = None,
    by: Any = None,
    confirms: VerificationEvent | None = None,
) -> VerificationSession:
    """``refresh_session``; a sweep passes ``provider_slot`` (a semaphore) to bound the provider
    calls in flight separately from the threads applying answers to the database; a callback passes
    its recorded request as ``confirms``, marked processed with the answer, in the same statement."""
    current = session if isinstance(session, VerificationSession) else VerificationSession.objects.get(pk=session)
    backend = get_provider(current.provider)
    if current.is_final or not backend.pollable:
        return current
    now = timezone.now()
    try:
        with provider_slot or nullcontext():
            report = backend.get_status(current, timeout=timeout)
    except ProviderError as exc:
        with transaction.atomic():
            locked = _lock(current)
            VerificationEvent.objects.create(
                session=locked,
                provider=locked.provider,
                kind=Kind.POLL_FAILED,
                source=source,
                valid=False,
                error=str(exc),
                data={
                    "error_type": type(exc).__name__,
                    "status_code": exc.status_code,
                    "code": exc.code,
                    "retryable": exc.retryable,
                },
            )
            if not locked.is_final:
                _schedule_next_poll(locked, now, moved=False)
                locked.last_polled_at = now
                locked.save(update_fields=["poll_attempts", "next_poll_at", "last_polled_at", "updated_at"])
        logger.warning("verification session %s: refresh failed: %s", current.pk, exc)
        raise
    if confirms is not None and _record_unchanged_confirmation(current, report, confirms, now=now):
        return current
    if by is None and _record_unchanged(current, report, source=source, now=now, confirms=confirms):
        return current
    return apply_report(current, report, source=source, now=now, polled=True, by=by, confirms=confirms)


def _step_advances(session: VerificationSession, step: str) -> bool:
    """Whether ``step`` comes after the session's current step in the order of its scopes. Within
    one status the provider moves through the scopes (LIVENESS, then DEEPFAKE…); an equal-status
    report may carry that progress, and like a status it only moves forward — a late report of an
    earlier step is recorded, not applied."""
    if not step or step == session.next_step:
        return False
    order = [str(scope).upper() for scope in session.scopes or ()]
    if step not in order:
        return False
    return session.next_step not in order or order.index(step) > order.index(session.next_step)


def _answer_event(
    session: VerificationSession, report: StatusReport, *, kind: str, source: str, applied: bool, actor: Any = None
) -> VerificationEvent:
    """The event recording a provider's answer about ``session`` (unsaved)."""
    return VerificationEvent(
        session_id=session.pk,
        provider=session.provider,
        kind=kind,
        source=source,
        old_status=session.status,
        new_status=report.status,
        applied=applied,
        valid=True,
        processed=True,
        data=report.summary(),
        actor=actor,
    )


def _record_unchanged_confirmation(
    session: VerificationSession, report: StatusReport, confirms: VerificationEvent, *, now: datetime
) -> bool:
    """A callback's confirmation that brings nothing new — the open status, step and expiry we
    hold — records the answer and marks the callback processed, and leaves the session row alone:
    the poll schedule is the sweep's business, and rewriting a row with a dozen indexes to say
    "nothing changed" was most of this path's cost. On PostgreSQL one statement; the event is
    inserted only if the callback was not processed meanwhile (a Celery retry, a duplicate task).
    Returns False, writing nothing, when the answer is anything else."""
    if (
        report.status != session.status
        or session.is_final
        or {"expires_at", "next_step", "scopes"} & session.get_deferred_fields()
        or (report.expires_at is not None and report.expires_at != session.expires_at)
        or _step_advances(session, report.next_step)
    ):
        return False
    answer = _answer_event(session, report, kind=Kind.POLL, source=VerificationEvent.Source.CALLBACK, applied=False)
    answer.created_at = now
    if connection.vendor == "postgresql":
        _confirm_and_record_postgresql(confirms, answer)
    else:
        with transaction.atomic():
            if VerificationEvent.objects.filter(pk=confirms.pk, processed=False).update(
                valid=True, processed=True, error=""
            ):
                answer.save(force_insert=True)
    confirms.valid, confirms.processed, confirms.error = True, True, ""
    return True


def _confirm_and_record_postgresql(confirms: VerificationEvent, answer: VerificationEvent) -> None:
    """``_record_unchanged_confirmation`` in one round trip: the callback marked processed and the
    answer inserted, atomic by itself."""
    events = VerificationEvent._meta
    quote = connection.ops.quote_name
    table, columns, values = _insert_parts(answer)
    event_id, processed = quote(events.pk.column), quote(events.get_field("processed").column)
    sql = (
        f"WITH confirmed AS (UPDATE {table} SET {quote(events.get_field('valid').column)} = true, "  # noqa: S608
        f"{processed} = true, {quote(events.get_field('error').column)} = '' "
        f"WHERE {event_id} = %s AND NOT {processed} RETURNING {event_id}) "
        f"INSERT INTO {table} ({columns}) SELECT {_params(values)} FROM confirmed"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [confirms.pk, *values])


def _record_unchanged(
    session: VerificationSession,
    report: StatusReport,
    *,
    source: str,
    now: datetime,
    confirms: VerificationEvent | None = None,
) -> bool:
    """The commonest poll answer — the open status we already hold — without locking and loading
    the row: one compare-and-set UPDATE (status and attempt count as we read them) plus the event
    (and ``confirms`` marked processed), in one transaction. Returns False, changing nothing, when
    the answer is a move or the row changed meanwhile; ``apply_report`` then takes the row lock and
    decides."""
    if (
        report.status != session.status
        or session.is_final
        or {"poll_attempts", "expires_at", "next_step", "scopes"} & session.get_deferred_fields()
    ):
        return False
    attempts = session.poll_attempts + 1
    changes: dict[str, Any] = {
        "poll_attempts": attempts,
        "next_poll_at": now + timedelta(seconds=poll_interval(attempts)),
        "last_polled_at": now,
        "updated_at": now,
    }
    if report.expires_at and report.expires_at != session.expires_at:
        changes["expires_at"] = report.expires_at  # the provider's expiry is authoritative
    if _step_advances(session, report.next_step):
        changes["next_step"] = report.next_step
    event = {
        "provider": session.provider,
        "kind": Kind.POLL,
        "source": source,
        "old_status": session.status,
        "new_status": report.status,
        "data": report.summary(),
    }
    confirmed = confirms.pk if confirms is not None else None
    if connection.vendor == "postgresql":
        updated = _update_and_record_postgresql(session, changes, event, confirmed)
    else:
        with transaction.atomic():
            updated = VerificationSession.objects.filter(
                pk=session.pk, status=session.status, poll_attempts=session.poll_attempts
            ).update(**changes)
            if updated:
                VerificationEvent.objects.create(
                    session_id=session.pk, applied=False, valid=True, processed=True, **event
                )
                if confirms is not None:
                    judge_inbound(confirms, valid=True, processed=True)
    if not updated:
        return False
    for field, value in changes.items():
        setattr(session, field, value)
    if confirms is not None:
        confirms.valid, confirms.processed, confirms.error = True, True, ""
    return True


def _update_and_record_postgresql(
    session: VerificationSession, changes: dict[str, Any], event: dict[str, Any], confirmed: int | None = None
) -> int:
    """``_record_unchanged`` as one statement: the compare-and-set UPDATE, the event INSERT and —
    for a callback — its recorded request marked processed, in a single round trip, atomic by
    itself. Polling is the hottest path of a sweep, confirming a callback the hottest of a request;
    through the ORM the same work costs several times the CPU (``benchmarks/sweeps.py``,
    ``benchmarks/run.py``). Returns the rows updated (0 or 1)."""
    sessions, events = VerificationSession._meta, VerificationEvent._meta
    quote = connection.ops.quote_name

    def col(meta: Any, name: str) -> str:
        return quote(meta.get_field(name).column)

    inserted = {
        **event,
        "applied": False,
        "valid": True,
        "processed": True,
        "body": "",
        "body_truncated": False,
        "headers": {},
        "error": "",
        "created_at": timezone.now(),
    }
    jsonb = {"data", "headers"}
    # Identifiers come from the models' own metadata, quoted; every value is a query parameter.
    assignments = ", ".join(f"{col(sessions, name)} = %s" for name in changes)
    guard = " AND ".join(f"{col(sessions, name)} = %s" for name in ("id", "status", "poll_attempts"))
    columns = ", ".join([col(events, "session"), *(col(events, name) for name in inserted)])
    placeholders = ", ".join("%s::jsonb" if name in jsonb else "%s" for name in inserted)
    session_id, event_id = col(sessions, "id"), col(events, "id")
    confirm = ""
    if confirmed is not None:
        confirm = (
            f", confirmed AS (UPDATE {quote(events.db_table)} SET {col(events, 'valid')} = true, "  # noqa: S608
            f"{col(events, 'processed')} = true, {col(events, 'error')} = '' "
            f"WHERE {event_id} = %s AND EXISTS (SELECT 1 FROM moved))"
        )
    sql = (
        f"WITH moved AS (UPDATE {quote(sessions.db_table)} SET {assignments} WHERE {guard} RETURNING {session_id})"  # noqa: S608
        f"{confirm} INSERT INTO {quote(events.db_table)} ({columns}) "
        f"SELECT moved.{session_id}, {placeholders} FROM moved RETURNING {event_id}"
    )
    params = [
        *changes.values(),
        session.pk,
        session.status,
        session.poll_attempts,
        *([confirmed] if confirmed is not None else []),
        *(json.dumps(value) if name in jsonb else value for name, value in inserted.items()),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return len(cursor.fetchall())


# -- inbound requests --------------------------------------------------------------------------------

#: Headers kept with a recorded inbound request; never cookies or authorization.
RECORDED_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For", "X-Request-Id")


#: What confirming a callback reads of its session: the provider's handles, and the status, attempt
#: count and expiry that the compare-and-set of an unchanged answer checks. A move reloads the whole
#: row under its lock; a provider whose ``get_status`` reads more loads it on access.
CALLBACK_SESSION_FIELDS = (
    *("id", "provider", "token", "external_id", "reference"),
    *("status", "next_step", "scopes", "poll_attempts", "expires_at"),
)


def session_for_callback(provider: str, secret: str) -> VerificationSession | None:
    """The session a callback URL names, or None. Reads only ``CALLBACK_SESSION_FIELDS``: loading the
    whole row (results, metadata: JSON to decode) doubled the cost of the lookup."""
    if "\x00" in provider or "\x00" in secret:
        return None  # names nothing, and PostgreSQL refuses NUL in a query parameter
    try:
        return VerificationSession.objects.only(*CALLBACK_SESSION_FIELDS).get(provider=provider, callback_secret=secret)
    except VerificationSession.DoesNotExist:
        return None


def record_inbound(
    request: HttpRequest,
    *,
    kind: str,
    provider: str,
    body: bytes,
    session: VerificationSession | None = None,
    error: str = "",
) -> VerificationEvent:
    """Store an inbound callback or webhook *before* it is judged.

    Callers run this in autocommit (outside any processing transaction), so the evidence survives
    whatever happens next. The body is kept up to ``MAX_EVENT_BODY_BYTES``.
    """
    event = _inbound_event(request, kind=kind, provider=provider, body=body, session=session, error=error)
    event.save(force_insert=True)
    return event


def _inbound_event(
    request: HttpRequest, *, kind: str, provider: str, body: bytes, session: VerificationSession | None, error: str
) -> VerificationEvent:
    limit = int(conf.get("MAX_EVENT_BODY_BYTES"))
    return VerificationEvent(
        session=session,
        provider=storable(provider[:64]),
        kind=kind,
        source=kind,
        body=storable(body[:limit].decode("utf-8", errors="replace")),
        body_truncated=len(body) > limit,
        headers={name: storable(request.headers[name][:512]) for name in RECORDED_HEADERS if name in request.headers},
        remote_addr=request.META.get("REMOTE_ADDR") or None,
        valid=False if error else None,
        error=error,
    )


def record_callback(
    request: HttpRequest, *, provider: str, secret: str, body: bytes, error: str = ""
) -> tuple[VerificationEvent, VerificationSession | None]:
    """``record_inbound`` for a per-session callback, with the lookup of the session its URL names
    (``session_for_callback``): the recorded event and the session, or None for an unknown one.

    On PostgreSQL the lookup and the INSERT are one statement — the callback is the hottest inbound
    path, and a round trip is most of what a statement costs here (``benchmarks/run.py``)."""
    if connection.vendor != "postgresql" or "\x00" in provider or "\x00" in secret:
        session = session_for_callback(provider, secret)
        event = record_inbound(request, kind=Kind.CALLBACK, provider=provider, body=body, session=session, error=error)
        return event, session
    event = _inbound_event(request, kind=Kind.CALLBACK, provider=provider, body=body, session=None, error=error)
    sessions, events = VerificationSession._meta, VerificationEvent._meta
    quote = connection.ops.quote_name
    read = [field for field in sessions.concrete_fields if field.name in CALLBACK_SESSION_FIELDS]  # from_db's order
    table, columns, values = _insert_parts(event, skip=("session",))
    # Identifiers come from the models' own metadata, quoted; every value is a query parameter.
    sql = (
        f"WITH found AS (SELECT {', '.join(quote(field.column) for field in read)} "  # noqa: S608
        f"FROM {quote(sessions.db_table)} WHERE {quote(sessions.get_field('provider').column)} = %s "
        f"AND {quote(sessions.get_field('callback_secret').column)} = %s), "
        f"recorded AS (INSERT INTO {table} ({quote(events.get_field('session').column)}, {columns}) "
        f"VALUES ((SELECT {quote(sessions.pk.column)} FROM found), {_params(values)}) "
        f"RETURNING {quote(events.pk.column)}) "
        f"SELECT recorded.{quote(events.pk.column)}, found.* FROM recorded LEFT JOIN found ON true"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [provider, secret, *values])
        event_id, *row = cursor.fetchone()
    event.pk = event_id
    event._state.adding = False
    if row[0] is None:
        return event, None
    # What the ORM's compiler would do with the raw row: the fields' own conversions (JSON decoding).
    values = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(read, row, strict=True)
    ]
    session = VerificationSession.from_db(connection.alias, [field.attname for field in read], values)
    event.session = session
    return event, session


def judge_inbound(event: VerificationEvent, *, valid: bool, processed: bool = False, error: str = "") -> None:
    """Record the verdict on a recorded inbound request."""
    VerificationEvent.objects.filter(pk=event.pk).update(valid=valid, processed=processed, error=error)
    event.valid, event.processed, event.error = valid, processed, error


def confirm_callback(event: VerificationEvent | int) -> VerificationSession | None:
    """Act on a recorded callback whose form was valid: ask the provider and apply its answer (never
    the body). The event is marked processed with the answer, atomically (one statement when the
    answer is the status we hold, on PostgreSQL).

    ``event``: the recorded request, or its id (a task). Idempotent: an event already processed, or
    one whose session is final, costs no provider call. Raises the provider's error so a task can
    retry; the event is then judged valid and left unprocessed.
    """
    if not isinstance(event, VerificationEvent):
        event = VerificationEvent.objects.select_related("session").get(pk=event)
    session = event.session
    if event.processed or session is None:
        return session
    if session.is_final:
        judge_inbound(event, valid=True, processed=True)
        return session
    try:
        session = _refresh(session, source=VerificationEvent.Source.CALLBACK, confirms=event)
    except ProviderError:
        if event.valid is not True:
            judge_inbound(event, valid=True)
        raise
    if not event.processed:  # a provider that cannot be polled: nothing to confirm with
        judge_inbound(event, valid=True, processed=True)
    return session


def process_webhook(event: VerificationEvent, backend: Any, payload: Mapping[str, Any]) -> str:
    """Act on a recorded, *authenticated* webhook: find the session by the provider's handles, map
    the outcome, apply it. Returns what happened — ``processed``, ``already final``, ``unknown
    session``, ``unknown status`` — each recorded on the event; only ``processed`` changes state."""
    parsed = backend.parse_webhook(payload)
    handles = Q()
    if parsed.token:
        handles |= Q(token=parsed.token)
    if parsed.reference:
        handles |= Q(reference=parsed.reference)
    session = VerificationSession.objects.filter(handles, provider=backend.alias).first() if handles else None
    if session is None:
        judge_inbound(event, valid=True, processed=True, error="unknown session")
        return "unknown session"
    VerificationEvent.objects.filter(pk=event.pk).update(session=session)
    if parsed.report is None:
        judge_inbound(event, valid=True, processed=True, error=f"unknown status value {parsed.raw_status!r}")
        return "unknown status"
    if session.is_final:
        judge_inbound(event, valid=True, processed=True)
        return "already final"
    apply_report(session, parsed.report, source=VerificationEvent.Source.WEBHOOK)
    judge_inbound(event, valid=True, processed=True)
    return "processed"


# -- staff and user actions ------------------------------------------------------------------------


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


def review_session(session: SessionRef, *, decision: str, reviewer: Any, note: str = "") -> VerificationSession:
    """Record a staff decision on a finished session and send ``verification_reviewed``."""
    if decision not in (Decision.APPROVED, Decision.REJECTED, Decision.REVIEW):
        raise InvalidRequest(f"decision must be one of approved, rejected, review; not {decision!r}")
    now = timezone.now()
    with transaction.atomic():
        locked = _lock(session)
        if not locked.is_final:
            raise InvalidTransition("only a finished session can be reviewed")
        previous = locked.decision
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


def _is_user(value: Any) -> bool:
    return value is not None and getattr(value, "pk", None) is not None and getattr(value, "is_authenticated", False)


# -- sweeps ------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What one sweep did: sessions looked at, changed or answered, and provider calls that failed."""

    found: int = 0
    processed: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.found} found, {self.processed} processed, {self.failed} failed"


def _pollable_aliases() -> list[str]:
    aliases = []
    for alias in conf.providers():
        try:
            if load_backend(alias).pollable:
                aliases.append(alias)
        except ConfigurationError:
            logger.error("provider alias %r is misconfigured; its sessions are not polled", alias)
    return aliases


def _locking(queryset: Any) -> Any:
    """``SELECT … FOR NO KEY UPDATE SKIP LOCKED`` where the database has it: concurrent sweeps
    then take disjoint batches instead of queueing behind each other."""
    features = connection.features
    if not features.has_select_for_update:
        return queryset  # SQLite: writers are serialised by the database itself
    return queryset.select_for_update(
        skip_locked=features.has_select_for_update_skip_locked, no_key=features.has_select_for_no_key_update
    )


def claim_due_sessions(*, now: datetime | None = None, limit: int | None = None) -> list[VerificationSession]:
    """Claim up to ``limit`` open sessions due for a poll and return them (id, provider, token and
    status loaded).

    Claiming moves their next poll time ``POLL_CLAIM_SECONDS`` ahead in the same transaction, so
    another sweep (a second beat tick, another worker) does not poll them too; the refresh then sets
    the real next poll time. A claim that is never followed up lapses by itself.
    """
    now = now or timezone.now()
    limit = limit or int(conf.get("POLL_BATCH_SIZE"))
    due = VerificationSession.objects.filter(
        next_poll_at__lte=now, status__in=VerificationSession.OPEN_STATUSES, provider__in=_pollable_aliases()
    ).order_by("next_poll_at")
    with transaction.atomic():
        # Only what a refresh needs before it locks the row itself: saves a query per session.
        claimed = list(
            _locking(
                due.only("pk", "provider", "token", "status", "next_step", "scopes", "poll_attempts", "expires_at")
            )[:limit]
        )
        if claimed:
            lease = now + timedelta(seconds=int(conf.get("POLL_CLAIM_SECONDS")))
            VerificationSession.objects.filter(pk__in=[s.pk for s in claimed]).update(next_poll_at=lease)
    return claimed


def run_concurrently(ids: Iterable[Any], work: Callable[[Any], Any], *, concurrency: int) -> list[Any]:
    """Run ``work(id)`` for every id on at most ``concurrency`` threads; return the results (or the
    exceptions) in no particular order.

    Inside a transaction, or with ``concurrency`` 1, everything runs in the calling thread: other
    threads have their own database connections and could not see uncommitted rows.
    """
    ids = list(ids)
    results: list[Any] = []

    def guarded(pk: Any) -> Any:
        try:
            return work(pk)
        except Exception as exc:  # the caller decides what an error means
            return exc

    if concurrency <= 1 or len(ids) <= 1 or connection.in_atomic_block:
        return [guarded(pk) for pk in ids]
    pending = queue.SimpleQueue()
    for pk in ids:
        pending.put(pk)
    lock = threading.Lock()

    def worker() -> None:
        try:
            while True:
                try:
                    pk = pending.get_nowait()
                except queue.Empty:
                    return
                outcome = guarded(pk)
                with lock:
                    results.append(outcome)
        finally:
            connections.close_all()  # this thread's connections, not the caller's

    threads = [threading.Thread(target=worker, name=f"vl-sweep-{n}") for n in range(min(concurrency, len(ids)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _tally(result: SweepResult, outcomes: Iterable[Any]) -> SweepResult:
    """Count provider answers and provider failures; re-raise anything else (a bug, a database error)."""
    for outcome in outcomes:
        if isinstance(outcome, ProviderError):
            result.failed += 1
        elif isinstance(outcome, VerificationSession.DoesNotExist):
            continue
        elif isinstance(outcome, Exception):
            raise outcome
        else:
            result.processed += 1
    return result


def run_poll_sweep(
    *,
    now: datetime | None = None,
    concurrency: int | None = None,
    dispatch: Callable[[Any], Any] | None = None,
    max_batches: int = 100,
) -> SweepResult:
    """Claim due sessions batch by batch and refresh them: on a bounded thread pool
    (``POLL_CONCURRENCY``), or by handing each id to ``dispatch`` (a Celery task's ``delay``)."""
    now = now or timezone.now()  # fixed for the whole sweep: a session polled now is not due again in it
    concurrency = concurrency or int(conf.get("POLL_CONCURRENCY"))
    batch_size = int(conf.get("POLL_BATCH_SIZE"))
    slot = threading.BoundedSemaphore(concurrency)
    result = SweepResult()
    for _ in range(max_batches):
        claimed = claim_due_sessions(now=now, limit=batch_size)
        result.found += len(claimed)
        if dispatch is not None:
            for session in claimed:
                dispatch(session.pk)
            result.processed += len(claimed)
        else:
            # ``concurrency`` provider calls in flight at all times, plus threads that apply answers to
            # the database meanwhile: the provider is the scarce resource, keep it busy.
            poll = partial(_refresh, source=VerificationEvent.Source.POLL, provider_slot=slot)
            _tally(result, run_concurrently(claimed, poll, concurrency=concurrency + max(1, concurrency // 2)))
        if len(claimed) < batch_size:
            break
    return result


def poll_due_sessions(*, now: datetime | None = None) -> int:
    """Refresh the sessions due for a poll; returns how many were answered by their provider."""
    return run_poll_sweep(now=now).processed


def _last_check(pk: Any) -> VerificationSession:
    return refresh_session(pk, source=VerificationEvent.Source.EXPIRY)


def run_expiry_sweep(
    *, now: datetime | None = None, last_check: bool | None = None, concurrency: int | None = None
) -> SweepResult:
    """Expire open sessions past ``expires_at`` + ``EXPIRY_GRACE``, batch by batch.

    Sessions of pollable providers first get one last status check (``EXPIRY_LAST_CHECK``): they may
    have finished without our hearing, or the provider may have extended them. The rest of a batch is
    expired in one transaction with a constant number of queries; each session still gets its own
    events and ``verification_finished``.
    """
    now = now or timezone.now()
    last_check = conf.get("EXPIRY_LAST_CHECK") if last_check is None else last_check
    concurrency = concurrency or int(conf.get("POLL_CONCURRENCY"))
    batch_size = int(conf.get("EXPIRY_BATCH_SIZE"))
    cutoff = now - timedelta(seconds=int(conf.get("EXPIRY_GRACE")))
    overdue = VerificationSession.objects.filter(
        status__in=VerificationSession.OPEN_STATUSES, expires_at__lt=cutoff
    ).order_by("expires_at")
    pollable = set(_pollable_aliases()) if last_check else set()
    result = SweepResult()
    seen: set[Any] = set()
    while True:
        batch = list(overdue.exclude(pk__in=seen).values_list("pk", "provider")[:batch_size])
        if not batch:
            break
        seen.update(pk for pk, _ in batch)
        result.found += len(batch)
        checks = run_concurrently(
            [pk for pk, provider in batch if provider in pollable], _last_check, concurrency=concurrency
        )
        # A failed last check said nothing: the session is expired all the same.
        result.failed += _tally(SweepResult(), checks).failed
        result.processed += _expire_batch([pk for pk, _ in batch], cutoff=cutoff, now=now)
        if len(batch) < batch_size:
            break
    return result


def _expire_batch(ids: list[Any], *, cutoff: datetime, now: datetime) -> int:
    """Expire, in one transaction, those of ``ids`` still open and overdue (a last check may have
    finished or extended some). Constant query count: lock, update, insert events."""
    with transaction.atomic():
        sessions = list(
            _locking(
                VerificationSession.objects.filter(
                    pk__in=ids, status__in=VerificationSession.OPEN_STATUSES, expires_at__lt=cutoff
                )
            )
        )
        if not sessions:
            return 0
        events = []
        for session in sessions:
            events += _move(session, Status.EXPIRED, source=VerificationEvent.Source.EXPIRY, now=now, kind=Kind.EXPIRED)
        # Every field _move changed is the same for the whole batch but the policy's decision: one
        # UPDATE, plus one per decision value (none with the default policy). Cheaper than
        # bulk_update's CASE per row and field.
        VerificationSession.objects.filter(pk__in=[s.pk for s in sessions]).update(
            status=Status.EXPIRED, finished_at=now, next_step="", url="", next_poll_at=None, updated_at=now
        )
        by_decision: dict[str, list[Any]] = {}
        for session in sessions:
            if session.decision and session.reviewed_at == now:
                by_decision.setdefault(session.decision, []).append(session.pk)
        for decision, pks in sorted(by_decision.items()):
            VerificationSession.objects.filter(pk__in=pks).update(decision=decision, reviewed_at=now)
        VerificationEvent.objects.bulk_create(events, batch_size=1000)
    return len(sessions)


def expire_sessions(*, now: datetime | None = None) -> int:
    """Expire overdue sessions; returns how many became EXPIRED."""
    return run_expiry_sweep(now=now).processed


def purge_expired_data(*, now: datetime | None = None) -> int:
    """Scrub sessions finished more than ``RETENTION_DAYS`` ago: drop ``SENSITIVE_RESULT_KEYS`` from
    the result and the raw bodies and headers of their events. Status, decision, per-check scores
    and timestamps stay for audit. Each scrub is recorded (``purged`` event); returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=int(conf.get("RETENTION_DAYS")))
    due = VerificationSession.objects.filter(finished_at__lt=cutoff, purged_at__isnull=True)
    purged = 0
    for pk in due.values_list("pk", flat=True).order_by("finished_at"):
        with transaction.atomic():
            locked = _lock(pk)
            if locked.purged_at is not None:
                continue
            before = locked.result or {}
            locked.result = redact(before, sensitive=False, provider=locked.provider)
            removed = sorted(key for key in before if key not in locked.result or locked.result[key] != before[key])
            locked.purged_at = now
            locked.save(update_fields=["result", "purged_at", "updated_at"])
            bodies = locked.events.exclude(body="", headers={}).update(body="", headers={}, body_truncated=False)
            VerificationEvent.objects.create(
                session=locked,
                provider=locked.provider,
                kind=Kind.PURGED,
                source=VerificationEvent.Source.SYSTEM,
                applied=True,
                processed=True,
                data={"result_keys": removed, "event_bodies": bodies},
            )
        purged += 1
    return purged
