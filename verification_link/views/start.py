"""Starting, starting again and trying again: the user's POSTs that ask the provider for a link,
and the friendly pages of a start that did not happen."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from .. import conf, services
from ..exceptions import (
    ConfigurationError,
    InvalidRequest,
    InvalidTransition,
    ProviderError,
    ProviderUnavailable,
    TooManyAttempts,
)
from ..labels import user_needs
from ..models import VerificationEvent, VerificationSession
from ..providers import get_provider
from .common import HttpResponseSeeOther, back_to_site, logger, owned_session, safe_next


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


def _needs(aliases: list[str]) -> dict[str, list[str]]:
    """What the user will need at each alias (a camera, an ID card, a phone for a code), in words."""
    needs: dict[str, list[str]] = {}
    for alias in aliases:
        with contextlib.suppress(ConfigurationError):
            needs[alias] = [str(need) for need in user_needs(get_provider(alias))]
    return needs


def _restart(request: HttpRequest) -> None:
    """ "Start again" from an open session's page (``restart``: its id): that session is canceled
    first, so the new start does not return it again and no orphan is left. A session already
    final, or not the user's, is left as it is (Back and a second click: the start then reuses
    the session the first click made)."""
    raw = request.POST.get("restart") or ""
    try:
        pk = uuid.UUID(raw[:64])
    except ValueError:
        return
    user = request.user
    if not user.is_authenticated:  # the start view lets no one else this far
        return
    session = VerificationSession.objects.filter(pk=pk, user=user).first()
    if session is None or session.is_final:
        return
    with contextlib.suppress(InvalidTransition, ProviderError, ConfigurationError):
        services.cancel_session(session, by=user, source=VerificationEvent.Source.USER)


@require_http_methods(["GET", "POST"])
def start_view(request: HttpRequest) -> HttpResponse:
    """GET: the choice between continuing here and on a phone (and of the provider, when users may
    pick among several: ``USER_PROVIDERS``), with what each needs. POST (logged-in user): start a
    session (``restart``: cancel that open one first) and answer 303 to the provider's link, or to
    the status page for the QR hand-off."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    aliases = conf.user_providers()  # validated here too: a broken setting leaves only the default
    default = _user_default(aliases)

    def page(error: Any = None, status: int = 200, provider: str | None = default) -> HttpResponse:
        context: dict[str, Any] = {"next": next_url or "", "providers": _user_choices(aliases), "provider": provider}
        context["needs"] = _needs(aliases)
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
    _restart(request)
    try:
        session = services.start_verification(user=request.user, provider=provider, next_url=next_url, request=request)
    except InvalidRequest as exc:
        logger.warning("start: invalid request: %s", exc)
        return page(_("This verification cannot be started."), status=400, provider=provider)
    except (ProviderError, TooManyAttempts, ConfigurationError) as exc:
        return start_refused(request, exc, provider, next_url=next_url)
    return hand_off(session, handoff)


def start_refused(request: HttpRequest, exc: Exception, provider: str, *, next_url: str | None = None) -> HttpResponse:
    """The friendly page of a start (or a retry) that did not happen: the provider failed (503,
    "try again" when it may pass), the attempt limit (429 with when, and ``Retry-After``), the
    site's settings (503, named in the log only). Each leads back to the site: its safe ``next``
    URL, ``DEFAULT_NEXT_URL``, else the home page."""
    back_url = back_to_site(request, next_url)
    if isinstance(exc, TooManyAttempts):
        context = {"available_at": exc.available_at, "back_url": back_url}
        response = render(request, "verification_link/too_many_attempts.html", context, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, ConfigurationError):
        logger.error("start: provider %r is misconfigured: %s", provider, exc)
    context = {"retryable": isinstance(exc, ProviderUnavailable), "back_url": back_url, "next": next_url or ""}
    return render(request, "verification_link/provider_error.html", context, status=503)


def hand_off(session: VerificationSession, handoff: str) -> HttpResponse:
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
    session = owned_session(request, pk)
    handoff = request.POST.get("handoff", "redirect")
    if handoff not in ("redirect", "qr"):
        handoff = "redirect"
    next_url = safe_next(request, request.POST.get("next"))
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
        return start_refused(request, exc, session.provider, next_url=next_url or session.next_url)
    return hand_off(retry, handoff)
