"""The expiry sweep: open sessions past their expiry (and ``EXPIRY_GRACE``) get one last status check
where their provider can be asked, then become EXPIRED batch by batch — a bulk ``update()`` of the
rows still open and one ``expired`` event each (``bulk_create``), one session's failure confined to it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .. import conf, logfields, metrics
from ..models import VerificationEvent, VerificationSession
from ..providers import StatusReport
from .common import Kind, Status, _move, logger, take_write_lock
from .reports import (
    _ask_provider,
    apply_report,
    brings_nothing_new,
)
from .sweeps import (
    _REFRESH_FIELDS,
    OnBatch,
    SweepBatch,
    SweepResult,
    _failure_word,
    _isolated,
    _locking,
    _pollable_aliases,
    _record_failure,
)
from .threads import SweepPool, _sweep_threads, _SweepTurns


def _last_check(
    session: VerificationSession, *, provider_slot: AbstractContextManager[Any] | None = None
) -> bool | StatusReport:
    """One last status check of an overdue session (loaded with ``_REFRESH_FIELDS``).

    An answer that brings nothing new (the open status we hold) is returned, nothing written: the
    session is expired in its batch right after, the answer on its ``expired`` event; recording it
    first, to overwrite that in the same sweep, was a statement per session for nothing. Any other
    answer is applied to the row as it is now, locked: True when it made the session EXPIRED (the
    sweep counts it as expired), False otherwise, or when the session finished meanwhile."""
    if session.is_final:
        return False  # not this check's doing
    report = _ask_provider(
        session, source=VerificationEvent.Source.EXPIRY, now=timezone.now(), provider_slot=provider_slot
    )
    if brings_nothing_new(session, report):
        return report
    checked = apply_report(session, report, source=VerificationEvent.Source.EXPIRY, polled=True)
    return checked.status == Status.EXPIRED


def overdue_sessions(*, now: datetime | None = None) -> Any:
    """The open sessions the expiry sweep would take up now (past ``expires_at`` +
    ``EXPIRY_GRACE``), in its order: a queryset, nothing changed — for a dry run or a backlog."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=int(conf.get("EXPIRY_GRACE")))
    return VerificationSession.objects.filter(
        status__in=VerificationSession.OPEN_STATUSES, expires_at__lt=cutoff
    ).order_by("expires_at", "pk")


@metrics.timed_sweep("expiry")
@logfields.in_context(source="expiry")
def run_expiry_sweep(
    *,
    now: datetime | None = None,
    last_check: bool | None = None,
    concurrency: int | None = None,
    on_batch: OnBatch | None = None,
) -> SweepResult:
    """Expire open sessions past ``expires_at`` + ``EXPIRY_GRACE``, batch by batch.

    Batches come in (``expires_at``, id) order by keyset pagination: each is the next
    ``EXPIRY_BATCH_SIZE`` overdue rows after the last (``expires_at``, id) of the batch before, read
    from the overdue index. A batch costs the same however large the backlog, and no query carries
    the ids already seen. A session a batch leaves open (its last check finished or extended it,
    or it failed) is behind the cursor: this sweep does not take it up again, the next one may.

    Sessions of pollable providers first get one last status check (``EXPIRY_LAST_CHECK``), up to
    ``concurrency`` provider calls at once, the batch's sessions to check loaded in one query: they
    may have finished without our hearing, or the provider may have extended them. The rest of a
    batch is expired in one transaction with a constant number of queries: bulk ``update()`` and
    ``bulk_create()``, so no ``pre_save`` or ``post_save`` for these rows; each session still gets
    its own events and ``verification_finished``. One pool of threads serves the whole sweep: the
    next batch's last checks are under way while a batch is expired.

    A session's failure is isolated: logged, recorded, counted once in ``failed``. A session whose
    last check failed is expired all the same. A batch whose transaction fails is expired again one
    session at a time: only the sessions that fail by themselves stay open.

    ``processed``: how many became EXPIRED, those whose last check's answer was EXPIRED included. A
    session another writer expired while its last check was in flight (a second sweep racing this
    one) may be counted by both.

    ``on_batch``: called with a ``SweepBatch`` after each batch (progress reports).
    """
    now = now or timezone.now()
    last_check = conf.get("EXPIRY_LAST_CHECK") if last_check is None else last_check
    concurrency = concurrency or int(conf.get("POLL_CONCURRENCY"))
    batch_size = int(conf.get("EXPIRY_BATCH_SIZE"))
    cutoff = now - timedelta(seconds=int(conf.get("EXPIRY_GRACE")))
    overdue = overdue_sessions(now=now)
    pollable = set(_pollable_aliases()) if last_check else set()
    turns = _SweepTurns(concurrency)
    check = _isolated(
        partial(_last_check, provider_slot=turns.provider_call), turns, source=VerificationEvent.Source.EXPIRY
    )

    def keyed_check(session: VerificationSession) -> tuple[Any, Any]:
        return session.pk, check(session)  # threads finish in any order

    def to_check(batch: list[tuple[Any, str, datetime]]) -> list[VerificationSession]:
        pks = [pk for pk, provider, _ in batch if provider in pollable]
        if not pks:
            return []
        # One query for the batch's sessions to check, not one each, taken up in the batch's order;
        # a session gone meanwhile is simply not among them.
        with turns.database:
            loaded = list(VerificationSession.objects.filter(pk__in=pks).order_by().only(*_REFRESH_FIELDS))
        by_pk = {session.pk: session for session in loaded}
        return [by_pk[pk] for pk in pks if pk in by_pk]

    def next_batch(after: list[tuple[Any, str, datetime]] | None) -> list[tuple[Any, str, datetime]]:
        page = overdue
        if after:
            last_expiry, last_pk = after[-1][2], after[-1][0]
            # The rows after (last_expiry, last_pk): ``>=`` on the indexed column bounds the index
            # scan, the OR breaks ties by id. (A row-value comparison, ``(a, b) > (x, y)``, is not
            # portable.)
            page = overdue.filter(Q(expires_at__gt=last_expiry) | Q(pk__gt=last_pk), expires_at__gte=last_expiry)
        with turns.database:
            return list(page.values_list("pk", "provider", "expires_at")[:batch_size])

    result = SweepResult()
    with SweepPool(_sweep_threads(concurrency)) as pool:
        batch = next_batch(None)
        checks = pool.submit(to_check(batch), keyed_check)
        number = 0
        while batch:
            outcomes = checks.wait()
            # The next batch's last checks are under way while this one is expired: the provider
            # never waits for our writes.
            following = next_batch(batch) if len(batch) == batch_size else []
            checks = pool.submit(to_check(following), keyed_check)
            words = _expire_checked(batch, outcomes, result, turns, cutoff=cutoff, now=now)
            number += 1
            if on_batch is not None:
                on_batch(SweepBatch(number, words, SweepResult(result.found, result.processed, result.failed)))
            batch = following
    return result


def _expire_checked(
    batch: list[tuple[Any, str, datetime]],
    outcomes: list[tuple[Any, Any]],
    result: SweepResult,
    turns: _SweepTurns,
    *,
    cutoff: datetime,
    now: datetime,
) -> list[tuple[Any, str]]:
    """Expire one batch of the expiry sweep, its last checks' ``outcomes`` in, and count it.
    Returns what became of each of its sessions (``SweepBatch.outcomes``)."""
    result.found += len(batch)
    failed: set[Any] = set()
    answers: dict[Any, dict[str, Any]] = {}
    checked: dict[Any, str] = {}
    for pk, outcome in outcomes:
        if outcome is True:
            result.processed += 1  # the provider's own EXPIRED, applied by the check
            checked[pk] = "expired by the provider"
        elif isinstance(outcome, StatusReport):
            answers[pk] = outcome.summary()  # still open there, nothing new: written on its expiry
        elif isinstance(outcome, Exception) and not isinstance(outcome, VerificationSession.DoesNotExist):
            failed.add(pk)  # said nothing: the session is expired all the same
            checked[pk] = f"last check {_failure_word(outcome)}"
    expired: set[Any] = set()
    with turns.database:
        expiring = [pk for pk, _, _ in batch]
        result.processed += _expire(expiring, cutoff=cutoff, now=now, failed=failed, answers=answers, expired=expired)
    result.failed += len(failed)
    return [(pk, _expiry_word(pk, checked.get(pk), expired, failed)) for pk in expiring]


def _expiry_word(pk: Any, checked: str | None, expired: set[Any], failed: set[Any]) -> str:
    if pk in expired:
        return f"expired; {checked}" if checked else "expired"
    if checked:
        return checked
    return "failed" if pk in failed else "left open"  # finished or extended meanwhile


def _expire(
    ids: list[Any],
    *,
    cutoff: datetime,
    now: datetime,
    failed: set[Any],
    answers: dict[Any, dict[str, Any]],
    expired: set[Any] | None = None,
) -> int:
    """``_expire_batch(ids)``; when the batch's transaction fails, again one session at a time, so
    that only the sessions that fail by themselves stay open (added to ``failed``, each logged and
    recorded). Returns how many became EXPIRED (their ids added to ``expired``)."""
    try:
        return _expire_batch(ids, cutoff=cutoff, now=now, answers=answers, expired=expired)
    except Exception as exc:
        if len(ids) == 1:
            _record_failure(ids[0], exc, source=VerificationEvent.Source.EXPIRY)
            failed.add(ids[0])
            return 0
        logger.exception("expiry sweep: a batch of %d sessions failed; expiring them one at a time", len(ids))
    count = 0
    for pk in ids:
        try:
            count += _expire_batch([pk], cutoff=cutoff, now=now, answers=answers, expired=expired)
        except Exception as exc:
            _record_failure(pk, exc, source=VerificationEvent.Source.EXPIRY)
            failed.add(pk)
    return count


def _expire_batch(
    ids: list[Any],
    *,
    cutoff: datetime,
    now: datetime,
    answers: dict[Any, dict[str, Any]] | None = None,
    expired: set[Any] | None = None,
) -> int:
    """Expire, in one transaction, those of ``ids`` still open and overdue (a last check may have
    finished or extended some). Constant query count: lock, update, insert events. ``answers``: the
    last checks' answers that changed nothing, by session id, each kept on that session's
    ``expired`` event (``data["last_check"]``)."""
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
            moved = _move(session, Status.EXPIRED, source=VerificationEvent.Source.EXPIRY, now=now, kind=Kind.EXPIRED)
            if answers and session.pk in answers:
                moved[0].data = {**moved[0].data, "last_check": answers[session.pk]}
            events += moved
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
    if expired is not None:
        expired.update(session.pk for session in sessions)  # after the transaction: only now are they expired
    return len(sessions)


def expire_sessions(*, now: datetime | None = None) -> int:
    """Expire overdue sessions; returns how many became EXPIRED in the sweep (those whose last
    status check found them EXPIRED at the provider included)."""
    return run_expiry_sweep(now=now).processed
