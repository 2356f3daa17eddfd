"""The keys every provider alias may set (``BaseProvider.config_keys``), and the webhook keys of an
alias whose backend receives webhooks — rows of the settings table (``settings_table``).

A backend adds its own keys as a ``config_keys`` dict on its class; ``settings_table.alias_keys``
merges them with these. Any other key of an alias is reported as unknown (E016) — a warning (W008)
when the backend class declares no ``config_keys`` of its own, such as a subclass of a built-in one.
"""

from __future__ import annotations

from typing import Any

from ..settings_table import (
    ANY_TEXT,
    ANYTHING,
    DOTTED_PATH,
    NAMES,
    TEXT,
    Setting,
    choice,
    optional,
    seconds,
    url,
    whole,
)
from ..webhooks import DEFAULTS as WEBHOOK_DEFAULTS
from ..webhooks import MAX_TOLERANCE

E003, E005, E006, E009, E020 = (f"verification_link.E0{n:02}" for n in (3, 5, 6, 9, 20))

#: Keys of every alias, whatever its backend.
COMMON_KEYS: dict[str, Setting] = {
    "BACKEND": Setting(None, DOTTED_PATH, E003, "Dotted path of the provider class.", required=True),
    "BASE_URL": Setting(None, optional(url(), "the backend's"), E020, "The provider's API origin (W002 if not HTTPS)."),
    "TTL": Setting(
        86400,
        whole(1, 366 * 86400, "seconds"),
        E006,
        "Lifetime requested for a new session; at most the backend's longest (below).",
    ),
    "SCOPES": Setting(None, optional(NAMES, "the backend's default"), E005, "Default scopes of new sessions."),
    "CONNECT_TIMEOUT": Setting(
        None, optional(seconds(0.1, 300), "the global value"), E020, "This alias's connect timeout."
    ),
    "READ_TIMEOUT": Setting(None, optional(seconds(0.1, 300), "the global value"), E020, "This alias's read timeout."),
}


def webhook_keys(backend: Any) -> dict[str, Setting]:
    """The ``WEBHOOK_*`` keys of an alias of ``backend`` with the backend's defaults (``webhooks``)."""
    defaults = {**WEBHOOK_DEFAULTS, **backend.webhook_defaults}
    schemes = backend.webhook_verifier_class.schemes
    header = TEXT
    rows: dict[str, tuple[Any, str]] = {
        "WEBHOOK_AUTH": (choice(*schemes), "How webhooks are authenticated (verification_link.webhooks)."),
        "WEBHOOK_SECRETS": (optional(NAMES), "The webhook secrets, old and new side by side during a rotation."),
        "WEBHOOK_SIGNATURE_HEADER": (header, "The header of the signature."),
        "WEBHOOK_SIGNATURE_ENCODING": (choice("hex", "base64"), "How the HMAC of the hmac scheme is written."),
        "WEBHOOK_SIGNATURE_PREFIX": (optional(ANY_TEXT), "A prefix before the signature (e.g. 'sha256=')."),
        "WEBHOOK_SECRET_HEADER": (header, "The header of the shared secret (header scheme)."),
        "WEBHOOK_TIMESTAMP_HEADER": (optional(TEXT), "A header of Unix seconds that must be recent."),
        "WEBHOOK_TOLERANCE": (whole(1, MAX_TOLERANCE, "seconds"), "How far a signed timestamp may lie from now."),
    }
    keys = {
        name: Setting(defaults.get(name), kind, E009, doc, secret=name == "WEBHOOK_SECRETS")
        for name, (kind, doc) in rows.items()
    }
    for name, default in defaults.items():  # a backend's own webhook key it forgot to declare
        keys.setdefault(name, Setting(default, ANYTHING, E009, "See the backend's documentation."))
    return keys
