"""Prometheus metrics (optional: the ``metrics`` extra, ``prometheus-client``).

Without ``prometheus_client`` every function here does nothing and costs next to nothing. With it,
the metrics below are registered in ``prometheus_client.REGISTRY`` when the app loads (or in the
registry given to :func:`use_registry`) and recorded where the work happens — so in the process
that does it: a Celery worker's sweeps are that worker's metrics (see ``docs/observability.rst``).

======================================================  =========  ==========================
name                                                    type       labels
======================================================  =========  ==========================
``verification_link_sessions_started_total``            counter    provider
``verification_link_sessions_finished_total``           counter    provider, status
``verification_link_inbound_requests_total``            counter    kind, provider, verdict
``verification_link_provider_request_duration_seconds`` histogram  provider, operation
``verification_link_provider_errors_total``             counter    provider, operation, kind
``verification_link_sweep_duration_seconds``            histogram  sweep
``verification_link_sweep_sessions_total``              counter    sweep, outcome
``verification_link_sweep_backlog``                     gauge      sweep
``verification_link_sweep_last_run_timestamp_seconds``  gauge      sweep
======================================================  =========  ==========================

Sessions are counted from our own signals (``verification_created``, ``verification_finished``):
after the commit, once per session. Every label value comes from a closed set or from the site's
settings (a provider alias): an alias a request names that the settings do not is ``unknown``,
so nobody posting to ``webhook/<anything>/`` can grow the number of series.

Nothing is exposed by default. :func:`metrics_view` serves the registry for a site that wants it
here, only once ``VERIFICATION_LINK["METRICS_TOKEN"]`` is set, to requests bearing that token. In
prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before any metric is made)
it serves every process's samples, aggregated, whichever worker answers the scrape.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth import decorators as auth_decorators
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache

from . import logfields

F = TypeVar("F", bound=Callable[..., Any])

try:
    import prometheus_client
except ImportError:  # the extra is not installed: every recording below is a no-op
    prometheus_client = None  # type: ignore[assignment]

#: Django 5.1+: the view must be reachable under ``LoginRequiredMiddleware`` (it has its token).
login_not_required: Callable[[F], F] = getattr(auth_decorators, "login_not_required", lambda view: view)


__all__ = [
    "AVAILABLE",
    "INBOUND_VERDICTS",
    "PROVIDER_ERROR_KINDS",
    "install_metrics",
    "metrics_view",
    "observe_inbound",
    "provider_call",
    "record_inbound",
    "record_provider_error",
    "registry",
    "timed_sweep",
    "use_registry",
    "webhook_outcome",
]

#: Whether ``prometheus_client`` could be imported.
AVAILABLE = prometheus_client is not None

#: Provider call latency buckets, in seconds: up to the longest read timeout a site would set.
CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)
#: Sweep duration buckets, in seconds: a sweep runs every few seconds to every hour.
SWEEP_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

#: What ``process_webhook`` answers → the ``verdict`` label.
WEBHOOK_OUTCOMES = {
    "processed": "processed",
    "already processed": "duplicate",
    "already final": "already_final",
    "ignored": "ignored",
    "unknown session": "unknown_session",
    "unknown status": "unknown_status",
    "provider unavailable": "provider_unavailable",
}
#: The answer's HTTP status → the ``verdict`` label, where no outcome was noted (refused before
#: ``process_webhook``, or a callback: accepted, or 200 for a session already final).
STATUS_VERDICTS = {
    202: "accepted",
    400: "malformed",
    401: "unauthenticated",
    403: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    500: "error",
    503: "provider_unavailable",
}
#: Every value the ``verdict`` label takes.
INBOUND_VERDICTS = frozenset({*WEBHOOK_OUTCOMES.values(), *STATUS_VERDICTS.values(), "already_final", "other"})
#: Every value the ``kind`` label of provider errors takes.
PROVIDER_ERROR_KINDS = frozenset(
    {"timeout", "connection", "auth", "rejected", "throttled", "unavailable", "unreadable", "malformed", "other"}
)


class _Metrics:
    """The metric objects of one registry."""

    def __init__(self, registry: Any) -> None:
        p = prometheus_client
        assert p is not None
        self.registry = registry
        self.sessions_started = p.Counter(
            "verification_link_sessions_started", "Verification sessions the provider accepted.",
            ["provider"], registry=registry,
        )  # fmt: skip
        self.sessions_finished = p.Counter(
            "verification_link_sessions_finished", "Verification sessions that reached a final status.",
            ["provider", "status"], registry=registry,
        )  # fmt: skip
        self.inbound = p.Counter(
            "verification_link_inbound_requests", "Callbacks and webhooks received, by verdict.",
            ["kind", "provider", "verdict"], registry=registry,
        )  # fmt: skip
        self.call_duration = p.Histogram(
            "verification_link_provider_request_duration_seconds", "Provider API calls: time to the decoded answer.",
            ["provider", "operation"], buckets=CALL_BUCKETS, registry=registry,
        )  # fmt: skip
        self.call_errors = p.Counter(
            "verification_link_provider_errors", "Provider API calls that failed, by kind of failure.",
            ["provider", "operation", "kind"], registry=registry,
        )  # fmt: skip
        self.sweep_duration = p.Histogram(
            "verification_link_sweep_duration_seconds", "Sweeps (poll, expiry, purge, lapse): time per run.",
            ["sweep"], buckets=SWEEP_BUCKETS, registry=registry,
        )  # fmt: skip
        self.sweep_sessions = p.Counter(
            "verification_link_sweep_sessions", "Sessions the poll and expiry sweeps took up, by outcome.",
            ["sweep", "outcome"], registry=registry,
        )  # fmt: skip
        self.sweep_backlog = p.Gauge(
            "verification_link_sweep_backlog",
            "Open sessions due for a poll (poll) or overdue for expiry (expiry) at the last sweep's start.",
            ["sweep"], multiprocess_mode="mostrecent", registry=registry,
        )  # fmt: skip
        self.sweep_last_run = p.Gauge(
            "verification_link_sweep_last_run_timestamp_seconds", "When the last run of each sweep ended (Unix time).",
            ["sweep"], multiprocess_mode="mostrecent", registry=registry,
        )  # fmt: skip


#: The metrics of each registry used so far (a registry refuses the same names twice).
_by_registry: dict[int, _Metrics] = {}
_active: _Metrics | None = None


def use_registry(registry: Any) -> Any:
    """Record into ``registry`` (a ``prometheus_client.CollectorRegistry``) from now on, its
    metrics registered there on first use; ``None`` stops recording. Returns the registry used
    before (``None`` when none). Without ``prometheus_client``: nothing, returns ``None``."""
    global _active
    previous = _active.registry if _active is not None else None
    if prometheus_client is None or registry is None:
        _active = None
        return previous
    metrics = _by_registry.get(id(registry))
    if metrics is None or metrics.registry is not registry:
        metrics = _by_registry[id(registry)] = _Metrics(registry)
    _active = metrics
    return previous


def registry() -> Any:
    """The registry recorded into, or ``None`` (no ``prometheus_client``, or stopped)."""
    return _active.registry if _active is not None else None


def install_metrics() -> None:
    """Called once from ``AppConfig.ready``: the default registry, and the receivers of our
    session signals. Idempotent (the receivers have a ``dispatch_uid``)."""
    from . import signals

    if prometheus_client is not None and _active is None:
        use_registry(prometheus_client.REGISTRY)
    signals.verification_created.connect(_on_created, dispatch_uid="verification_link.metrics.created")
    signals.verification_finished.connect(_on_finished, dispatch_uid="verification_link.metrics.finished")


def _alias_of(session: Any) -> str:
    # Only what is loaded: a deferred field would be a query per signal.
    alias = getattr(session, "__dict__", {}).get("provider")
    return alias if isinstance(alias, str) and alias else "unknown"


def _on_created(sender: Any, session: Any, **kwargs: Any) -> None:
    if _active is not None:
        _active.sessions_started.labels(provider=_alias_of(session)).inc()


def _on_finished(sender: Any, session: Any, status: Any = "", **kwargs: Any) -> None:
    if _active is not None:
        _active.sessions_finished.labels(provider=_alias_of(session), status=str(status)).inc()


# -- provider calls ---------------------------------------------------------------------------------


def _error_kind(exc: BaseException) -> str:
    """The ``kind`` label of a failed call (``BaseProvider.call`` raises ``from None``: the
    ``requests`` error it replaced is still its ``__context__``)."""
    import requests

    from .exceptions import ProviderAuthError, ProviderRejected, ProviderUnavailable

    if isinstance(exc, ProviderAuthError):
        return "auth"
    if isinstance(exc, ProviderRejected):
        return "throttled" if exc.status_code == 429 else "rejected"
    if isinstance(exc, ProviderUnavailable):
        if exc.status_code is None:
            return "timeout" if isinstance(exc.__context__, requests.Timeout) else "connection"
        return "unreadable" if 200 <= exc.status_code < 300 else "unavailable"
    return "other"


def record_provider_error(alias: str, operation: str, kind: str) -> None:
    """Count one failed provider call or unusable answer (``kind``: ``PROVIDER_ERROR_KINDS``)."""
    if _active is not None:
        kind = kind if kind in PROVIDER_ERROR_KINDS else "other"
        _active.call_errors.labels(provider=alias, operation=operation, kind=kind).inc()


def provider_call(method: F) -> F:
    """Decorate ``BaseProvider.call``: its latency, success or not, by alias and ``operation``
    (a constant of the provider's code, never a URL), and its failures by kind."""

    @wraps(method)
    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _active is None:
            return method(self, *args, **kwargs)
        operation = str(kwargs.get("operation", ""))
        started = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            record_provider_error(self.alias, operation, _error_kind(exc))
            raise
        finally:
            if _active is not None:
                _active.call_duration.labels(provider=self.alias, operation=operation).observe(
                    time.perf_counter() - started
                )

    return timed  # type: ignore[return-value]


# -- inbound requests -------------------------------------------------------------------------------


@dataclass
class _Inbound:
    outcome: str = ""


_inbound: ContextVar[_Inbound | None] = ContextVar("verification_link_inbound", default=None)


def webhook_outcome(function: F) -> F:
    """Decorate ``process_webhook``: the outcome it returns is the request's verdict."""

    @wraps(function)
    def noted(*args: Any, **kwargs: Any) -> Any:
        outcome = function(*args, **kwargs)
        observed = _inbound.get()
        if observed is not None and isinstance(outcome, str):
            observed.outcome = outcome
        return outcome

    return noted  # type: ignore[return-value]


def _inbound_kind(request: HttpRequest, kwargs: Mapping[str, Any]) -> str:
    match = getattr(request, "resolver_match", None)
    name = getattr(match, "url_name", None) or ""
    if name.startswith(("callback", "webhook")):
        return "callback" if name.startswith("callback") else "webhook"
    # Our catch-all under callback/ and webhook/: which of the two, by the path before its tail.
    rest = str(kwargs.get("rest") or "")
    head = request.path[: len(request.path) - len(rest)] if rest else request.path
    for kind in ("callback", "webhook"):
        if head.rstrip("/").endswith(kind):
            return kind
    return "other"


def _verdict(kind: str, status_code: int, outcome: str) -> str:
    if outcome:
        return WEBHOOK_OUTCOMES.get(outcome, "other")
    if status_code == 200 and kind == "callback":
        return "already_final"  # the one 200 of a callback: the session was final already
    return STATUS_VERDICTS.get(status_code, "other")


def record_inbound(kind: str, provider: str, verdict: str) -> None:
    """Count one inbound request (``verdict``: ``INBOUND_VERDICTS``)."""
    if _active is not None:
        verdict = verdict if verdict in INBOUND_VERDICTS else "other"
        _active.inbound.labels(kind=kind, provider=provider or "unknown", verdict=verdict).inc()


def observe_inbound(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap an inbound endpoint (``logsafe.inbound_endpoint`` does): the request runs in its log
    context (``source`` callback or webhook, the alias when configured) and is counted once, by
    the verdict noted by ``process_webhook`` or else by the answer's status."""

    @wraps(view)
    def observed(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        kind = _inbound_kind(request, kwargs)
        alias = logfields.configured_alias(kwargs.get("provider"))
        noted = _Inbound()
        token = _inbound.set(noted)
        try:
            with logfields.log_context(source=kind if kind != "other" else "", provider=alias):
                response = view(request, *args, **kwargs)
        finally:
            _inbound.reset(token)
        record_inbound(kind, alias, _verdict(kind, response.status_code, noted.outcome))
        return response

    return observed


# -- sweeps -----------------------------------------------------------------------------------------


def timed_sweep(sweep: str) -> Callable[[F], F]:
    """Decorate a sweep (``run_poll_sweep``, ``run_expiry_sweep``, ``run_purge``,
    ``lapse_verifications``): its duration and end time; for one returning a ``SweepResult``, the
    backlog it found (every due session, as the sweep works until none is left — at most its
    batch limit for the poll sweep) and its sessions by outcome. Counts nothing from the database:
    no query is added."""

    def decorate(function: F) -> F:
        @wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = function(*args, **kwargs)
            metrics = _active
            if metrics is not None:
                metrics.sweep_duration.labels(sweep=sweep).observe(time.perf_counter() - started)
                metrics.sweep_last_run.labels(sweep=sweep).set(time.time())
                found = getattr(result, "found", None)
                if isinstance(found, int):
                    metrics.sweep_backlog.labels(sweep=sweep).set(found)
                    for outcome in ("processed", "failed"):
                        count = getattr(result, outcome, 0)
                        if count:
                            metrics.sweep_sessions.labels(sweep=sweep, outcome=outcome).inc(count)
            return result

        return timed  # type: ignore[return-value]

    return decorate


# -- exposition -------------------------------------------------------------------------------------


#: The environment variables that turn prometheus-client's multiprocess mode on (the lower-case
#: one is its deprecated spelling, still honoured).
MULTIPROC_DIR_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


def _exposition(active: _Metrics) -> bytes:
    """The text to serve: the active registry, or — in multiprocess mode, where each worker only
    holds its own share — a registry built per scrape over every process's files."""
    p = prometheus_client
    assert p is not None
    if not any(os.environ.get(name) for name in MULTIPROC_DIR_VARIABLES):
        return bytes(p.generate_latest(active.registry))
    from prometheus_client import multiprocess

    aggregated = p.CollectorRegistry()
    multiprocess.MultiProcessCollector(aggregated)
    return bytes(p.generate_latest(aggregated))


def _bearer(request: HttpRequest) -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


@never_cache
@login_not_required
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The registry in Prometheus' text format, for a site that wants it served by Django:
    ``path("metrics/verification/", metrics_view)``.

    Off (404, as if there were no such page) until ``VERIFICATION_LINK["METRICS_TOKEN"]`` is a
    non-empty string, and without ``prometheus_client``; then only ``GET`` with
    ``Authorization: Bearer <token>`` (Prometheus' ``authorization`` scrape setting) is answered,
    anything else 401. The token is compared in constant time and never logged. Under
    ``PROMETHEUS_MULTIPROC_DIR`` the samples of every process writing there are served, aggregated
    (a directory that is not one is a 503, not a traceback)."""
    from . import conf

    token = conf.user_settings().get("METRICS_TOKEN")
    if prometheus_client is None or not isinstance(token, str) or not token or _active is None:
        return HttpResponse("not found\n", status=404, content_type="text/plain")
    if request.method not in ("GET", "HEAD"):
        response = HttpResponse("method not allowed\n", status=405, content_type="text/plain")
        response["Allow"] = "GET, HEAD"
        return response
    if not hmac.compare_digest(_bearer(request).encode(), token.encode()):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    try:
        body = _exposition(_active)
    except ValueError:  # MultiProcessCollector: the variable names no directory
        return HttpResponse("metrics directory unavailable\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
