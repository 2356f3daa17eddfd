"""The one settings resolver.

Everything is read from ``settings.VERIFICATION_LINK`` at the moment it is needed, never cached at
import time, so ``override_settings`` works in tests and a site can change settings without
restarting imports. Errors name the exact key to fix, e.g.
``VERIFICATION_LINK["PROVIDERS"]["ooto"]["APP_KEY"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings

from .exceptions import ConfigurationError

SETTING_NAME = "VERIFICATION_LINK"

logger = logging.getLogger("verification_link.conf")

#: Defaults of the top-level keys. Each is documented in README.rst ("Settings").
DEFAULTS: dict[str, Any] = {
    "DEFAULT_PROVIDER": None,
    "PROVIDERS": {},
    # The aliases a user may pick (start form, REST API); None: [DEFAULT_PROVIDER]. Staff code: any.
    "USER_PROVIDERS": None,
    "PUBLIC_BASE_URL": None,
    # HTTP timeouts (seconds) for provider calls; a provider alias may override each.
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 15.0,
    # The user's return hit refreshes synchronously: keep that call short.
    "RETURN_READ_TIMEOUT": 4.0,
    # Poll back-off: first wait, doubling per attempt without a status change, capped.
    "POLL_INTERVAL": 10,
    "POLL_MAX_INTERVAL": 300,
    # Sweeps: provider calls at once, sessions claimed per batch, and how long a claim holds.
    "POLL_CONCURRENCY": 8,
    "POLL_BATCH_SIZE": 500,
    "POLL_CLAIM_SECONDS": 120,
    # Seconds past expires_at before an open session is declared EXPIRED.
    "EXPIRY_GRACE": 300,
    # Ask a pollable provider one last time before expiring; sessions expired per transaction.
    "EXPIRY_LAST_CHECK": True,
    "EXPIRY_BATCH_SIZE": 500,
    # Days after finish before SENSITIVE_RESULT_KEYS and raw inbound bodies are scrubbed; also the
    # age at which inbound requests that matched no session, or were never authenticated, lose
    # their body and headers.
    "RETENTION_DAYS": 90,
    # Rows scrubbed per statement by the retention purge (bounded id lists, short transactions).
    "PURGE_BATCH_SIZE": 500,
    # Biometric / special-category parts of a result: scrubbed at retention, hidden from staff
    # without the ``view_sensitive_result`` permission, never in API output.
    "SENSITIVE_RESULT_KEYS": ["demography", "landmarks", "box"],
    # Where the user lands after the flow when no safe ``next`` URL was given (None: status page).
    "DEFAULT_NEXT_URL": None,
    # Dotted path of ``callable(session) -> Decision value``; run once when a session finishes.
    "DECISION_POLICY": "verification_link.policy.default_decision_policy",
    # Top-level parts of a provider ``result`` never stored at all.
    "DISCARD_RESULT_KEYS": [],
    # Inbound bodies larger than this are refused (413); smaller ones are stored with the event.
    "MAX_EVENT_BODY_BYTES": 65536,
    # Bytes of an inbound body kept while the request is not authenticated: a webhook before its
    # signature verified, a callback whose URL secret names no session. A verified webhook, or a
    # callback carrying a session's secret, keeps up to MAX_EVENT_BODY_BYTES.
    "UNVERIFIED_BODY_BYTES": 1024,
    # Seconds within which a valid-secret callback shares the provider call of the last one we
    # made for its session instead of asking again (0: every callback asks); the next poll is
    # pulled forward to the end of the window so a completion is still confirmed soon.
    "CALLBACK_COALESCE_SECONDS": 5,
    # While its owner watches the status page, an open session's provider is asked at most this
    # often (seconds; 0: only on the poll schedule): the page learns a change within about that.
    "LIVE_POLL_SECONDS": 3,
    # Background work: "auto" (Celery when the site has a non-eager Celery app), "celery", "inline".
    "TASKS": "auto",
    # REST API: the throttle rate of the scope "verification_link" when DRF's settings name none,
    # and the Retry-After (seconds) of a 503 when the provider is unavailable.
    "API_THROTTLE_RATE": "60/minute",
    "API_RETRY_AFTER": 30,
    # Beat intervals (seconds) of the sweeps in ``verification_link.tasks.beat_schedule()``.
    "POLL_SWEEP_EVERY": 10,
    "EXPIRE_SWEEP_EVERY": 60,
    "PURGE_SWEEP_EVERY": 3600,
    "LAPSE_SWEEP_EVERY": 3600,
    # Lifecycle (validated at each use, ``lifecycle()``): a start returns the user's open session
    # at the same alias and scopes unless it expires within REUSE_MIN_REMAINING seconds; at most
    # MAX_ATTEMPTS starts (None: no limit) per user within ATTEMPT_WINDOW seconds; an approved
    # verification counts for VALID_FOR_DAYS days after it finished (None: it never lapses).
    "REUSE_OPEN_SESSIONS": True,
    "REUSE_MIN_REMAINING": 300,
    "MAX_ATTEMPTS": None,
    "ATTEMPT_WINDOW": 86400,
    "VALID_FOR_DAYS": None,
}

#: Defaults shared by every provider alias (a backend adds its own).
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


def get(name: str) -> Any:
    """The value of one top-level key, or its default."""
    if name not in DEFAULTS:
        raise KeyError(name)
    return user_settings().get(name, DEFAULTS[name])


_INVALID = object()


def _whole(low: int, high: int) -> Callable[[Any], Any]:
    """A whole number from ``low`` to ``high``; ASCII digits in a string (an environment variable
    read as it is) count as the number they spell."""

    def coerce(value: Any) -> Any:
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        return _INVALID

    return coerce


def _seconds(value: Any) -> Any:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 3600:
        return value
    return _INVALID


def _keys(value: Any) -> Any:
    """A list of non-empty strings; a lone string is the one key it names — iterating it would make
    each of its letters a key and match nothing."""
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) and item for item in value):
        return value
    return _INVALID


def _hidden_keys(value: Any) -> Any:
    """``_keys``, and a lone string hides its key *as well as* the defaults: when the intent is
    unclear, hiding more is the safe side."""
    keys = _keys(value)
    if isinstance(value, str) and keys is not _INVALID:
        return sorted({*DEFAULTS["SENSITIVE_RESULT_KEYS"], *keys})
    return keys


def _rate(value: Any) -> Any:
    if isinstance(value, str) and "/" in value:
        count, _, period = value.partition("/")
        if count.isascii() and count.isdigit() and period[:1] in ("s", "m", "h", "d"):
            return value
    return _INVALID


#: Keys that guard something (how much is stored, what is hidden or kept, and for how long, how often
#: a client may call): checked each time they are read, since a site's server (gunicorn) runs no
#: system checks. Each maps to what reads the value as the site meant it, and what it must be.
GUARDS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "MAX_EVENT_BODY_BYTES": (_whole(1, 10 * 1024 * 1024), "a whole number of bytes from 1 to 10 MiB"),
    "UNVERIFIED_BODY_BYTES": (_whole(0, 10 * 1024 * 1024), "a whole number of bytes from 0 to 10 MiB"),
    "CALLBACK_COALESCE_SECONDS": (_seconds, "seconds from 0 (off) to 3600"),
    "LIVE_POLL_SECONDS": (_seconds, "seconds from 0 (off) to 3600"),
    # Ids per statement: SQLite refuses more than 32,766 variables in one.
    "PURGE_BATCH_SIZE": (_whole(1, 10_000), "a whole number from 1 to 10,000"),
    "RETENTION_DAYS": (_whole(1, 36_500), "a whole number of days from 1 to 36,500"),
    "SENSITIVE_RESULT_KEYS": (_hidden_keys, "a list of non-empty strings"),
    "DISCARD_RESULT_KEYS": (_keys, "a list of non-empty strings"),
    "API_THROTTLE_RATE": (_rate, "a rate such as '60/minute'"),
}


def _flag(value: Any) -> Any:
    return value if isinstance(value, bool) else _INVALID


def _or_none(coerce: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else coerce(value)


#: Keys of the lifecycle: each decides who may start or counts as verified, so a wrong value is
#: an error at each use (``lifecycle()``), never silently replaced: a default there would lift an
#: attempt limit or make a lapsed verification valid again.
LIFECYCLE: dict[str, tuple[Callable[[Any], Any], str]] = {
    "REUSE_OPEN_SESSIONS": (_flag, "True or False"),
    "REUSE_MIN_REMAINING": (_whole(0, 86_400), "a whole number of seconds from 0 to 86,400"),
    "MAX_ATTEMPTS": (_or_none(_whole(1, 100_000)), "None (no limit) or a whole number from 1 to 100,000"),
    "ATTEMPT_WINDOW": (_whole(1, 366 * 86_400), "a whole number of seconds from 1 to 366 days"),
    "VALID_FOR_DAYS": (_or_none(_whole(1, 36_500)), "None (never lapses) or a whole number of days from 1 to 36,500"),
    # How often beat runs each sweep (``tasks.beat_schedule()``): 0 or a week would stop it in effect.
    **{
        name: (_whole(1, 7 * 86_400), "a whole number of seconds from 1 to 7 days")
        for name in ("POLL_SWEEP_EVERY", "EXPIRE_SWEEP_EVERY", "PURGE_SWEEP_EVERY", "LAPSE_SWEEP_EVERY")
    },
}


def lifecycle(name: str) -> Any:
    """The value of a key of ``LIFECYCLE``, validated at this use: ``ConfigurationError`` naming
    the key when it is wrong (digits in a string, an environment variable read as it is, count as
    the number they spell)."""
    coerce, expected = LIFECYCLE[name]
    meant = coerce(get(name))
    if meant is _INVALID:
        raise ConfigurationError(f"{key_path(name)} must be {expected}.")
    return meant


def guarded(name: str) -> Any:
    """The value of a key of ``GUARDS``, validated at this use. A value of the wrong type whose
    meaning is clear (``"30"`` for 30 days, ``"box"`` for ``["box"]``) is read as meant; anything
    else is replaced by the default. Either way the exact key is logged as an error — never the
    value, which may be a secret — so that the site fixes it."""
    value = get(name)
    coerce, expected = GUARDS[name]
    meant = coerce(value)
    if meant is _INVALID:
        logger.error("%s must be %s; using the default until it is fixed.", key_path(name), expected)
        return DEFAULTS[name]
    if type(meant) is not type(value):
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
