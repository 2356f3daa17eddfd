"""The API's errors and their shape, ``{"code", "detail"}``, alongside the site's exception handler.

- The errors of our own (``VerificationLinkAPIError``: provider unavailable or refusing, the site's
  settings wrong, a transition not possible, too many attempts) are always ``{"code", "detail"}``,
  whichever handler the site configured.
- Everything else raised in our views (not authenticated, permission denied, not found, throttled,
  a body that is not JSON, validation errors) goes to the site's ``REST_FRAMEWORK["EXCEPTION_HANDLER"]``.
  When that is DRF's own (the default), the non-validation ones get our shape too.

A site that sets its own handler need not change it. A site that wants ours everywhere sets
``"EXCEPTION_HANDLER": "verification_link.api.exceptions.exception_handler"`` (it leaves the site's
other views to DRF's handler), or chains its own behind ours with ``chain_exception_handler``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.exceptions import APIException, Throttled
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

ExceptionHandler = Callable[[Exception, dict[str, Any]], "Response | None"]


class VerificationLinkAPIError(APIException):
    """An error of our own: answered ``{"code", "detail"}`` whatever the site's handler."""


class ProviderUnavailableError(VerificationLinkAPIError):
    status_code = 503
    wait: int | None = None  # seconds: DRF's handler turns it into Retry-After
    default_code = "provider_unavailable"
    default_detail = "The verification provider is unavailable; try again later."


class MisconfiguredError(VerificationLinkAPIError):
    """The site's settings are wrong (named in the log, never in the answer)."""

    status_code = 503
    default_code = "unavailable"
    default_detail = "Verification cannot be started at the moment."


class ProviderRefusedError(VerificationLinkAPIError):
    status_code = 502
    default_code = "provider_rejected"
    default_detail = "The verification provider refused the request."


class ConflictError(VerificationLinkAPIError):
    status_code = 409
    default_code = "invalid_transition"
    default_detail = "Not possible in the session's current status."


class TooManyAttemptsError(Throttled, VerificationLinkAPIError):
    """More starts than ``MAX_ATTEMPTS`` in ``ATTEMPT_WINDOW``: a 429 with ``Retry-After``."""

    default_code = "too_many_attempts"
    default_detail = "Too many verification attempts; try again later."


def _shaped(response: Response, exc: APIException) -> Response:
    codes = exc.get_codes()
    response.data = {"code": codes if isinstance(codes, str) else "error", "detail": str(exc.detail)}
    return response


def _in_our_view(context: dict[str, Any]) -> bool:
    from .views import SessionViewSet

    return isinstance(context.get("view"), SessionViewSet)


def format_error(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Our answer to one of our own errors (status, ``Retry-After``, ``{"code", "detail"}``), or
    ``None`` for any other exception."""
    if not isinstance(exc, VerificationLinkAPIError):
        return None
    # DRF's handler sets what every APIException answer carries: headers (Retry-After from
    # ``wait``) and the rollback of the request's atomic block.
    response = drf_exception_handler(exc, context)
    return _shaped(response, exc) if response is not None else None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """An ``EXCEPTION_HANDLER`` for the site: DRF's, with ``{"code", "detail"}`` for our errors and
    for every non-validation error raised in our views; the site's other views answer as DRF's
    handler does."""
    response = format_error(exc, context)
    if response is not None:
        return response
    # As DRF's handler does first, so that Django's own 404 and 403 get our shape too.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if (
        response is not None
        and isinstance(exc, APIException)
        and not isinstance(exc, serializers.ValidationError)
        and _in_our_view(context)
    ):
        return _shaped(response, exc)
    return response


def chain_exception_handler(delegate: ExceptionHandler | str) -> ExceptionHandler:
    """A handler answering our errors as ours, everything else as ``delegate`` (a callable or its
    dotted path) does: ``EXCEPTION_HANDLER = "mysite.api.handler"`` with, in ``mysite/api.py``,
    ``handler = chain_exception_handler(my_own_handler)``."""
    from django.utils.module_loading import import_string

    def handler(exc: Exception, context: dict[str, Any]) -> Response | None:
        response = format_error(exc, context)
        if response is not None:
            return response
        target = import_string(delegate) if isinstance(delegate, str) else delegate
        return target(exc, context)

    return handler


def _is_drf_default(handler: Any) -> bool:
    return handler is drf_exception_handler or handler is exception_handler


def handler_for_our_views() -> ExceptionHandler:
    """What our views use: ours when the site keeps DRF's default (or names ours); otherwise the
    site's handler behind our own errors. Read on each call (``override_settings`` works)."""
    site_handler = api_settings.EXCEPTION_HANDLER
    if _is_drf_default(site_handler):
        return exception_handler
    return chain_exception_handler(site_handler)


__all__ = [
    "ConflictError",
    "MisconfiguredError",
    "ProviderRefusedError",
    "ProviderUnavailableError",
    "TooManyAttemptsError",
    "VerificationLinkAPIError",
    "chain_exception_handler",
    "exception_handler",
    "format_error",
    "handler_for_our_views",
]
