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
import math
import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import partial
from typing import Any

from django.core.cache import cache
from django.db import connection, connections, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string

from . import conf, dblock, signals
from .exceptions import ConfigurationError, InvalidRequest, InvalidTransition, ProviderError
from .jsonbody import InvalidJSON, parse_json, storable
from .logsafe import failure_text
from .models import VerificationEvent, VerificationSession
from .providers import CreateRequest, StatusReport, get_provider, load_backend
from .results import redact

logger = logging.getLogger("verification_link")

Status = VerificationSession.Status
Decision = VerificationSession.Decision
Kind = VerificationEvent.Kind

SessionRef = VerificationSession | uuid.UUID | str

__all__ = [
    "PurgeResult",
    "SweepResult",
    "apply_report",
    "cancel_session",
    "expire_sessions",
    "poll_due_sessions",
    "poll_interval",
    "refresh_on_return",
    "refresh_session",
    "review_session",
    "run_expiry_sweep",
    "run_poll_sweep",
    "run_purge",
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
    take_write_lock()
    no_key = connection.features.has_select_for_no_key_update
    return VerificationSession.objects.select_for_update(no_key=no_key).get(pk=_pk(session))


def take_write_lock() -> None:
    """``dblock.take_write_lock`` on the sessions' table: call it first in every transaction of
    ours that reads, then writes (SQLite's deferred transactions; see ``verification_link.dblock``)."""
    dblock.take_write_lock(VerificationSession)


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
    discard = set(conf.guarded("DISCARD_RESULT_KEYS"))
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
    try:
        metadata = storable(dict(metadata))
    except InvalidJSON as exc:
        raise InvalidRequest(f"metadata cannot be stored: {exc}") from None

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
    # A callback says the provider is moving (the user is in the flow): the back-off starts over, so
    # a completion announced by a callback that was coalesced meanwhile is polled for in
    # POLL_INTERVAL, not after a back-off of minutes.
    attempts = 0 if confirms is not None else session.poll_attempts + 1
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


#: What confirming a callback reads of its session: the provider's handles, the status, attempt
#: count and expiry that the compare-and-set of an unchanged answer checks, and when we last asked
#: the provider (a callback within ``CALLBACK_COALESCE_SECONDS`` of it asks nothing). A move reloads
#: the whole row under its lock; a provider whose ``get_status`` reads more loads it on access.
CALLBACK_SESSION_FIELDS = (
    *("id", "provider", "token", "external_id", "reference"),
    *("status", "next_step", "scopes", "poll_attempts", "expires_at", "last_polled_at"),
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
    full_body: bool = False,
) -> VerificationEvent:
    """Store an inbound callback or webhook *before* it is judged.

    Callers run this in autocommit (outside any processing transaction), so the evidence survives
    whatever happens next. Until the request is authenticated only its first
    ``UNVERIFIED_BODY_BYTES`` are kept (``body_truncated`` says when that cut something): anyone
    can post, and a stranger's 64 KB must not be kept for ever. ``full_body``: the request carries
    what only the provider knows (a callback URL with a session's unguessable secret) and may keep
    up to ``MAX_EVENT_BODY_BYTES``. A webhook gets its whole body in the write of its verdict, once its
    signature verified (``process_webhook``).
    """
    event = _inbound_event(
        request,
        kind=kind,
        provider=provider,
        body=body,
        session=session,
        error=error,
        limit=_body_limit(full=full_body),
    )
    event.save(force_insert=True)
    return event


def _body_limit(*, full: bool) -> int:
    limit = conf.guarded("MAX_EVENT_BODY_BYTES")
    if full:
        return limit
    return min(conf.guarded("UNVERIFIED_BODY_BYTES"), limit)  # a wrong value never means "keep it all"


def _body_text(body: bytes, limit: int) -> tuple[str, bool]:
    """The first ``limit`` bytes of ``body`` as text the database stores, and whether that cut it."""
    return storable(body[:limit].decode("utf-8", errors="replace")), len(body) > limit


def _inbound_event(
    request: HttpRequest,
    *,
    kind: str,
    provider: str,
    body: bytes,
    session: VerificationSession | None,
    error: str,
    limit: int,
) -> VerificationEvent:
    text, truncated = _body_text(body, limit)
    return VerificationEvent(
        session=session,
        provider=storable(provider[:64]),
        kind=kind,
        source=kind,
        body=text,
        body_truncated=truncated,
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
    A URL naming a session keeps the body up to ``MAX_EVENT_BODY_BYTES`` (its secret is
    unguessable); any other keeps the ``UNVERIFIED_BODY_BYTES`` prefix.

    On PostgreSQL the lookup and the INSERT are one statement — the callback is the hottest inbound
    path, and a round trip is most of what a statement costs here (``benchmarks/run.py``)."""
    if connection.vendor != "postgresql" or "\x00" in provider or "\x00" in secret:
        session = session_for_callback(provider, secret)
        event = record_inbound(
            request,
            kind=Kind.CALLBACK,
            provider=provider,
            body=body,
            session=session,
            error=error,
            full_body=session is not None,
        )
        return event, session
    event = _inbound_event(
        request,
        kind=Kind.CALLBACK,
        provider=provider,
        body=body,
        session=None,
        error=error,
        limit=_body_limit(full=True),
    )
    prefix, prefix_truncated = _body_text(body, _body_limit(full=False))
    sessions, events = VerificationSession._meta, VerificationEvent._meta
    quote = connection.ops.quote_name
    read = [field for field in sessions.concrete_fields if field.name in CALLBACK_SESSION_FIELDS]  # from_db's order
    table, columns, values = _insert_parts(event, skip=("session",))
    # Whether the body is kept whole depends on the lookup in the same statement: the body and its
    # truncation flag are chosen by ``CASE`` (the prefix is a second, small parameter).
    placeholders, params = [], []
    choice = {
        quote(events.get_field("body").column): prefix,
        quote(events.get_field("body_truncated").column): prefix_truncated,
    }
    for column, value in zip(columns.split(", "), values, strict=True):
        if column in choice:
            placeholders.append("CASE WHEN EXISTS (SELECT 1 FROM found) THEN %s ELSE %s END")
            params += [value, choice[column]]
        else:
            placeholders.append("%s")
            params.append(value)
    # Identifiers come from the models' own metadata, quoted; every value is a query parameter.
    sql = (
        f"WITH found AS (SELECT {', '.join(quote(field.column) for field in read)} "  # noqa: S608
        f"FROM {quote(sessions.db_table)} WHERE {quote(sessions.get_field('provider').column)} = %s "
        f"AND {quote(sessions.get_field('callback_secret').column)} = %s), "
        f"recorded AS (INSERT INTO {table} ({quote(events.get_field('session').column)}, {columns}) "
        f"VALUES ((SELECT {quote(sessions.pk.column)} FROM found), {', '.join(placeholders)}) "
        f"RETURNING {quote(events.pk.column)}) "
        f"SELECT recorded.{quote(events.pk.column)}, found.* FROM recorded LEFT JOIN found ON true"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [provider, secret, *params])
        event_id, *row = cursor.fetchone()
    event.pk = event_id
    event._state.adding = False
    if row[0] is None:
        event.body, event.body_truncated = prefix, prefix_truncated
        return event, None
    # What the ORM's compiler would do with the raw row: the fields' own conversions (JSON decoding).
    values = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(read, row, strict=True)
    ]
    session = VerificationSession.from_db(connection.alias, [field.attname for field in read], values)
    event.session = session
    return event, session


@dataclass(frozen=True)
class KeptBody:
    """What an authenticated request keeps of its body: the text, whether it is a prefix of what
    arrived (``body_truncated``), and whether the provider's sensitive fields were taken out of it
    (then ``text`` is the JSON re-serialisation of the rest, and the event's ``data`` says
    ``"body_redacted": true``)."""

    text: str = dataclass_field(repr=False)  # the body itself: not for a traceback
    truncated: bool = False
    redacted: bool = False


def judge_inbound(
    event: VerificationEvent,
    *,
    valid: bool,
    processed: bool = False,
    error: str = "",
    body: KeptBody | None = None,
) -> None:
    """Record the verdict on a recorded inbound request; ``body``: what it keeps of its body now that
    it is authenticated, written in the same statement as the verdict."""
    changes: dict[str, Any] = {"valid": valid, "processed": processed, "error": error}
    if body is not None:
        changes.update(body=body.text, body_truncated=body.truncated)
        if body.redacted:
            changes["data"] = {**(event.data or {}), "body_redacted": True}
    VerificationEvent.objects.filter(pk=event.pk).update(**changes)
    for field, value in changes.items():
        setattr(event, field, value)


def redacted_body(provider: str, body: bytes) -> bytes:
    """``body`` as the audit trail may keep it, before anything is recorded: a JSON object becomes
    the JSON of what the alias's provider keeps of it (``BaseProvider.storable_body``: no identity
    numbers, no ``DISCARD_RESULT_KEYS``), so a stored body never holds what the stored result may
    not — whether or not the request turns out authentic. Anything else is kept as it came (it is
    not JSON the provider sends); a body the provider cannot redact is not kept at all."""
    if not body:
        return body
    try:
        backend = get_provider(provider)
        payload = parse_json(body)
    except (ConfigurationError, InvalidJSON):
        return body
    if not isinstance(payload, dict):
        return body
    try:
        kept = backend.storable_body(payload)
        if kept == payload:
            return body
        return json.dumps(kept, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (ValueError, TypeError):  # fail closed: keeping it unredacted is what must not happen
        logger.warning("an inbound body for %r could not be redacted; it is not kept", provider[:64])
        return b""


def kept_webhook_body(backend: Any, payload: Mapping[str, Any], raw: bytes) -> KeptBody | None:
    """What an *authenticated* webhook keeps of its body ``raw`` (parsed: ``payload``): the raw text
    when the provider keeps all of it (``BaseProvider.storable_body``), else the JSON of what it
    keeps, marked redacted. None — keep the recorded prefix, redacted already (``redacted_body``) —
    when that cannot be computed."""
    limit = conf.guarded("MAX_EVENT_BODY_BYTES")
    try:
        kept = backend.storable_body(payload)
        if kept == payload:
            text, truncated = _body_text(raw, limit)
            return KeptBody(text, truncated)
        text = storable(json.dumps(kept, ensure_ascii=False, separators=(",", ":"), allow_nan=False))
    except (ValueError, TypeError, RecursionError):  # nothing the sender may turn into a 500
        logger.warning("webhook body of %s could not be redacted; only its prefix is kept", backend.alias)
        return None
    encoded = text.encode("utf-8")
    if len(encoded) > limit:
        return KeptBody(encoded[:limit].decode("utf-8", errors="ignore"), truncated=True, redacted=True)
    return KeptBody(text, redacted=True)


def confirm_callback(event: VerificationEvent | int) -> VerificationSession | None:
    """Act on a recorded callback whose form was valid: ask the provider and apply its answer (never
    the body). The event is marked processed with the answer, atomically (one statement when the
    answer is the status we hold, on PostgreSQL).

    ``event``: the recorded request, or its id (a task). Idempotent: an event already processed, or
    one whose session is final, costs no provider call. Raises the provider's error so a task can
    retry; the event is then judged valid and left unprocessed.

    Coalescing: when we asked the provider about the session less than ``CALLBACK_COALESCE_SECONDS``
    ago (a callback, a poll, a return), the callback makes no call of its own. It is judged valid
    and processed with ``data["coalesced"]``, and the session's next poll is pulled forward to the
    end of that window, so a completion the callback announces is confirmed by the next poll
    sweep instead of by another call now. The ask is claimed atomically in the site's cache
    (``_claim_provider_call``), so of callbacks arriving together one asks.
    """
    if not isinstance(event, VerificationEvent):
        event = VerificationEvent.objects.select_related("session").get(pk=event)
    session = event.session
    if event.processed or session is None:
        return session
    if session.is_final:
        judge_inbound(event, valid=True, processed=True)
        return session
    asked_at = _claim_provider_call(session)
    if asked_at is not None:
        _coalesce(event, session, asked_at=asked_at)
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


def _claim_provider_call(session: VerificationSession) -> datetime | None:
    """Claim the provider call a callback would make: None when it is ours to make, else when we
    last asked about the session — within ``CALLBACK_COALESCE_SECONDS``, so the callback shares
    that answer.

    A poll or return that asked within the window shows in ``last_polled_at`` as loaded (no
    query). Callbacks claim in the site's cache with an atomic ``add`` that lives for the window:
    of callbacks arriving together exactly one asks, and nothing is written to the session row — a
    row with a dozen indexes whose rewrite was most of what a callback cost. The claim is as wide
    as the cache: Redis or memcached are shared by every process; Django's default local-memory
    cache is per process (at most one call per window per process); a dummy cache claims nothing
    (every callback asks). A cache that fails is a callback that asks, never an error."""
    window = _coalesce_window()
    if window <= 0 or not get_provider(session.provider).pollable:
        return None  # coalescing off; or nothing to ask (confirm_callback judges it)
    now = timezone.now()
    since = now - timedelta(seconds=window)
    loaded = "last_polled_at" not in session.get_deferred_fields()
    if loaded and session.last_polled_at is not None and session.last_polled_at > since:
        return session.last_polled_at
    key = f"verification_link:callback-asks:{session.pk}"
    try:
        if cache.add(key, now.timestamp(), timeout=max(1, math.ceil(window))):
            return None
        asked = cache.get(key)
    except Exception:  # the cache is an optimisation: without it, the callback asks
        logger.warning("callback coalescing: the cache did not answer; the callback asks the provider")
        return None
    if not isinstance(asked, (int, float)):
        return None  # the claim lapsed in between: ours to make
    return datetime.fromtimestamp(asked, tz=dt_timezone.utc)


def _coalesce_window() -> int:
    return int(conf.guarded("CALLBACK_COALESCE_SECONDS"))  # a typo must not become a 500 per callback


def _coalesce(event: VerificationEvent, session: VerificationSession, *, asked_at: datetime) -> None:
    """Process a callback that shares the provider call made at ``asked_at``: pull the session's next
    poll forward to the end of the coalescing window (first, so that a completion the callback
    announces is never lost), then mark the callback processed — unless a run before this one did."""
    end = asked_at + timedelta(seconds=_coalesce_window())
    VerificationSession.objects.filter(
        pk=session.pk, status__in=VerificationSession.OPEN_STATUSES, next_poll_at__gt=end
    ).update(next_poll_at=end)
    data = {**(event.data or {}), "coalesced": True}
    VerificationEvent.objects.filter(pk=event.pk, processed=False).update(
        valid=True, processed=True, error="", data=data
    )
    event.valid, event.processed, event.error, event.data = True, True, "", data
    logger.info("callback %s for session %s coalesced with the provider call of %s", event.pk, session.pk, asked_at)


def refresh_on_return(session: VerificationSession, *, timeout: float | None = None) -> VerificationSession:
    """The user's browser came back from the provider (``return_view``): a hint, never evidence,
    and anyone may send it. Asks the provider only when the session's poll is due, and claims that
    poll first (a conditional UPDATE of ``next_poll_at``, as a sweep claims), so concurrent hits
    make one call between them. Otherwise no call: the next poll is pulled forward to at most
    ``POLL_INTERVAL`` from now — the user has probably just finished — by one conditional UPDATE
    that writes nothing when it is already that early. Raises the provider's error, if any."""
    if session.is_final or session.next_poll_at is None:
        return session  # nothing to ask, or a provider that cannot be polled
    now = timezone.now()
    if session.next_poll_at <= now:
        lease = now + timedelta(seconds=int(conf.get("POLL_CLAIM_SECONDS")))
        if VerificationSession.objects.filter(pk=session.pk, next_poll_at__lte=now).update(next_poll_at=lease):
            return refresh_session(session, source=VerificationEvent.Source.RETURN, timeout=timeout)
        return session  # another hit (or a sweep) claimed this poll a moment ago
    soon = now + timedelta(seconds=int(conf.get("POLL_INTERVAL")))
    if VerificationSession.objects.filter(pk=session.pk, next_poll_at__gt=soon).update(next_poll_at=soon):
        session.next_poll_at = soon
    return session


def process_webhook(
    event: VerificationEvent, backend: Any, payload: Mapping[str, Any], *, body: bytes | None = None
) -> str:
    """Act on a recorded, *authenticated* webhook: find the session by the provider's handles, map
    the outcome, apply it. Returns what happened — ``processed``, ``already final``, ``unknown
    session``, ``unknown status`` — each recorded on the event; only ``processed`` changes state.

    ``body``: the raw body, now authenticated. The event, recorded with a prefix only, then keeps
    what the provider allows of it (``kept_webhook_body``), written with the verdict."""
    kept = kept_webhook_body(backend, payload, body) if body is not None else None
    parsed = backend.parse_webhook(payload)
    handles = Q()
    if parsed.token:
        handles |= Q(token=parsed.token)
    if parsed.reference:
        handles |= Q(reference=parsed.reference)
    session = VerificationSession.objects.filter(handles, provider=backend.alias).first() if handles else None
    if session is None:
        judge_inbound(event, valid=True, processed=True, error="unknown session", body=kept)
        return "unknown session"
    VerificationEvent.objects.filter(pk=event.pk).update(session=session)
    if parsed.report is None:
        error = f"unknown status value {parsed.raw_status!r}"
        judge_inbound(event, valid=True, processed=True, error=error, body=kept)
        return "unknown status"
    if session.is_final:
        judge_inbound(event, valid=True, processed=True, body=kept)
        return "already final"
    apply_report(session, parsed.report, source=VerificationEvent.Source.WEBHOOK)
    judge_inbound(event, valid=True, processed=True, body=kept)
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


def _is_user(value: Any) -> bool:
    return value is not None and getattr(value, "pk", None) is not None and getattr(value, "is_authenticated", False)


# -- sweeps ------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What one sweep did.

    ``found``: sessions the sweep took up. ``processed``: in the poll sweep, sessions their provider
    answered (with ``dispatch``: handed over); in the expiry sweep, sessions that became EXPIRED in
    it, by the sweep or by their last check's answer. ``failed``: sessions on which something
    failed (a provider call, a database write, a site's receiver or policy), each counted once,
    logged, and recorded on the session (``poll_failed``) where the database still takes it.
    """

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
        take_write_lock()  # reads, then writes: on SQLite the write lock must come first
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
    threads have their own database connections and could not see uncommitted rows. ``work`` that
    writes to the database from threads must take a ``_SweepTurns`` database turn (the sweeps do):
    SQLite takes one writer at a time.
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


#: The database turn of sweep threads where the database takes one writer at a time: shared by
#: every sweep of the process (a worker may run a poll and an expiry sweep at once). Re-entrant so
#: that work run inline in a thread already holding it cannot deadlock on itself.
_single_writer = threading.RLock()


class _SweepTurns:
    """How the threads of one sweep share the provider and the database.

    ``database`` (a context manager) is held for the whole of one session's work. Where the database
    has row locks (``has_select_for_update``: PostgreSQL, MySQL) it is free and threads write
    concurrently, each transaction holding its rows. Where it has not (SQLite: one write lock per
    database file) it is one lock for every sweep thread of the process: concurrent writers there
    fail with "database is locked" (a deferred transaction that read first cannot wait for the
    lock) or queue in SQLite's sleeping busy handler.

    ``provider_call`` is ``_refresh``'s ``provider_slot``: at most ``concurrency`` provider calls in
    flight, and the database turn given up while a thread waits for a slot and for the answer, so
    the provider calls — the slow part — still overlap.
    """

    def __init__(self, concurrency: int) -> None:
        writer = None if connection.features.has_select_for_update else _single_writer
        self.database: AbstractContextManager[Any] = writer if writer is not None else nullcontext()
        self.provider_call = _ProviderCall(threading.BoundedSemaphore(concurrency), writer)


class _ProviderCall:
    """A provider slot taken, with the database turn (if any) given up, for the duration of a
    provider call: entered only by a thread holding that turn. Reusable and thread-safe."""

    def __init__(self, slots: threading.BoundedSemaphore, writer: threading.RLock | None) -> None:
        self.slots = slots
        self.writer = writer

    def __enter__(self) -> None:
        if self.writer is not None:
            self.writer.release()
        try:
            self.slots.acquire()
        except BaseException:
            if self.writer is not None:
                self.writer.acquire()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.slots.release()  # before waiting for the database: never hold both while waiting
        if self.writer is not None:
            self.writer.acquire()


def _sweep_threads(concurrency: int) -> int:
    # ``concurrency`` provider calls in flight at all times, plus threads that apply answers to the
    # database meanwhile: the provider is the scarce resource, keep it busy.
    return concurrency + max(1, concurrency // 2)


def _isolated(work: Callable[[Any], Any], turns: _SweepTurns, *, source: str) -> Callable[[Any], Any]:
    """``work`` for one session of a sweep, run in the sweep's database turn, its failure confined
    to that session: it returns the outcome, or the exception. A provider error was recorded by the
    refresh itself; anything else (a database error, a site receiver's bug) is logged and recorded
    here (``_record_failure``). Neither is raised: the rest of the batch goes on."""

    def run(session: Any) -> Any:
        with turns.database:
            try:
                # Run inline inside a caller's transaction, a failed statement would abort that
                # transaction (PostgreSQL) for every session after it: a savepoint each confines it.
                with transaction.atomic() if connection.in_atomic_block else nullcontext():
                    try:
                        return work(session)
                    except (ProviderError, VerificationSession.DoesNotExist) as exc:
                        return exc  # inside the savepoint: the refresh's own record of it stays
            except Exception as exc:
                _record_failure(session, exc, source=source)
                return exc

    return run


def _record_failure(session: SessionRef, exc: Exception, *, source: str) -> None:
    """Log a session's failure in a sweep (call it while handling ``exc``: the traceback is logged)
    and record it on the session as a ``poll_failed`` event giving the error's type — not its text,
    which for a database error can quote the row. When even that fails (the database is what
    failed), the log is all there is."""
    pk = _pk(session)
    logger.error(
        "verification session %s: the %s sweep failed on it; the sweep goes on: %s", pk, source, failure_text(exc)
    )
    try:
        with transaction.atomic():
            take_write_lock()
            provider = getattr(session, "provider", None) or (
                VerificationSession.objects.filter(pk=pk).values_list("provider", flat=True).first()
            )
            if provider is None:
                return  # the session is gone: nothing to record it on
            VerificationEvent.objects.create(
                session_id=pk,
                provider=provider,
                kind=Kind.POLL_FAILED,
                source=source,
                valid=False,
                error=f"{type(exc).__name__} in the {source} sweep",
                data={"error_type": type(exc).__name__, "sweep": source},
            )
    except Exception as again:
        logger.error(
            "verification session %s: its failure in the %s sweep could not be recorded: %s",
            pk,
            source,
            failure_text(again),
        )


def _tally(result: SweepResult, outcomes: Iterable[Any]) -> SweepResult:
    """Count a batch's outcomes: an exception is a failed session (logged and recorded already by
    the refresh or ``_isolated``), a session that vanished meanwhile nothing, anything else an
    answer."""
    for outcome in outcomes:
        if isinstance(outcome, VerificationSession.DoesNotExist):
            continue
        if isinstance(outcome, Exception):
            result.failed += 1
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
    (``POLL_CONCURRENCY`` provider calls at once; database writes serialised where the database
    takes one writer at a time), or by handing each id to ``dispatch`` (a Celery task's ``delay``).

    A session's failure is its own: logged, recorded, counted in ``failed``; its claim then lapses
    (``POLL_CLAIM_SECONDS``) and a later sweep polls it again. The rest of the sweep goes on.
    """
    now = now or timezone.now()  # fixed for the whole sweep: a session polled now is not due again in it
    concurrency = concurrency or int(conf.get("POLL_CONCURRENCY"))
    batch_size = int(conf.get("POLL_BATCH_SIZE"))
    turns = _SweepTurns(concurrency)
    poll = _isolated(
        partial(_refresh, source=VerificationEvent.Source.POLL, provider_slot=turns.provider_call),
        turns,
        source=VerificationEvent.Source.POLL,
    )
    result = SweepResult()
    for _ in range(max_batches):
        with turns.database:
            claimed = claim_due_sessions(now=now, limit=batch_size)
        result.found += len(claimed)
        if dispatch is not None:
            for session in claimed:
                try:
                    dispatch(session.pk)
                except Exception as exc:  # a broker hiccup: this session's claim lapses, the others go
                    with turns.database:
                        _record_failure(session, exc, source=VerificationEvent.Source.POLL)
                    result.failed += 1
                else:
                    result.processed += 1
        else:
            _tally(result, run_concurrently(claimed, poll, concurrency=_sweep_threads(concurrency)))
        if len(claimed) < batch_size:
            break
    return result


def poll_due_sessions(*, now: datetime | None = None) -> int:
    """Refresh the sessions due for a poll; returns how many were answered by their provider."""
    return run_poll_sweep(now=now).processed


def _last_check(pk: Any, *, provider_slot: AbstractContextManager[Any] | None = None) -> bool:
    """One last status check of an overdue session: True when the provider's answer made it EXPIRED
    (the sweep counts it as expired), False for any other answer, or when it finished meanwhile."""
    session = VerificationSession.objects.get(pk=pk)
    if session.is_final:
        return False  # not this check's doing
    checked = _refresh(session, source=VerificationEvent.Source.EXPIRY, provider_slot=provider_slot)
    return checked.status == Status.EXPIRED


def run_expiry_sweep(
    *, now: datetime | None = None, last_check: bool | None = None, concurrency: int | None = None
) -> SweepResult:
    """Expire open sessions past ``expires_at`` + ``EXPIRY_GRACE``, batch by batch.

    Batches come in (``expires_at``, id) order by keyset pagination: each is the next
    ``EXPIRY_BATCH_SIZE`` overdue rows after the last (``expires_at``, id) of the batch before, read
    from the overdue index. A batch costs the same however large the backlog, and no query carries
    the ids already seen. A session a batch leaves open (its last check finished or extended it,
    or it failed) is behind the cursor: this sweep does not take it up again, the next one may.

    Sessions of pollable providers first get one last status check (``EXPIRY_LAST_CHECK``), up to
    ``concurrency`` provider calls at once: they may have finished without our hearing, or the
    provider may have extended them. The rest of a batch is expired in one transaction with a
    constant number of queries: bulk ``update()`` and ``bulk_create()``, so no ``pre_save`` or
    ``post_save`` for these rows; each session still gets its own events and ``verification_finished``.

    A session's failure is isolated: logged, recorded, counted once in ``failed``. A session whose
    last check failed is expired all the same. A batch whose transaction fails is expired again one
    session at a time: only the sessions that fail by themselves stay open.

    ``processed``: how many became EXPIRED, those whose last check's answer was EXPIRED included. A
    session another writer expired while its last check was in flight (a second sweep racing this
    one) may be counted by both.
    """
    now = now or timezone.now()
    last_check = conf.get("EXPIRY_LAST_CHECK") if last_check is None else last_check
    concurrency = concurrency or int(conf.get("POLL_CONCURRENCY"))
    batch_size = int(conf.get("EXPIRY_BATCH_SIZE"))
    cutoff = now - timedelta(seconds=int(conf.get("EXPIRY_GRACE")))
    overdue = VerificationSession.objects.filter(
        status__in=VerificationSession.OPEN_STATUSES, expires_at__lt=cutoff
    ).order_by("expires_at", "pk")
    pollable = set(_pollable_aliases()) if last_check else set()
    turns = _SweepTurns(concurrency)
    check = _isolated(
        partial(_last_check, provider_slot=turns.provider_call), turns, source=VerificationEvent.Source.EXPIRY
    )

    def keyed_check(pk: Any) -> tuple[Any, Any]:
        return pk, check(pk)  # threads finish in any order

    result = SweepResult()
    page = overdue
    while True:
        batch = list(page.values_list("pk", "provider", "expires_at")[:batch_size])
        if not batch:
            break
        result.found += len(batch)
        failed: set[Any] = set()
        to_check = [pk for pk, provider, _ in batch if provider in pollable]
        for pk, outcome in run_concurrently(to_check, keyed_check, concurrency=_sweep_threads(concurrency)):
            if outcome is True:
                result.processed += 1  # the provider's own EXPIRED, applied by the check
            elif isinstance(outcome, Exception) and not isinstance(outcome, VerificationSession.DoesNotExist):
                failed.add(pk)  # said nothing: the session is expired all the same
        with turns.database:
            result.processed += _expire([pk for pk, _, _ in batch], cutoff=cutoff, now=now, failed=failed)
        result.failed += len(failed)
        if len(batch) < batch_size:
            break
        last_expiry, last_pk = batch[-1][2], batch[-1][0]
        # The rows after (last_expiry, last_pk): ``>=`` on the indexed column bounds the index scan,
        # the OR breaks ties by id. (A row-value comparison, ``(a, b) > (x, y)``, is not portable.)
        page = overdue.filter(Q(expires_at__gt=last_expiry) | Q(pk__gt=last_pk), expires_at__gte=last_expiry)
    return result


def _expire(ids: list[Any], *, cutoff: datetime, now: datetime, failed: set[Any]) -> int:
    """``_expire_batch(ids)``; when the batch's transaction fails, again one session at a time, so
    that only the sessions that fail by themselves stay open (added to ``failed``, each logged and
    recorded). Returns how many became EXPIRED."""
    try:
        return _expire_batch(ids, cutoff=cutoff, now=now)
    except Exception as exc:
        if len(ids) == 1:
            _record_failure(ids[0], exc, source=VerificationEvent.Source.EXPIRY)
            failed.add(ids[0])
            return 0
        logger.exception("expiry sweep: a batch of %d sessions failed; expiring them one at a time", len(ids))
    expired = 0
    for pk in ids:
        try:
            expired += _expire_batch([pk], cutoff=cutoff, now=now)
        except Exception as exc:
            _record_failure(pk, exc, source=VerificationEvent.Source.EXPIRY)
            failed.add(pk)
    return expired


def _expire_batch(ids: list[Any], *, cutoff: datetime, now: datetime) -> int:
    """Expire, in one transaction, those of ``ids`` still open and overdue (a last check may have
    finished or extended some). Constant query count: lock, update, insert events."""
    with transaction.atomic():
        take_write_lock()  # reads, then writes: on SQLite the write lock must come first
        # Locked by primary key alone, the rest checked here: with a condition on status or expiry
        # in the query, planners scan the overdue index (every overdue row, each batch) and filter
        # the ids out of it. No ORDER BY: the model's default ordering would be a sort for nothing.
        locked = _locking(VerificationSession.objects.filter(pk__in=ids).order_by())
        sessions = [
            session
            for session in locked
            if session.status in VerificationSession.OPEN_STATUSES
            and session.expires_at is not None
            and session.expires_at < cutoff
        ]
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
    """Expire overdue sessions; returns how many became EXPIRED in the sweep (those whose last
    status check found them EXPIRED at the provider included)."""
    return run_expiry_sweep(now=now).processed


@dataclass
class PurgeResult:
    """What one retention run scrubbed: finished sessions (their sensitive result parts, and the
    bodies and headers of their events), and inbound requests kept without a session or never
    authenticated (their bodies and headers)."""

    sessions: int = 0
    inbound_events: int = 0

    def __str__(self) -> str:
        return (
            f"{self.sessions} sessions scrubbed, "
            f"{self.inbound_events} unmatched or unauthenticated requests scrubbed"
        )


def run_purge(*, now: datetime | None = None) -> PurgeResult:
    """Retention: everything ``RETENTION_DAYS`` old that may identify someone, in bounded batches
    (``PURGE_BATCH_SIZE``: id lists of at most that many, one short transaction per session).

    - Sessions finished before the cutoff: ``SENSITIVE_RESULT_KEYS`` (and what the provider calls
      sensitive) leave the result; their events lose raw bodies and headers. Status, decision,
      per-check scores and timestamps stay for audit. Each is recorded (a ``purged`` event).
    - Callbacks and webhooks received before the cutoff that matched no session, or were never
      authenticated (refused, malformed, or never judged): their bodies and headers are scrubbed
      too. The rows stay — kind, time, remote address, verdict and error are the audit trail of
      what was refused, and the trail is append-only — but nothing a stranger sent is kept longer
      than what a verified session keeps. One ``purged`` event without a session records each run
      that looked at such requests, with the cutoff it reached, so the next run starts there
      instead of reading the whole history again.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=conf.guarded("RETENTION_DAYS"))
    batch = conf.guarded("PURGE_BATCH_SIZE")
    return PurgeResult(
        sessions=_purge_sessions(cutoff=cutoff, now=now, batch=batch),
        inbound_events=_scrub_inbound(cutoff=cutoff, batch=batch),
    )


def purge_expired_data(*, now: datetime | None = None) -> int:
    """Run the retention purge (``run_purge``); returns how many *sessions* were scrubbed, as it
    always has — ``run_purge().inbound_events`` counts the scrubbed inbound requests."""
    return run_purge(now=now).sessions


def _purge_sessions(*, cutoff: datetime, now: datetime, batch: int) -> int:
    """Purge the due sessions page by page, keyset-paginated on ``(finished_at, pk)`` — a session
    whose purge fails stays due, and must not be fetched again in the same run. One session's
    failure is logged and recorded on it (``_record_failure``); the others are purged all the same."""
    due = VerificationSession.objects.filter(finished_at__lt=cutoff, purged_at__isnull=True)
    due = due.order_by("finished_at", "pk")
    purged = 0
    after: tuple[datetime, Any] | None = None
    while True:
        page = due
        if after is not None:
            page = page.filter(Q(finished_at__gt=after[0]) | Q(finished_at=after[0], pk__gt=after[1]))
        rows = list(page.values_list("finished_at", "pk")[:batch])
        for _finished_at, pk in rows:
            try:
                purged += _purge_session(pk, now=now)
            except Exception as exc:  # one bad session never stops a sweep
                _record_failure(pk, exc, source=VerificationEvent.Source.SYSTEM)  # the retention sweep
        if len(rows) < batch:
            return purged
        after = rows[-1]


def _purge_session(pk: Any, *, now: datetime) -> bool:
    with transaction.atomic():
        try:
            locked = _lock(pk)
        except VerificationSession.DoesNotExist:
            return False
        if locked.purged_at is not None:
            return False
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
    return True


INBOUND_KINDS = (Kind.CALLBACK, Kind.WEBHOOK)


def _scrub_inbound(*, cutoff: datetime, batch: int) -> int:
    """Scrub the bodies and headers of inbound requests older than ``cutoff`` that matched no
    session or were never authenticated; returns how many. Pages of at most ``batch`` ids, in
    ``created_at`` order (the ``vl_event_kind`` index), from where the last run stopped."""
    since = _inbound_scrubbed_before()
    if since is not None and since >= cutoff:
        return 0
    in_range = VerificationEvent.objects.filter(kind__in=INBOUND_KINDS, created_at__lt=cutoff)
    if since is not None:
        in_range = in_range.filter(created_at__gte=since)
    if not in_range.exists():
        return 0
    due = (
        in_range.filter(Q(session__isnull=True) | ~Q(valid=True))
        .exclude(body="", headers={})
        .order_by("created_at", "pk")
    )
    scrubbed = 0
    after: tuple[datetime, Any] | None = None
    while True:
        page = due
        if after is not None:  # keyset: the next page starts after the last row, not by rescanning
            page = due.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], pk__gt=after[1]))
        rows = list(page.values_list("pk", "created_at")[:batch])
        if rows:
            scrubbed += VerificationEvent.objects.filter(pk__in=[pk for pk, _ in rows]).update(
                body="", headers={}, body_truncated=False
            )
            after = (rows[-1][1], rows[-1][0])
        if len(rows) < batch:
            break
    VerificationEvent.objects.create(
        session=None,
        kind=Kind.PURGED,
        source=VerificationEvent.Source.SYSTEM,
        applied=True,
        processed=True,
        data={"inbound_before": cutoff.isoformat(), "inbound_events": scrubbed},
    )
    return scrubbed


def _inbound_scrubbed_before() -> datetime | None:
    """The cutoff the last scrub of inbound requests reached (everything older is scrubbed)."""
    data = (
        VerificationEvent.objects.filter(kind=Kind.PURGED, session__isnull=True)
        .order_by("-created_at", "-pk")
        .values_list("data", flat=True)
        .first()
    )
    value = data.get("inbound_before") if isinstance(data, dict) else None
    return parse_datetime(value) if isinstance(value, str) else None
