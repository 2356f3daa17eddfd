"""The one settings resolver.

Everything is read from ``settings.VERIFICATION_LINK`` at the moment it is needed, never cached at
import time, so ``override_settings`` works in tests and a site can change settings without
restarting imports. Each top-level value is validated where it is used, by its row of the settings
table (``settings_table``), since a site's server runs no system checks: a key that guards something
fails closed (``lifecycle``, ``FAIL_CLOSED``) or falls back to its default (``guarded``), and any other
key falls back to its default (``get``) — never a 500 for a timeout. Messages name the exact key to
fix, e.g. ``VERIFICATION_LINK["PROVIDERS"]["ooto"]["APP_KEY"]``, never its value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.utils.functional import Promise

from .exceptions import ConfigurationError
from .settings_table import INVALID, TOP_LEVEL

SETTING_NAME = "VERIFICATION_LINK"

logger = logging.getLogger("verification_link.conf")

#: Defaults of the top-level keys, from the table (``settings_table.TOP_LEVEL``, which also holds
#: each key's validator, check id and doc; docs/settings.rst is generated from it).
DEFAULTS: dict[str, Any] = {name: setting.default for name, setting in TOP_LEVEL.items()}

#: Defaults shared by every provider alias (a backend adds its own: ``BaseProvider.config_keys``).
PROVIDER_DEFAULTS: dict[str, Any] = {
    "TTL": 86400,
    "SCOPES": None,
    "CONNECT_TIMEOUT": None,
    "READ_TIMEOUT": None,
}


def key_path(*keys: str) -> str:
    """``key_path("PROVIDERS", "ooto", "APP_KEY")`` → ``VERIFICATION_LINK["PROVIDERS"]["ooto"]["APP_KEY"]``."""
    return SETTING_NAME + "".join(f"[{k!r}]".replace("'", '"') for k in keys)


def user_settings() -> Mapping[str, Any]:
    value = getattr(settings, SETTING_NAME, None)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{SETTING_NAME} must be a dict, not {type(value).__name__}.")
    return value


#: Keys that guard something (how much is stored, what is hidden or kept, and for how long, how often
#: a client may call): checked each time they are read, since a site's server (gunicorn) runs no
#: system checks; a wrong value there is logged and replaced by the default (``guarded``).
GUARDS: dict[str, tuple[Callable[[Any], Any], str]] = {
    name: (TOP_LEVEL[name].kind.coerce, TOP_LEVEL[name].kind.expected)
    for name in (
        "MAX_EVENT_BODY_BYTES",
        "UNVERIFIED_BODY_BYTES",
        "CALLBACK_COALESCE_SECONDS",
        "LIVE_POLL_SECONDS",
        "PURGE_BATCH_SIZE",
        "RETENTION_DAYS",
        "SENSITIVE_RESULT_KEYS",
        "DISCARD_RESULT_KEYS",
        "API_THROTTLE_RATE",
    )
}

#: Keys of the lifecycle: each decides who may start or counts as verified, so a wrong value is
#: an error at each use (``lifecycle()``), never silently replaced: a default there would lift an
#: attempt limit or make a lapsed verification valid again. The beat intervals too: 0 or a week
#: would stop a sweep in effect.
LIFECYCLE: dict[str, tuple[Callable[[Any], Any], str]] = {
    name: (setting.kind.coerce, setting.kind.expected)
    for name, setting in TOP_LEVEL.items()
    if setting.check_id == "verification_link.E013"
}

#: Keys whose own resolver validates them at use, each in its own way (``providers``,
#: ``default_provider``, ``user_providers``, ``guarded``): ``get`` hands them over as they are.
RESOLVED_ELSEWHERE = frozenset({"PROVIDERS", "DEFAULT_PROVIDER", "USER_PROVIDERS", *GUARDS})

#: Keys whose default would weaken what the site set, so a wrong value is a ``ConfigurationError``
#: at each use: the lifecycle; ``DECISION_POLICY`` (the default policy may approve what the site's
#: rejects); ``PUBLIC_BASE_URL`` (the default trusts the request's Host header for callback URLs).
#: Every other key read by ``get`` guards nothing (timeouts, intervals, batch sizes, ``TASKS``,
#: ``DEFAULT_NEXT_URL``, ``API_RETRY_AFTER``, ...): its default is as safe as any value.
FAIL_CLOSED = frozenset({"DECISION_POLICY", "PUBLIC_BASE_URL", *LIFECYCLE})


def raw(name: str) -> Any:
    """The value of one top-level key as the site wrote it, or its default; never validated."""
    if name not in DEFAULTS:
        raise KeyError(name)
    return user_settings().get(name, DEFAULTS[name])


def validated(name: str) -> Any:
    """The value of one top-level key as the site meant it (``"30"`` counts as 30), validated by the
    table: ``ConfigurationError`` naming the exact key when it is wrong."""
    setting = TOP_LEVEL[name]
    meant = setting.kind(raw(name))
    if meant is INVALID:
        raise ConfigurationError(f"{key_path(name)} must be {setting.kind.expected}.")
    return meant


def get(name: str) -> Any:
    """The value of one top-level key, or its default, validated at this use; a lazy string
    (``reverse_lazy``) as the string it stands for.

    A key of ``FAIL_CLOSED`` raises ``ConfigurationError`` naming it when it is wrong (``validated``).
    Any other key guards nothing, so a wrong value never turns a request into a 500: an error naming
    the key (never the value) is logged and the default applies until it is fixed; ``manage.py
    check`` reports it (E014). The keys of ``RESOLVED_ELSEWHERE`` are given as they are to the
    resolver that validates them."""
    if name in RESOLVED_ELSEWHERE:
        return raw(name)
    if name in FAIL_CLOSED:
        return validated(name)
    meant = TOP_LEVEL[name].kind(raw(name))
    if isinstance(meant, Promise):
        try:
            meant = str(meant)
        except Exception:  # e.g. NoReverseMatch: whatever the lazy value raises, the request goes on
            meant = INVALID
    if meant is INVALID:
        logger.error(
            "%s must be %s; using the default until it is fixed.", key_path(name), TOP_LEVEL[name].kind.expected
        )
        return DEFAULTS[name]
    return meant


def lifecycle(name: str) -> Any:
    """The value of a key of ``LIFECYCLE``, validated at this use: ``ConfigurationError`` naming
    the key when it is wrong (digits in a string, an environment variable read as it is, count as
    the number they spell)."""
    if name not in LIFECYCLE:
        raise KeyError(name)
    return validated(name)


def guarded(name: str) -> Any:
    """The value of a key of ``GUARDS``, validated at this use. A value of the wrong type whose
    meaning is clear (``"30"`` for 30 days, ``"box"`` for ``["box"]``) is read as meant; anything
    else is replaced by the default. Either way the exact key is logged as an error — never the
    value, which may be a secret — so that the site fixes it."""
    value = raw(name)
    coerce, expected = GUARDS[name]
    meant = coerce(value)
    if meant is INVALID:
        logger.error("%s must be %s; using the default until it is fixed.", key_path(name), expected)
        return DEFAULTS[name]
    # 10.0 for 10 is the number it equals; "30" or "box" are read as meant but should be fixed.
    if type(meant) is not type(value) and not (isinstance(value, (int, float)) and meant == value):
        logger.error("%s must be %s; read as meant until it is fixed.", key_path(name), expected)
    return meant


def providers() -> Mapping[str, Mapping[str, Any]]:
    value = get("PROVIDERS")
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{key_path('PROVIDERS')} must be a dict of alias -> provider config.")
    return value


def provider_config(alias: str) -> dict[str, Any]:
    """The config of one provider alias, with shared defaults filled in."""
    configs = providers()
    if alias not in configs:
        known = ", ".join(sorted(configs)) or "none configured"
        raise ConfigurationError(
            f"Unknown verification provider alias {alias!r}: add it to {key_path('PROVIDERS')} (configured: {known})."
        )
    config = configs[alias]
    if not isinstance(config, Mapping):
        raise ConfigurationError(f"{key_path('PROVIDERS', alias)} must be a dict.")
    return {**PROVIDER_DEFAULTS, **config}


def default_provider() -> str:
    alias = get("DEFAULT_PROVIDER")
    if not alias:
        configs = providers()
        if len(configs) == 1:
            return next(iter(configs))
        raise ConfigurationError(f"Set {key_path('DEFAULT_PROVIDER')} to one of the aliases of PROVIDERS.")
    return alias


def user_providers(*, strict: bool = False) -> list[str]:
    """The aliases a user may pick in the start form and the REST API, in the site's order.

    ``USER_PROVIDERS`` guards which providers users reach (a sandbox configured for staff must stay
    out of their hands), so it is validated at each use, not only by ``manage.py check``. When it
    is not a list of configured aliases, users get only ``DEFAULT_PROVIDER`` (nothing when that is
    broken too) and an error naming the key is logged; with ``strict`` (the system check) the
    ``ConfigurationError`` is raised instead.
    """
    key = key_path("USER_PROVIDERS")
    value = get("USER_PROVIDERS")
    if value is not None:
        try:
            configured = providers()
            # A str is a sequence of strings too: ("sandbox") without its comma must not pass.
            if not isinstance(value, (list, tuple)) or not all(isinstance(alias, str) for alias in value):
                raise ConfigurationError(f"{key} must be a list of provider aliases, not {type(value).__name__}.")
            unknown = [alias for alias in value if alias not in configured]
            if unknown:
                raise ConfigurationError(f"{key} names {unknown!r}, which {key_path('PROVIDERS')} does not configure.")
            return list(dict.fromkeys(value))
        except ConfigurationError as exc:
            if strict:
                raise
            logger.error("%s Users may start only with %s until it is fixed.", exc, key_path("DEFAULT_PROVIDER"))
    try:
        alias = default_provider()
        if alias not in providers():
            raise ConfigurationError(f"{key_path('DEFAULT_PROVIDER')} = {alias!r} is not an alias of PROVIDERS.")
    except ConfigurationError as exc:
        if strict:
            return []  # not this key's problem: E002 reports it
        logger.error("%s Users can start no verification until it is fixed.", exc)
        return []
    return [alias]
