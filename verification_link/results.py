"""Reading a provider result for people: per-check rows, failed quality checks, and redaction of the
biometric / special-category parts (``SENSITIVE_RESULT_KEYS``) for viewers without the
``verification_link.view_sensitive_result`` permission. Shared by the admin and the API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import conf
from .exceptions import ConfigurationError
from .models import VerificationSession
from .providers import get_provider
from .providers.types import CheckRow

SENSITIVE_PERMISSION = "verification_link.view_sensitive_result"
REDACTED = "[hidden: needs the view_sensitive_result permission]"


def can_view_sensitive(user: Any) -> bool:
    return bool(user and user.is_active and user.has_perm(SENSITIVE_PERMISSION))


def redact(result: Mapping[str, Any] | None, *, sensitive: bool, provider: str | None = None) -> dict[str, Any]:
    """The result without its sensitive parts, unless ``sensitive`` may be shown: the provider
    alias's own notion of them (``BaseProvider.sensitive_parts_removed``) when it is configured, else
    ``SENSITIVE_RESULT_KEYS``."""
    result = dict(result or {})
    if sensitive:
        return result
    if provider:
        try:
            return get_provider(provider).sensitive_parts_removed(result)
        except ConfigurationError:
            pass  # an alias since removed from settings: the generic keys still apply
    hidden = set(conf.guarded("SENSITIVE_RESULT_KEYS"))
    return {key: value for key, value in result.items() if key not in hidden}


def check_rows(session: VerificationSession) -> list[CheckRow]:
    """The readable check rows of the session's result (``BaseProvider.check_rows``: by default
    one per requested scope, passed as the provider judged it, and the score)."""
    result = session.result or {}
    try:
        return get_provider(session.provider).check_rows(session.scopes or [], result)
    except ConfigurationError:  # alias removed from settings: still show what is stored
        return [CheckRow(scope, None, None) for scope in session.scopes or []]


def quality_checks(result: Mapping[str, Any] | None) -> list[tuple[str, bool | None, Any]]:
    """``(name, fine, score or value)`` of each quality check, failed ones first. Read ``fine``:
    for several checks a high score is bad."""
    quality = (result or {}).get("quality")
    if not isinstance(quality, Mapping):
        return []
    checks = []
    for name, value in quality.items():
        if isinstance(value, Mapping):
            fine = value.get("fine") if isinstance(value.get("fine"), bool) else None
            checks.append((name, fine, value.get("score", value.get("value"))))
        else:
            checks.append((name, None, value))  # head pose: yaw, pitch, roll
    return sorted(checks, key=lambda check: (check[1] is not False, check[0]))


def summary(session: VerificationSession) -> dict[str, Any]:
    """Per-scope passed/score, nothing sensitive: what the API shows a session's owner."""
    return {row.scope: {"passed": row.passed, "score": row.score} for row in check_rows(session)}
