"""Typed errors.

Each error also inherits the Django or stdlib class it behaves like, so code that does not know
this package still reacts correctly (a ``WebhookAuthenticationError`` is a ``SuspiciousOperation``
and Django answers 400; a ``ConfigurationError`` is an ``ImproperlyConfigured``).

Messages never carry secrets: no API keys, no tokens, no hand-off URLs. Provider errors keep the
HTTP status and the provider's own error code as attributes so callers branch on those, not on text.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation


class VerificationLinkError(Exception):
    """Base class of every error raised by this package."""


class ConfigurationError(VerificationLinkError, ImproperlyConfigured):
    """The ``VERIFICATION_LINK`` setting is missing something or holds a wrong value."""


class InvalidTransition(VerificationLinkError, ValueError):
    """The requested change is not allowed from the session's current state."""


class InvalidRequest(VerificationLinkError, ValueError):
    """The caller asked for something the app or the provider cannot do (unknown scope, bad TTL…)."""


class WebhookAuthenticationError(VerificationLinkError, SuspiciousOperation):
    """An inbound webhook failed authentication; Django answers 400 if nobody catches it."""


class TooManyAttempts(VerificationLinkError):
    """The user started ``MAX_ATTEMPTS`` verifications within ``ATTEMPT_WINDOW``: no more until
    ``available_at`` (``retry_after`` seconds from when it was raised). Views answer 429 with
    ``Retry-After``."""

    def __init__(self, message: str, *, available_at: datetime, retry_after: int) -> None:
        super().__init__(message)
        self.available_at = available_at
        self.retry_after = retry_after


class ProviderError(VerificationLinkError):
    """A provider call failed.

    ``status_code`` is the HTTP status (``None`` when no answer arrived), ``code`` the provider's
    own error code when it sent one, ``retryable`` whether trying again later may help.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        code: str | int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.code = code
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.code not in (None, ""):
            parts.append(f"code {self.code}")
        text = ", ".join(parts)
        return f"{self.provider}: {text}" if self.provider else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"status_code={self.status_code!r}, code={self.code!r}, retryable={self.retryable!r})"
        )


class ProviderAuthError(ProviderError):
    """The provider refused our credentials (HTTP 401/403): a configuration problem, not transient."""


class ProviderRejected(ProviderError):
    """The provider refused the request itself (HTTP 4xx other than 401/403)."""


class ProviderUnavailable(ProviderError):
    """No usable answer: 5xx, timeout, connection error, non-JSON or wrongly shaped body."""

    retryable = True
