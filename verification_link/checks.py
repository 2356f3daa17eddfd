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
E014  a top-level key has a wrong type or value (the table: ``settings_table.TOP_LEVEL``)
E015  an unknown key in VERIFICATION_LINK (a typo would silently leave a guard at its default)
E016  an unknown key in an alias of PROVIDERS (not among its backend's ``config_keys``; only when
      the backend class declares ``config_keys`` itself, not only inherits them)
E017  an unknown key or a wrong value in VERIFICATION_LINK_SANDBOX (sandbox/checks.py)
E020  a provider's own setting has a wrong value (e.g. Persona LINK; the message names the key)
W001  PUBLIC_BASE_URL is not HTTPS while DEBUG is off
W002  a provider BASE_URL is not HTTPS
W003  WEBHOOK_SECRETS of an alias is empty (webhooks.py)
W004  the sandbox is installed while DEBUG is off, allowed by ALLOW_WITHOUT_DEBUG (sandbox/checks.py)
W005  a provider's live key while DEBUG is on (BaseProvider.key_prefixes)
W006  a provider's test key while DEBUG is off (BaseProvider.key_prefixes)
W007  a webhook secret without the provider's prefix (BaseProvider.webhook_secret_prefixes)
W008  a key of an alias whose backend class declares no ``config_keys`` of its own (a third-party
      backend, or a subclass of a built-in one), beyond the keys it inherits: it cannot be checked

Every key has one row in a table (default, validator, check id, doc): ``settings_table.TOP_LEVEL``,
``BaseProvider.config_keys`` merged with the backend's own (``settings_table.alias_keys``), and
``sandbox.conf.SANDBOX_KEYS``. The checks here validate every key present against its row; the
specific checks (alias membership, a backend's scopes and longest TTL, webhook schemes, importing
the policy) come first, and a row's message is left out where one of them already names that key.
Unknown keys are errors, not warnings: a misspelt guard (``MAX_ATTEMPT``, ``WEBHOOK_SECRET``)
otherwise leaves the real key at its default without a word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning
from django.utils.module_loading import import_string

from . import conf
from .exceptions import ConfigurationError
from .settings_table import INVALID, TOP_LEVEL, Setting, alias_keys, declares_keys, unknown_key_hint

#: The first key path of a message (``VERIFICATION_LINK["PROVIDERS"]["ooto"]["TTL"]``).
KEY_PATH = re.compile(r'VERIFICATION_LINK(?:\["[^"]*"\])+')


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        configured = conf.user_settings()
        providers = conf.providers()
    except ConfigurationError as exc:
        return [Error(str(exc), id="verification_link.E001")]
    specific: list[CheckMessage] = []
    specific += _check_default_provider(providers)
    rows: list[CheckMessage] = []
    for alias, config in providers.items():
        alias_specific, alias_rows = _check_provider(alias, config)
        specific += alias_specific
        rows += alias_rows
    specific += _check_public_base_url()
    specific += _check_decision_policy()
    specific += _check_user_providers()
    rows += _check_unknown_keys(configured)
    rows += [
        message
        for name, setting in TOP_LEVEL.items()
        if name in configured
        for message in _check_value(configured[name], setting, conf.key_path(name))
    ]
    return without_repeats(specific, rows)


def _first_key(message: CheckMessage) -> str:
    match = KEY_PATH.search(str(message.msg))
    return match.group() if match else ""


def without_repeats(specific: list[CheckMessage], rows: list[CheckMessage]) -> list[CheckMessage]:
    """``specific``, and those of ``rows`` about a key no message of ``specific`` with the same id names."""
    named = {(m.id, _first_key(m)) for m in specific}
    return [*specific, *(m for m in rows if (m.id, _first_key(m)) not in named)]


def _check_value(value: Any, setting: Setting, key: str) -> list[CheckMessage]:
    """The table row's verdict on one value: its check id, naming the exact key, never the value."""
    if setting.kind(value) is not INVALID:
        return []
    return [Error(f"{key} must be {setting.kind.expected}.", hint=setting.doc or None, id=setting.check_id)]


def _check_unknown_keys(configured: Mapping[str, Any]) -> list[CheckMessage]:
    return [
        Error(
            f"{conf.key_path(str(name))} is not a setting of django-verification-link.",
            hint=unknown_key_hint(name, TOP_LEVEL),
            id="verification_link.E015",
        )
        for name in configured
        if name not in TOP_LEVEL
    ]


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


def _check_provider(alias: str, config: Any) -> tuple[list[CheckMessage], list[CheckMessage]]:
    """(the backend's own checks, the table's: unknown keys and each key's value) of one alias."""
    from .providers import load_backend

    if not isinstance(config, Mapping):
        return [Error(f"{conf.key_path('PROVIDERS', alias)} must be a dict.", id="verification_link.E001")], []
    try:
        backend = load_backend(alias, {**conf.PROVIDER_DEFAULTS, **config})
    except ConfigurationError as exc:
        return [Error(str(exc), id="verification_link.E003")], []
    keys = alias_keys(backend)
    declared = declares_keys(backend)
    rows: list[CheckMessage] = []
    for name, value in config.items():
        key = conf.key_path("PROVIDERS", alias, str(name))
        if name in keys:
            rows += _check_value(value, keys[name], key)
        elif declared:
            rows.append(
                Error(
                    f"{key} is not a setting of {backend.display_name} ({backend.__module__}.{backend.__name__}).",
                    hint=unknown_key_hint(name, keys),
                    id="verification_link.E016",
                )
            )
        else:
            parent = backend.__mro__[1].__name__
            rows.append(
                CheckWarning(
                    f"{key} cannot be checked: {backend.__name__} declares no config_keys of its own.",
                    hint=(
                        f"Declare the keys it reads: config_keys = {{**{parent}.config_keys, "
                        f'"{name}": Setting(...)}} (see BaseProvider.config_keys).'
                    ),
                    id="verification_link.W008",
                )
            )
    return list(backend.check_config(alias, config)), rows


def _check_public_base_url() -> list[CheckMessage]:
    # Whether it is an origin at all is its table row's (E007); here: whether it is HTTPS.
    value = conf.raw("PUBLIC_BASE_URL")
    if not value or TOP_LEVEL["PUBLIC_BASE_URL"].kind(value) is INVALID:
        return []
    if urlsplit(value).scheme != "https" and not settings.DEBUG:
        return [
            CheckWarning(
                f"{conf.key_path('PUBLIC_BASE_URL')} is not HTTPS while DEBUG is off: providers would call back "
                "and send users over plain HTTP.",
                hint="Use an https:// origin in production.",
                id="verification_link.W001",
            )
        ]
    return []


def _check_decision_policy() -> list[CheckMessage]:
    path = conf.raw("DECISION_POLICY")
    if TOP_LEVEL["DECISION_POLICY"].kind(path) is INVALID:
        return []  # its table row says what it must be (E008)
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
