"""What every service shares: the row lock, signals on commit, the poll schedule, the one forward
move of a locked session (``_move``), and the verdict on a recorded inbound request."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.dispatch import Signal
from django.http import HttpRequest
from django.utils.module_loading import import_string

from .. import conf, dblock, signals
from ..exceptions import ConfigurationError
from ..models import VerificationEvent, VerificationSession
from ..providers import StatusReport, get_provider

logger = logging.getLogger("verification_link")

Status = VerificationSession.Status
Decision = VerificationSession.Decision
Kind = VerificationEvent.Kind

SessionRef = VerificationSession | uuid.UUID | str


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


#: The session fields that keep the provider's own words (``StatusReport.provider_status``,
#: ``verdict``, ``reasons``).
PROVIDER_WORDS = ("provider_status", "provider_verdict", "provider_reasons")


def take_provider_words(session: VerificationSession, report: StatusReport, *, moved: bool = False) -> list[str]:
    """Copy what the report says in the provider's own words (its raw status, verdict and reason
    codes) onto the session, in memory; returns the fields that changed. A report that says
    nothing of them (a provider without them, an unsigned hint) changes nothing; nor does one
    without a verdict while the session holds one at the same status (a late "submitted" after
    "needs review" must not erase the review: deliveries arrive in any order). ``moved``: the
    report moves the session (its words are the new ones, whatever they say)."""
    if not (moved and (report.provider_status or report.verdict)) and not _words_apply(session, report):
        return []
    changed = []
    if report.provider_status and report.provider_status[:64] != session.provider_status:
        session.provider_status = report.provider_status[:64]
        changed.append("provider_status")
    if report.verdict != session.provider_verdict:
        session.provider_verdict = report.verdict
        changed.append("provider_verdict")
    # An erased session keeps none of the provider's reasons (they describe the person) that arrive later.
    reasons = _reasons(report) if session.erased_at is None else []
    if reasons != list(session.provider_reasons or []):
        session.provider_reasons = reasons
        changed.append("provider_reasons")
    return changed


def provider_words_differ(session: VerificationSession, report: StatusReport) -> bool:
    """Whether ``take_provider_words`` would change the session (without changing it)."""
    if not _words_apply(session, report):
        return False
    return (
        (bool(report.provider_status) and report.provider_status[:64] != session.provider_status)
        or report.verdict != session.provider_verdict
        or _reasons(report) != list(session.provider_reasons or [])
    )


def _words_apply(session: VerificationSession, report: StatusReport) -> bool:
    if not (report.provider_status or report.verdict):
        return False
    moving = report.status != session.status
    return moving or bool(report.verdict) or not session.provider_verdict


def _reasons(report: StatusReport) -> list[str]:
    return [str(reason)[:200] for reason in report.reasons[:50]]


def _move(
    session: VerificationSession,
    new_status: str,
    *,
    source: str,
    now: datetime,
    report: StatusReport | None = None,
    actor: Any = None,
    kind: str = Kind.STATUS_CHANGED,
    decide: bool = True,
) -> list[VerificationEvent]:
    """Make one forward move on a *locked* session, in memory, and queue its signals.

    ``decide=False``: a final move the decision policy is not asked about (an attempt a retry
    replaced: nobody is to review it).

    Returns the move's events, unsaved: the caller persists the session and the events in the same
    transaction (one by one, or in bulk for a sweep), so the signals fire only if both are durable.
    """
    old_status = session.status
    session.status = new_status
    if report is not None:
        session.next_step = report.next_step
        if report.expires_at is not None:
            session.expires_at = report.expires_at
        # An erased session keeps none of what arrives later (a flow the provider could not cancel).
        if report.result and session.erased_at is None:
            session.result = _stored_result(report.result)
        take_provider_words(session, report, moved=True)
    final = session.is_final
    if final:
        session.finished_at = now
        session.next_step = ""
        session.url = ""  # the one-time link is a bearer secret with no further use
    _schedule_next_poll(session, now, moved=True)
    session.updated_at = now
    decision: str = Decision.UNDECIDED
    if final and decide and not session.decision:
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
            # The policy's decision is written with the move that made it: one row, not two.
            data={"decision": decision, "by": "policy"} if decision else {},
        )
    ]
    logger.info("verification session %s: %s -> %s (%s)", session.pk, old_status, new_status, source)
    _send_on_commit(
        signals.verification_status_changed, session, old_status=old_status, new_status=new_status, source=source
    )
    if final:
        _send_on_commit(signals.verification_finished, session, status=new_status, source=source)
    if decision:
        _send_on_commit(signals.verification_reviewed, session, decision=decision, reviewer=None)
    return events


#: What ``_move`` may change on a session: a transition writes these columns, not the whole row.
MOVED_FIELDS = (
    *("status", "next_step", "expires_at", "result", "finished_at", "url"),
    *("next_poll_at", "poll_attempts", "updated_at", "decision", "reviewed_at"),
    *PROVIDER_WORDS,
)


def _transition(session: VerificationSession, new_status: str, *, also: tuple[str, ...] = (), **kwargs: Any) -> None:
    """Apply one forward move to a *locked* session, record it, and queue its signals. Every row
    through ``save()``: a request path, so ``post_save`` fires for the session and each event.
    The session's UPDATE names the ``MOVED_FIELDS`` and the caller's ``also``."""
    events = _move(session, new_status, **kwargs)
    session.save(update_fields=[*MOVED_FIELDS, *also])
    for event in events:
        event.save(force_insert=True)


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
    answer: StatusReport | None = None,
    old_status: str = "",
    applied: bool = False,
    session: VerificationSession | None = None,
    data: Mapping[str, Any] | None = None,
    unless_processed: bool = False,
) -> bool:
    """Record the verdict on a recorded inbound request: one UPDATE of the row's verdict columns
    (a conditional ``update()``: no ``post_save``; the row's own ``post_save`` fired when it was
    recorded). ``unless_processed``: only if no run before this one processed it (a Celery retry,
    a duplicate task holding a stale copy); returns whether it was written. Written with the
    verdict, when given: ``body``, what it keeps of
    its body now that it is authenticated; ``answer``, the provider's answer that judged it (a
    callback's confirmation: ``old_status`` → the answer's status, ``applied`` whether it moved the
    session, its summary in ``data["answer"]``) — the request and the answer that confirmed it
    are one row; ``session``, the session it turned out to be about (a webhook); ``data``, keys
    added to the event's ``data``."""
    changes: dict[str, Any] = {"valid": valid, "processed": processed, "error": error}
    added = dict(data or {})
    if body is not None:
        changes.update(body=body.text, body_truncated=body.truncated)
        if body.redacted:
            added["body_redacted"] = True
    if answer is not None:
        changes.update(old_status=old_status, new_status=answer.status, applied=applied)
        added["answer"] = answer.summary()
    if added:
        changes["data"] = {**(event.data or {}), **added}
    if session is not None:
        changes["session"] = session
    rows = VerificationEvent.objects.filter(pk=event.pk)
    if unless_processed:
        rows = rows.filter(processed=False)
    if not rows.update(**changes):
        return False
    for field, value in changes.items():
        setattr(event, field, value)
    return True


def _is_user(value: Any) -> bool:
    return value is not None and getattr(value, "pk", None) is not None and getattr(value, "is_authenticated", False)
