"""The owner watching the status page: how often their open page may make us ask the provider.

The page polls our status JSON every second or two; the provider is asked at most once per
``LIVE_POLL_SECONDS`` per session, whoever is watching (a second tab, a phone), and never for a
final session or one whose provider cannot be polled. The poll schedule of the sweeps is not
changed by watching: a page closed mid-flow leaves the session to the sweeps as before.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone

from .. import conf
from ..models import VerificationEvent, VerificationSession
from ..providers import get_provider
from .common import logger
from .reports import refresh_session


def refresh_while_watched(
    session: VerificationSession, *, timeout: float | None = None, source: str = VerificationEvent.Source.POLL
) -> VerificationSession:
    """``session`` as the provider says now, when we last asked more than ``LIVE_POLL_SECONDS``
    ago (0: only when the poll schedule says it is due); else as it is, with no call.

    The ask is claimed in the site's cache with an atomic ``add`` (as callbacks claim theirs): of
    pages polling together one asks. ``last_polled_at`` as loaded also counts (a sweep, a callback
    or a return that asked a moment ago). ``source``: ``return`` for the owner's own return from
    the provider. Raises the provider's error, if any (the page shows the session as it is; the
    sweeps retry)."""
    if session.is_final or not get_provider(session.provider).pollable:
        return session
    now = timezone.now()
    every = float(conf.guarded("LIVE_POLL_SECONDS"))
    due = session.next_poll_at is not None and session.next_poll_at <= now
    if every <= 0 and not due:
        return session
    if not due and session.last_polled_at is not None and session.last_polled_at > now - timedelta(seconds=every):
        return session
    try:
        claimed = cache.add(f"verification_link:live-asks:{session.pk}", 1, timeout=max(1, int(every) or 1))
    except Exception:  # the cache is an optimisation: without it, the last poll time alone limits
        logger.warning("live status: the cache did not answer; asking by the last poll time alone")
        claimed = True
    if not claimed:
        return session
    return refresh_session(session, source=source, timeout=timeout)
