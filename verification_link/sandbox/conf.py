"""Settings of the sandbox, read from ``settings.VERIFICATION_LINK_SANDBOX`` at each use.

Reading lazily (never at import time) keeps ``override_settings`` working in tests.

Keys (all optional):

``ALLOW_WITHOUT_DEBUG``
    The sandbox serves nothing (404) while ``DEBUG`` is off, unless this is ``True`` — the boolean,
    so that an environment variable read as the string ``"0"`` cannot open it. For a staging site;
    ``manage.py check`` then warns (``verification_link.W004``) instead of failing (``E012``).
    Default ``False``.
``OOTO_APP_ID`` / ``OOTO_APP_KEY``
    The credentials the emulated OOTO API accepts in the ``APP-ID`` / ``APP-KEY`` headers.
    Default: derived from ``SECRET_KEY`` (see :mod:`.credentials`).
``VALIFY_API_KEY``
    The key the emulated Valify API accepts in ``X-Valify-Api-Key``. Default: derived from
    ``SECRET_KEY``; empty refuses every request.
``VALIFY_WEBHOOK_URL``
    Where the Valify emulator posts its account-level webhook: an absolute http(s) URL, or a
    path starting with ``/`` resolved against the origin of the request that finished the flow.
    Default ``None``: no webhook is sent.
``VALIFY_WEBHOOK_SECRET``
    The HMAC-SHA256 key of the webhook's ``X-Valify-Signature``. Default: derived from
    ``SECRET_KEY``; empty sends no webhook.
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

from .credentials import EMULATOR_CREDENTIALS, sandbox_credentials

SETTING_NAME = "VERIFICATION_LINK_SANDBOX"


class _Derived:
    """The default of a credential: derived from ``SECRET_KEY`` when read, never stored here."""

    def __repr__(self) -> str:
        return "<derived from SECRET_KEY>"


DERIVED: Any = _Derived()

DEFAULTS: dict[str, Any] = {
    "ALLOW_WITHOUT_DEBUG": False,
    "OOTO_APP_ID": DERIVED,
    "OOTO_APP_KEY": DERIVED,
    "VALIFY_API_KEY": DERIVED,
    "VALIFY_WEBHOOK_URL": None,
    "VALIFY_WEBHOOK_SECRET": DERIVED,
    "VALIFY_REDIRECT_KEY": "redirect_url",
    "CALLBACK_TIMEOUT": 5,
    "CALLBACK_SYNC": False,
    # The hosted-provider emulators (Stripe Identity, Persona, …): their credentials, and where
    # each posts its account-level webhooks — emulator name → URL (absolute, or a path on this
    # site); by default the site's ``webhook/sandbox_<name>/``.
    **dict.fromkeys(EMULATOR_CREDENTIALS, DERIVED),
    "WEBHOOK_URLS": {},
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
    value = configured.get(key, DEFAULTS[key])
    if value is DERIVED:
        # At each read, from the SECRET_KEY of the moment: override_settings and key rotation hold.
        return sandbox_credentials(settings.SECRET_KEY)[key]
    return value


def key_path(key: str) -> str:
    """``key_path("ALLOW_WITHOUT_DEBUG")`` → ``VERIFICATION_LINK_SANDBOX["ALLOW_WITHOUT_DEBUG"]``."""
    return f'{SETTING_NAME}["{key}"]'


def allowed_without_debug() -> bool:
    """Whether the site explicitly allows the sandbox with ``DEBUG`` off: only the boolean ``True``.

    A broken ``VERIFICATION_LINK_SANDBOX`` (not a dict) allows nothing: the guard fails closed.
    """
    try:
        return sandbox_setting("ALLOW_WITHOUT_DEBUG") is True
    except ImproperlyConfigured:
        return False


def serving_allowed() -> bool:
    """Whether the sandbox may answer at all now: with ``DEBUG`` on, or when explicitly allowed.

    Read at each request: production servers (gunicorn, uWSGI) run no system checks, so the
    check alone would not keep the sandbox from verifying anyone there.
    """
    return bool(settings.DEBUG) or allowed_without_debug()
