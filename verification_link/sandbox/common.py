"""Helpers shared by the provider emulators of the sandbox."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.http import Http404, HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.utils.cache import patch_cache_control
from django.views import View

from .. import conf
from .conf import key_path, serving_allowed

logger = logging.getLogger("verification_link.sandbox")

#: Longest URL the sandbox stores.
MAX_URL_LENGTH = 2048


class HttpResponseSeeOther(HttpResponseRedirect):
    """A 303: after a POST, the browser follows with a GET."""

    status_code = 303


def custom_decision_policy() -> str:
    """The site's ``DECISION_POLICY`` when it replaced the default one (the outcome hints describe
    the default), else ``""``."""
    policy = conf.get("DECISION_POLICY")
    return "" if policy == conf.DEFAULTS["DECISION_POLICY"] else str(policy)


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

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = super().dispatch(request, *args, **kwargs)
        patch_cache_control(response, no_store=True)
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Robots-Tag", "noindex, nofollow")
        return response


def only_when_allowed(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Wrap a sandbox view so it answers 404 unless the sandbox may serve now (``DEBUG`` on, or
    ``ALLOW_WITHOUT_DEBUG``): the system check warns an operator, this stops a visitor.

    Applied to every URL in ``urls.py``, so a new view cannot forget it. The 404 is Django's own,
    saying nothing of a sandbox; the log says which setting would change it.
    """

    @functools.wraps(view)  # keeps csrf_exempt and the other markers of the view
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not serving_allowed():
            logger.warning(
                "sandbox request refused (404): DEBUG is off and %s is not True",
                key_path("ALLOW_WITHOUT_DEBUG"),
            )
            raise Http404
        return view(request, *args, **kwargs)

    return guarded
