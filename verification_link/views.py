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
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from . import conf, services, tasks
from .exceptions import (
    ConfigurationError,
    InvalidRequest,
    InvalidTransition,
    ProviderError,
    ProviderUnavailable,
    TooManyAttempts,
)
from .framing import deny_framing
from .jsonbody import parse_json
from .logsafe import inbound_endpoint
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


#: The longest ``next`` kept (``VerificationSession.next_url``): a longer one is no page of ours.
MAX_NEXT_URL = 2048


def _safe_next(request: HttpRequest, candidate: str | None) -> str | None:
    if (
        candidate
        and len(candidate) <= MAX_NEXT_URL
        and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return candidate
    return None


def _owned_session(request: HttpRequest, pk: Any) -> VerificationSession:
    if not request.user.is_authenticated:
        raise Http404
    return get_object_or_404(VerificationSession.objects.select_related("user"), pk=pk, user=request.user)


# -- start ----------------------------------------------------------------------------------------


def _user_choices(aliases: list[str]) -> list[tuple[str, str]]:
    """(alias, label) of the aliases users may pick: the backend's name, with the alias when two
    share it (several accounts of one provider). An alias whose backend does not load is left out."""
    names: dict[str, str] = {}
    for alias in aliases:
        try:
            names[alias] = get_provider(alias).display_name
        except ConfigurationError:
            continue
    shared = {name for name in names.values() if list(names.values()).count(name) > 1}
    return [(alias, f"{name} ({alias})" if name in shared else name) for alias, name in names.items()]


def _user_default(aliases: list[str]) -> str | None:
    """The alias of a user who picks none: ``DEFAULT_PROVIDER`` when users may pick it, else the first."""
    with contextlib.suppress(ConfigurationError):
        default = conf.default_provider()
        if default in aliases:
            return default
    return aliases[0] if aliases else None


@require_http_methods(["GET", "POST"])
def start_view(request: HttpRequest) -> HttpResponse:
    """GET: the choice between continuing here and on a phone (and of the provider, when users may
    pick among several: ``USER_PROVIDERS``). POST (logged-in user): start a session and answer 303
    to the provider's link, or to the status page for the QR hand-off."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    aliases = conf.user_providers()  # validated here too: a broken setting leaves only the default
    default = _user_default(aliases)

    def page(error: Any = None, status: int = 200, provider: str | None = default) -> HttpResponse:
        context = {"next": next_url or "", "providers": _user_choices(aliases), "provider": provider}
        return render(request, "verification_link/start.html", {**context, "error": error}, status=status)

    if request.method == "GET":
        return page()
    handoff = request.POST.get("handoff", "redirect")
    if handoff not in ("redirect", "qr"):
        return page(_("Choose how to continue."), status=400)
    provider = request.POST.get("provider") or default
    if provider not in aliases:
        # A configured alias users may not pick (a staff-only sandbox) is as unknown as a typo.
        logger.warning("start: provider %r is not one of USER_PROVIDERS", str(provider)[:64])
        return page(_("This verification method is not available."), status=400, provider=default)
    try:
        session = services.start_verification(user=request.user, provider=provider, next_url=next_url, request=request)
    except InvalidRequest as exc:
        logger.warning("start: invalid request: %s", exc)
        return page(_("This verification cannot be started."), status=400, provider=provider)
    except (ProviderError, TooManyAttempts, ConfigurationError) as exc:
        return _start_refused(request, exc, provider)
    return _hand_off(session, handoff)


def _start_refused(request: HttpRequest, exc: Exception, provider: str) -> HttpResponse:
    """The friendly page of a start (or a retry) that did not happen: the provider failed (503,
    "try again" when it may pass), the attempt limit (429 with when, and ``Retry-After``), the
    site's settings (503, named in the log only)."""
    if isinstance(exc, TooManyAttempts):
        response = render(
            request, "verification_link/too_many_attempts.html", {"available_at": exc.available_at}, status=429
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, ConfigurationError):
        logger.error("start: provider %r is misconfigured: %s", provider, exc)
    retryable = isinstance(exc, ProviderUnavailable)
    return render(request, "verification_link/provider_error.html", {"retryable": retryable}, status=503)


def _hand_off(session: VerificationSession, handoff: str) -> HttpResponse:
    """303 to the provider's link ("continue here"), or to the status page with its QR code (the
    phone hand-off, and a session whose link is gone: a replacement that already finished)."""
    if handoff == "qr" or session.is_final or not session.url:
        return HttpResponseSeeOther(reverse("verification_link:detail", args=[session.pk]))
    return HttpResponseSeeOther(session.url)


@login_required
@require_http_methods(["POST"])
def retry_view(request: HttpRequest, pk: Any) -> HttpResponse:
    """POST (the owner): "Try again" after a failed, rejected or resubmission-requested session — a
    new attempt linked to it (``services.retry_verification``), then the hand-off asked for. A
    session that cannot be retried (finished otherwise meanwhile, a stale page) goes back to its
    status page; one already replaced goes to its replacement, with no new provider call. One the
    site no longer offers as it was (an alias users may not pick now, scopes it dropped) goes to
    the start page: a new start, not a retry."""
    session = _owned_session(request, pk)
    handoff = request.POST.get("handoff", "redirect")
    if handoff not in ("redirect", "qr"):
        handoff = "redirect"
    next_url = _safe_next(request, request.POST.get("next"))
    start_anew = HttpResponseSeeOther(reverse("verification_link:start"))
    if session.provider not in conf.user_providers():
        logger.info("retry of session %s refused: %r is not one of USER_PROVIDERS", session.pk, session.provider)
        return start_anew
    try:
        retry = services.retry_verification(session, user=request.user, next_url=next_url, request=request)
    except InvalidTransition as exc:
        logger.info("retry of session %s refused: %s", session.pk, exc)
        return HttpResponseSeeOther(reverse("verification_link:detail", args=[session.pk]))
    except InvalidRequest as exc:
        logger.info("retry of session %s refused: %s", session.pk, exc)
        return start_anew
    except (ProviderError, TooManyAttempts, ConfigurationError) as exc:
        return _start_refused(request, exc, session.provider)
    return _hand_off(retry, handoff)


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
        # The provider asks the user to try again: the page offers "Try again" (it reloads to).
        "resubmission_requested": not session.is_final and services.replaceable(session),
    }


@login_required
@require_GET
@deny_framing  # the page shows the one-time link and its QR code
def detail_view(request: HttpRequest, pk: Any) -> HttpResponse:
    session = _owned_session(request, pk)
    chain = services.attempt_chain(session)
    replaced_by = next((attempt for attempt in chain if attempt.previous_id == session.pk), None)
    can_retry = replaced_by is None and services.replaceable(session) and session.provider in conf.user_providers()
    response = render(
        request,
        "verification_link/detail.html",
        {
            "session": session,
            "status_label": STATUS_LABELS.get(session.status, session.status),
            "can_retry": can_retry,
            "resubmission": can_retry and not session.is_final,
            # Not retried (expired, canceled, or an alias users may no longer pick): a new start.
            "can_restart": replaced_by is None
            and not can_retry
            and (session.status in ("EXPIRED", "CANCELED") or services.replaceable(session)),
            "chain": [(attempt, STATUS_LABELS.get(attempt.status, attempt.status)) for attempt in chain],
            "replaced_by": replaced_by,
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
@deny_framing  # the QR code is the one-time link
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
    """Where the provider sends the browser back (GET, no login).

    Asks the provider only when the session's poll is due (short timeout; a provider error never
    breaks the page), like the status page does: the URL is not secret, so a hit must not cost a
    provider call and an event row each. A hit when no poll is due makes no call, and only pulls the
    next poll forward to within ``POLL_INTERVAL`` (``services.refresh_on_return``). Then 302 for the
    owner to a safe next URL: ``?next=``, the one given at start, ``DEFAULT_NEXT_URL``, then the
    status page (which shows the outcome as the poll learns it). Anyone else (e.g. the phone of a QR
    hand-off, not logged in) gets a neutral 200 page. The hit itself proves nothing and changes
    nothing but what the provider then says.
    """
    session = get_object_or_404(VerificationSession, pk=pk)
    if not session.is_final:
        try:
            session = services.refresh_on_return(session, timeout=float(conf.get("RETURN_READ_TIMEOUT")))
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
    _payload, refusal = _json_object(event, body)  # the posted content is never applied
    if refusal:
        return refusal
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
    payload, refusal = _json_object(event, request.body)
    if refusal:
        return refusal
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
