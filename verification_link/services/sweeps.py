"""The sweeps: claiming due sessions and polling them, expiring overdue ones — batch by batch, on a
bounded thread pool, one session's failure confined to it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from .. import conf
from ..exceptions import ConfigurationError, ProviderError
from ..logsafe import failure_text
from ..models import VerificationEvent, VerificationSession
from ..providers import StatusReport, load_backend
from .common import PROVIDER_WORDS, Kind, SessionRef, Status, _move, _pk, logger, take_write_lock
from .reports import (
    UnchangedAnswer,
    _ask_provider,
    _poll_for_sweep,
    _record_unchanged,
    apply_report,
    brings_nothing_new,
    record_unchanged_answers,
)
from .threads import SweepPool, _sweep_threads, _SweepTurns


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


#: What a refresh reads of a session before it locks the row itself (``_refresh``: the provider,
#: the token to ask about, and what an unchanged answer is compared with). The sweeps load only
#: these, a batch at a time: a query per batch instead of one per session.
_REFRESH_FIELDS = (
    *("pk", "provider", "token", "external_id", "status", "next_step", "scopes", "poll_attempts", "expires_at"),
    *PROVIDER_WORDS,
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
        claimed = list(_locking(due.only(*_REFRESH_FIELDS))[:limit])
        if claimed:
            # From the claim's own time, not the sweep's: a claim made late in a long sweep still
            # holds its whole lease.
            lease = max(now, timezone.now()) + timedelta(seconds=int(conf.get("POLL_CLAIM_SECONDS")))
            VerificationSession.objects.filter(pk__in=[s.pk for s in claimed]).update(next_poll_at=lease)
    return claimed


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

    On the pool, the next batch is claimed while the current one is polled (one pool of threads
    for the whole sweep): a claim waits at most two batches' polls, well inside its lease.
    """
    now = now or timezone.now()  # fixed for the whole sweep: a session polled now is not due again in it
    concurrency = concurrency or int(conf.get("POLL_CONCURRENCY"))
    batch_size = int(conf.get("POLL_BATCH_SIZE"))
    turns = _SweepTurns(concurrency)
    poll = _isolated(
        partial(_poll_for_sweep, source=VerificationEvent.Source.POLL, provider_slot=turns.provider_call),
        turns,
        source=VerificationEvent.Source.POLL,
    )
    result = SweepResult()

    def claim() -> list[VerificationSession]:
        with turns.database:
            claimed = claim_due_sessions(now=now, limit=batch_size)
        result.found += len(claimed)
        return claimed

    if dispatch is not None:
        for _ in range(max_batches):
            claimed = claim()
            for session in claimed:
                try:
                    dispatch(session.pk)
                except Exception as exc:  # a broker hiccup: this session's claim lapses, the others go
                    with turns.database:
                        _record_failure(session, exc, source=VerificationEvent.Source.POLL)
                    result.failed += 1
                else:
                    result.processed += 1
            if len(claimed) < batch_size:
                break
        return result
    with SweepPool(_sweep_threads(concurrency)) as pool:
        claimed = claim()
        polls = pool.submit(claimed, poll)
        for batches in range(1, max_batches + 1):
            # The next batch is claimed while this one is polled: the provider never waits for a claim.
            more = len(claimed) == batch_size and batches < max_batches
            try:
                claimed = claim() if more else []
            finally:  # a failed claim (the database) still leaves this batch's answers written
                outcomes = polls.wait()
                _tally(result, outcomes)
                with turns.database:
                    _write_unchanged([outcome for outcome in outcomes if isinstance(outcome, UnchangedAnswer)], result)
            following = pool.submit(claimed, poll)
            if not more:
                break
            polls = following
    return result


def _write_unchanged(answers: list[UnchangedAnswer], result: SweepResult) -> None:
    """The bookkeeping of a batch's answers that brought nothing new, written at once
    (``record_unchanged_answers``); a session that changed meanwhile gets its answer applied to the
    row as it is now. When the batch's write fails, one session at a time: only the sessions that
    fail by themselves are failed (logged, recorded, counted; their claims lapse)."""
    if not answers:
        return
    source = VerificationEvent.Source.POLL
    one_at_a_time = False
    try:
        stale = record_unchanged_answers(answers)
    except Exception:
        logger.exception("poll sweep: the bookkeeping of %d answers failed; writing them one at a time", len(answers))
        stale, one_at_a_time = answers, True
    for answer in stale:
        session, report = answer.session, answer.report
        try:
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                if not (one_at_a_time and _record_unchanged(session, report, source=source, now=timezone.now())):
                    apply_report(session, report, source=source, polled=True)
        except Exception as exc:
            _record_failure(session, exc, source=source)
            result.processed -= 1
            result.failed += 1


def poll_due_sessions(*, now: datetime | None = None) -> int:
    """Refresh the sessions due for a poll; returns how many were answered by their provider."""
    return run_poll_sweep(now=now).processed


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
        while batch:
            outcomes = checks.wait()
            # The next batch's last checks are under way while this one is expired: the provider
            # never waits for our writes.
            following = next_batch(batch) if len(batch) == batch_size else []
            checks = pool.submit(to_check(following), keyed_check)
            _expire_checked(batch, outcomes, result, turns, cutoff=cutoff, now=now)
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
) -> None:
    """Expire one batch of the expiry sweep, its last checks' ``outcomes`` in, and count it."""
    result.found += len(batch)
    failed: set[Any] = set()
    answers: dict[Any, dict[str, Any]] = {}
    for pk, outcome in outcomes:
        if outcome is True:
            result.processed += 1  # the provider's own EXPIRED, applied by the check
        elif isinstance(outcome, StatusReport):
            answers[pk] = outcome.summary()  # still open there, nothing new: written on its expiry
        elif isinstance(outcome, Exception) and not isinstance(outcome, VerificationSession.DoesNotExist):
            failed.add(pk)  # said nothing: the session is expired all the same
    with turns.database:
        expiring = [pk for pk, _, _ in batch]
        result.processed += _expire(expiring, cutoff=cutoff, now=now, failed=failed, answers=answers)
    result.failed += len(failed)


def _expire(
    ids: list[Any], *, cutoff: datetime, now: datetime, failed: set[Any], answers: dict[Any, dict[str, Any]]
) -> int:
    """``_expire_batch(ids)``; when the batch's transaction fails, again one session at a time, so
    that only the sessions that fail by themselves stay open (added to ``failed``, each logged and
    recorded). Returns how many became EXPIRED."""
    try:
        return _expire_batch(ids, cutoff=cutoff, now=now, answers=answers)
    except Exception as exc:
        if len(ids) == 1:
            _record_failure(ids[0], exc, source=VerificationEvent.Source.EXPIRY)
            failed.add(ids[0])
            return 0
        logger.exception("expiry sweep: a batch of %d sessions failed; expiring them one at a time", len(ids))
    expired = 0
    for pk in ids:
        try:
            expired += _expire_batch([pk], cutoff=cutoff, now=now, answers=answers)
        except Exception as exc:
            _record_failure(pk, exc, source=VerificationEvent.Source.EXPIRY)
            failed.add(pk)
    return expired


def _expire_batch(
    ids: list[Any], *, cutoff: datetime, now: datetime, answers: dict[Any, dict[str, Any]] | None = None
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
    return len(sessions)


def expire_sessions(*, now: datetime | None = None) -> int:
    """Expire overdue sessions; returns how many became EXPIRED in the sweep (those whose last
    status check found them EXPIRED at the provider included)."""
    return run_expiry_sweep(now=now).processed
