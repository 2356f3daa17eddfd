"""What every view of ours shares: the 303 answer, the ``next`` URL check, the owner's session,
and ``login_not_required`` on every Django we support."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.utils.http import url_has_allowed_host_and_scheme

from .. import conf
from ..models import VerificationSession

logger = logging.getLogger("verification_link.views")

try:  # Django 5.1+: callbacks and returns must work under LoginRequiredMiddleware
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # pragma: no cover - Django < 5.1
    _View = TypeVar("_View", bound=Callable[..., HttpResponseBase | Awaitable[HttpResponseBase]])

    def login_not_required(view_func: _View) -> _View:
        return view_func


class HttpResponseSeeOther(HttpResponseRedirect):
    """303: after the POST, the browser follows with a GET."""

    status_code = 303


#: The longest ``next`` kept (``VerificationSession.next_url``): a longer one is no page of ours.
MAX_NEXT_URL = 2048


def safe_next(request: HttpRequest, candidate: str | None) -> str | None:
    """``candidate`` when it is a URL of this site (same host, HTTPS when the request is) short
    enough to keep, else None: never an open redirect."""
    if (
        candidate
        and len(candidate) <= MAX_NEXT_URL
        and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return candidate
    return None


def back_to_site(request: HttpRequest, next_url: str | None) -> str:
    """Where "Continue" or "Back to the site" leads: ``next_url`` when it is safe, the site's
    ``DEFAULT_NEXT_URL``, else its home page."""
    for candidate in (next_url, conf.get("DEFAULT_NEXT_URL")):
        safe = safe_next(request, candidate)
        if safe:
            return safe
    return "/"


def owned_session(request: HttpRequest, pk: Any) -> VerificationSession:
    """The session ``pk`` of the logged-in user, else 404 (a 404 does not even confirm that it exists)."""
    if not request.user.is_authenticated:
        raise Http404
    return get_object_or_404(VerificationSession.objects.select_related("user"), pk=pk, user=request.user)
