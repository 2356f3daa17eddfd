"""Provider registry: one shared instance per configured alias.

Instances are cached because each holds a pooled HTTP session; the cache is dropped whenever the
``VERIFICATION_LINK`` setting changes (``override_settings`` in tests).
"""

from __future__ import annotations

import threading

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .. import conf
from ..exceptions import ConfigurationError
from .base import BaseProvider, CreatedSession, CreateRequest, StatusReport, WebhookReport

__all__ = [
    "BaseProvider",
    "CreateRequest",
    "CreatedSession",
    "StatusReport",
    "WebhookReport",
    "get_provider",
    "load_backend",
    "reset_providers",
]

_instances: dict[str, BaseProvider] = {}
_lock = threading.Lock()


def load_backend(alias: str, config: dict | None = None) -> type[BaseProvider]:
    """Import the ``BACKEND`` class of an alias; errors name the key to fix."""
    config = conf.provider_config(alias) if config is None else config
    path = config.get("BACKEND")
    key = conf.key_path("PROVIDERS", alias, "BACKEND")
    if not path or not isinstance(path, str):
        raise ConfigurationError(f"{key} is missing: set it to a provider class path.")
    try:
        backend = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"{key} = {path!r} does not import: {exc}") from None
    if not (isinstance(backend, type) and issubclass(backend, BaseProvider)):
        raise ConfigurationError(f"{key} = {path!r} is not a subclass of BaseProvider.")
    return backend


def get_provider(alias: str | None = None) -> BaseProvider:
    """The provider instance of ``alias`` (default: ``DEFAULT_PROVIDER``)."""
    alias = alias or conf.default_provider()
    instance = _instances.get(alias)
    if instance is not None:
        return instance
    with _lock:
        instance = _instances.get(alias)
        if instance is None:
            config = conf.provider_config(alias)
            instance = load_backend(alias, config)(alias, config)
            _instances[alias] = instance
    return instance


def reset_providers() -> None:
    with _lock:
        for instance in _instances.values():
            instance.close()
        _instances.clear()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: object) -> None:
    if setting == conf.SETTING_NAME:
        reset_providers()
