"""Structured log fields: every record of our loggers carries ``session_id``, ``provider`` and
``source`` as ``LogRecord`` attributes, so a JSON formatter (or ``%(session_id)s`` in a format
string) picks them up without any log call of ours naming them.

The values live in a ``contextvars`` context set at the entry points — a start, an inbound
request, a poll or refresh of one session (in a sweep too), a staff action, a sweep as a whole —
and :class:`LogFieldsFilter`, attached to each of our loggers when the app loads, copies them onto
every record. Outside any context the three are ``""``: present, never missing.

What goes in is never a secret: our session id (the public identifier in URLs and the API), the
provider *alias* of the site's settings (an alias a request names but the settings do not is left
out, not copied), and a word saying where the work came from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from functools import wraps
from typing import Any, TypeVar

__all__ = [
    "FIELDS",
    "LOGGER_NAMES",
    "LogFields",
    "LogFieldsFilter",
    "about_session",
    "bind",
    "configured_alias",
    "current",
    "in_context",
    "install_log_fields",
    "log_context",
    "per_session",
]

#: The attributes every record of ours carries.
FIELDS = ("session_id", "provider", "source")

#: Every logger of the package. A logger object exists once per name, so adding the filter to a
#: name before its module creates it (the sandbox's views load with the URLconf, after ``ready``)
#: is the same as adding it afterwards. ``tests/test_structured_logs.py`` fails for one missing.
LOGGER_NAMES = (
    "verification_link",
    "verification_link.api",
    "verification_link.conf",
    "verification_link.decorators",
    "verification_link.providers",
    "verification_link.sandbox",
    "verification_link.sandbox.callbacks",
    "verification_link.sandbox.valify_views",
    "verification_link.sandbox.views",
    "verification_link.tasks",
    "verification_link.views",
    "verification_link.webhooks",
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class LogFields:
    """The three fields, as strings ("" when not applicable)."""

    session_id: str = ""
    provider: str = ""
    source: str = ""


EMPTY = LogFields()

#: None outside any context: ``bind`` then does nothing, so a value can never outlive its block.
_current: ContextVar[LogFields | None] = ContextVar("verification_link_log_fields", default=None)


def current() -> LogFields:
    """The fields of the current context (``EMPTY`` outside any)."""
    return _current.get() or EMPTY


def _session_fields(session: Any) -> dict[str, str]:
    """Id and alias of ``session`` (a ``VerificationSession``, or its id), read from what is loaded
    only: a deferred ``provider`` (a row loaded with ``only()``) must not cost a query."""
    if session is None:
        return {}
    loaded = getattr(session, "__dict__", None)
    if loaded is None or "_state" not in loaded:  # an id (UUID or str), not a model instance
        return {"session_id": str(session)}
    fields = {"session_id": str(session.pk) if session.pk is not None else ""}
    alias = loaded.get("provider")
    if isinstance(alias, str) and alias:
        fields["provider"] = alias
    return fields


def _merged(base: LogFields, *, session: Any, provider: str | None, source: str | None) -> LogFields:
    changes = _session_fields(session)
    if provider is not None:
        changes["provider"] = str(provider)
    if source is not None:
        changes["source"] = str(source)
    return replace(base, **changes) if changes else base


@contextmanager
def log_context(*, session: Any = None, provider: str | None = None, source: str | None = None) -> Iterator[LogFields]:
    """Within the block, our records carry these fields (those not given are kept from the
    enclosing context). ``session``: a ``VerificationSession`` (id and alias) or a session id."""
    token = _current.set(_merged(current(), session=session, provider=provider, source=source))
    try:
        yield current()
    finally:
        _current.reset(token)


def bind(*, session: Any = None, provider: str | None = None, source: str | None = None) -> None:
    """Add to the current context what became known inside it (the session a start just made, the
    one a webhook names); undone when the enclosing ``log_context`` ends. Outside any context:
    nothing (a value set there would stick to the thread)."""
    fields = _current.get()
    if fields is not None:
        _current.set(_merged(fields, session=session, provider=provider, source=source))


def configured_alias(provider: Any) -> str:
    """``provider`` when the site's settings configure that alias, else ``""``: an alias a request
    names is outside text, and must not become a log field (or a metric label) as it came."""
    from . import conf

    try:
        return provider if isinstance(provider, str) and provider in conf.providers() else ""
    except Exception:  # a settings problem is the checks' to report; a log field never fails
        return ""


def in_context(*, source: str, provider_kwarg: str | None = None) -> Callable[[F], F]:
    """Decorate an entry point (a start, a sweep): its call runs in a context with ``source`` and,
    when ``provider_kwarg`` names one of its keyword arguments holding an alias, that alias."""

    def decorate(function: F) -> F:
        @wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            alias = configured_alias(kwargs.get(provider_kwarg)) if provider_kwarg else ""
            with log_context(source=source, provider=alias or None):
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


def about_session(*, default_source: str | None = None) -> Callable[[F], F]:
    """Decorate a function whose first argument is a session (or its id) and that may take a
    ``source`` keyword: its call runs in that session's context, with that source — else the
    enclosing context's, else ``default_source``."""

    def decorate(function: F) -> F:
        @wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            session = args[0] if args else kwargs.get("session")
            source = kwargs.get("source") or current().source or default_source
            with log_context(session=session, source=source):
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


def per_session(work: Callable[[Any], Any], *, source: str) -> Callable[[Any], Any]:
    """``work(session)`` of a sweep, each call in that session's context (sweep threads start
    with an empty context of their own)."""

    @wraps(work)
    def run(session: Any) -> Any:
        with log_context(session=session, source=source):
            return work(session)

    return run


class LogFieldsFilter(logging.Filter):
    """Copies the current context's fields onto each record, leaving alone any the call already
    set (``extra={"session_id": …}``). Attached to our loggers by ``install_log_fields``; a site
    may also attach it to a handler, so every record that handler formats has the fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = current()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, getattr(fields, name))
        return True


def install_log_fields() -> None:
    """Attach ``LogFieldsFilter`` to every logger of ours (``LOGGER_NAMES``, and any other under
    ``verification_link`` that exists already). Called once from ``AppConfig.ready``; idempotent."""
    names = set(LOGGER_NAMES)
    names.update(
        name
        for name in list(logging.Logger.manager.loggerDict)
        if name == "verification_link" or name.startswith("verification_link.")
    )
    for name in sorted(names):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, LogFieldsFilter) for existing in logger.filters):
            logger.addFilter(LogFieldsFilter())
