"""Storage of the sandbox: one row per emulated provider session."""

from __future__ import annotations

import datetime
import secrets
import uuid
from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

#: Scopes OOTO accepts, in the lower case it uses on the wire.
OOTO_SCOPES = ("liveness", "deepfake", "search", "enroll")

#: Longest lifetime OOTO documents (24 h); also the default.
MAX_TTL_SECONDS = 86400


def new_token() -> str:
    """An opaque, URL-safe bearer token of 256 random bits (43 characters)."""
    return secrets.token_urlsafe(32)


def format_expires_at(value: datetime.datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, as OOTO writes ``expiresAt``."""
    if timezone.is_naive(value):
        # Only with USE_TZ=False: Django then stores local wall-clock time.
        value = timezone.make_aware(value)
    value = value.astimezone(datetime.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class SandboxSession(models.Model):
    """An emulated OOTO flow session, as the sandbox API created it.

    ``step_index`` counts the scope steps the user has completed while ``IN_PROGRESS``; when it
    equals ``len(scopes)`` the outcome picker is shown.
    """

    class Status(models.TextChoices):
        CREATED = "CREATED", _("Created")
        CAPTCHA_OK = "CAPTCHA_OK", _("Captcha passed")
        IN_PROGRESS = "IN_PROGRESS", _("In progress")
        DONE = "DONE", _("Done")
        FAILED = "FAILED", _("Failed")
        EXPIRED = "EXPIRED", _("Expired")
        CANCELED = "CANCELED", _("Canceled")

    FINAL_STATUSES = frozenset({Status.DONE, Status.FAILED, Status.EXPIRED, Status.CANCELED})

    session_id = models.UUIDField(_("session id"), default=uuid.uuid4, unique=True, editable=False)
    token = models.CharField(_("token"), max_length=64, unique=True, default=new_token, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    callback_url = models.CharField(_("callback URL"), max_length=2048, blank=True)
    return_url = models.CharField(_("return URL"), max_length=2048, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.CREATED)
    step_index = models.PositiveSmallIntegerField(_("completed steps"), default=0)
    result = models.JSONField(_("result"), default=dict, blank=True)
    expires_at = models.DateTimeField(_("expires at"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        # Explicit: otherwise, imported while only the core app is installed, the model would
        # silently join the core app (its module path starts with ``verification_link``).
        app_label = "verification_link_sandbox"
        verbose_name = _("sandbox session")
        verbose_name_plural = _("sandbox sessions")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        # Never the token: it is a bearer secret.
        return f"{self.session_id} ({self.status})"

    def current_status(self, now: datetime.datetime | None = None) -> str:
        """The status as reported: a non-final session past its expiry reads ``EXPIRED``.

        Computed rather than stored, so reading the status never writes.
        """
        if self.status in self.FINAL_STATUSES:
            return self.status
        if (now or timezone.now()) >= self.expires_at:
            return self.Status.EXPIRED
        return self.status

    def is_open(self, now: datetime.datetime | None = None) -> bool:
        """Whether the hosted link still works (not final, not expired)."""
        return self.current_status(now) not in self.FINAL_STATUSES

    def next_step(self, now: datetime.datetime | None = None) -> str | None:
        """OOTO's ``nextStep``: the scope the user is on (upper case), ``None`` once final.

        Before and right after the captcha it is the first scope; on the outcome picker it
        stays the last scope, whose analysis is still pending.
        """
        if not self.is_open(now) or not self.scopes:
            return None
        index = min(self.step_index, len(self.scopes) - 1)
        return str(self.scopes[index]).upper()

    def status_payload(self, now: datetime.datetime | None = None) -> dict[str, Any]:
        """The Get Status answer, which is also the callback body."""
        now = now or timezone.now()
        status = self.current_status(now)
        return {
            "status": status,
            "scopes": list(self.scopes),
            "nextStep": self.next_step(now),
            "expiresAt": format_expires_at(self.expires_at),
            "uiHints": {"needCaptcha": status == self.Status.CREATED},
            "returnUrl": self.return_url or None,
            "result": self.result or {},
        }


#: Languages of Valify's hosted flow (the ``lang`` query parameter of Create link).
VALIFY_LANGUAGES = ("en", "ar")

#: Longest ``reference_id`` the Valify emulator accepts.
MAX_REFERENCE_LENGTH = 255


class SandboxValifySession(models.Model):
    """An emulated Valify web verification session, as the sandbox's Create link made it.

    ``step`` counts the pages of the hosted flow the user has completed (ID scan, face match,
    phone); at ``len(valify_views.STEPS)`` the outcome picker is shown. An abandoned session stays
    ``pending`` until ``expires_at``.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCESS = "success", _("Success")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Canceled")
        EXPIRED = "expired", _("Expired")

    class Lang(models.TextChoices):
        EN = "en", _("English")
        AR = "ar", _("Arabic")

    token = models.UUIDField(_("session token"), default=uuid.uuid4, unique=True, editable=False)
    reference_id = models.CharField(_("reference id"), max_length=MAX_REFERENCE_LENGTH, db_index=True)
    return_url = models.CharField(_("return URL"), max_length=2048)
    expires_at = models.DateTimeField(_("expires at"))
    flow = models.UUIDField(_("flow"), null=True, blank=True)
    lang = models.CharField(_("language"), max_length=2, choices=Lang.choices, default=Lang.EN)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    #: Why it failed (``"id_unreadable"``, ``"face_mismatch"``), or ``"needs_review"`` for a success
    #: with a borderline face match; empty otherwise. Only a failure's goes in the webhook.
    reason = models.CharField(_("reason"), max_length=32, blank=True)
    step = models.PositiveSmallIntegerField(_("completed steps"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    #: When the webhook was handed over for delivery (it is sent at most once, never retried);
    #: ``None`` when none was sent (no final outcome yet, or no ``VALIFY_WEBHOOK_URL``).
    webhook_sent_at = models.DateTimeField(_("webhook sent at"), null=True, blank=True)

    class Meta:
        app_label = "verification_link_sandbox"
        verbose_name = _("sandbox Valify session")
        verbose_name_plural = _("sandbox Valify sessions")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        # Neither the token (a bearer secret) nor the reference (the site's, maybe personal).
        return f"Valify #{self.pk} ({self.status})"

    def is_open(self, now: datetime.datetime | None = None) -> bool:
        """Whether the hosted link still works: pending and not past ``expires_at``."""
        return self.status == self.Status.PENDING and (now or timezone.now()) < self.expires_at

    def webhook_payload(self) -> dict[str, Any]:
        """The body of the account-level webhook for this (final) session."""
        from .valify_outcomes import build_result, reason_for_webhook

        return {
            "event": "verification.completed",
            "session_token": str(self.token),
            "reference_id": self.reference_id,
            "status": self.status,
            "reason": reason_for_webhook(self.status, self.reason),
            "completed_at": format_expires_at(self.completed_at or timezone.now()),
            "result": build_result(self.status, self.reason or None),
        }


class SandboxHostedSession(models.Model):
    """A session of one of the hosted-provider emulators (Stripe Identity, Persona, Onfido, Veriff,
    Sumsub, Didit; :mod:`verification_link.sandbox.hosted`), in the emulator's own vocabulary.

    ``external_id`` is the provider's id of the session (``vs_…``, ``inq_…``), ``page_secret`` the
    bearer token in the hosted page's URL, ``status`` the provider's own status value, ``request``
    what the create call sent (the emulator's API reads its reference and metadata back from it).
    """

    emulator = models.CharField(_("emulator"), max_length=32)
    external_id = models.CharField(_("provider id"), max_length=64, unique=True)
    page_secret = models.CharField(_("page secret"), max_length=64, unique=True, default=new_token, editable=False)
    status = models.CharField(_("provider status"), max_length=40)
    outcome = models.CharField(_("picked outcome"), max_length=32, blank=True)
    reason = models.CharField(_("reason"), max_length=64, blank=True)
    request = models.JSONField(_("create request"), default=dict, blank=True)
    return_url = models.CharField(_("return URL"), max_length=2048, blank=True)
    deliveries = models.PositiveIntegerField(_("webhooks sent"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    redacted_at = models.DateTimeField(_("redacted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("sandbox hosted session")
        verbose_name_plural = _("sandbox hosted sessions")
        indexes = [models.Index(fields=["emulator", "created_at"], name="vl_sandbox_hosted_recent")]

    def __str__(self) -> str:
        return f"{self.emulator} {self.external_id} ({self.status})"

    def __repr__(self) -> str:  # never the page secret
        return f"<SandboxHostedSession {self.emulator} {self.external_id} status={self.status!r}>"
