"""Views only verified users reach: ``verification_required`` (a view decorator) and
``VerificationRequiredMixin`` (class-based views), both sending anyone else to start — with
``next`` back to the page they asked for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from .exceptions import ConfigurationError
from .services import is_verified
from .views.common import back_to_site

if TYPE_CHECKING:
    from django.views import View

    _ViewBase = View  # the mixin goes first among a class-based view's bases
else:
    _ViewBase = object

logger = logging.getLogger("verification_link.decorators")


def _refused(request: HttpRequest, provider: str | None) -> HttpResponse | None:
    """None when the user may pass; else where they go instead: to start (not verified), or the
    friendly 503 page when the site's settings cannot say (a wrong ``VALID_FOR_DAYS``) — closed,
    never open: the guarded view does not run."""
    try:
        if is_verified(request.user, provider=provider):
            return None
    except ConfigurationError as exc:
        logger.error("verification_required: the settings cannot tell who is verified: %s", exc)
        context = {"retryable": False, "back_url": back_to_site(request, None)}
        return render(request, "verification_link/provider_error.html", context, status=503)
    return _to_start(request)


def _to_start(request: HttpRequest) -> HttpResponse:
    """Anonymous users log in first (then come back here); logged-in users go to start."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    start = reverse("verification_link:start")
    return HttpResponseRedirect(f"{start}?{urlencode({'next': request.get_full_path()})}")


def verification_required(view: Callable[..., HttpResponse] | None = None, *, provider: str | None = None) -> Any:
    """Let the view run only for a user ``is_verified`` (at ``provider``, when given; within
    ``VALID_FOR_DAYS``). ``@verification_required`` or ``@verification_required(provider="ooto")``."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            refused = _refused(request, provider)
            return refused if refused is not None else view(request, *args, **kwargs)

        return guarded

    return decorate(view) if view is not None else decorate


class VerificationRequiredMixin(_ViewBase):
    """``verification_required`` for a class-based view: put it first among the bases. Set
    ``verification_provider`` to require a verification at that alias."""

    verification_provider: str | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        refused = _refused(request, self.verification_provider)
        if refused is not None:
            return refused
        return super().dispatch(request, *args, **kwargs)
