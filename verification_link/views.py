"""HTTP in and out, kept thin: every state change goes through ``verification_link.services``."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import conf, services
from .exceptions import ProviderError
from .models import VerificationEvent, VerificationSession

logger = logging.getLogger("verification_link.views")

try:  # Django 5.1+: callbacks must work under LoginRequiredMiddleware
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # pragma: no cover - Django < 5.1

    def login_not_required(view):  # type: ignore[no-redef]
        return view


# Headers worth keeping with a recorded inbound request (never cookies or authorization).
RECORDED_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For", "X-Request-Id")


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def record_inbound(request: HttpRequest, *, kind: str, provider: str, body: bytes, session=None) -> VerificationEvent:
    """Store an inbound request *before* it is judged, in its own autocommit write, so a later
    failure never loses the evidence."""
    limit = int(conf.get("MAX_EVENT_BODY_BYTES"))
    return VerificationEvent.objects.create(
        session=session,
        provider=provider,
        kind=kind,
        source=kind,
        body=body[:limit].decode("utf-8", errors="replace"),
        body_truncated=len(body) > limit,
        headers={name: request.headers[name] for name in RECORDED_HEADERS if name in request.headers},
        remote_addr=_client_ip(request),
    )


@csrf_exempt
@login_not_required
@require_POST
@transaction.non_atomic_requests
def callback_view(request: HttpRequest, provider: str, secret: str) -> HttpResponse:
    """The OOTO-style per-session callback: unsigned, so only a hint.

    The session is found by the unguessable secret in the path; the posted status is never applied.
    Instead the app asks the provider (Get Status) and applies that authenticated answer.
    """
    limit = int(conf.get("MAX_EVENT_BODY_BYTES"))
    length = request.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > limit:
        return JsonResponse({"error": "body too large"}, status=413)
    body = request.body
    if len(body) > limit:
        return JsonResponse({"error": "body too large"}, status=413)
    session = VerificationSession.objects.filter(provider=provider, callback_secret=secret).first()
    event = record_inbound(request, kind=VerificationEvent.Kind.CALLBACK, provider=provider, body=body, session=session)
    if session is None:
        logger.warning("callback for unknown provider/secret (provider=%r), event %s", provider, event.pk)
        _judge(event, valid=False, error="unknown provider or secret")
        return JsonResponse({"error": "not found"}, status=404)
    try:
        payload = json.loads(body)
    except ValueError:
        _judge(event, valid=False, error="malformed JSON")
        return JsonResponse({"error": "malformed JSON"}, status=400)
    if not isinstance(payload, dict):
        _judge(event, valid=False, error="JSON body is not an object")
        return JsonResponse({"error": "JSON body must be an object"}, status=400)
    if session.is_final:
        _judge(event, valid=True, processed=True)
        return JsonResponse({"status": "already final"}, status=200)
    _judge(event, valid=True)
    try:
        services.refresh_session(session, source=VerificationEvent.Source.CALLBACK)
    except ProviderError:
        # The poll sweep will ask again; the sender of a hint needs no error.
        logger.info("callback for session %s: confirmation deferred to polling", session.pk)
    else:
        _judge(event, valid=True, processed=True)
    return JsonResponse({"status": "accepted"}, status=202)


def _judge(event: VerificationEvent, *, valid: bool, processed: bool = False, error: str = "") -> None:
    VerificationEvent.objects.filter(pk=event.pk).update(valid=valid, processed=processed, error=error)


def return_view(request: HttpRequest, pk) -> HttpResponse:
    """Where the provider sends the browser back. Checks the status now (short timeout; a provider
    error never breaks the page), then redirects to a safe next URL. The hit proves nothing."""
    session = get_object_or_404(VerificationSession, pk=pk)
    if not session.is_final:
        try:
            services.refresh_session(
                session, source=VerificationEvent.Source.RETURN, timeout=float(conf.get("RETURN_READ_TIMEOUT"))
            )
        except ProviderError:
            logger.info("return for session %s: provider did not answer in time", session.pk)
    candidates = [request.GET.get("next"), session.next_url, conf.get("DEFAULT_NEXT_URL")]
    for candidate in candidates:
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return HttpResponseRedirect(candidate)
    return HttpResponseRedirect(getattr(settings, "LOGIN_REDIRECT_URL", "/") or "/")
