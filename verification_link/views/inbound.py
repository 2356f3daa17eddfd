"""Provider to server: callbacks and webhooks, recorded before they are judged, and our own 404 for
anything else under their paths (so no secret in a path reaches Django's "Not Found" log line)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .. import conf, services, tasks
from ..exceptions import ConfigurationError
from ..jsonbody import parse_json
from ..logsafe import inbound_endpoint
from ..models import VerificationEvent
from ..providers import get_provider
from ..webhooks import WebhookRefused
from .common import logger, login_not_required


def _inbound_body(request: HttpRequest) -> tuple[bytes, str]:
    """The body to record, and ``"body too large"`` above ``MAX_EVENT_BODY_BYTES`` (then only the
    fact is kept: a body announced too large is not even read) or ``"bad Content-Length"`` for a
    length that is not ASCII digits (Django's own ``request.body`` would raise ``ValueError``)."""
    limit = conf.guarded("MAX_EVENT_BODY_BYTES")
    length = request.META.get("CONTENT_LENGTH") or ""
    if length and not (length.isascii() and length.isdigit()):
        return b"", BAD_LENGTH
    if length and int(length) > limit:
        return b"", TOO_LARGE
    try:
        body = request.body
    except RequestDataTooBig:  # over the site's DATA_UPLOAD_MAX_MEMORY_SIZE, below ours
        return b"", TOO_LARGE
    return body, TOO_LARGE if len(body) > limit else ""


TOO_LARGE, BAD_LENGTH = "body too large", "bad Content-Length"


def _too_large(error: str = TOO_LARGE) -> JsonResponse:
    """The answer to a body refused by ``_inbound_body``: 413, or 400 for a bad length."""
    return JsonResponse({"error": error}, status=400 if error == BAD_LENGTH else 413)


def _json_object(event: VerificationEvent, body: bytes) -> dict[str, Any] | JsonResponse:
    """The body as a JSON object, or the 400 answer (recorded on the event)."""
    try:
        payload = parse_json(body)
    except ValueError:
        services.judge_inbound(event, valid=False, error="malformed JSON")
        return JsonResponse({"error": "malformed JSON"}, status=400)
    if not isinstance(payload, dict):
        services.judge_inbound(event, valid=False, error="JSON body is not an object")
        return JsonResponse({"error": "JSON body must be an object"}, status=400)
    return payload


@csrf_exempt
@login_not_required
@transaction.non_atomic_requests  # the record must be committed before anything else can fail
@inbound_endpoint("secret")  # POST only; the secret never reaches a log line
def callback_view(request: HttpRequest, provider: str, secret: str) -> HttpResponse:
    """The OOTO-style per-session callback: unsigned, so only a hint.

    The request is recorded first (autocommit, outside any processing transaction), then judged.
    The session is found by the unguessable secret in the path; the posted status is never applied:
    a confirmation by provider pull is queued (Celery on commit) or run inline, and the answer is
    202 at once. A callback arriving within ``CALLBACK_COALESCE_SECONDS`` of our last call about
    the session shares that call (no new one; the next poll is pulled forward) and is 202 too.
    200 when the session is already final; 404 (generic) for an unknown provider or secret, the
    body then kept as an ``UNVERIFIED_BODY_BYTES`` prefix only; 400 for a body that is not a JSON
    object; 413 above ``MAX_EVENT_BODY_BYTES``.
    """
    body, error = _inbound_body(request)
    kept = services.redacted_body(provider, body)
    event, session = services.record_callback(request, provider=provider, secret=secret, body=kept, error=error)
    if error:
        return _too_large(error)
    if session is None:
        logger.warning("callback %s: unknown provider %r or secret", event.pk, provider[:64])
        services.judge_inbound(event, valid=False, error="unknown provider or secret")
        return JsonResponse({"error": "not found"}, status=404)
    payload = _json_object(event, body)  # the posted content is never applied
    if isinstance(payload, JsonResponse):
        return payload
    if session.is_final:
        services.judge_inbound(event, valid=True, processed=True)
        return JsonResponse({"status": "already final"}, status=200)
    if tasks.celery_in_use():
        services.judge_inbound(event, valid=True)  # a worker acts on it after the commit
    # Inline, the verdict is written with the provider's answer (in its statement or transaction).
    tasks.run_later(tasks.process_callback, event.pk, inline=lambda _event_id: services.confirm_callback(event))
    return JsonResponse({"status": "accepted"}, status=202)


@csrf_exempt
@login_not_required
@transaction.non_atomic_requests  # the record must be committed before anything else can fail
@inbound_endpoint("secret")  # POST only; a path secret never reaches a log line
def webhook_view(request: HttpRequest, provider: str, secret: str | None = None) -> HttpResponse:
    """Account-level webhooks of a provider alias (Valify); 404 for aliases without webhooks.

    Recorded before judged, keeping only ``UNVERIFIED_BODY_BYTES`` of the body until the signature
    verified; authenticated with the alias's own secrets (401/403 with a generic body, the failed
    check logged); 400 for a body that is not a JSON object; 413 above ``MAX_EVENT_BODY_BYTES``;
    then applied through the services, the event keeping the body as the provider allows
    (``BaseProvider.storable_body``: without identity data unless the alias stores it). Duplicates, unknown sessions and
    unknown outcome values answer 200 and change nothing (the sender would only retry otherwise).
    """
    try:
        backend = get_provider(provider)
    except ConfigurationError:
        backend = None
    if backend is None or not backend.receives_webhooks:
        return JsonResponse({"error": "not found"}, status=404)
    body, error = _inbound_body(request)
    event = services.record_inbound(
        request,
        kind=VerificationEvent.Kind.WEBHOOK,
        provider=provider,
        body=services.redacted_body(provider, body),
        error=error,
    )
    if error:
        return _too_large(error)
    try:
        delivery_id = backend.webhook_verifier().verify(request.headers, request.body, path_secret=secret)
    except WebhookRefused as exc:
        logger.warning("webhook %s for %r refused: %s", event.pk, provider, exc.check)
        services.judge_inbound(event, valid=False, error=exc.check)
        return JsonResponse(
            {"error": "forbidden" if exc.status_code == 403 else "unauthorized"}, status=exc.status_code
        )
    payload = _json_object(event, request.body)
    if isinstance(payload, JsonResponse):
        return payload
    # Authenticated now: the event, recorded with a prefix only, keeps what the provider allows of
    # the body, written with the verdict.
    outcome = services.process_webhook(event, backend, payload, body=body, delivery_id=delivery_id)
    if outcome == "provider unavailable":  # a hint we could not confirm: the provider retries a 503
        return JsonResponse({"error": "provider unavailable, retry later"}, status=503)
    return JsonResponse({"status": outcome}, status=200)


@csrf_exempt
@login_not_required
@inbound_endpoint("rest")
def inbound_not_found(request: HttpRequest, rest: str) -> HttpResponse:
    """Any other path under ``callback/`` or ``webhook/``: the generic 404 of an unknown secret,
    logged without the path's tail (it may be a secret with something appended)."""
    return JsonResponse({"error": "not found"}, status=404)
