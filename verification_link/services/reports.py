"""Applying what the provider says: authenticated status reports, refreshes, and the cheap paths
of an answer that changes nothing (compare-and-set, a callback's confirmation)."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ..exceptions import ProviderError
from ..models import VerificationEvent, VerificationSession
from ..providers import StatusReport, get_provider
from .common import (
    Kind,
    SessionRef,
    _insert_parts,
    _is_user,
    _lock,
    _params,
    _schedule_next_poll,
    _transition,
    judge_inbound,
    logger,
    poll_interval,
)


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
