"""The system check that keeps the sandbox out of production.

``verification_link.E012``: the sandbox is installed while ``DEBUG`` is off — anyone could open a
sandbox link and pick "Pass all". ``verification_link.W004``: the same, explicitly allowed with
``VERIFICATION_LINK_SANDBOX["ALLOW_WITHOUT_DEBUG"] = True`` (a staging site). Registered by the
sandbox's own app config, so a site without the sandbox never runs it; the views refuse to serve
in the same conditions (``common.only_when_allowed``), since production servers run no checks.

``verification_link.E017``: an unknown key of ``VERIFICATION_LINK_SANDBOX`` (with a did-you-mean),
or a value its row of ``conf.SANDBOX_KEYS`` refuses, naming the exact key.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured

from ..settings_table import INVALID, unknown_key_hint
from .conf import SANDBOX_KEYS, SETTING_NAME, key_path, sandbox_setting

APP = "verification_link.sandbox"


@register(Tags.security)
def check_sandbox_without_debug(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not apps.is_installed(APP) or settings.DEBUG:
        return []
    key = key_path("ALLOW_WITHOUT_DEBUG")
    try:
        allowed = sandbox_setting("ALLOW_WITHOUT_DEBUG")
    except ImproperlyConfigured as exc:
        return [Error(f"{exc} The sandbox ({APP}) stays closed while DEBUG is off.", id="verification_link.E012")]
    if allowed is True:
        return [
            CheckWarning(
                f"The sandbox ({APP}) is installed and serving while DEBUG is off ({key} is True): "
                "anyone who can reach it can be verified without a real check.",
                hint="Only on a staging site; remove it from INSTALLED_APPS in production.",
                id="verification_link.W004",
            )
        ]
    if allowed not in (False, None):
        return [
            Error(
                f"{key} must be True or False, not {allowed!r}; the sandbox ({APP}) stays closed while DEBUG is off.",
                hint="Write the boolean True in settings, not a string from the environment.",
                id="verification_link.E012",
            )
        ]
    return [
        Error(
            f"The sandbox ({APP}) is installed while DEBUG is off: its pages let anyone pass verification, "
            "so it answers 404 to every request.",
            hint=f"Remove it from INSTALLED_APPS in production, or set {key} = True on a staging site.",
            id="verification_link.E012",
        )
    ]


@register(Tags.compatibility)
def check_sandbox_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not apps.is_installed(APP):
        return []
    configured = getattr(settings, SETTING_NAME, None) or {}
    if not isinstance(configured, dict):
        return [Error(f"{SETTING_NAME} must be a dict.", id="verification_link.E017")]
    messages: list[CheckMessage] = []
    for name, value in configured.items():
        row = SANDBOX_KEYS.get(name)
        if row is None:
            messages.append(
                Error(
                    f"{key_path(str(name))} is not a setting of the sandbox.",
                    hint=unknown_key_hint(name, SANDBOX_KEYS),
                    id="verification_link.E017",
                )
            )
        # ALLOW_WITHOUT_DEBUG is the guard's own check's (E012 above), with DEBUG off, where it matters.
        elif name != "ALLOW_WITHOUT_DEBUG" and row.kind(value) is INVALID:
            messages.append(
                Error(f"{key_path(name)} must be {row.kind.expected}.", hint=row.doc or None, id=row.check_id)
            )
    return messages
