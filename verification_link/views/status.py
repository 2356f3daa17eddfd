"""The owner's status page, its live JSON, the QR code, the user's cancel, and the browser's return
from the provider: what a user sees of a session after the start."""

from __future__ import annotations

import contextlib
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.views.decorators.http import require_GET, require_http_methods

from .. import conf, services
from ..exceptions import ConfigurationError, InvalidTransition, ProviderError
from ..framing import deny_framing
from ..labels import status_label, user_state
from ..models import VerificationEvent, VerificationSession
from ..qr import qr_svg
from .common import HttpResponseSeeOther, back_to_site, logger, login_not_required, owned_session, safe_next


def continue_url(request: HttpRequest, session: VerificationSession) -> str:
    """Where "Continue" leads once the session is final: its safe ``next`` URL, ``DEFAULT_NEXT_URL``,
    else the site's home."""
    return back_to_site(request, session.next_url)


def page_context(request: HttpRequest, session: VerificationSession, *, returned: bool = False) -> dict[str, Any]:
    """What the status page and its live part show: the user's state, the hand-off while open,
    the offers (continue, try again, start again, cancel) and the chain of attempts."""
    chain = services.attempt_chain(session)
    replaced_by = next((attempt for attempt in chain if attempt.previous_id == session.pk), None)
    offered = session.provider in conf.user_providers()
    can_retry = replaced_by is None and offered and services.replaceable(session)
    return {
        "session": session,
        "state": user_state(session),
        "status_label": status_label(session),
        "can_retry": can_retry,
        "resubmission": can_retry and not session.is_final,
        # Not retried (expired, canceled, or an alias users may no longer pick): a new start.
        "can_restart": replaced_by is None
        and not can_retry
        and (session.status in ("EXPIRED", "CANCELED") or services.replaceable(session)),
        "can_cancel": not session.is_final,
        "returned": returned and not session.is_final,
        "continue_url": continue_url(request, session),
        "chain": [(attempt, status_label(attempt)) for attempt in chain],
        "replaced_by": replaced_by,
    }


@login_required
@require_GET
@deny_framing  # the page shows the one-time link and its QR code
def detail_view(request: HttpRequest, pk: Any) -> HttpResponse:
    """The owner's status page (``?returned=1``: back from the provider before the session finished)."""
    session = owned_session(request, pk)
    context = page_context(request, session, returned=request.GET.get("returned") == "1")
    response = render(request, "verification_link/detail.html", context)
    add_never_cache_headers(response)  # the page shows the one-time link
    return response


def status_payload(session: VerificationSession) -> dict[str, Any]:
    state = user_state(session)
    return {
        "id": str(session.pk),
        "status": session.status,
        "state": state.key,
        "status_label": str(state.label),
        "next_step": session.next_step,
        "is_final": session.is_final,
        "decision": session.decision,
        "expires_at": session.expires_at.isoformat() if session.expires_at else None,
        # The provider asks the user to try again: the page offers "Try again".
        "resubmission_requested": not session.is_final and services.replaceable(session),
    }


@require_GET
def status_view(request: HttpRequest, pk: Any) -> JsonResponse:
    """The status page's live view: the state, and the page's live part rendered (``html``) for the
    page to swap in without a reload. Asks the provider at most every ``LIVE_POLL_SECONDS`` while
    the session is open (``services.refresh_while_watched``), whoever polls how often."""
    session = owned_session(request, pk)
    with contextlib.suppress(ProviderError, ConfigurationError):  # shown as it is; the sweeps retry
        session = services.refresh_while_watched(session, timeout=float(conf.get("RETURN_READ_TIMEOUT")))
    payload = status_payload(session)
    context = page_context(request, session, returned=request.GET.get("returned") == "1")
    payload["html"] = render_to_string("verification_link/_status_body.html", context, request=request)
    response = JsonResponse(payload)
    add_never_cache_headers(response)
    return response


@require_GET
@deny_framing  # the QR code is the one-time link
def qr_view(request: HttpRequest, pk: Any) -> HttpResponse:
    """SVG QR code of the hand-off link, for the owner only, while the session is open."""
    session = owned_session(request, pk)
    if session.is_final or not session.url:
        raise Http404
    response = HttpResponse(qr_svg(session.url), content_type="image/svg+xml")
    patch_cache_control(response, no_store=True, private=True)
    return response


@login_required
@require_http_methods(["POST"])
def cancel_view(request: HttpRequest, pk: Any) -> HttpResponse:
    """POST (the owner): abandon an open session — canceled here and at the provider where it can
    be (``services.cancel_session``), then 303 to its status page. A session already final is left
    as it is (a second click, a stale page)."""
    session = owned_session(request, pk)
    try:
        services.cancel_session(session, by=request.user, source=VerificationEvent.Source.USER)
    except InvalidTransition as exc:
        logger.info("cancel of session %s refused: %s", session.pk, exc)
    except (ProviderError, ConfigurationError) as exc:
        logger.warning("cancel of session %s failed at the provider: %s", session.pk, exc)
    return HttpResponseSeeOther(reverse("verification_link:detail", args=[session.pk]))


@login_not_required
@require_GET
def return_view(request: HttpRequest, pk: Any) -> HttpResponse:
    """Where the provider sends the browser back (GET, no login).

    The URL is not secret, so a hit by anyone but the owner must not cost a provider call and an
    event row each: it asks the provider only when the session's poll is due, and otherwise only
    pulls the next poll forward to within ``POLL_INTERVAL`` (``services.refresh_on_return``). The
    owner's own return asks as their status page would, at most every ``LIVE_POLL_SECONDS`` (the
    flow has probably just finished). A short timeout; a provider error never breaks the page. Then 302 for the
    owner: a final session to a safe next URL (``?next=``, the one given at start,
    ``DEFAULT_NEXT_URL``, then the status page); one still open to its status page with
    ``?returned=1`` — the user may have left the flow, or the result is a moment away: the page
    says both and updates live. Anyone else (e.g. the phone of a QR hand-off, not logged in) gets a
    neutral 200 page. The hit itself proves nothing and changes nothing but what the provider then
    says.
    """
    session = get_object_or_404(VerificationSession, pk=pk)
    owner = request.user.is_authenticated and session.user_id == request.user.pk
    if not session.is_final:
        timeout = float(conf.get("RETURN_READ_TIMEOUT"))
        try:
            if owner:  # as their status page would: the provider asked at most every LIVE_POLL_SECONDS
                session = services.refresh_while_watched(
                    session, timeout=timeout, source=VerificationEvent.Source.RETURN
                )
            if not session.is_final:
                session = services.refresh_on_return(session, timeout=timeout)
        except ProviderError:
            logger.info("return for session %s: provider did not answer in time", session.pk)
    if not owner:
        return render(request, "verification_link/returned.html", {}, status=200)
    detail = reverse("verification_link:detail", args=[session.pk])
    if not session.is_final:
        return HttpResponseRedirect(f"{detail}?returned=1")
    for candidate in (request.GET.get("next"), session.next_url, conf.get("DEFAULT_NEXT_URL")):
        safe = safe_next(request, candidate)
        if safe:
            return HttpResponseRedirect(safe)
    return HttpResponseRedirect(detail)
