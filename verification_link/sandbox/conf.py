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

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..settings_table import ANY_TEXT, BOOLEAN, FLAG, INVALID, Kind, Setting, optional, seconds
from .credentials import EMULATOR_CREDENTIALS, sandbox_credentials

SETTING_NAME = "VERIFICATION_LINK_SANDBOX"


class _Derived:
    """The default of a credential: derived from ``SECRET_KEY`` when read, never stored here."""

    def __repr__(self) -> str:
        return "<derived from SECRET_KEY>"


DERIVED: Any = _Derived()


def _url_or_path(value: Any) -> Any:
    if not isinstance(value, str):
        return INVALID
    parts = urlsplit(value)
    if (value.startswith("/") and not value.startswith("//")) or (parts.scheme in ("http", "https") and parts.hostname):
        return value
    return INVALID


URL_OR_PATH = Kind(_url_or_path, "an absolute http(s) URL or a path starting with '/'", wrong_type=80, out_of_range="x")
_EMULATORS = tuple(name.removesuffix("_WEBHOOK_SECRET").lower() for name in EMULATOR_CREDENTIALS if "WEBHOOK" in name)


def _webhook_urls(value: Any) -> Any:
    if isinstance(value, Mapping) and all(
        name in _EMULATORS and (url == "" or _url_or_path(url) is not INVALID) for name, url in value.items()
    ):
        return value
    return INVALID


E012, E017 = "verification_link.E012", "verification_link.E017"

#: The keys of ``VERIFICATION_LINK_SANDBOX`` (see ``settings_table``): default, validator, check id, doc.
SANDBOX_KEYS: dict[str, Setting] = {
    "ALLOW_WITHOUT_DEBUG": Setting(
        False, optional(BOOLEAN), E012, "Serve the sandbox with DEBUG off (a staging site): only the boolean True."
    ),
    "OOTO_APP_ID": Setting(DERIVED, ANY_TEXT, E017, "APP-ID the OOTO emulator accepts."),
    "OOTO_APP_KEY": Setting(DERIVED, ANY_TEXT, E017, "APP-KEY the OOTO emulator accepts.", secret=True),
    "VALIFY_API_KEY": Setting(
        DERIVED, ANY_TEXT, E017, "Key the Valify emulator accepts ('' refuses all).", secret=True
    ),
    "VALIFY_WEBHOOK_URL": Setting(None, optional(URL_OR_PATH, "no webhook"), E017, "Where the Valify emulator posts."),
    "VALIFY_WEBHOOK_SECRET": Setting(
        DERIVED, ANY_TEXT, E017, "Key of X-Valify-Signature ('' sends no webhook).", secret=True
    ),
    "VALIFY_REDIRECT_KEY": Setting(
        "redirect_url", optional(ANY_TEXT, "left out"), E017, "Key of the link in the create answer."
    ),
    "CALLBACK_TIMEOUT": Setting(5, seconds(0.1, 60), E017, "Seconds the callback / webhook POST may take."),
    "CALLBACK_SYNC": Setting(False, FLAG, E017, "Post callbacks inline after the commit (for tests)."),
    # The hosted-provider emulators (Stripe Identity, Persona, …): their credentials, and where
    # each posts its account-level webhooks — emulator name → URL (absolute, or a path on this
    # site); by default the site's ``webhook/sandbox_<name>/``.
    **{
        name: Setting(DERIVED, ANY_TEXT, E017, f"The {name.split('_')[0].title()} emulator's credential.", secret=True)
        for name in EMULATOR_CREDENTIALS
    },
    "WEBHOOK_URLS": Setting(
        {},
        Kind(_webhook_urls, f"a dict of emulator ({', '.join(_EMULATORS)}) -> URL or path", wrong_type=["x"]),
        E017,
        "Where each emulator posts its webhooks ('' sends none).",
    ),
}
#: Keys whose readers refuse a wrong value quietly themselves (no webhook is sent, and a warning
#: says why): handed over as they are, reported by ``manage.py check`` only.
QUIET_AT_USE = frozenset({"VALIFY_WEBHOOK_URL", "WEBHOOK_URLS"})
DEFAULTS: dict[str, Any] = {name: setting.default for name, setting in SANDBOX_KEYS.items()}


def sandbox_setting(key: str) -> Any:
    """Return one sandbox setting, falling back to its default.

    Raises ``ImproperlyConfigured`` when ``VERIFICATION_LINK_SANDBOX`` is not a dict, when the value
    is not one its row of ``SANDBOX_KEYS`` accepts (naming the exact key: validated here, at use,
    since servers run no checks — a guard such as ``ALLOW_WITHOUT_DEBUG`` then fails closed), or
    when the key is unknown (a typo in our own code, not in the site's settings).
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
    if key in QUIET_AT_USE:
        return value
    row = SANDBOX_KEYS[key]
    meant = row.kind(value)
    if meant is INVALID:
        raise ImproperlyConfigured(f"{key_path(key)} must be {row.kind.expected}.")
    return meant


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
