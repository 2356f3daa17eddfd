"""The one settings resolver.

Everything is read from ``settings.VERIFICATION_LINK`` at the moment it is needed, never cached at
import time, so ``override_settings`` works in tests and a site can change settings without
restarting imports. Errors name the exact key to fix, e.g.
``VERIFICATION_LINK["PROVIDERS"]["ooto"]["APP_KEY"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from .exceptions import ConfigurationError

SETTING_NAME = "VERIFICATION_LINK"

#: Defaults of the top-level keys. Each is documented in README.rst ("Settings").
DEFAULTS: dict[str, Any] = {
    "DEFAULT_PROVIDER": None,
    "PROVIDERS": {},
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
    # Days after finish before SENSITIVE_RESULT_KEYS and raw inbound bodies are scrubbed.
    "RETENTION_DAYS": 90,
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
