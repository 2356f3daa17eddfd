"""Keeping secrets out of log lines that are not ours to write.

Two places log a URL we cannot let them log:

- Django's ``django.request`` logger writes the request path of every 4xx and 5xx ("Method Not
  Allowed (GET): /verify/callback/ooto/<secret>/", "Bad Request: …", "Not Found: …"), and the path
  of an OOTO callback is its per-session secret. :func:`inbound_endpoint` makes our inbound views
  log a redacted path themselves and mark the response as logged (Django's ``log_response`` then
  stays silent); it also answers a method other than POST itself, and turns an unexpected error
  into a plain 500 logged with the redacted path — never Django's debug page, whose frame locals
  would show the request, the secret and whatever the view had read.
- ``urllib3`` logs every request line at DEBUG, and OOTO's Get Status URL carries the session
  token (the hand-off link's own secret). :class:`ProviderURLFilter`, installed on that logger when
  the app loads, hides the path of requests to configured providers.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse, JsonResponse

from .metrics import observe_inbound

logger = logging.getLogger("verification_link.views")

HIDDEN = "[hidden]"


def redacted_path(request: HttpRequest, secrets: list[str]) -> str:
    """``request.path`` with each of ``secrets`` hidden, cut short and quoted (it is outside text:
    quoting keeps a newline in it from forging a log line)."""
    path = request.path
    for secret in secrets:
        if secret:
            path = path.replace(secret, HIDDEN)
    return repr(path[:200])


def inbound_endpoint(*secret_kwargs: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Decorate a view that providers POST to and whose URL kwargs ``secret_kwargs`` are secrets.

    - Only POST: anything else is a 405 (with ``Allow: POST``) decided here, not by Django's
      ``require_POST``, which logs the raw path.
    - Every answer of 400 and above is logged once, at WARNING, with the secrets hidden, and marked
      logged so that ``django.request`` does not log it again with the raw path.
    - An unexpected exception is logged (traceback, redacted path), announced on Django's
      ``got_request_exception`` signal as Django itself would (error trackers listen there), and
      answered ``{"error": "server error"}`` with 500.
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            secrets = [str(kwargs.get(name) or "") for name in secret_kwargs]
            if request.method != "POST":
                response: HttpResponse = JsonResponse({"error": "method not allowed"}, status=405)
                response["Allow"] = "POST"
            else:
                try:
                    response = view(request, *args, **kwargs)
                except Exception as exc:
                    # The type and where it happened, not the message: a database error's text can
                    # quote the row it refused (a token, a result), and that must not reach the log.
                    logger.error(
                        "inbound %s %s failed: %s", request.method, redacted_path(request, secrets), failure_text(exc)
                    )
                    got_request_exception.send(sender=None, request=request)
                    response = JsonResponse({"error": "server error"}, status=500)
            if response.status_code >= 400:
                logger.warning(
                    "inbound %s %s answered %s", request.method, redacted_path(request, secrets), response.status_code
                )
            response._has_been_logged = True  # type: ignore[attr-defined]
            return response

        return observe_inbound(endpoint)  # its log fields, and its verdict counted

    return decorate


def failure_text(exc: BaseException) -> str:
    """``exc`` for a log line: its type and where it was raised (the traceback's frames), never its
    message — a database error's text can quote the row it refused (a token, a result)."""
    return f"{type(exc).__name__}\n" + "".join(traceback.format_tb(exc.__traceback__))


class ProviderURLFilter(logging.Filter):
    """On ``urllib3.connectionpool``: a request line to a configured provider's host keeps its
    method and status, and its path becomes ``[hidden]`` (Get Status URLs carry tokens)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 5 and isinstance(args[4], str) and args[1] in _provider_hosts():
            record.args = (*args[:4], HIDDEN, *args[5:])
        return True


def _provider_hosts() -> set[str]:
    from . import conf
    from .providers import get_provider

    hosts: set[str] = set()
    try:
        aliases = list(conf.providers())
    except Exception:  # a settings problem is reported by the checks; a log line must never fail
        return hosts
    for alias in aliases:
        with contextlib.suppress(Exception):  # a misconfigured alias: the checks report it
            hosts.add(urlsplit(get_provider(alias).base_url).hostname or "")
    return hosts


def install_log_filters() -> None:
    """Called once from ``AppConfig.ready``."""
    urllib3_logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(existing, ProviderURLFilter) for existing in urllib3_logger.filters):
        urllib3_logger.addFilter(ProviderURLFilter())


__all__ = ["failure_text", "inbound_endpoint", "install_log_filters", "redacted_path"]
