"""Authentication of inbound webhooks, configurable per provider alias.

Nothing here trusts a request until one of the alias's secrets proves it. Schemes
(``WEBHOOK_AUTH`` of the alias):

- ``"hmac"`` (default): HMAC-SHA256 of the raw body — of ``f"{timestamp}.{body}"`` when a timestamp
  header is configured — under ``WEBHOOK_SIGNATURE_HEADER``, hex or base64
  (``WEBHOOK_SIGNATURE_ENCODING``), optionally prefixed (``WEBHOOK_SIGNATURE_PREFIX``, e.g.
  ``"sha256="``); several space-separated signatures may be sent (any one matching is enough).
- ``"header"``: the shared secret itself in ``WEBHOOK_SECRET_HEADER``.
- ``"path"``: the secret as the last URL segment (``webhook/<alias>/<secret>/``).

``WEBHOOK_TIMESTAMP_HEADER`` (optional, any scheme) holds Unix seconds that must lie within
``WEBHOOK_TOLERANCE`` (±300 s) of now — a replayed or delayed request is refused.
``WEBHOOK_SECRETS`` is a list, for rotation: old and new secrets are accepted side by side. With no
secret configured every webhook is refused (and a system check warns). Comparisons are constant-time.
Failures raise ``WebhookAuthenticationError`` whose ``check`` names what failed (for the log, never
the secret); the caller answers with a generic 4xx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import conf
from .exceptions import WebhookAuthenticationError

SCHEMES = ("hmac", "header", "path")
DEFAULTS: dict[str, Any] = {
    "WEBHOOK_AUTH": "hmac",
    "WEBHOOK_SECRETS": [],
    "WEBHOOK_SIGNATURE_HEADER": "X-Signature",
    "WEBHOOK_SIGNATURE_ENCODING": "hex",
    "WEBHOOK_SIGNATURE_PREFIX": "",
    "WEBHOOK_SECRET_HEADER": "X-Webhook-Secret",
    "WEBHOOK_TIMESTAMP_HEADER": None,
    "WEBHOOK_TOLERANCE": 300,
}


class WebhookRefused(WebhookAuthenticationError):
    """Authentication failed; ``check`` says which check (safe to log), ``status_code`` what to answer."""

    def __init__(self, check: str, *, status_code: int = 401) -> None:
        super().__init__(check)
        self.check = check
        self.status_code = status_code


class WebhookVerifier:
    """The webhook authentication of one provider alias (see the module docstring)."""

    def __init__(self, alias: str, config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> None:
        self.alias = alias
        merged = {**DEFAULTS, **(defaults or {}), **{k: v for k, v in config.items() if k.startswith("WEBHOOK_")}}
        self.scheme = merged["WEBHOOK_AUTH"]
        self._secrets = [str(secret) for secret in (merged["WEBHOOK_SECRETS"] or []) if secret]
        self.signature_header = merged["WEBHOOK_SIGNATURE_HEADER"]
        self.encoding = merged["WEBHOOK_SIGNATURE_ENCODING"]
        self.prefix = merged["WEBHOOK_SIGNATURE_PREFIX"] or ""
        self.secret_header = merged["WEBHOOK_SECRET_HEADER"]
        self.timestamp_header = merged["WEBHOOK_TIMESTAMP_HEADER"]
        self.tolerance = int(merged["WEBHOOK_TOLERANCE"])

    def __repr__(self) -> str:  # never the secrets
        return f"<WebhookVerifier alias={self.alias!r} scheme={self.scheme!r} secrets={len(self._secrets)}>"

    @property
    def configured(self) -> bool:
        return bool(self._secrets)

    def verify(
        self, headers: Mapping[str, str], body: bytes, *, path_secret: str | None = None, now: float | None = None
    ) -> None:
        """Return if the request is authentic, else raise ``WebhookRefused``."""
        if not self._secrets:
            raise WebhookRefused("no webhook secret configured", status_code=403)
        if self.scheme not in SCHEMES:
            raise WebhookRefused(f"unknown WEBHOOK_AUTH scheme {self.scheme!r}", status_code=403)
        timestamp = self._check_timestamp(headers, now)
        if self.scheme == "path":
            if not path_secret:
                raise WebhookRefused("missing secret path segment")
            if not _any_equal(path_secret, self._secrets):
                raise WebhookRefused("wrong secret path segment")
        elif path_secret is not None:
            raise WebhookRefused("unexpected secret path segment")
        elif self.scheme == "header":
            given = headers.get(self.secret_header)
            if not given:
                raise WebhookRefused(f"missing {self.secret_header} header")
            if not _any_equal(given, self._secrets):
                raise WebhookRefused(f"wrong secret in {self.secret_header}")
        else:
            given = headers.get(self.signature_header)
            if not given:
                raise WebhookRefused(f"missing {self.signature_header} header")
            candidates = [part[len(self.prefix) :] if part.startswith(self.prefix) else part for part in given.split()]
            expected = [self.signature(secret, body, timestamp) for secret in self._secrets]
            if not any(_any_equal(candidate, expected) for candidate in candidates):
                raise WebhookRefused(f"signature in {self.signature_header} does not match the body")

    def _check_timestamp(self, headers: Mapping[str, str], now: float | None) -> str | None:
        if not self.timestamp_header:
            return None
        raw = headers.get(self.timestamp_header)
        if not raw:
            raise WebhookRefused(f"missing {self.timestamp_header} header")
        try:
            sent = int(raw)
        except ValueError:
            raise WebhookRefused(f"{self.timestamp_header} is not Unix seconds") from None
        now = time.time() if now is None else now
        if abs(now - sent) > self.tolerance:
            raise WebhookRefused(f"{self.timestamp_header} outside the ±{self.tolerance} s tolerance")
        return raw

    def signature(self, secret: str, body: bytes, timestamp: str | int | None = None) -> str:
        """The signature of ``body`` (with ``timestamp`` when the scheme signs one) under ``secret``."""
        message = body if timestamp is None else str(timestamp).encode() + b"." + body
        digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
        return base64.b64encode(digest).decode() if self.encoding == "base64" else digest.hex()

    def sign(self, body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> dict[str, str]:
        """Headers that authenticate ``body`` (for tests and emulators): what a provider would send."""
        secret = secret if secret is not None else self._secrets[0]
        headers: dict[str, str] = {}
        stamp: str | None = None
        if self.timestamp_header:
            stamp = str(int(time.time()) if timestamp is None else timestamp)
            headers[self.timestamp_header] = stamp
        if self.scheme == "header":
            headers[self.secret_header] = secret
        elif self.scheme == "hmac":
            headers[self.signature_header] = self.prefix + self.signature(secret, body, stamp)
        return headers

    @classmethod
    def check_config(cls, alias: str, config: Mapping[str, Any]) -> list[Any]:
        from django.core.checks import Error, Warning

        messages: list[Any] = []
        secrets = config.get("WEBHOOK_SECRETS")
        if secrets is not None and (isinstance(secrets, str) or not isinstance(secrets, Sequence)):
            messages.append(
                Error(
                    f"{conf.key_path('PROVIDERS', alias, 'WEBHOOK_SECRETS')} must be a list of secrets.",
                    id="verification_link.E009",
                )
            )
        elif not secrets:
            messages.append(
                Warning(
                    f"{conf.key_path('PROVIDERS', alias, 'WEBHOOK_SECRETS')} is empty: every webhook of {alias!r} is "
                    "refused (403).",
                    hint="Add the secret shared with the provider (a list: old and new during a rotation).",
                    id="verification_link.W003",
                )
            )
        scheme = config.get("WEBHOOK_AUTH", "hmac")
        if scheme not in SCHEMES:
            messages.append(
                Error(
                    f"{conf.key_path('PROVIDERS', alias, 'WEBHOOK_AUTH')} must be one of {SCHEMES}.",
                    id="verification_link.E009",
                )
            )
        if config.get("WEBHOOK_SIGNATURE_ENCODING", "hex") not in ("hex", "base64"):
            messages.append(
                Error(
                    f"{conf.key_path('PROVIDERS', alias, 'WEBHOOK_SIGNATURE_ENCODING')} must be 'hex' or 'base64'.",
                    id="verification_link.E009",
                )
            )
        return messages


def _any_equal(given: str, secrets: Sequence[str]) -> bool:
    """Constant-time comparison against every candidate (no early exit that would time the list)."""
    given_bytes = given.encode()
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(given_bytes, secret.encode())
    return matched
