"""Signing of the Valify emulator's webhook: a pure function, no Django, no settings.

Valify does not document how its account-level webhook is authenticated; the sandbox signs it the
way ``ValifyProvider`` verifies by default (HMAC-SHA256 of ``f"{timestamp}.{body}"``, lowercase hex,
in ``X-Valify-Signature``, Unix seconds in ``X-Valify-Timestamp``). Tests of the webhook receiver
can import this function to produce valid signatures.
"""

from __future__ import annotations

import hashlib
import hmac

#: Header names of a sandbox Valify webhook delivery.
SIGNATURE_HEADER = "X-Valify-Signature"
TIMESTAMP_HEADER = "X-Valify-Timestamp"
WEBHOOK_ID_HEADER = "X-Valify-Webhook-Id"


def sign_valify_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 under ``secret`` of ``b"<timestamp>." + body`` (``body`` as sent)."""
    message = f"{int(timestamp)}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
