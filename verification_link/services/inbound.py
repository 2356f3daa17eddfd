"""Inbound requests — OOTO callbacks and account-level webhooks: recorded (redacted) before they
are judged, confirmed by a provider pull or applied once authenticated, coalesced, and the user's
return that may only pull the next poll forward."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from .. import conf, logfields, metrics
from ..exceptions import ConfigurationError, ProviderError
from ..jsonbody import InvalidJSON, parse_json, storable
from ..models import VerificationEvent, VerificationSession
from ..providers import get_provider
from .common import PROVIDER_WORDS, KeptBody, Kind, judge_inbound, logger
from .reports import _refresh, apply_report, refresh_session

#: Headers kept with a recorded inbound request; never cookies or authorization.
RECORDED_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For", "X-Request-Id")


#: What confirming a callback reads of its session: the provider's handles, the status, attempt
#: count and expiry that the compare-and-set of an unchanged answer checks, and when we last asked
#: the provider (a callback within ``CALLBACK_COALESCE_SECONDS`` of it asks nothing). A move reloads
#: the whole row under its lock; a provider whose ``get_status`` reads more loads it on access.
CALLBACK_SESSION_FIELDS = (
    *("id", "provider", "token", "external_id", "reference"),
    *("status", "next_step", "scopes", "poll_attempts", "expires_at", "last_polled_at"),
    *PROVIDER_WORDS,
)


def session_for_callback(provider: str, secret: str) -> VerificationSession | None:
    """The session a callback URL names, or None. Reads only ``CALLBACK_SESSION_FIELDS``: loading the
    whole row (results, metadata: JSON to decode) doubled the cost of the lookup."""
    if "\x00" in provider or "\x00" in secret:
        return None  # names nothing, and PostgreSQL refuses NUL in a query parameter
    try:
        return VerificationSession.objects.only(*CALLBACK_SESSION_FIELDS).get(provider=provider, callback_secret=secret)
    except VerificationSession.DoesNotExist:
        return None


def record_inbound(
    request: HttpRequest,
    *,
    kind: str,
    provider: str,
    body: bytes,
    session: VerificationSession | None = None,
    error: str = "",
    full_body: bool = False,
) -> VerificationEvent:
    """Store an inbound callback or webhook *before* it is judged.

    Callers run this in autocommit (outside any processing transaction), so the evidence survives
    whatever happens next. Until the request is authenticated only its first
    ``UNVERIFIED_BODY_BYTES`` are kept (``body_truncated`` says when that cut something): anyone
    can post, and a stranger's 64 KB must not be kept for ever. ``full_body``: the request carries
    what only the provider knows (a callback URL with a session's unguessable secret) and may keep
    up to ``MAX_EVENT_BODY_BYTES``. A webhook gets its whole body in the write of its verdict, once its
    signature verified (``process_webhook``).
    """
    event = _inbound_event(
        request,
        kind=kind,
        provider=provider,
        body=body,
        session=session,
        error=error,
        limit=_body_limit(full=full_body),
    )
    event.save(force_insert=True)
    return event


def _body_limit(*, full: bool) -> int:
    limit = conf.guarded("MAX_EVENT_BODY_BYTES")
    if full:
        return limit
    return min(conf.guarded("UNVERIFIED_BODY_BYTES"), limit)  # a wrong value never means "keep it all"


def _body_text(body: bytes, limit: int) -> tuple[str, bool]:
    """The first ``limit`` bytes of ``body`` as text the database stores, and whether that cut it."""
    return storable(body[:limit].decode("utf-8", errors="replace")), len(body) > limit


def _inbound_event(
    request: HttpRequest,
    *,
    kind: str,
    provider: str,
    body: bytes,
    session: VerificationSession | None,
    error: str,
    limit: int,
) -> VerificationEvent:
    text, truncated = _body_text(body, limit)
    return VerificationEvent(
        session=session,
        provider=storable(provider[:64]),
        kind=kind,
        source=kind,
        body=text,
        body_truncated=truncated,
        headers={name: storable(request.headers[name][:512]) for name in RECORDED_HEADERS if name in request.headers},
        remote_addr=request.META.get("REMOTE_ADDR") or None,
        valid=False if error else None,
        error=error,
    )


def record_callback(
    request: HttpRequest, *, provider: str, secret: str, body: bytes, error: str = ""
) -> tuple[VerificationEvent, VerificationSession | None]:
    """``record_inbound`` for a per-session callback, with the lookup of the session its URL names
    (``session_for_callback``): the recorded event and the session, or None for an unknown one.
    A URL naming a session keeps the body up to ``MAX_EVENT_BODY_BYTES`` (its secret is
    unguessable); any other keeps the ``UNVERIFIED_BODY_BYTES`` prefix. Two statements, the same on
    every database: the lookup, and the event's ``save()`` (``post_save`` fires)."""
    session = session_for_callback(provider, secret)
    logfields.bind(session=session)  # the request's log lines name the session from here on
    event = record_inbound(
        request,
        kind=Kind.CALLBACK,
        provider=provider,
        body=body,
        session=session,
        error=error,
        full_body=session is not None,
    )
    return event, session


def redacted_body(provider: str, body: bytes) -> bytes:
    """``body`` as the audit trail may keep it, before anything is recorded: a JSON object becomes
    the JSON of what the alias's provider keeps of it (``BaseProvider.storable_body``: no identity
    numbers, no ``DISCARD_RESULT_KEYS``), so a stored body never holds what the stored result may
    not — whether or not the request turns out authentic. Anything else is kept as it came (it is
    not JSON the provider sends); a body the provider cannot redact is not kept at all."""
    if not body:
        return body
    try:
        backend = get_provider(provider)
        payload = parse_json(body)
    except (ConfigurationError, InvalidJSON):
        return body
    if not isinstance(payload, dict):
        return body
    try:
        kept = backend.storable_body(payload)
        if kept == payload:
            return body
        return json.dumps(kept, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (ValueError, TypeError):  # fail closed: keeping it unredacted is what must not happen
        logger.warning("an inbound body for %r could not be redacted; it is not kept", provider[:64])
        return b""


def kept_webhook_body(backend: Any, payload: Mapping[str, Any], raw: bytes) -> KeptBody | None:
    """What an *authenticated* webhook keeps of its body ``raw`` (parsed: ``payload``): the raw text
    when the provider keeps all of it (``BaseProvider.storable_body``), else the JSON of what it
    keeps, marked redacted. None — keep the recorded prefix, redacted already (``redacted_body``) —
    when that cannot be computed."""
    limit = conf.guarded("MAX_EVENT_BODY_BYTES")
    try:
        kept = backend.storable_body(payload)
        if kept == payload:
            text, truncated = _body_text(raw, limit)
            return KeptBody(text, truncated)
        text = storable(json.dumps(kept, ensure_ascii=False, separators=(",", ":"), allow_nan=False))
    except (ValueError, TypeError, RecursionError):  # nothing the sender may turn into a 500
        logger.warning("webhook body of %s could not be redacted; only its prefix is kept", backend.alias)
        return None
    encoded = text.encode("utf-8")
    if len(encoded) > limit:
        return KeptBody(encoded[:limit].decode("utf-8", errors="ignore"), truncated=True, redacted=True)
    return KeptBody(text, redacted=True)


@logfields.in_context(source="callback")  # a worker's run too
def confirm_callback(event: VerificationEvent | int) -> VerificationSession | None:
    """Act on a recorded callback whose form was valid: ask the provider and apply its answer (never
    the body). The event is marked processed with the answer, atomically (in the answer's
    transaction).

    ``event``: the recorded request, or its id (a task). Idempotent: an event already processed, or
    one whose session is final, costs no provider call. Raises the provider's error so a task can
    retry; the event is then judged valid and left unprocessed.

    Coalescing: when we asked the provider about the session less than ``CALLBACK_COALESCE_SECONDS``
    ago (a callback, a poll, a return), the callback makes no call of its own. It is judged valid
    and processed with ``data["coalesced"]``, and the session's next poll is pulled forward to the
    end of that window, so a completion the callback announces is confirmed by the next poll
    sweep instead of by another call now. The ask is claimed atomically in the site's cache
    (``_claim_provider_call``), so of callbacks arriving together one asks.
    """
    if not isinstance(event, VerificationEvent):
        event = VerificationEvent.objects.select_related("session").get(pk=event)
    session = event.session
    logfields.bind(session=session)
    if event.processed or session is None:
        return session
    if session.is_final:
        judge_inbound(event, valid=True, processed=True)
        return session
    asked_at = _claim_provider_call(session)
    if asked_at is not None:
        _coalesce(event, session, asked_at=asked_at)
        return session
    try:
        session = _refresh(session, source=VerificationEvent.Source.CALLBACK, confirms=event)
    except ProviderError:
        if event.valid is not True:
            judge_inbound(event, valid=True, unless_processed=True)
        raise
    if not event.processed:  # a provider that cannot be polled: nothing to confirm with
        judge_inbound(event, valid=True, processed=True, unless_processed=True)
    return session


def _claim_provider_call(session: VerificationSession) -> datetime | None:
    """Claim the provider call a callback would make: None when it is ours to make, else when we
    last asked about the session — within ``CALLBACK_COALESCE_SECONDS``, so the callback shares
    that answer.

    A poll or return that asked within the window shows in ``last_polled_at`` as loaded (no
    query). Callbacks claim in the site's cache with an atomic ``add`` that lives for the window:
    of callbacks arriving together exactly one asks, and nothing is written to the session row — a
    row with a dozen indexes whose rewrite was most of what a callback cost. The claim is as wide
    as the cache: Redis or memcached are shared by every process; Django's default local-memory
    cache is per process (at most one call per window per process); a dummy cache claims nothing
    (every callback asks). A cache that fails is a callback that asks, never an error."""
    window = _coalesce_window()
    if window <= 0 or not get_provider(session.provider).pollable:
        return None  # coalescing off; or nothing to ask (confirm_callback judges it)
    now = timezone.now()
    since = now - timedelta(seconds=window)
    loaded = "last_polled_at" not in session.get_deferred_fields()
    if loaded and session.last_polled_at is not None and session.last_polled_at > since:
        return session.last_polled_at
    key = f"verification_link:callback-asks:{session.pk}"
    try:
        if cache.add(key, now.timestamp(), timeout=max(1, math.ceil(window))):
            return None
        asked = cache.get(key)
    except Exception:  # the cache is an optimisation: without it, the callback asks
        logger.warning("callback coalescing: the cache did not answer; the callback asks the provider")
        return None
    if not isinstance(asked, (int, float)):
        return None  # the claim lapsed in between: ours to make
    return datetime.fromtimestamp(asked, tz=dt_timezone.utc)


def _coalesce_window() -> int:
    return int(conf.guarded("CALLBACK_COALESCE_SECONDS"))  # a typo must not become a 500 per callback


def _coalesce(event: VerificationEvent, session: VerificationSession, *, asked_at: datetime) -> None:
    """Process a callback that shares the provider call made at ``asked_at``: pull the session's next
    poll forward to the end of the coalescing window (first, so that a completion the callback
    announces is never lost), then mark the callback processed — unless a run before this one did."""
    end = asked_at + timedelta(seconds=_coalesce_window())
    VerificationSession.objects.filter(
        pk=session.pk, status__in=VerificationSession.OPEN_STATUSES, next_poll_at__gt=end
    ).update(next_poll_at=end)
    judge_inbound(event, valid=True, processed=True, data={"coalesced": True}, unless_processed=True)
    logger.info("callback %s for session %s coalesced with the provider call of %s", event.pk, session.pk, asked_at)


def refresh_on_return(session: VerificationSession, *, timeout: float | None = None) -> VerificationSession:
    """The user's browser came back from the provider (``return_view``): a hint, never evidence,
    and anyone may send it. Asks the provider only when the session's poll is due, and claims that
    poll first (a conditional UPDATE of ``next_poll_at``, as a sweep claims), so concurrent hits
    make one call between them. Otherwise no call: the next poll is pulled forward to at most
    ``POLL_INTERVAL`` from now — the user has probably just finished — by one conditional UPDATE
    that writes nothing when it is already that early. Raises the provider's error, if any."""
    if session.is_final or session.next_poll_at is None:
        return session  # nothing to ask, or a provider that cannot be polled
    now = timezone.now()
    if session.next_poll_at <= now:
        lease = now + timedelta(seconds=int(conf.get("POLL_CLAIM_SECONDS")))
        if VerificationSession.objects.filter(pk=session.pk, next_poll_at__lte=now).update(next_poll_at=lease):
            return refresh_session(session, source=VerificationEvent.Source.RETURN, timeout=timeout)
        return session  # another hit (or a sweep) claimed this poll a moment ago
    soon = now + timedelta(seconds=int(conf.get("POLL_INTERVAL")))
    if VerificationSession.objects.filter(pk=session.pk, next_poll_at__gt=soon).update(next_poll_at=soon):
        session.next_poll_at = soon
    return session


@metrics.webhook_outcome  # what it returns is the request's verdict
def process_webhook(
    event: VerificationEvent,
    backend: Any,
    payload: Mapping[str, Any],
    *,
    body: bytes | None = None,
    delivery_id: str = "",
) -> str:
    """Act on a recorded, *authenticated* webhook: find the session by the provider's handles, map
    the outcome, apply it. Returns what happened — ``processed``, ``already processed`` (a delivery
    id seen before), ``already final``, ``ignored`` (an event type that says nothing of a state),
    ``unknown session``, ``unknown status``, ``provider unavailable`` (the provider could not be asked
    to confirm a hint: the caller answers 503 so that it redelivers) — each recorded on the event;
    only ``processed`` changes state.

    ``delivery_id``: the id the signature scheme authenticated (``webhook-id``); else the one the
    body names (``WebhookReport.delivery_id``). Written on the event once, unique per alias: a
    redelivery finds it taken and changes nothing. A body that is only a hint
    (``WebhookReport.pull``) is confirmed by asking the provider; the answer is applied instead.
    Out-of-order deliveries never move a session back: status only moves forward.

    ``body``: the raw body, now authenticated. The event, recorded with a prefix only, then keeps
    what the provider allows of it (``kept_webhook_body``), written with the verdict."""
    kept = kept_webhook_body(backend, payload, body) if body is not None else None
    parsed = backend.parse_webhook(payload)
    delivery_id = (delivery_id or parsed.delivery_id)[:255]
    if delivery_id and not _claim_delivery(event, delivery_id):
        judge_inbound(event, valid=True, processed=True, error="already processed", body=kept)
        return "already processed"
    try:
        outcome = _act_on_webhook(event, backend, parsed, kept)
    except Exception:
        # Whatever failed (a deadlock, a site receiver's bug), the provider's redelivery must be
        # processed, not answered "already processed": the id is given back before the error goes on.
        if delivery_id:
            _release_delivery(event)
        raise
    if outcome == "provider unavailable" and delivery_id:
        _release_delivery(event)  # the provider retries a 503: its redelivery is processed
    return outcome


def _act_on_webhook(event: VerificationEvent, backend: Any, parsed: Any, kept: KeptBody | None) -> str:
    """``process_webhook`` once the delivery is known to be new."""
    if parsed.ignored:
        judge_inbound(event, valid=True, processed=True, error="ignored event type", body=kept)
        return "ignored"
    session = _session_for_webhook(backend.alias, parsed)
    if session is None:
        judge_inbound(event, valid=True, processed=True, error="unknown session", body=kept)
        return "unknown session"
    logfields.bind(session=session)
    # Attached before anything is applied: a failure below still leaves the webhook on its session.
    VerificationEvent.objects.filter(pk=event.pk).update(session=session)
    if parsed.report is None and not parsed.pull:
        error = f"unknown status value {parsed.raw_status!r}"
        judge_inbound(event, valid=True, processed=True, error=error, body=kept, session=session)
        return "unknown status"
    if session.is_final:
        judge_inbound(event, valid=True, processed=True, body=kept, session=session)
        return "already final"
    if parsed.pull:
        try:
            refresh_session(session, source=VerificationEvent.Source.WEBHOOK)
        except ProviderError as exc:
            # Recorded (poll_failed) and the next poll scheduled by the refresh.
            judge_inbound(event, valid=True, error=f"provider unavailable: {type(exc).__name__}", body=kept)
            return "provider unavailable"
    else:
        apply_report(session, parsed.report, source=VerificationEvent.Source.WEBHOOK)
    judge_inbound(event, valid=True, processed=True, body=kept, session=session)
    return "processed"


def _release_delivery(event: VerificationEvent) -> None:
    VerificationEvent.objects.filter(pk=event.pk).update(delivery_id=None)
    event.delivery_id = None


def _claim_delivery(event: VerificationEvent, delivery_id: str) -> bool:
    """Write the delivery id on the event, unless another event of the alias holds it already
    (the unique constraint decides, so two deliveries racing each other cannot both win)."""
    if VerificationEvent.objects.filter(provider=event.provider, delivery_id=delivery_id).exists():
        return False  # the common duplicate, answered without a failed INSERT
    try:
        with transaction.atomic():
            VerificationEvent.objects.filter(pk=event.pk).update(delivery_id=delivery_id)
    except IntegrityError:
        return False
    event.delivery_id = delivery_id
    return True


def _session_for_webhook(alias: str, parsed: Any) -> VerificationSession | None:
    """The alias's session that the webhook names by any of its handles (our id only where it is
    one: the body is authenticated, but a malformed id must not reach the database as a UUID)."""
    handles = Q()
    if parsed.token:
        handles |= Q(token=parsed.token)
    if parsed.reference:
        handles |= Q(reference=parsed.reference)
    if parsed.external_id:
        handles |= Q(external_id=parsed.external_id)
    if parsed.session_id:
        with suppress(ValueError):
            handles |= Q(pk=uuid.UUID(str(parsed.session_id)))
    if not handles:
        return None
    return VerificationSession.objects.filter(handles, provider=alias).first()
