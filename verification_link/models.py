"""The two tables: one row per verification attempt, and its append-only audit trail.

Only ``verification_link.services`` writes ``status`` and the fields that follow from it.
"""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def new_callback_secret() -> str:
    """256 random bits, URL-safe: the per-session secret in the callback URL path."""
    return secrets.token_urlsafe(32)


class VerificationSession(models.Model):
    """One attempt of one user at one provider."""

    class Status(models.TextChoices):
        # Values are exactly the provider's, so reports map 1:1 and logs read the same on both sides.
        CREATED = "CREATED", _("Created")
        CAPTCHA_OK = "CAPTCHA_OK", _("Captcha passed")
        IN_PROGRESS = "IN_PROGRESS", _("In progress")
        DONE = "DONE", _("Done")
        FAILED = "FAILED", _("Failed")
        EXPIRED = "EXPIRED", _("Expired")
        CANCELED = "CANCELED", _("Canceled")

    class NextStep(models.TextChoices):
        LIVENESS = "LIVENESS", _("Liveness")
        DEEPFAKE = "DEEPFAKE", _("Deepfake check")
        ENROLL = "ENROLL", _("Face enrollment")
        SEARCH = "SEARCH", _("Face search")

    class Decision(models.TextChoices):
        UNDECIDED = "", _("Undecided")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        REVIEW = "review", _("Needs review")

    FINAL_STATUSES = frozenset({Status.DONE, Status.FAILED, Status.EXPIRED, Status.CANCELED})
    OPEN_STATUSES = frozenset({Status.CREATED, Status.CAPTCHA_OK, Status.IN_PROGRESS})
    # Status only moves forward along this order; every final status shares the last rank.
    STATUS_RANK: dict[str, int] = {
        Status.CREATED: 0,
        Status.CAPTCHA_OK: 1,
        Status.IN_PROGRESS: 2,
        Status.DONE: 3,
        Status.FAILED: 3,
        Status.EXPIRED: 3,
        Status.CANCELED: 3,
    }

    id = models.UUIDField(_("id"), primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,  # biometric results belong to the person: erased with them
        related_name="verification_sessions",
    )
    provider = models.CharField(_("provider"), max_length=64, help_text=_("Provider alias from settings."))
    external_id = models.CharField(_("external id"), max_length=255, blank=True)
    token = models.CharField(_("provider token"), max_length=255, blank=True)
    reference = models.CharField(_("reference"), max_length=255, blank=True)
    callback_secret = models.CharField(
        _("callback secret"), max_length=64, unique=True, default=new_callback_secret, editable=False
    )
    url = models.URLField(_("hand-off link"), max_length=2048, blank=True)
    scopes = models.JSONField(_("scopes"), default=list, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    next_url = models.CharField(_("next URL"), max_length=2048, blank=True)

    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.CREATED)
    next_step = models.CharField(_("next step"), max_length=16, choices=NextStep.choices, blank=True)
    result = models.JSONField(_("result"), default=dict, blank=True)
    # The provider's own words, as it last sent them: its raw status value, its verdict
    # (``providers.Verdict``) and its reason codes. The decision policy reads the verdict.
    provider_status = models.CharField(_("provider status"), max_length=64, blank=True)
    provider_verdict = models.CharField(_("provider verdict"), max_length=16, blank=True)
    provider_reasons = models.JSONField(_("provider reasons"), default=list, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    decision = models.CharField(
        _("decision"), max_length=16, choices=Decision.choices, default=Decision.UNDECIDED, blank=True
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reviewed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)
    review_note = models.TextField(_("review note"), blank=True)
    # The review queue: the staff member who claimed the session (``assign_review``).
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("assigned to"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # "Try again": the attempt this one replaces (a FAILED or resubmission-requested session).
    previous = models.ForeignKey(
        "self",
        verbose_name=_("previous attempt"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retries",
    )
    # Set once, when a sweep saw an approved verification's validity (VALID_FOR_DAYS) end.
    lapsed_at = models.DateTimeField(_("validity ended at"), null=True, blank=True)
    # Set when the user's identity data was erased on request (``erase_user_data``).
    erased_at = models.DateTimeField(_("identity data erased at"), null=True, blank=True)

    # Polling: NULL means "never poll" (final, or a provider that cannot be polled).
    next_poll_at = models.DateTimeField(_("next poll at"), null=True, blank=True)
    poll_attempts = models.PositiveIntegerField(_("poll attempts"), default=0)
    last_polled_at = models.DateTimeField(_("last polled at"), null=True, blank=True)

    # Set when retention scrubbed the sensitive parts of the result and the raw inbound bodies.
    purged_at = models.DateTimeField(_("sensitive data purged at"), null=True, blank=True)

    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("verification session")
        verbose_name_plural = _("verification sessions")
        ordering = ["-created_at"]
        permissions = [("view_sensitive_result", _("Can view biometric and demographic results"))]
        indexes = [
            # poll_due_sessions: open sessions whose next poll time has come.
            models.Index(fields=["next_poll_at"], name="vl_session_poll_due", condition=Q(next_poll_at__isnull=False)),
            # expire_sessions: open sessions past their expiry.
            models.Index(
                fields=["expires_at"],
                name="vl_session_overdue",
                condition=Q(status__in=["CREATED", "CAPTCHA_OK", "IN_PROGRESS"]),
            ),
            # purge_expired_data: finished sessions not yet scrubbed.
            models.Index(fields=["finished_at"], name="vl_session_purge_due", condition=Q(purged_at__isnull=True)),
            # A user's own sessions, newest first (status page, API list).
            models.Index(fields=["user", "-created_at"], name="vl_session_user_recent"),
            # Admin list and filters.
            models.Index(fields=["-created_at"], name="vl_session_created"),
            models.Index(fields=["status", "-created_at"], name="vl_session_status"),
            models.Index(fields=["decision", "-created_at"], name="vl_session_decision"),
            # The review queue (decision "review", by status, newest first): small, and the list
            # staff open most; its page and capped count then read only the rows they show.
            models.Index(
                fields=["status", "-created_at"], name="vl_session_review_queue", condition=Q(decision="review")
            ),
            models.Index(fields=["provider", "-created_at"], name="vl_session_provider"),
            # The admin overview: sessions finished in a period, by provider and outcome, and how
            # long they took — every column it reads, so its aggregates never visit the table.
            models.Index(
                fields=["finished_at", "provider", "status", "decision", "created_at"], name="vl_session_finished"
            ),
            # Its outcomes again, in the order of their GROUP BY: SQLite reads the period of each
            # (provider, status, decision) as a skip-scan of this index, already grouped, where
            # ``vl_session_finished`` has it sort every row of the period first.
            models.Index(fields=["provider", "status", "decision", "finished_at"], name="vl_session_outcomes"),
            # The lapse sweep: approved sessions whose validity has not been seen to end.
            models.Index(
                fields=["finished_at"], name="vl_session_lapse_due", condition=Q(decision="approved", lapsed_at=None)
            ),
            # "My queue": the sessions a reviewer claimed.
            models.Index(fields=["assigned_to", "-created_at"], name="vl_session_assigned"),
            models.Index(fields=["external_id"], name="vl_session_external_id"),
            models.Index(fields=["token"], name="vl_session_token"),
            models.Index(fields=["reference"], name="vl_session_reference"),
        ]
        constraints = [
            # Webhooks and support look sessions up by (provider, token); a token names one session.
            models.UniqueConstraint(
                fields=["provider", "token"], name="vl_session_provider_token", condition=~Q(token="")
            ),
        ]

    #: Set by ``start_verification`` on the session it returns: True when it is the user's open
    #: session returned again (``REUSE_OPEN_SESSIONS``), False when it was just created.
    reused: bool = False

    def __str__(self) -> str:
        return f"{self.provider} {str(self.pk)[:8]} ({self.status})"

    def __repr__(self) -> str:
        # Deliberately no token, url or callback secret: reprs end up in logs and tracebacks.
        return f"<VerificationSession {self.pk} provider={self.provider!r} status={self.status}>"

    @property
    def short_id(self) -> str:
        return str(self.pk)[:8]

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def is_expired(self) -> bool:
        """EXPIRED, or still open past ``expires_at`` (a sweep has not caught up with it yet)."""
        if self.status == self.Status.EXPIRED:
            return True
        return not self.is_final and self.expires_at is not None and self.expires_at <= timezone.now()


class VerificationEvent(models.Model):
    """The append-only audit trail of a session (or of a failed attempt to create one)."""

    class Kind(models.TextChoices):
        CREATED = "created", _("Session created")
        CREATE_FAILED = "create_failed", _("Creation failed")
        CALLBACK = "callback", _("Callback received")
        WEBHOOK = "webhook", _("Webhook received")
        POLL = "poll", _("Provider answer")
        POLL_FAILED = "poll_failed", _("Provider call failed")
        STATUS_CHANGED = "status_changed", _("Status changed")
        EXPIRED = "expired", _("Expired")
        CANCELED = "canceled", _("Canceled")
        REVIEWED = "reviewed", _("Reviewed")
        PURGED = "purged", _("Sensitive data purged")
        ASSIGNED = "assigned", _("Assigned for review")
        VIEWED = "viewed", _("Sensitive results viewed")
        LAPSED = "lapsed", _("Validity ended")
        ERASED = "erased", _("Identity data erased")
        REPLACED = "replaced", _("Replaced by a new attempt")

    class Source(models.TextChoices):
        CALLBACK = "callback", _("Callback")
        WEBHOOK = "webhook", _("Webhook")
        POLL = "poll", _("Poll")
        RETURN = "return", _("Return")
        ADMIN = "admin", _("Admin")
        API = "api", _("API")
        EXPIRY = "expiry", _("Expiry")
        SYSTEM = "system", _("System")
        USER = "user", _("User")

    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(
        VerificationSession,
        verbose_name=_("session"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
    )
    provider = models.CharField(_("provider"), max_length=64, blank=True)
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    source = models.CharField(_("source"), max_length=16, choices=Source.choices, blank=True)
    old_status = models.CharField(_("old status"), max_length=16, blank=True)
    new_status = models.CharField(_("new status"), max_length=16, blank=True)
    applied = models.BooleanField(_("applied"), default=False, help_text=_("Whether it changed the session."))
    # Inbound requests (callbacks, webhooks): stored before they are judged.
    body = models.TextField(_("raw body"), blank=True)
    body_truncated = models.BooleanField(_("body truncated"), default=False)
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(_("remote address"), null=True, blank=True)
    valid = models.BooleanField(_("valid"), null=True, blank=True)
    processed = models.BooleanField(_("processed"), default=False)
    error = models.TextField(_("error"), blank=True)
    data = models.JSONField(_("data"), default=dict, blank=True)
    # The provider's id of an authenticated delivery (Stripe ``evt_…``, ``webhook-id``): written
    # once its signature verified, unique per provider alias, so a redelivery is processed once.
    # NULL when there is none: NULLs are distinct in a plain unique constraint on every database
    # (MySQL ignores the conditional ones).
    delivery_id = models.CharField(_("delivery id"), max_length=255, null=True, blank=True, default=None)  # noqa: DJ001
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("verification event")
        verbose_name_plural = _("verification events")
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["session", "created_at"], name="vl_event_session"),
            models.Index(fields=["kind", "-created_at"], name="vl_event_kind"),
            models.Index(fields=["-created_at"], name="vl_event_created"),
            # The admin overview's "where flows were abandoned": each session's one applied move to
            # EXPIRED or CANCELED, and the status it left (``old_status``).
            models.Index(
                # ``applied`` too, though its condition fixes it: SQLite reads a column the
                # condition names from the table unless the index holds it.
                fields=["created_at", "old_status", "new_status", "applied"],
                name="vl_event_abandoned",
                condition=Q(applied=True, new_status__in=["EXPIRED", "CANCELED"]),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["provider", "delivery_id"], name="vl_event_delivery"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.created_at:%Y-%m-%d %H:%M:%S}"

    def __repr__(self) -> str:
        return f"<VerificationEvent {self.pk} kind={self.kind} session={self.session_id}>"
