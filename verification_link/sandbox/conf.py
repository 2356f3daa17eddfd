"""Settings of the sandbox, read from ``settings.VERIFICATION_LINK_SANDBOX`` at each use.

Reading lazily (never at import time) keeps ``override_settings`` working in tests.

Keys (all optional):

``OOTO_APP_ID`` / ``OOTO_APP_KEY``
    The credentials the emulated OOTO API accepts in the ``APP-ID`` / ``APP-KEY`` headers.
    Defaults ``"sandbox-app"`` / ``"sandbox-key"``.
``CALLBACK_TIMEOUT``
    Seconds the callback POST may take (connect and read). Default ``5``.
``CALLBACK_SYNC``
    When true, the callback is posted inline (after the commit) instead of in a background
    thread. Meant for tests; a single-threaded server would deadlock if the callback
    receiver calls back into the sandbox. Default ``False``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTING_NAME = "VERIFICATION_LINK_SANDBOX"

DEFAULTS: dict[str, Any] = {
    "OOTO_APP_ID": "sandbox-app",
    "OOTO_APP_KEY": "sandbox-key",
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
