"""Views only verified users reach: ``verification_required`` (a view decorator) and
``VerificationRequiredMixin`` (class-based views), both sending anyone else to start — with
``next`` back to the page they asked for."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from .services import is_verified


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
            if not is_verified(request.user, provider=provider):
                return _to_start(request)
            return view(request, *args, **kwargs)

        return guarded

    return decorate(view) if view is not None else decorate


class VerificationRequiredMixin:
    """``verification_required`` for a class-based view: put it first among the bases. Set
    ``verification_provider`` to require a verification at that alias."""

    verification_provider: str | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_verified(request.user, provider=self.verification_provider):
            return _to_start(request)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
