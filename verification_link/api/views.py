"""``/api/sessions/``: create, list own, retrieve, ``refresh``, ``cancel``.

- Authenticated users only, with whatever authentication classes the site configured.
- A user sees and acts on their own sessions; another user's answer 404 (not 403: even existence
  is not disclosed). Staff with ``view_verificationsession`` see all; acting on someone else's
  needs ``change_verificationsession``.
- Throttled with the scope ``verification_link`` (``DEFAULT_THROTTLE_RATES["verification_link"]``,
  else ``VERIFICATION_LINK["API_THROTTLE_RATE"]``).
- Provider failures: unavailable → 503 with ``Retry-After``; refused → 502; each ``{code, detail}``.
- The site's ``DEFAULT_PAGINATION_CLASS``/``PAGE_SIZE`` (``.pagination``) and ``EXCEPTION_HANDLER``
  (``.exceptions``: our own errors keep ``{code, detail}``) apply.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from django.conf import settings as django_settings
from django.db.models import QuerySet
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from .. import conf, services
from ..exceptions import (
    ConfigurationError,
    InvalidRequest,
    InvalidTransition,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
    TooManyAttempts,
)
from ..jsonbody import InvalidJSON, parse_json
from ..models import VerificationEvent, VerificationSession
from .exceptions import (
    ConflictError,
    MisconfiguredError,
    ProviderRefusedError,
    ProviderUnavailableError,
    TooManyAttemptsError,
    exception_handler,
    handler_for_our_views,
)
from .pagination import SessionPagination, SitePaginationClass
from .schema import OpenApiParameter, OpenApiResponse, VerificationLinkSchema, extend_schema_view, operation
from .serializers import ErrorSerializer, SessionCreateSerializer, SessionSerializer

logger = logging.getLogger("verification_link.api")


class StrictJSONParser(JSONParser):
    """DRF's JSON parser on ``verification_link.jsonbody.parse_json``: whatever the site's
    ``STRICT_JSON``, non-finite numbers (``NaN``, ``1e400``) and nesting beyond ``MAX_DEPTH`` are a
    400, as at every other JSON boundary of the app — never a value the database refuses later."""

    strict = True

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", django_settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        try:
            return parse_json(raw.decode(encoding))
        except (UnicodeDecodeError, LookupError):
            raise ParseError("JSON parse error - not text in the declared charset") from None
        except InvalidJSON as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class VerificationLinkThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` whose rate falls back to our setting when the site defines none."""

    scope_attr = "throttle_scope"

    def get_rate(self) -> str | None:
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        rate = rates.get(self.scope) if self.scope else None
        return cast("str | None", rate or conf.guarded("API_THROTTLE_RATE"))


def _error(description: str) -> Any:
    """An error answer of the schema: our ``{code, detail}`` and when it happens."""
    return OpenApiResponse(ErrorSerializer, description=description) if OpenApiResponse is not None else None


ERRORS = {
    400: OpenApiResponse(description="Invalid input: the fields and their errors.")
    if OpenApiResponse is not None
    else None,
    401: _error("Not authenticated, where an authentication class of the site answers 401."),
    403: _error("Not authenticated (session authentication), or refused by a permission class."),
    404: _error("No such session, someone else's, or no such page."),
    429: _error("Throttled (scope verification_link) or too many attempts; Retry-After says when."),
}
PROVIDER_ERRORS = {
    502: _error("The provider refused the request or our credentials."),
    503: _error("The provider is unavailable (Retry-After), or the site's settings allow no start."),
}
CONFLICT = {409: _error("Not possible in the session's current status.")}


def _provider_error(exc: ProviderError) -> APIException:
    if isinstance(exc, ProviderUnavailable) or exc.retryable:
        error = ProviderUnavailableError()
        error.wait = int(conf.get("API_RETRY_AFTER"))  # becomes the Retry-After header
        return error
    if isinstance(exc, ProviderAuthError):
        return ProviderRefusedError(detail="The verification provider refused our credentials.", code="provider_auth")
    return ProviderRefusedError()


@extend_schema_view(
    list=operation(
        "sessions_list",
        summary="The caller's sessions, newest first",
        parameters=[OpenApiParameter("status", str, enum=VerificationSession.Status.values)]
        if OpenApiParameter is not None
        else [],
        responses={200: SessionSerializer(many=True), **ERRORS},
    ),
    retrieve=operation("sessions_retrieve", summary="One session", responses={200: SessionSerializer, **ERRORS}),
)
class SessionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = SessionSerializer
    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = [VerificationLinkThrottle]
    throttle_scope = "verification_link"
    lookup_value_regex = "[^/]+"  # anything: a malformed id is a JSON 404 from get_object, not an HTML one
    parser_classes = [StrictJSONParser]
    pagination_class = SitePaginationClass()
    schema = VerificationLinkSchema()

    def get_exception_handler(self) -> Any:
        return handler_for_our_views()

    def get_queryset(self) -> QuerySet:
        queryset = VerificationSession.objects.order_by("-created_at")
        user = self.request.user
        if not user.has_perm("verification_link.view_verificationsession"):
            queryset = queryset.filter(user_id=user.pk) if user.pk is not None else queryset.none()
        if self.action == "list":
            status_filter = self.request.query_params.get("status")
            if status_filter is not None:
                if status_filter not in VerificationSession.Status.values:
                    raise serializers.ValidationError({"status": ["Not a status."]})
                queryset = queryset.filter(status=status_filter)
        return queryset

    def get_object(self) -> VerificationSession:
        try:
            return super().get_object()
        except Exception as exc:  # a malformed UUID is as unknown as a missing one
            if isinstance(exc, APIException) and not isinstance(exc, NotFound):
                raise
            raise NotFound from None

    def _actionable(self) -> VerificationSession:
        session = self.get_object()
        user = self.request.user
        if session.user_id != user.pk and not user.has_perm("verification_link.change_verificationsession"):
            raise NotFound  # staff who may only look, and everybody else
        return session

    @operation(
        "sessions_create",
        summary="Start a session",
        description="201 with a new session; 200 with the caller's open session at the same provider and "
        "scopes (REUSE_OPEN_SESSIONS); 429 with Retry-After past MAX_ATTEMPTS.",
        request=SessionCreateSerializer,
        responses={201: SessionSerializer, 200: SessionSerializer, **ERRORS, **PROVIDER_ERRORS},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = SessionCreateSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            session = services.start_verification(
                user=request.user,
                provider=data.get("provider"),
                scopes=data.get("scopes"),
                metadata=data.get("metadata"),
                next_url=data.get("next_url"),
                request=request._request,
            )
        except ProviderError as exc:
            raise _provider_error(exc) from None
        except InvalidRequest as exc:
            raise serializers.ValidationError({"non_field_errors": [str(exc)]}) from None
        except ConfigurationError as exc:
            logger.error("api: start refused by the settings: %s", exc)
            raise MisconfiguredError() from None
        except TooManyAttempts as exc:
            raise TooManyAttemptsError(wait=exc.retry_after) from None
        # The user's open session at the same provider and scopes, returned again (REUSE_OPEN_SESSIONS).
        code = status.HTTP_200_OK if session.reused else status.HTTP_201_CREATED
        return Response(self.get_serializer(session).data, status=code)

    @operation(
        "sessions_refresh",
        summary="Ask the provider now",
        request=None,
        responses={200: SessionSerializer, **ERRORS, **PROVIDER_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def refresh(self, request: Request, pk: str | None = None) -> Response:
        session = self._actionable()
        try:
            session = services.refresh_session(session, source=VerificationEvent.Source.API, by=request.user)
        except ProviderError as exc:
            raise _provider_error(exc) from None
        return Response(self.get_serializer(session).data)

    @operation(
        "sessions_retry",
        summary="Try again",
        description="The owner's new attempt after a failed, rejected or resubmission-requested session, "
        "linked to it (previous): 201 with the new session; 200 with the one that already replaced it; "
        "409 when the session cannot be retried; 429 with Retry-After past MAX_ATTEMPTS.",
        request=None,
        responses={201: SessionSerializer, 200: SessionSerializer, **CONFLICT, **ERRORS, **PROVIDER_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        session = self.get_object()
        if session.user_id != request.user.pk:
            raise NotFound  # a retry is the owner's own attempt; staff start one for nobody
        if session.provider not in conf.user_providers():
            raise ConflictError(detail="this provider is no longer offered; start a new session")
        try:
            retry = services.retry_verification(session, user=request.user, request=request._request)
        except InvalidTransition as exc:
            raise ConflictError(detail=str(exc)) from None
        except InvalidRequest as exc:  # the site changed what it offers (scopes) since that attempt
            raise ConflictError(detail=f"cannot be retried as it was: {exc}; start a new session") from None
        except ProviderError as exc:
            raise _provider_error(exc) from None
        except ConfigurationError as exc:
            logger.error("api: retry refused by the settings: %s", exc)
            raise MisconfiguredError() from None
        except TooManyAttempts as exc:
            raise TooManyAttemptsError(wait=exc.retry_after) from None
        code = status.HTTP_200_OK if retry.reused else status.HTTP_201_CREATED
        return Response(self.get_serializer(retry).data, status=code)

    @operation(
        "sessions_cancel",
        summary="Cancel an open session",
        request=None,
        responses={200: SessionSerializer, **CONFLICT, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        session = self._actionable()
        try:
            session = services.cancel_session(session, by=request.user, source=VerificationEvent.Source.API)
        except InvalidTransition as exc:
            raise ConflictError(detail=str(exc)) from None
        return Response(self.get_serializer(session).data)


# Importable from here as before: the handler and the page-number class moved to their own modules.
__all__ = ["SessionPagination", "SessionViewSet", "StrictJSONParser", "exception_handler"]
