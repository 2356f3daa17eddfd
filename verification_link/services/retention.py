"""Retention: scrubbing identity data of finished sessions and of old inbound requests that matched
no session or were never authenticated."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import conf, logfields, metrics
from ..models import VerificationEvent, VerificationSession
from ..results import redact
from .common import Kind, _lock
from .sweeps import OnBatch, SweepBatch, SweepResult, _failure_word, _record_failure


@dataclass
class PurgeResult:
    """What one retention run scrubbed: finished sessions (their sensitive result parts, and the
    bodies and headers of their events), and inbound requests kept without a session or never
    authenticated (their bodies and headers)."""

    sessions: int = 0
    inbound_events: int = 0

    def __str__(self) -> str:
        return (
            f"{self.sessions} sessions scrubbed, {self.inbound_events} unmatched or unauthenticated requests scrubbed"
        )


@metrics.timed_sweep("purge")
@logfields.in_context(source="purge")
def run_purge(*, now: datetime | None = None, on_batch: OnBatch | None = None) -> PurgeResult:
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

    ``on_batch``: called with a ``SweepBatch`` after each page of sessions (progress reports:
    ``processed`` counts the scrubbed, ``failed`` those whose purge failed).
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=conf.guarded("RETENTION_DAYS"))
    batch = conf.guarded("PURGE_BATCH_SIZE")
    return PurgeResult(
        sessions=_purge_sessions(cutoff=cutoff, now=now, batch=batch, on_batch=on_batch),
        inbound_events=_scrub_inbound(cutoff=cutoff, batch=batch),
    )


def count_purge(*, now: datetime | None = None) -> PurgeResult:
    """What ``run_purge`` would scrub now, counted (two or three counting queries); nothing
    changed, nothing recorded — a dry run."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=conf.guarded("RETENTION_DAYS"))
    inbound = _inbound_due(cutoff)
    return PurgeResult(
        sessions=sessions_due_for_purge(now=now).count(), inbound_events=0 if inbound is None else inbound.count()
    )


def sessions_due_for_purge(*, now: datetime | None = None) -> Any:
    """The finished sessions ``run_purge`` would scrub now, in its order: a queryset."""
    now = now or timezone.now()
    return _due_sessions(now - timedelta(days=conf.guarded("RETENTION_DAYS")))


def _due_sessions(cutoff: datetime) -> Any:
    return VerificationSession.objects.filter(finished_at__lt=cutoff, purged_at__isnull=True).order_by(
        "finished_at", "pk"
    )


def purge_expired_data(*, now: datetime | None = None) -> int:
    """Run the retention purge (``run_purge``); returns how many *sessions* were scrubbed, as it
    always has — ``run_purge().inbound_events`` counts the scrubbed inbound requests."""
    return run_purge(now=now).sessions


def _purge_sessions(*, cutoff: datetime, now: datetime, batch: int, on_batch: OnBatch | None = None) -> int:
    """Purge the due sessions page by page, keyset-paginated on ``(finished_at, pk)`` — a session
    whose purge fails stays due, and must not be fetched again in the same run. One session's
    failure is logged and recorded on it (``_record_failure``); the others are purged all the same."""
    due = _due_sessions(cutoff)
    purged = 0
    progress, number = SweepResult(), 0
    # (finished_at, pk) of the last row seen; finished_at is never None here (finished_at__lt).
    after: tuple[datetime | None, Any] | None = None
    while True:
        number += 1
        page = due
        if after is not None:
            page = page.filter(Q(finished_at__gt=after[0]) | Q(finished_at=after[0], pk__gt=after[1]))
        rows = list(page.values_list("finished_at", "pk")[:batch])
        outcomes: list[tuple[Any, str]] = []
        for _finished_at, pk in rows:
            try:
                done = _purge_session(pk, now=now)
            except Exception as exc:  # one bad session never stops a sweep
                _record_failure(pk, exc, source=VerificationEvent.Source.SYSTEM)  # the retention sweep
                progress.failed += 1
                outcomes.append((pk, _failure_word(exc)))
            else:
                purged += done
                progress.processed += done
                outcomes.append((pk, "purged" if done else "skipped"))  # skipped: gone, or purged meanwhile
        progress.found += len(rows)
        if on_batch is not None and rows:
            on_batch(SweepBatch(number, outcomes, _copy(progress)))
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


def _copy(result: SweepResult) -> SweepResult:
    return SweepResult(result.found, result.processed, result.failed)


INBOUND_KINDS = (Kind.CALLBACK, Kind.WEBHOOK)


def _scrub_inbound(*, cutoff: datetime, batch: int) -> int:
    """Scrub the bodies and headers of inbound requests older than ``cutoff`` that matched no
    session or were never authenticated; returns how many. Pages of at most ``batch`` ids, in
    ``created_at`` order (the ``vl_event_kind`` index), from where the last run stopped."""
    due = _inbound_due(cutoff)
    if due is None:
        return 0
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


def _inbound_due(cutoff: datetime) -> Any:
    """The inbound requests older than ``cutoff`` still to scrub, from where the last scrub
    stopped, in ``created_at`` order; None when there is nothing in that range at all (then no run
    is recorded either)."""
    since = _inbound_scrubbed_before()
    if since is not None and since >= cutoff:
        return None
    in_range = VerificationEvent.objects.filter(kind__in=INBOUND_KINDS, created_at__lt=cutoff)
    if since is not None:
        in_range = in_range.filter(created_at__gte=since)
    if not in_range.exists():
        return None
    return (
        in_range.filter(Q(session__isnull=True) | ~Q(valid=True))
        .exclude(body="", headers={})
        .order_by("created_at", "pk")
    )


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
