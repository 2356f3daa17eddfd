"""Settings of the sandbox, read from ``settings.VERIFICATION_LINK_SANDBOX`` at each use.

Reading lazily (never at import time) keeps ``override_settings`` working in tests.

Keys (all optional):

``OOTO_APP_ID`` / ``OOTO_APP_KEY``
    The credentials the emulated OOTO API accepts in the ``APP-ID`` / ``APP-KEY`` headers.
    Defaults ``"sandbox-app"`` / ``"sandbox-key"``.
``VALIFY_API_KEY``
    The key the emulated Valify API accepts in ``X-Valify-Api-Key``. Default
    ``"sandbox-valify-key"``; empty refuses every request.
``VALIFY_WEBHOOK_URL``
    Where the Valify emulator posts its account-level webhook: an absolute http(s) URL, or a
    path starting with ``/`` resolved against the origin of the request that finished the flow.
    Default ``None``: no webhook is sent.
``VALIFY_WEBHOOK_SECRET``
    The HMAC-SHA256 key of the webhook's ``X-Valify-Signature``. Default
    ``"sandbox-webhook-secret"``; empty sends no webhook.
``VALIFY_REDIRECT_KEY``
    The key of the link in the create answer. Default ``"redirect_url"``; ``"redirect_url "``
    (trailing space) reproduces the spelling of Valify's documentation; ``None`` leaves it out,
    so clients must build the URL from ``session_token``.
``CALLBACK_TIMEOUT``
    Seconds the callback / webhook POST may take (connect and read). Default ``5``.
``CALLBACK_SYNC``
    When true, the OOTO callback and the Valify webhook are posted inline (after the commit)
    instead of in a background thread. Meant for tests; a single-threaded server would deadlock
    if the receiver calls back into the sandbox. Default ``False``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTING_NAME = "VERIFICATION_LINK_SANDBOX"

DEFAULTS: dict[str, Any] = {
    "OOTO_APP_ID": "sandbox-app",
    "OOTO_APP_KEY": "sandbox-key",
    "VALIFY_API_KEY": "sandbox-valify-key",
    "VALIFY_WEBHOOK_URL": None,
    "VALIFY_WEBHOOK_SECRET": "sandbox-webhook-secret",
    "VALIFY_REDIRECT_KEY": "redirect_url",
    "CALLBACK_TIMEOUT": 5,
    "CALLBACK_SYNC": False,
}


def sandbox_setting(key: str) -> Any:
    """Return one sandbox setting, falling back to its default.

    Raises ``ImproperlyConfigured`` when ``VERIFICATION_LINK_SANDBOX`` is not a dict or the key
    is unknown (a typo in our own code, not in the site's settings).
    """
    if key not in DEFAULTS:
        raise ImproperlyConfigured(f"Unknown sandbox setting {key!r}.")
    configured = getattr(settings, SETTING_NAME, None) or {}
    if not isinstance(configured, dict):
        raise ImproperlyConfigured(f"{SETTING_NAME} must be a dict.")
    return configured.get(key, DEFAULTS[key])
