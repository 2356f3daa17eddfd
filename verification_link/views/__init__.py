"""HTTP in and out, kept thin: every state change goes through ``verification_link.services``.

User-facing views answer 404 to anyone but the session's owner: the hand-off link and biometric
results are secrets, and a 404 does not even confirm that a session exists. Staff use the admin.
A module per part: ``start`` (start, start again, try again), ``status`` (the status page, its
live JSON, the QR code, cancel, the return), ``inbound`` (callbacks and webhooks), ``common``.
"""

from .common import HttpResponseSeeOther, login_not_required
from .inbound import callback_view, inbound_not_found, webhook_view
from .start import retry_view, start_view
from .status import cancel_view, detail_view, qr_view, return_view, status_view

__all__ = [
    "HttpResponseSeeOther",
    "callback_view",
    "cancel_view",
    "detail_view",
    "inbound_not_found",
    "login_not_required",
    "qr_view",
    "retry_view",
    "return_view",
    "start_view",
    "status_view",
    "webhook_view",
]
