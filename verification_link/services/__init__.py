"""The one place where verification state changes.

Views, tasks, admin actions, the API and management commands call these functions; none of them
writes ``status`` itself. The rules (DESIGN.md, "Lifecycle rules"):

- status only moves forward (CREATED → CAPTCHA_OK → IN_PROGRESS → one final status) and a final
  status never changes; an older or equal report is recorded (as an event, or on the callback it
  confirms) and not applied — an equal answer to our own poll updates the poll's bookkeeping only;
- every change runs in a transaction holding the session row (``select_for_update``), so racing
  callbacks, polls, returns and admin actions yield one transition; provider HTTP calls happen
  *outside* that transaction so a slow provider never holds a row lock;
- signals are sent with ``transaction.on_commit``: once per applied transition, never on rollback.

A package with a module per concern — ``common`` (the row lock, signals, the one forward move),
``start``, ``lifecycle`` (reuse, attempt limits, validity), ``resubmission`` ("Try again"),
``reports`` (applying what the provider says), ``inbound`` (callbacks and webhooks), ``reviews``,
``staff`` (review queue, view audit, erasure), ``sweeps`` and ``expiry`` (and their ``threads``), ``retention`` —
whose public names are all importable from here.
"""

from ..providers import get_provider  # noqa: F401  (importable from here before the split)
from .common import KeptBody, judge_inbound, poll_interval, take_write_lock
from .expiry import expire_sessions, run_expiry_sweep
from .inbound import (
    CALLBACK_SESSION_FIELDS,
    RECORDED_HEADERS,
    confirm_callback,
    kept_webhook_body,
    process_webhook,
    record_callback,
    record_inbound,
    redacted_body,
    refresh_on_return,
    session_for_callback,
)
from .lifecycle import check_attempts, current_verification, is_verified, lapse_verifications, reusable_session
from .live import refresh_while_watched
from .reports import apply_report, refresh_session
from .resubmission import attempt_chain, retry_verification
from .retention import INBOUND_KINDS, PurgeResult, purge_expired_data, run_purge
from .reviews import cancel_session, review_session
from .staff import assign_review, erase_user_data, record_sensitive_view
from .start import newest_retry, replaceable, start_verification
from .sweeps import SweepResult, claim_due_sessions, poll_due_sessions, run_poll_sweep
from .threads import SweepPool, run_concurrently

__all__ = [
    "CALLBACK_SESSION_FIELDS",
    "INBOUND_KINDS",
    "RECORDED_HEADERS",
    "KeptBody",
    "PurgeResult",
    "SweepPool",
    "SweepResult",
    "apply_report",
    "assign_review",
    "attempt_chain",
    "cancel_session",
    "check_attempts",
    "claim_due_sessions",
    "confirm_callback",
    "current_verification",
    "erase_user_data",
    "expire_sessions",
    "is_verified",
    "judge_inbound",
    "kept_webhook_body",
    "lapse_verifications",
    "newest_retry",
    "poll_due_sessions",
    "poll_interval",
    "process_webhook",
    "purge_expired_data",
    "record_callback",
    "record_inbound",
    "record_sensitive_view",
    "redacted_body",
    "refresh_on_return",
    "refresh_session",
    "refresh_while_watched",
    "replaceable",
    "retry_verification",
    "reusable_session",
    "review_session",
    "run_concurrently",
    "run_expiry_sweep",
    "run_poll_sweep",
    "run_purge",
    "session_for_callback",
    "start_verification",
    "take_write_lock",
]
