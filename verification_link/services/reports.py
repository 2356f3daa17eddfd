"""Applying what the provider says: authenticated status reports, refreshes, and the cheap paths
of an answer that changes nothing (compare-and-set, a callback's confirmation)."""

from __future__ import annotations

from collections import defaultdict
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import logfields
from ..exceptions import ProviderError
from ..models import VerificationEvent, VerificationSession
from ..providers import StatusReport, get_provider
from .common import (
    PROVIDER_WORDS,
    Kind,
    SessionRef,
    _is_user,
    _lock,
    _schedule_next_poll,
    _transition,
    judge_inbound,
    logger,
    poll_interval,
    provider_words_differ,
    take_provider_words,
)


@logfields.about_session()  # its log lines name the session and the report's source
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
    report answers, marked processed with the answer written on it, in the same transaction
    (processed exactly when the answer is durable).

    Records the report — as an event of its own, or on ``confirms`` — whether or not it is applied.
    Returns the updated session.
    """
    now = now or timezone.now()
    actor = by if _is_user(by) else None
    with transaction.atomic():
        locked = _lock(session)
        if polled:
            locked.last_polled_at = now
        old_status = locked.status
        moves_forward = (
            not locked.is_final
            and report.status in VerificationSession.STATUS_RANK
            and VerificationSession.STATUS_RANK[report.status] > VerificationSession.STATUS_RANK[old_status]
        )
        _record_answer(locked, report, confirms, kind=kind, source=source, applied=moves_forward, actor=actor)
        if moves_forward:
            also = ("last_polled_at",) if polled else ()
            _transition(locked, report.status, source=source, now=now, report=report, actor=actor, also=also)
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
            if report.status == old_status:
                # Same status, new words (Persona "needs_review", Veriff "resubmission_requested"):
                # kept for staff and the policy; an older status says nothing new.
                fields.extend(take_provider_words(locked, report))
            # A callback says the provider is moving: its answer restarts the back-off.
            _schedule_next_poll(locked, now, moved=confirms is not None)
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


@logfields.about_session()  # a refresh from anywhere: a task, the API, the admin, a callback
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
    its recorded request as ``confirms``, marked processed with the answer written on it."""
    current = session if isinstance(session, VerificationSession) else VerificationSession.objects.get(pk=session)
    if current.is_final or not get_provider(current.provider).pollable:
        return current
    now = timezone.now()
    report = _ask_provider(current, source=source, now=now, timeout=timeout, provider_slot=provider_slot)
    if confirms is not None and _record_unchanged_confirmation(current, report, confirms, now=now):
        return current
    if by is None and _record_unchanged(current, report, source=source, now=now, confirms=confirms):
        return current
    return apply_report(current, report, source=source, now=now, polled=True, by=by, confirms=confirms)


@dataclass(frozen=True)
class UnchangedAnswer:
    """A sweep's poll answer that brings nothing new (``brings_nothing_new``), its bookkeeping not
    written yet: the sweep writes a whole batch's at once (``record_unchanged_answers``)."""

    session: VerificationSession
    report: StatusReport


def _poll_for_sweep(
    session: VerificationSession, *, source: str, provider_slot: AbstractContextManager[Any] | None = None
) -> VerificationSession | UnchangedAnswer:
    """``_refresh`` of a claimed session, for a sweep: the commonest answer, the open status we
    hold, is returned as an ``UnchangedAnswer`` and nothing written; any other is applied."""
    if session.is_final or not get_provider(session.provider).pollable:
        return session
    now = timezone.now()
    report = _ask_provider(session, source=source, now=now, provider_slot=provider_slot)
    if "poll_attempts" not in session.get_deferred_fields() and brings_nothing_new(session, report):
        return UnchangedAnswer(session, report)
    return apply_report(session, report, source=source, now=now, polled=True)


def record_unchanged_answers(answers: list[UnchangedAnswer]) -> list[UnchangedAnswer]:
    """Write the poll bookkeeping (``last_polled_at``, ``poll_attempts``, ``next_poll_at``) of a
    batch's answers that brought nothing new: one compare-and-set UPDATE per (status, attempts)
    group of them — a statement per batch where ``_record_unchanged`` takes one per session — in
    one transaction, and a read of the rows it did not write when there are any.

    Returns the answers whose session changed meanwhile (a callback moved it): the caller applies
    each to the row as it is now (``apply_report``), which records it and decides. Raises, writing
    nothing, when the database fails: the caller then writes them one at a time."""
    now = timezone.now()
    groups: dict[tuple[str, int], list[UnchangedAnswer]] = defaultdict(list)
    for answer in answers:
        groups[(answer.session.status, answer.session.poll_attempts)].append(answer)
    stale: list[UnchangedAnswer] = []
    applied: list[tuple[UnchangedAnswer, dict[str, Any]]] = []
    written: set[Any] = set()
    with transaction.atomic():
        for (status, attempts), group in groups.items():
            changes: dict[str, Any] = {
                "poll_attempts": attempts + 1,
                "next_poll_at": now + timedelta(seconds=poll_interval(attempts + 1)),
                "last_polled_at": now,
                "updated_at": now,
            }
            pks = [answer.session.pk for answer in group]
            unchanged = VerificationSession.objects.filter(pk__in=pks, status=status, poll_attempts=attempts)
            if unchanged.update(**changes) == len(pks):
                written.update(pks)
            else:
                # Our UPDATE holds the rows it wrote until commit: those are the ones with our changes.
                written.update(VerificationSession.objects.filter(pk__in=pks, **changes).values_list("pk", flat=True))
            applied += [(answer, changes) for answer in group if answer.session.pk in written]
            stale += [answer for answer in group if answer.session.pk not in written]
    # Only once committed: a later group's failure rolls back every group, and the objects must
    # still say what the rows say for the one-at-a-time retry's compare-and-set.
    for answer, changes in applied:
        for field, value in changes.items():
            setattr(answer.session, field, value)
    return stale


def _ask_provider(
    session: VerificationSession,
    *,
    source: str,
    now: datetime,
    timeout: float | None = None,
    provider_slot: AbstractContextManager[Any] | None = None,
) -> StatusReport:
    """The provider's answer about a pollable, open ``session`` (loaded with at least what
    ``get_status`` reads). A provider error is recorded (``poll_failed``), pushes the next poll
    back, and is re-raised."""
    try:
        with provider_slot or nullcontext():
            return get_provider(session.provider).get_status(session, timeout=timeout)
    except ProviderError as exc:
        with transaction.atomic():
            locked = _lock(session)
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
        logger.warning("verification session %s: refresh failed: %s", session.pk, exc)
        raise


def brings_nothing_new(session: VerificationSession, report: StatusReport) -> bool:
    """Whether ``report`` says only what we hold of the open ``session``: the same status, no
    later expiry or step, the same provider's words. False, too, when a field it must be compared
    with was not loaded."""
    if report.status != session.status or session.is_final:
        return False
    deferred = session.get_deferred_fields()
    if {"expires_at", "next_step", "scopes"} & deferred:
        return False
    if (report.provider_status or report.verdict) and set(PROVIDER_WORDS) & deferred:
        return False
    if report.expires_at is not None and report.expires_at != session.expires_at:
        return False
    return not (_step_advances(session, report.next_step) or provider_words_differ(session, report))


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


def _record_answer(
    session: VerificationSession,
    report: StatusReport,
    confirms: VerificationEvent | None,
    *,
    kind: str,
    source: str,
    applied: bool,
    actor: Any = None,
) -> None:
    """Record a provider's answer about ``session`` (its status as read before the answer): on the
    callback it confirms, with its verdict; as an event of its own when there is no callback, or
    when a run before this one processed it."""
    if confirms is not None and judge_inbound(
        confirms,
        valid=True,
        processed=True,
        answer=report,
        old_status=session.status,
        applied=applied,
        unless_processed=True,
    ):
        return
    _answer_event(session, report, kind=kind, source=source, applied=applied, actor=actor).save(force_insert=True)


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
    hold — marks the callback processed with the answer written on it, and leaves the session row
    alone: the poll schedule is the sweep's business, and rewriting a row with a dozen indexes to
    say "nothing changed" was most of this path's cost. One statement. Returns False, writing
    nothing, when the answer is anything else."""
    if not brings_nothing_new(session, report):
        return False
    # One UPDATE of the callback's own row, atomic by itself; a duplicate run (a Celery retry)
    # finds it processed and writes nothing.
    judge_inbound(confirms, valid=True, processed=True, answer=report, old_status=session.status, unless_processed=True)
    return True


def _record_unchanged(
    session: VerificationSession,
    report: StatusReport,
    *,
    source: str,
    now: datetime,
    confirms: VerificationEvent | None = None,
) -> bool:
    """The commonest poll answer — the open status we already hold — without locking and loading
    the row: one compare-and-set UPDATE (status and attempt count as we read them) of the poll's
    bookkeeping (``last_polled_at``, ``poll_attempts``, ``next_poll_at``). Nothing else is
    written: an answer that changes nothing is no event (the
    session's ``last_polled_at`` and ``poll_attempts`` say when we last asked, and how often since
    the last move); a callback's, ``confirms``, is written on the callback with its verdict, in the
    same transaction. Returns False, changing nothing, when the answer is a move, brings a new
    expiry or step, or the row changed meanwhile; ``apply_report`` then takes the row lock, records
    the answer and decides."""
    if "poll_attempts" in session.get_deferred_fields() or not brings_nothing_new(session, report):
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
    unchanged = VerificationSession.objects.filter(
        pk=session.pk, status=session.status, poll_attempts=session.poll_attempts
    )
    if confirms is None:
        updated = unchanged.update(**changes)  # one statement, atomic by itself
    else:
        with transaction.atomic():
            updated = unchanged.update(**changes)
            if updated:
                _record_answer(session, report, confirms, kind=Kind.POLL, source=source, applied=False)
    if not updated:
        return False
    for field, value in changes.items():
        setattr(session, field, value)
    return True
