"""HTTP in and out, kept thin: every state change goes through ``verification_link.services``.

User-facing views answer 404 to anyone but the session's owner: the hand-off link and biometric
results are secrets, and a 404 does not even confirm that a session exists. Staff use the admin.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import conf, services, tasks
from .exceptions import ConfigurationError, InvalidRequest, ProviderError, ProviderUnavailable
from .jsonbody import parse_json
from .models import VerificationEvent, VerificationSession
from .providers import get_provider
from .qr import qr_svg
from .webhooks import WebhookRefused

logger = logging.getLogger("verification_link.views")

try:  # Django 5.1+: callbacks and returns must work under LoginRequiredMiddleware
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # pragma: no cover - Django < 5.1

    def login_not_required(view):  # type: ignore[no-redef]
        return view


class HttpResponseSeeOther(HttpResponseRedirect):
    """303: after the POST, the browser follows with a GET."""

    status_code = 303


STATUS_LABELS = {
    "CREATED": _("Waiting for you to start"),
    "CAPTCHA_OK": _("Started"),
    "IN_PROGRESS": _("In progress"),
    "DONE": _("Completed"),
    "FAILED": _("Not verified"),
    "EXPIRED": _("Link expired"),
    "CANCELED": _("Canceled"),
}


def _safe_next(request: HttpRequest, candidate: str | None) -> str | None:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return None


def _owned_session(request: HttpRequest, pk: Any) -> VerificationSession:
    if not request.user.is_authenticated:
        raise Http404
    return get_object_or_404(VerificationSession.objects.select_related("user"), pk=pk, user=request.user)


# -- start ----------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def start_view(request: HttpRequest) -> HttpResponse:
    """GET: the choice between continuing here and on a phone. POST (logged-in user): start a
    session and answer 303 to the provider's link, or to the status page for the QR hand-off."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.method == "GET":
        return render(request, "verification_link/start.html", {"next": next_url or ""})
    handoff = request.POST.get("handoff", "redirect")
    if handoff not in ("redirect", "qr"):
        return render(
            request,
            "verification_link/start.html",
            {"next": next_url or "", "error": _("Choose how to continue.")},
            status=400,
        )
    try:
        session = services.start_verification(user=request.user, next_url=next_url, request=request)
    except ProviderError as exc:
        return render(
            request,
            "verification_link/provider_error.html",
            {"retryable": isinstance(exc, ProviderUnavailable)},
            status=503,
        )
    except InvalidRequest as exc:
        logger.warning("start: invalid request: %s", exc)
        return render(
            request,
            "verification_link/start.html",
            {"next": next_url or "", "error": _("This verification cannot be started.")},
            status=400,
        )
    if handoff == "qr":
        return HttpResponseSeeOther(reverse("verification_link:detail", args=[session.pk]))
    return HttpResponseSeeOther(session.url)


# -- the owner's status page, its live JSON and the QR code ---------------------------------------------


def _status_payload(session: VerificationSession) -> dict[str, Any]:
    return {
        "id": str(session.pk),
        "status": session.status,
        "status_label": str(STATUS_LABELS.get(session.status, session.status)),
        "next_step": session.next_step,
        "is_final": session.is_final,
        "decision": session.decision,
        "expires_at": session.expires_at.isoformat() if session.expires_at else None,
    }


@login_required
@require_GET
def detail_view(request: HttpRequest, pk: Any) -> HttpResponse:
    session = _owned_session(request, pk)
    response = render(
        request,
        "verification_link/detail.html",
        {
            "session": session,
            "status_label": STATUS_LABELS.get(session.status, session.status),
            "can_restart": session.status in ("FAILED", "EXPIRED", "CANCELED"),
            "payload": _status_payload(session),
        },
    )
    add_never_cache_headers(response)  # the page shows the one-time link
    return response


@require_GET
def status_view(request: HttpRequest, pk: Any) -> JsonResponse:
    """The status page's live view. Asks the provider only when the poll schedule says it is due,
    so a page left open never multiplies provider calls."""
    session = _owned_session(request, pk)
    if not session.is_final and session.next_poll_at and session.next_poll_at <= timezone.now():
        with contextlib.suppress(ProviderError):  # shown as it is; the sweep retries
            session = services.refresh_session(
                session, source=VerificationEvent.Source.POLL, timeout=float(conf.get("RETURN_READ_TIMEOUT"))
            )
    response = JsonResponse(_status_payload(session))
    add_never_cache_headers(response)
    return response


@require_GET
def qr_view(request: HttpRequest, pk: Any) -> HttpResponse:
    """SVG QR code of the hand-off link, for the owner only, while the session is open."""
    session = _owned_session(request, pk)
    if session.is_final or not session.url:
        raise Http404
    response = HttpResponse(qr_svg(session.url), content_type="image/svg+xml")
    patch_cache_control(response, no_store=True, private=True)
    return response


# -- back from the provider ----------------------------------------------------------------------------


@login_not_required
@require_GET
def return_view(request: HttpRequest, pk: Any) -> HttpResponse:
    """Where the provider sends the browser back.

    Checks the status now (short timeout; a provider error never breaks the page) and redirects the
    owner to a safe next URL: ``?next=``, the one given at start, ``DEFAULT_NEXT_URL``, then the
    status page. Anyone else (e.g. the phone of a QR hand-off, not logged in) sees a neutral page.
    The hit itself proves nothing and changes nothing but what the provider then says.
    """
    session = get_object_or_404(VerificationSession, pk=pk)
    if not session.is_final:
        try:
            session = services.refresh_session(
                session, source=VerificationEvent.Source.RETURN, timeout=float(conf.get("RETURN_READ_TIMEOUT"))
            )
        except ProviderError:
            logger.info("return for session %s: provider did not answer in time", session.pk)
    if not (request.user.is_authenticated and session.user_id == request.user.pk):
        return render(request, "verification_link/returned.html", {}, status=200)
    for candidate in (request.GET.get("next"), session.next_url, conf.get("DEFAULT_NEXT_URL")):
        safe = _safe_next(request, candidate)
        if safe:
            return HttpResponseRedirect(safe)
    return HttpResponseRedirect(reverse("verification_link:detail", args=[session.pk]))


# -- provider to server -----------------------------------------------------------------------------


def _inbound_body(request: HttpRequest) -> tuple[bytes, str]:
    """The body to record, and ``"body too large"`` above ``MAX_EVENT_BODY_BYTES`` (then only the
    fact is kept: a body announced too large is not even read)."""
    limit = int(conf.get("MAX_EVENT_BODY_BYTES"))
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        return b"", "body too large"
    body = request.body
    return body, "body too large" if len(body) > limit else ""


def _too_large() -> JsonResponse:
    return JsonResponse({"error": "body too large"}, status=413)


def _json_object(event: VerificationEvent, body: bytes) -> tuple[dict[str, Any] | None, JsonResponse | None]:
    """The body as a JSON object, or the 400 answer (recorded on the event)."""
    try:
        payload = parse_json(body)
    except ValueError:
        services.judge_inbound(event, valid=False, error="malformed JSON")
        return None, JsonResponse({"error": "malformed JSON"}, status=400)
    if not isinstance(payload, dict):
        services.judge_inbound(event, valid=False, error="JSON body is not an object")
        return None, JsonResponse({"error": "JSON body must be an object"}, status=400)
    return payload, None


@csrf_exempt
@login_not_required
@require_POST
@transaction.non_atomic_requests  # the record must be committed before anything else can fail
def callback_view(request: HttpRequest, provider: str, secret: str) -> HttpResponse:
    """The OOTO-style per-session callback: unsigned, so only a hint.

    The request is recorded first (autocommit, outside any processing transaction), then judged.
    The session is found by the unguessable secret in the path; the posted status is never applied:
    a confirmation by provider pull is queued (Celery on commit) or run inline, and the answer is
    202 at once. 200 when the session is already final; 404 (generic) for an unknown provider or
    secret; 400 for a body that is not a JSON object; 413 above ``MAX_EVENT_BODY_BYTES``.
    """
    body, error = _inbound_body(request)
    event, session = services.record_callback(request, provider=provider, secret=secret, body=body, error=error)
    if error:
        return _too_large()
    if session is None:
        logger.warning("callback %s: unknown provider %r or secret", event.pk, provider[:64])
        services.judge_inbound(event, valid=False, error="unknown provider or secret")
        return JsonResponse({"error": "not found"}, status=404)
    _payload, refusal = _json_object(event, body)  # the posted content is never applied
    if refusal:
        return refusal
    if session.is_final:
        services.judge_inbound(event, valid=True, processed=True)
        return JsonResponse({"status": "already final"}, status=200)
    if tasks.celery_in_use():
        services.judge_inbound(event, valid=True)  # a worker acts on it after the commit
    # Inline, the verdict is written with the provider's answer, in the same statement.
    tasks.run_later(tasks.process_callback, event.pk, inline=lambda _event_id: services.confirm_callback(event))
    return JsonResponse({"status": "accepted"}, status=202)


@csrf_exempt
@login_not_required
@require_POST
@transaction.non_atomic_requests  # the record must be committed before anything else can fail
def webhook_view(request: HttpRequest, provider: str, secret: str | None = None) -> HttpResponse:
    """Account-level webhooks of a provider alias (Valify); 404 for aliases without webhooks.

    Recorded before judged; authenticated with the alias's own secrets (401/403 with a generic body,
    the failed check logged); then applied through the services. Duplicates, unknown sessions and
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
        request, kind=VerificationEvent.Kind.WEBHOOK, provider=provider, body=body, error=error
    )
    if error:
        return _too_large()
    try:
        backend.webhook_verifier().verify(request.headers, request.body, path_secret=secret)
    except WebhookRefused as exc:
        logger.warning("webhook %s for %r refused: %s", event.pk, provider, exc.check)
        services.judge_inbound(event, valid=False, error=exc.check)
        return JsonResponse(
            {"error": "forbidden" if exc.status_code == 403 else "unauthorized"}, status=exc.status_code
        )
    payload, refusal = _json_object(event, request.body)
    if refusal:
        return refusal
    outcome = services.process_webhook(event, backend, payload)
    return JsonResponse({"status": outcome}, status=200)
