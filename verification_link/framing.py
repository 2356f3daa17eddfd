"""Pages that show the one-time hand-off link or its QR code must never be framed.

A framing page could overlay them (clickjacking) or lift the link the user is shown. The site's
middleware may allow framing (``X_FRAME_OPTIONS = "SAMEORIGIN"``) or say nothing at all, so these
responses carry their own headers:

- ``X-Frame-Options: DENY`` — Django's ``XFrameOptionsMiddleware`` leaves a header already set
  alone, so ours wins whatever ``X_FRAME_OPTIONS`` says.
- ``Content-Security-Policy: frame-ancestors 'none'`` (what current browsers obey) — as a policy of
  its own next to any policy already on the response: browsers enforce every policy, while a second
  ``frame-ancestors`` inside an existing policy would be ignored (the first directive of a name wins).
  Django 6's ``ContentSecurityPolicyMiddleware`` does not add the site's policy to a response that
  has one already; there the directive is merged into the policy the middleware is about to build.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

CSP_HEADER = "Content-Security-Policy"
FRAME_ANCESTORS_NONE = "frame-ancestors 'none'"
DJANGO_CSP_MIDDLEWARE = "django.middleware.csp.ContentSecurityPolicyMiddleware"  # Django 6.0+


def _django_csp_config(response: HttpResponseBase) -> dict[str, Any] | None:
    """The policy Django's own CSP middleware will write on this response, if it is installed and
    will write one: the view's ``@csp_override`` config, else ``SECURE_CSP``."""
    if DJANGO_CSP_MIDDLEWARE not in settings.MIDDLEWARE:
        return None
    config = getattr(response, "_csp_config", None)  # where @csp_override puts it
    if config is None:
        config = getattr(settings, "SECURE_CSP", None)
    return dict(config) if config else None


def forbid_framing(response: HttpResponseBase) -> HttpResponseBase:
    """Make ``response`` refuse every frame (see the module docstring); idempotent."""
    response["X-Frame-Options"] = "DENY"
    existing = response.get(CSP_HEADER)
    if existing:
        if FRAME_ANCESTORS_NONE not in [policy.strip() for policy in existing.split(",")]:
            response[CSP_HEADER] = f"{existing}, {FRAME_ANCESTORS_NONE}"
        return response
    config = _django_csp_config(response)
    if config is not None:
        # 'none' is the strictest value there is: replacing the site's frame-ancestors loses nothing.
        response._csp_config = {**config, "frame-ancestors": ["'none'"]}  # type: ignore[attr-defined]
    else:
        response[CSP_HEADER] = FRAME_ANCESTORS_NONE
    return response


def deny_framing(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """View decorator: the view's response refuses every frame (see ``forbid_framing``)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return forbid_framing(view(request, *args, **kwargs))

    return wrapper
