"""Authentication of inbound webhooks, configurable per provider alias.

Nothing here trusts a request until one of the alias's secrets proves it. Schemes
(``WEBHOOK_AUTH`` of the alias):

- ``"hmac"`` (default): HMAC-SHA256 of the raw body — of ``f"{timestamp}.{body}"`` when a timestamp
  header is configured — under ``WEBHOOK_SIGNATURE_HEADER``, hex or base64
  (``WEBHOOK_SIGNATURE_ENCODING``), optionally prefixed (``WEBHOOK_SIGNATURE_PREFIX``, e.g.
  ``"sha256="``); several space-separated signatures may be sent (any one matching is enough).
- ``"header"``: the shared secret itself in ``WEBHOOK_SECRET_HEADER``.
- ``"path"``: the secret as the last URL segment (``webhook/<alias>/<secret>/``).
- ``"timestamped"``: Stripe's scheme, also Persona's — ``WEBHOOK_SIGNATURE_HEADER`` holds
  ``t=<unix seconds>,v1=<hex HMAC-SHA256 of f"{t}.{body}">``; several ``v1`` (and, during a
  rotation, several space-separated ``t=…,v1=…`` groups) may be sent; ``t`` must lie within
  ``WEBHOOK_TOLERANCE``.
- ``"standard"``: Standard Webhooks 1.0 (https://www.standardwebhooks.com) — ``webhook-id``,
  ``webhook-timestamp`` (within ``WEBHOOK_TOLERANCE``) and ``webhook-signature``: space-separated
  ``v1,<base64 HMAC-SHA256 of f"{id}.{timestamp}.{body}">`` under the base64-decoded secret that
  follows ``whsec_``. ``webhook-id`` is the delivery id that deduplicates.

``verify`` returns the delivery id the scheme authenticated (``webhook-id``), or "". A provider
whose scheme is its own subclasses ``WebhookVerifier`` (``BaseProvider.webhook_verifier_class``),
adds its name to ``schemes`` and overrides ``authenticate`` and ``sign``.

``WEBHOOK_TIMESTAMP_HEADER`` (optional, any scheme) holds Unix seconds that must lie within
``WEBHOOK_TOLERANCE`` (±300 s) of now — a replayed or delayed request is refused.
``WEBHOOK_SECRETS`` is a list, for rotation: old and new secrets are accepted side by side. With no
secret configured every webhook is refused (and a system check warns). Comparisons are constant-time.
Failures raise ``WebhookAuthenticationError`` whose ``check`` names what failed (for the log, never
the secret); the caller answers with a generic 4xx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from . import conf
from .exceptions import WebhookAuthenticationError

SCHEMES = ("hmac", "header", "path", "timestamped", "standard")
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
#: Longest accepted tolerance (a day): a larger one would switch replay protection off in effect.
MAX_TOLERANCE = 86400
#: Unix seconds have 10 digits until the year 2286.
MAX_TIMESTAMP_DIGITS = 12
#: Longest delivery id kept (Standard Webhooks ids are short; a longer one is refused).
MAX_DELIVERY_ID = 255
#: Signature headers longer than this are refused before any parsing (a rotation sends a few).
MAX_SIGNATURE_HEADER = 4096
#: At most this many ``t=…,v1=…`` groups, and ``v1`` values per group, are read (a rotation
#: sends two or three): the rest of a header cannot multiply the HMACs computed before authentication.
MAX_SIGNATURE_GROUPS = 4
MAX_SIGNATURES_PER_GROUP = 4
STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"
STANDARD_SECRET_PREFIX = "whsec_"

logger = logging.getLogger("verification_link.webhooks")


class WebhookRefused(WebhookAuthenticationError):
    """Authentication failed; ``check`` says which check (safe to log), ``status_code`` what to answer."""

    def __init__(self, check: str, *, status_code: int = 401) -> None:
        super().__init__(check)
        self.check = check
        self.status_code = status_code


class WebhookVerifier:
    """The webhook authentication of one provider alias (see the module docstring)."""

    #: The ``WEBHOOK_AUTH`` values this class knows.
    schemes: tuple[str, ...] = SCHEMES

    def __init__(self, alias: str, config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> None:
        self.alias = alias
        merged = {**DEFAULTS, **(defaults or {}), **{k: v for k, v in config.items() if k.startswith("WEBHOOK_")}}
        #: What is wrong with the alias's settings (a message naming the exact key), or "": checked
        #: here, at use, because a server such as gunicorn runs no system checks. A guard that is
        #: misconfigured refuses every webhook of the alias rather than guessing.
        self.config_error = _config_error(alias, merged, self.schemes)
        secrets = merged["WEBHOOK_SECRETS"]
        self._secrets: list[str] = [] if self.config_error else list(secrets or [])
        self.scheme = merged["WEBHOOK_AUTH"]
        self.signature_header = merged["WEBHOOK_SIGNATURE_HEADER"]
        self.encoding = merged["WEBHOOK_SIGNATURE_ENCODING"]
        self.prefix = merged["WEBHOOK_SIGNATURE_PREFIX"] or ""
        self.secret_header = merged["WEBHOOK_SECRET_HEADER"]
        self.timestamp_header = merged["WEBHOOK_TIMESTAMP_HEADER"]
        self.tolerance = merged["WEBHOOK_TOLERANCE"] if not self.config_error else 0

    def __repr__(self) -> str:  # never the secrets
        return f"<WebhookVerifier alias={self.alias!r} scheme={self.scheme!r} secrets={len(self._secrets)}>"

    @property
    def configured(self) -> bool:
        return bool(self._secrets)

    def verify(
        self, headers: Mapping[str, str], body: bytes, *, path_secret: str | None = None, now: float | None = None
    ) -> str:
        """Return the authenticated delivery id ("" where the scheme has none) if the request is
        authentic, else raise ``WebhookRefused``."""
        if self.config_error:
            logger.error("webhooks of %r are refused: %s", self.alias, self.config_error)
            raise WebhookRefused("webhook settings invalid", status_code=403)
        if not self._secrets:
            raise WebhookRefused("no webhook secret configured", status_code=403)
        if path_secret is not None and self.scheme != "path":
            raise WebhookRefused("unexpected secret path segment")
        return self.authenticate(headers, body, path_secret=path_secret, now=time.time() if now is None else now)

    def authenticate(self, headers: Mapping[str, str], body: bytes, *, path_secret: str | None, now: float) -> str:
        """The scheme's own check, once the settings and secrets are known good: the delivery id, or
        raise ``WebhookRefused``. Subclasses with a scheme of their own override it."""
        if self.scheme == "standard":
            return self._standard(headers, body, now)
        if self.scheme == "timestamped":
            self._timestamped(headers, body, now)
            return ""
        timestamp = self._check_timestamp(headers, now)
        if self.scheme == "path":
            if not path_secret:
                raise WebhookRefused("missing secret path segment")
            if not _any_equal(path_secret, self._secrets):
                raise WebhookRefused("wrong secret path segment")
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
        return ""

    def _check_timestamp(self, headers: Mapping[str, str], now: float) -> str | None:
        if not self.timestamp_header:
            return None
        return self.check_unix_seconds(headers.get(self.timestamp_header), self.timestamp_header, now)

    def check_unix_seconds(self, raw: str | None, what: str, now: float) -> str:
        """``raw`` if it is Unix seconds within the tolerance of ``now``, else ``WebhookRefused``
        naming ``what`` (a header)."""
        if not raw:
            raise WebhookRefused(f"missing {what}")
        # ASCII digits only, and few of them: int() also takes "+5", " 5", "1_0" and other scripts'
        # digits, and 400 digits overflow the float arithmetic below (a 500 before authentication).
        if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_TIMESTAMP_DIGITS):
            raise WebhookRefused(f"{what} is not Unix seconds")
        if abs(now - int(raw)) > self.tolerance:
            raise WebhookRefused(f"{what} outside the ±{self.tolerance} s tolerance")
        return raw

    def _timestamped(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Stripe's ``t=…,v1=…`` (Persona's too): any ``v1`` of any group matching its group's ``t``."""
        header = self.signature_header
        given = headers.get(header) or ""
        if not given:
            raise WebhookRefused(f"missing {header} header")
        if len(given) > MAX_SIGNATURE_HEADER:
            raise WebhookRefused(f"{header} too long")
        groups: dict[str, list[str]] = {}  # t → its v1 signatures (a stamp is hashed once)
        for group in given.split()[:MAX_SIGNATURE_GROUPS]:
            stamp, signatures = "", []
            for item in group.split(",")[: MAX_SIGNATURES_PER_GROUP + 1]:
                name, _, value = item.strip().partition("=")
                if name == "t":
                    stamp = value
                elif name == "v1" and value:
                    signatures.append(value)
            if signatures:
                groups.setdefault(stamp, []).extend(signatures[:MAX_SIGNATURES_PER_GROUP])
        if not groups:
            raise WebhookRefused(f"no v1 signature in {header}")
        # Only stamps within the tolerance are hashed at all: a header of many stale groups costs
        # no HMAC over the body (no CPU spent on a request before it is authenticated).
        fresh = [stamp for stamp in groups if self._fresh(stamp, now)]
        if not fresh:
            raise WebhookRefused(f"t of {header} outside the ±{self.tolerance} s tolerance or not Unix seconds")
        for stamp in fresh:
            expected = [self.signature(secret, body, stamp) for secret in self._secrets]
            if any(_any_equal(signature, expected) for signature in groups[stamp]):
                return
        raise WebhookRefused(f"signature in {header} does not match the body")

    def _fresh(self, stamp: str, now: float) -> bool:
        return (
            stamp.isascii()
            and stamp.isdigit()
            and len(stamp) <= MAX_TIMESTAMP_DIGITS
            and abs(now - int(stamp)) <= self.tolerance
        )

    def _standard(self, headers: Mapping[str, str], body: bytes, now: float) -> str:
        """Standard Webhooks 1.0: returns the authenticated ``webhook-id``."""
        delivery_id = headers.get(STANDARD_ID) or ""
        if not delivery_id:
            raise WebhookRefused(f"missing {STANDARD_ID} header")
        if len(delivery_id) > MAX_DELIVERY_ID or not delivery_id.isascii() or not delivery_id.isprintable():
            raise WebhookRefused(f"{STANDARD_ID} is not a short printable id")
        stamp = self.check_unix_seconds(headers.get(STANDARD_TIMESTAMP), f"{STANDARD_TIMESTAMP} header", now)
        given = headers.get(STANDARD_SIGNATURE) or ""
        if not given:
            raise WebhookRefused(f"missing {STANDARD_SIGNATURE} header")
        if len(given) > MAX_SIGNATURE_HEADER:
            raise WebhookRefused(f"{STANDARD_SIGNATURE} too long")
        candidates = [part[3:] for part in given.split() if part.startswith("v1,")]
        expected = [self.standard_signature(secret, delivery_id, stamp, body) for secret in self._secrets]
        if not any(_any_equal(candidate, expected) for candidate in candidates):
            raise WebhookRefused(f"signature in {STANDARD_SIGNATURE} does not match the body")
        return delivery_id

    @staticmethod
    def standard_signature(secret: str, delivery_id: str, timestamp: str | int, body: bytes) -> str:
        """Base64 HMAC-SHA256 of ``f"{id}.{timestamp}.{body}"`` under the decoded ``whsec_`` secret."""
        message = f"{delivery_id}.{timestamp}.".encode() + body
        digest = hmac.new(_standard_key(secret), message, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def signature(self, secret: str, body: bytes, timestamp: str | int | None = None) -> str:
        """The signature of ``body`` (with ``timestamp`` when the scheme signs one) under ``secret``."""
        message = body if timestamp is None else str(timestamp).encode() + b"." + body
        digest = hmac.new(_bytes(secret), message, hashlib.sha256).digest()
        return base64.b64encode(digest).decode() if self.encoding == "base64" else digest.hex()

    def sign(self, body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> dict[str, str]:
        """Headers that authenticate ``body`` (for tests and emulators): what a provider would send."""
        secret = secret if secret is not None else self._secrets[0]
        headers: dict[str, str] = {}
        stamp: str | None = None
        if self.scheme in ("standard", "timestamped"):
            stamp = str(int(time.time()) if timestamp is None else timestamp)
            if self.scheme == "timestamped":
                return {self.signature_header: f"t={stamp},v1={self.signature(secret, body, stamp)}"}
            delivery_id = f"msg_{uuid.uuid4().hex}"
            return {
                STANDARD_ID: delivery_id,
                STANDARD_TIMESTAMP: stamp,
                STANDARD_SIGNATURE: "v1," + self.standard_signature(secret, delivery_id, stamp, body),
            }
        if self.timestamp_header:
            stamp = str(int(time.time()) if timestamp is None else timestamp)
            headers[self.timestamp_header] = stamp
        if self.scheme == "header":
            headers[self.secret_header] = secret
        elif self.scheme == "hmac":
            headers[self.signature_header] = self.prefix + self.signature(secret, body, stamp)
        return headers

    @classmethod
    def check_config(
        cls, alias: str, config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """System-check messages: the same validation ``verify`` applies at use (E009), and a
        warning when no secret is configured (W003)."""
        from django.core.checks import Error, Warning

        verifier = cls(alias, config, defaults)
        if verifier.config_error:
            message = f"{verifier.config_error}: every webhook of {alias!r} is refused (403)."
            return [Error(message, id="verification_link.E009")]
        if not verifier.configured:
            return [
                Warning(
                    f"{conf.key_path('PROVIDERS', alias, 'WEBHOOK_SECRETS')} is empty: every webhook of {alias!r} is "
                    "refused (403).",
                    hint="Add the secret shared with the provider (a list: old and new during a rotation).",
                    id="verification_link.W003",
                )
            ]
        return []


def _config_error(alias: str, merged: Mapping[str, Any], schemes: Sequence[str] = SCHEMES) -> str:
    """What makes the alias's webhook settings unusable, naming the exact key; "" when they are fine.
    Never the values: they may be secrets."""

    def key(name: str) -> str:
        return conf.key_path("PROVIDERS", alias, name)

    secrets = merged["WEBHOOK_SECRETS"]
    # A string is a Sequence too: iterating it would make each of its characters a secret.
    if secrets is not None and not (
        isinstance(secrets, (list, tuple)) and all(isinstance(secret, str) and secret for secret in secrets)
    ):
        return f"{key('WEBHOOK_SECRETS')} must be a list of non-empty strings"
    if merged["WEBHOOK_AUTH"] not in schemes:
        return f"{key('WEBHOOK_AUTH')} must be one of {', '.join(schemes)}"
    if merged["WEBHOOK_AUTH"] == "standard":
        for secret in secrets or ():
            try:
                _standard_key(secret)
            except ValueError:
                return f"{key('WEBHOOK_SECRETS')} must hold Standard Webhooks secrets ('whsec_' and base64)"
    if merged["WEBHOOK_SIGNATURE_ENCODING"] not in ("hex", "base64"):
        return f"{key('WEBHOOK_SIGNATURE_ENCODING')} must be 'hex' or 'base64'"
    tolerance = merged["WEBHOOK_TOLERANCE"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or not 1 <= tolerance <= MAX_TOLERANCE:
        return f"{key('WEBHOOK_TOLERANCE')} must be whole seconds between 1 and {MAX_TOLERANCE}"
    for name in ("WEBHOOK_SIGNATURE_HEADER", "WEBHOOK_SECRET_HEADER"):
        if not isinstance(merged[name], str) or not merged[name]:
            return f"{key(name)} must be a header name"
    if merged["WEBHOOK_TIMESTAMP_HEADER"] is not None and not (
        isinstance(merged["WEBHOOK_TIMESTAMP_HEADER"], str) and merged["WEBHOOK_TIMESTAMP_HEADER"]
    ):
        return f"{key('WEBHOOK_TIMESTAMP_HEADER')} must be a header name or None"
    if merged["WEBHOOK_SIGNATURE_PREFIX"] is not None and not isinstance(merged["WEBHOOK_SIGNATURE_PREFIX"], str):
        return f"{key('WEBHOOK_SIGNATURE_PREFIX')} must be a string"
    return ""


def _standard_key(secret: str) -> bytes:
    """The key of a Standard Webhooks secret: the base64 after ``whsec_`` (the prefix optional, as
    the reference libraries take it). ``ValueError`` when it is not base64."""
    encoded = secret[len(STANDARD_SECRET_PREFIX) :] if secret.startswith(STANDARD_SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if not key:
        raise ValueError("empty key")
    return key


def _bytes(text: str) -> bytes:
    # Header values are Latin-1 text from the server; a test client may send any str at all.
    return text.encode("utf-8", "surrogatepass")


def _any_equal(given: str, secrets: Sequence[str]) -> bool:
    """Constant-time comparison against every candidate (no early exit that would time the list)."""
    given_bytes = _bytes(given)
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(given_bytes, _bytes(secret))
    return matched
