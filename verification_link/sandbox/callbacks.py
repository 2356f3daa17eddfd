"""Outgoing notifications of the sandbox: one JSON POST per final outcome, never retried.

- OOTO's completion callback: unsigned, body identical to the Get Status answer, to the
  session's ``callbackUrl``.
- Valify's account-level webhook: signed (see :mod:`.signing`), to ``VALIFY_WEBHOOK_URL``.

The site and the sandbox usually share one server process, and the site's receiver may call
back into the sandbox (OOTO's Get Status). Posting from the request thread would then wait on
itself on a single-threaded server, so the POST runs in a daemon thread started once the
session's final state is committed (inline with the ``CALLBACK_SYNC`` setting, for tests).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from django.db import transaction

from .conf import sandbox_setting
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, WEBHOOK_ID_HEADER, sign_valify_webhook

logger = logging.getLogger(__name__)

THREAD_NAME = "verification-link-sandbox-callback"


def _safe_target(url: str) -> str:
    # The callback path may carry the site's per-session or per-account secret: log the origin only.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def post_once(url: str, body: bytes, headers: dict[str, str], *, what: str, session_id: str = "") -> int | None:
    """POST ``body`` to ``url`` once; return the HTTP status, or ``None`` on error.

    No retry, redirects not followed, ``CALLBACK_TIMEOUT``. Never raises: a failure is logged as
    ``Sandbox <what> for session <session_id> …`` without the URL path, the body, the headers or any
    token.
    """
    timeout = float(sandbox_setting("CALLBACK_TIMEOUT"))
    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except Exception as exc:  # a lost notification must never break anything
        # The exception text may quote the URL; its class is enough.
        logger.warning(
            "Sandbox %s for session %s to %s failed: %s",
            what,
            session_id,
            _safe_target(url),
            type(exc).__name__,
        )
        return None
    if response.status_code >= 400:
        logger.warning(
            "Sandbox %s for session %s to %s answered HTTP %s (not retried)",
            what,
            session_id,
            _safe_target(url),
            response.status_code,
        )
    else:
        logger.info("Sandbox %s for session %s delivered (HTTP %s)", what, session_id, response.status_code)
    return response.status_code


def run_detached(func: Callable[..., Any], *args: Any, what: str, session_id: str = "", **kwargs: Any) -> None:
    """Run ``func(*args, session_id=session_id, **kwargs)`` in a daemon thread, or inline with ``CALLBACK_SYNC``."""
    kwargs["session_id"] = session_id
    if sandbox_setting("CALLBACK_SYNC"):
        func(*args, **kwargs)
        return
    try:
        threading.Thread(target=func, args=args, kwargs=kwargs, name=THREAD_NAME, daemon=True).start()
    except RuntimeError:
        logger.warning("Sandbox %s for session %s not sent: no thread available", what, session_id)


# --- OOTO ----------------------------------------------------------------------------------------


def send_callback(url: str, payload: dict[str, Any], *, session_id: str = "") -> int | None:
    """POST ``payload`` as JSON to ``url`` once; return the HTTP status, or ``None`` on error.

    Contract (as OOTO): ``Content-Type: application/json``, body identical to the Get Status
    answer, no signature, no retry, redirects not followed. Never raises.
    """
    return post_once(
        url,
        json.dumps(payload).encode(),
        {"Content-Type": "application/json"},
        what="callback",
        session_id=session_id,
    )


def dispatch_callback(url: str, payload: dict[str, Any], *, session_id: str = "") -> None:
    """Hand the callback to a background daemon thread, or send it inline with ``CALLBACK_SYNC``."""
    run_detached(send_callback, url, payload, what="callback", session_id=session_id)


def schedule_callback(url: str, payload: dict[str, Any], *, session_id: str = "") -> None:
    """Dispatch the callback after the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: dispatch_callback(url, payload, session_id=session_id))


# --- Valify --------------------------------------------------------------------------------------

VALIFY_WEBHOOK = "Valify webhook"


def valify_webhook_headers(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers of one Valify webhook delivery: JSON, timestamp, signature, a fresh delivery id."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign_valify_webhook(secret, timestamp, body),
        WEBHOOK_ID_HEADER: str(uuid.uuid4()),
    }


def send_valify_webhook(url: str, payload: dict[str, Any], *, session_id: str = "") -> int | None:
    """POST ``payload`` to ``url`` once, signed with ``VALIFY_WEBHOOK_SECRET``; the HTTP status or ``None``.

    The timestamp is taken at sending time. An empty secret sends nothing (a receiver would refuse
    it anyway). Never raises.
    """
    secret = sandbox_setting("VALIFY_WEBHOOK_SECRET")
    if not isinstance(secret, str) or not secret:
        logger.error("Sandbox %s for session %s not sent: VALIFY_WEBHOOK_SECRET is empty", VALIFY_WEBHOOK, session_id)
        return None
    body = json.dumps(payload).encode()
    return post_once(url, body, valify_webhook_headers(secret, body), what=VALIFY_WEBHOOK, session_id=session_id)


def dispatch_valify_webhook(url: str, payload: dict[str, Any], *, session_id: str = "") -> None:
    """Hand the webhook to a background daemon thread, or send it inline with ``CALLBACK_SYNC``."""
    run_detached(send_valify_webhook, url, payload, what=VALIFY_WEBHOOK, session_id=session_id)


def schedule_valify_webhook(url: str, payload: dict[str, Any], *, session_id: str = "") -> None:
    """Dispatch the webhook after the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: dispatch_valify_webhook(url, payload, session_id=session_id))
