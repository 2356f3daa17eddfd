"""The sweeps: claiming due sessions and polling them, expiring overdue ones — batch by batch, on a
bounded thread pool, one session's failure confined to it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .. import conf, logfields, metrics
from ..exceptions import ConfigurationError, ProviderError
from ..logsafe import failure_text
from ..models import VerificationEvent, VerificationSession
from ..providers import load_backend
from .common import PROVIDER_WORDS, Kind, SessionRef, _pk, logger, take_write_lock
from .reports import (
    UnchangedAnswer,
    _poll_for_sweep,
    _record_unchanged,
    apply_report,
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


@dataclass
class SweepBatch:
    """One batch of a sweep as it finished, for a progress report (a sweep's ``on_batch``).

    ``number`` counts from 1; ``outcomes`` holds ``(session id, outcome)`` for each session of the
    batch, the outcome a word or two (``"DONE"``, ``"unchanged"``, ``"expired"``,
    ``"failed: ProviderError"``) — never a link, a token or an error's text; ``result`` is the
    sweep's counts so far (a copy; ``found`` counts the batches finished). Made from what the batch
    holds already: reporting costs no query.
    """

    number: int
    outcomes: list[tuple[Any, str]]
    result: SweepResult


#: A sweep's progress callback: called in the sweep's own thread after each batch.
OnBatch = Callable[[SweepBatch], None]


def _failure_word(exc: BaseException) -> str:
    return f"failed: {type(exc).__name__}"  # the type only: an error's text can quote a row or a URL


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

    return logfields.per_session(run, source=source)  # each session's log lines name it


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


@metrics.timed_sweep("poll")
@logfields.in_context(source="poll")
def run_poll_sweep(
    *,
    now: datetime | None = None,
    concurrency: int | None = None,
    dispatch: Callable[[Any], Any] | None = None,
    max_batches: int = 100,
    on_batch: OnBatch | None = None,
) -> SweepResult:
    """Claim due sessions batch by batch and refresh them: on a bounded thread pool
    (``POLL_CONCURRENCY`` provider calls at once; database writes serialised where the database
    takes one writer at a time), or by handing each id to ``dispatch`` (a Celery task's ``delay``).

    A session's failure is its own: logged, recorded, counted in ``failed``; its claim then lapses
    (``POLL_CLAIM_SECONDS``) and a later sweep polls it again. The rest of the sweep goes on.

    On the pool, the next batch is claimed while the current one is polled (one pool of threads
    for the whole sweep): a claim waits at most two batches' polls, well inside its lease.

    ``on_batch``: called with a ``SweepBatch`` after each batch (progress reports).
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
    reported = 0  # sessions of the batches finished: ``found`` already counts the one claimed ahead

    def claim() -> list[VerificationSession]:
        with turns.database:
            claimed = claim_due_sessions(now=now, limit=batch_size)
        result.found += len(claimed)
        return claimed

    def report(number: int, outcomes: list[tuple[Any, str]]) -> None:
        nonlocal reported
        reported += len(outcomes)
        if on_batch is not None and outcomes:  # the empty claim that ends a sweep is no batch
            on_batch(SweepBatch(number, outcomes, SweepResult(reported, result.processed, result.failed)))

    def keyed_poll(session: VerificationSession) -> tuple[Any, Any]:
        return session.pk, poll(session)  # threads finish in any order

    if dispatch is not None:
        for number in range(1, max_batches + 1):
            claimed = claim()
            dispatched: list[tuple[Any, str]] = []
            for session in claimed:
                try:
                    dispatch(session.pk)
                except Exception as exc:  # a broker hiccup: this session's claim lapses, the others go
                    with turns.database:
                        _record_failure(session, exc, source=VerificationEvent.Source.POLL)
                    result.failed += 1
                    dispatched.append((session.pk, _failure_word(exc)))
                else:
                    result.processed += 1
                    dispatched.append((session.pk, "dispatched"))
            report(number, dispatched)
            if len(claimed) < batch_size:
                break
        return result
    with SweepPool(_sweep_threads(concurrency)) as pool:
        claimed = claim()
        polls = pool.submit(claimed, keyed_poll)
        for batches in range(1, max_batches + 1):
            # The next batch is claimed while this one is polled: the provider never waits for a claim.
            more = len(claimed) == batch_size and batches < max_batches
            try:
                claimed = claim() if more else []
            finally:  # a failed claim (the database) still leaves this batch's answers written
                keyed = polls.wait()
                outcomes = [outcome for _, outcome in keyed]
                _tally(result, outcomes)
                with turns.database:
                    unchanged = [outcome for outcome in outcomes if isinstance(outcome, UnchangedAnswer)]
                    failed_writes = _write_unchanged(unchanged, result)
            report(batches, [(pk, _poll_word(pk, outcome, failed_writes)) for pk, outcome in keyed])
            following = pool.submit(claimed, keyed_poll)
            if not more:
                break
            polls = following
    return result


def _poll_word(pk: Any, outcome: Any, failed_writes: dict[Any, Exception]) -> str:
    """What became of one session of a poll batch, for ``SweepBatch.outcomes``."""
    if pk in failed_writes:
        return _failure_word(failed_writes[pk])
    if isinstance(outcome, VerificationSession.DoesNotExist):
        return "gone"
    if isinstance(outcome, BaseException):
        return _failure_word(outcome)
    if isinstance(outcome, UnchangedAnswer):
        return "unchanged"
    return str(getattr(outcome, "status", "answered"))


def _write_unchanged(answers: list[UnchangedAnswer], result: SweepResult) -> dict[Any, Exception]:
    """The bookkeeping of a batch's answers that brought nothing new, written at once
    (``record_unchanged_answers``); a session that changed meanwhile gets its answer applied to the
    row as it is now. When the batch's write fails, one session at a time: only the sessions that
    fail by themselves are failed (logged, recorded, counted; their claims lapse). Returns those,
    by session id, with their errors."""
    failures: dict[Any, Exception] = {}
    if not answers:
        return failures
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
            failures[session.pk] = exc
    return failures


def poll_due_sessions(*, now: datetime | None = None) -> int:
    """Refresh the sessions due for a poll; returns how many were answered by their provider."""
    return run_poll_sweep(now=now).processed
