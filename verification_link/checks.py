"""System checks. Errors ``verification_link.E0xx``, warnings ``verification_link.W0xx``; each
message names the exact settings key to fix.

E001  VERIFICATION_LINK is not a dict / PROVIDERS is not a dict of dicts
E002  DEFAULT_PROVIDER missing, or not an alias of PROVIDERS
E003  a provider's BACKEND is missing or does not import
E004  a provider credential is missing (backend-specific, see BaseProvider.check_config)
E005  SCOPES names a scope the provider does not know
E006  TTL out of the provider's range
E007  PUBLIC_BASE_URL is not an absolute http(s) origin
E008  DECISION_POLICY does not import
E009  a WEBHOOK_* setting of an alias has a wrong value (webhooks.py)
E010  a provider's language setting is not one it offers (Valify LANG, Onfido LANGUAGE)
E011  USER_PROVIDERS is not a list of configured aliases
E012  the sandbox is installed while DEBUG is off (verification_link/sandbox/checks.py)
E013  a lifecycle setting (REUSE_OPEN_SESSIONS, MAX_ATTEMPTS, ATTEMPT_WINDOW, VALID_FOR_DAYS, *_SWEEP_EVERY)
      has a wrong value
E020  a provider's own setting has a wrong value (e.g. Persona LINK; the message names the key)
W001  PUBLIC_BASE_URL is not HTTPS while DEBUG is off
W002  a provider BASE_URL is not HTTPS
W003  WEBHOOK_SECRETS of an alias is empty (webhooks.py)
W004  the sandbox is installed while DEBUG is off, allowed by ALLOW_WITHOUT_DEBUG (sandbox/checks.py)
W005  a provider's live key while DEBUG is on (BaseProvider.key_prefixes)
W006  a provider's test key while DEBUG is off (BaseProvider.key_prefixes)
W007  a webhook secret without the provider's prefix (BaseProvider.webhook_secret_prefixes)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning
from django.utils.module_loading import import_string

from . import conf
from .exceptions import ConfigurationError


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        conf.user_settings()
        providers = conf.providers()
    except ConfigurationError as exc:
        return [Error(str(exc), id="verification_link.E001")]
    messages: list[CheckMessage] = []
    messages += _check_default_provider(providers)
    for alias, config in providers.items():
        messages += _check_provider(alias, config)
    messages += _check_public_base_url()
    messages += _check_decision_policy()
    messages += _check_user_providers()
    messages += _check_lifecycle()
    return messages


def _check_lifecycle() -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for name in conf.LIFECYCLE:
        try:
            conf.lifecycle(name)
        except ConfigurationError as exc:
            messages.append(Error(str(exc), id="verification_link.E013"))
    return messages


def _check_default_provider(providers: Mapping[str, Any]) -> list[CheckMessage]:
    alias = conf.get("DEFAULT_PROVIDER")
    key = conf.key_path("DEFAULT_PROVIDER")
    if not alias:
        if len(providers) == 1:
            return []
        hint = "Configure at least one provider in PROVIDERS." if not providers else None
        return [
            Error(
                f"{key} is not set.",
                hint=hint or "Set it to one of: " + ", ".join(providers),
                id="verification_link.E002",
            )
        ]
    if alias not in providers:
        return [
            Error(
                f"{key} = {alias!r} is not an alias of {conf.key_path('PROVIDERS')}.",
                hint="Configured aliases: " + (", ".join(providers) or "none"),
                id="verification_link.E002",
            )
        ]
    return []


def _check_provider(alias: str, config: Any) -> list[CheckMessage]:
    from .providers import load_backend

    if not isinstance(config, Mapping):
        return [Error(f"{conf.key_path('PROVIDERS', alias)} must be a dict.", id="verification_link.E001")]
    try:
        backend = load_backend(alias, {**conf.PROVIDER_DEFAULTS, **config})
    except ConfigurationError as exc:
        return [Error(str(exc), id="verification_link.E003")]
    return backend.check_config(alias, config)


def _check_public_base_url() -> list[CheckMessage]:
    value = conf.get("PUBLIC_BASE_URL")
    key = conf.key_path("PUBLIC_BASE_URL")
    if not value:
        return []
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        return [
            Error(f"{key} must be an absolute origin such as 'https://www.example.com'.", id="verification_link.E007")
        ]
    if parts.scheme != "https" and not settings.DEBUG:
        return [
            CheckWarning(
                f"{key} is not HTTPS while DEBUG is off: providers would call back and send users over plain HTTP.",
                hint="Use an https:// origin in production.",
                id="verification_link.W001",
            )
        ]
    return []


def _check_decision_policy() -> list[CheckMessage]:
    path = conf.get("DECISION_POLICY")
    try:
        policy = import_string(path)
    except ImportError as exc:
        return [
            Error(f"{conf.key_path('DECISION_POLICY')} = {path!r} does not import: {exc}", id="verification_link.E008")
        ]
    if not callable(policy):
        return [Error(f"{conf.key_path('DECISION_POLICY')} = {path!r} is not callable.", id="verification_link.E008")]
    return []


def _check_user_providers() -> list[CheckMessage]:
    # The same validation the start form and the API apply at each use (conf.user_providers).
    try:
        conf.user_providers(strict=True)
    except ConfigurationError as exc:
        return [
            Error(
                str(exc),
                hint="Until it is fixed, users may start only with DEFAULT_PROVIDER.",
                id="verification_link.E011",
            )
        ]
    return []
