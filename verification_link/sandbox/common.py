"""Helpers shared by the provider emulators of the sandbox."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.cache import patch_cache_control
from django.views import View

#: Longest URL the sandbox stores.
MAX_URL_LENGTH = 2048


class HttpResponseSeeOther(HttpResponseRedirect):
    """A 303: after a POST, the browser follows with a GET."""

    status_code = 303


def is_http_url(value: Any) -> bool:
    """Whether ``value`` is an absolute http(s) URL the sandbox may store and redirect to.

    http is allowed too (unlike OOTO's HTTPS-only callbacks): sandbox sites run on localhost.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_URL_LENGTH:
        return False
    if " " in value or not value.isprintable():
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class HostedPageView(View):
    """Base of the hosted pages: their URL is a bearer secret.

    Keeps it out of caches, cross-origin Referer headers and indexes ("same-origin", not
    "no-referrer": the latter makes browsers send "Origin: null" on the page's own form posts,
    which CSRF protection refuses).
    """

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().dispatch(request, *args, **kwargs)
        patch_cache_control(response, no_store=True)
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Robots-Tag", "noindex, nofollow")
        return response
