"""The sandbox's credentials and webhook secret, derived per site from its ``SECRET_KEY``.

Standard library only, and nothing read from Django settings: a site's ``settings.py`` calls
:func:`sandbox_credentials` before Django is set up, to give its provider aliases the values the
sandbox expects::

    from verification_link.sandbox.credentials import sandbox_credentials

    sandbox_keys = sandbox_credentials(SECRET_KEY)  # lowercase: not itself a Django setting
    VERIFICATION_LINK["PROVIDERS"]["sandbox"] = {
        "BACKEND": "verification_link.providers.ooto.OotoProvider",
        "APP_ID": sandbox_keys["OOTO_APP_ID"],
        "APP_KEY": sandbox_keys["OOTO_APP_KEY"],
        "BASE_URL": "http://127.0.0.1:8000/sandbox/ooto",
    }

Each value is ``HMAC-SHA256(SECRET_KEY, "verification_link.sandbox.<NAME>")`` in hex, truncated:
a public package can ship no fixed secret (anyone could read it), and one value per name means that
knowing one (the app id travels in the clear) tells nothing about the others, nor the key.
"""

from __future__ import annotations

import hashlib
import hmac

#: The emulators' credentials: name → the prefix the real provider's keys carry (so that the
#: package's key-mode checks see a test key, as with a real sandbox account).
EMULATOR_CREDENTIALS = {
    "STRIPE_IDENTITY_API_KEY": "sk_test_",
    "STRIPE_IDENTITY_WEBHOOK_SECRET": "whsec_",
    "PERSONA_API_KEY": "persona_sandbox_",
    "PERSONA_WEBHOOK_SECRET": "wbhsec_",
    "ONFIDO_API_TOKEN": "api_sandbox.",
    "ONFIDO_WEBHOOK_SECRET": "",
    "VERIFF_API_KEY": "",
    "VERIFF_SHARED_SECRET": "",
    "SUMSUB_APP_TOKEN": "sbx:",
    "SUMSUB_SECRET_KEY": "",
    "SUMSUB_WEBHOOK_SECRET": "",
    "DIDIT_API_KEY": "",
    "DIDIT_WEBHOOK_SECRET": "",
}

#: The settings of ``VERIFICATION_LINK_SANDBOX`` whose default is derived, in this order.
CREDENTIAL_NAMES = ("OOTO_APP_ID", "OOTO_APP_KEY", "VALIFY_API_KEY", "VALIFY_WEBHOOK_SECRET", *EMULATOR_CREDENTIALS)

#: Hex digits kept: 160 bits for the secrets; the app id is an identifier, shorter and recognizable.
SECRET_LENGTH = 40
APP_ID_LENGTH = 16
APP_ID_PREFIX = "sandbox-"


class SandboxCredentials(dict[str, str]):
    """The values by name (a plain ``dict`` otherwise), never shown in a repr: a settings
    module printed for debugging, or a log line that formats it, must not reveal them."""

    def __repr__(self) -> str:
        return f"<SandboxCredentials {', '.join(self)} (values hidden)>"

    __str__ = __repr__


def derive(secret_key: str | bytes, name: str) -> str:
    """The hex HMAC-SHA256 of ``"verification_link.sandbox.<name>"`` under ``secret_key``."""
    if not secret_key:
        raise ValueError("The sandbox derives its credentials from SECRET_KEY, which is empty.")
    key = secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key)
    return hmac.new(key, f"verification_link.sandbox.{name}".encode(), hashlib.sha256).hexdigest()


def sandbox_credentials(secret_key: str | bytes) -> SandboxCredentials:
    """Every ``CREDENTIAL_NAMES`` value of the site whose ``SECRET_KEY`` is ``secret_key``: the
    defaults the sandbox accepts and signs with (``OOTO_APP_ID``, …, ``STRIPE_IDENTITY_API_KEY``)."""
    values = SandboxCredentials()
    for name in CREDENTIAL_NAMES:
        digest = derive(secret_key, name)
        if name == "OOTO_APP_ID":
            values[name] = APP_ID_PREFIX + digest[:APP_ID_LENGTH]
        else:
            values[name] = EMULATOR_CREDENTIALS.get(name, "") + digest[:SECRET_LENGTH]
    return values
