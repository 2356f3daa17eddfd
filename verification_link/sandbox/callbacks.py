"""The OOTO-style completion callback: one unsigned JSON POST, never retried.

The site and the sandbox usually share one server process, and the site's callback receiver
calls Get Status back on the sandbox. Posting from the request thread would then wait on
itself on a single-threaded server, so the POST runs in a daemon thread started once the
session's final state is committed.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from django.db import transaction

from .conf import sandbox_setting

logger = logging.getLogger(__name__)

THREAD_NAME = "verification-link-sandbox-callback"


def _safe_target(url: str) -> str:
    # The callback path carries the site's per-session secret: log the origin only.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def send_callback(url: str, payload: dict[str, Any], *, session_id: str = "") -> int | None:
    """POST ``payload`` as JSON to ``url`` once; return the HTTP status, or ``None`` on error.

    Contract (as OOTO): ``Content-Type: application/json``, body identical to the Get Status
    answer, no signature, no retry, redirects not followed. Never raises: a failure is logged
    without the URL path, the payload or any token.
    """
    timeout = float(sandbox_setting("CALLBACK_TIMEOUT"))
    try:
        response = requests.post(
            url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            timeout=timeout,
            allow_redirects=False,
        )
    except Exception as exc:  # a lost callback must never break anything
        # The exception text may quote the URL; its class is enough.
        logger.warning(
            "Sandbox callback for session %s to %s failed: %s",
            session_id,
            _safe_target(url),
            type(exc).__name__,
        )
        return None
    if response.status_code >= 400:
        logger.warning(
            "Sandbox callback for session %s to %s answered HTTP %s (not retried)",
            session_id,
            _safe_target(url),
            response.status_code,
        )
    else:
        logger.info("Sandbox callback for session %s delivered (HTTP %s)", session_id, response.status_code)
    return response.status_code


def dispatch_callback(url: str, payload: dict[str, Any], *, session_id: str = "") -> None:
    """Hand the callback to a background daemon thread, or send it inline with ``CALLBACK_SYNC``."""
    if sandbox_setting("CALLBACK_SYNC"):
        send_callback(url, payload, session_id=session_id)
        return
    try:
        threading.Thread(
            target=send_callback,
            args=(url, payload),
            kwargs={"session_id": session_id},
            name=THREAD_NAME,
            daemon=True,
        ).start()
    except RuntimeError:
        logger.warning("Sandbox callback for session %s not sent: no thread available", session_id)


def schedule_callback(url: str, payload: dict[str, Any], *, session_id: str = "") -> None:
    """Dispatch the callback after the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: dispatch_callback(url, payload, session_id=session_id))
