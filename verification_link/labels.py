"""What users read about a session: one state, label and next step per session, for every page
of ours, the status JSON and a site's own pages (``{{ session|vl_status_label }}``).

Staff read the model's own choices (``get_status_display``) in the admin: they need the
provider's step (CAPTCHA_OK, DONE); a user needs what it means for them (verified, being
reviewed). The user's state follows from status *and* decision, so it is computed here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from .models import VerificationSession
from .providers.types import Verdict

Status = VerificationSession.Status
Decision = VerificationSession.Decision

# The states a user can meet (``UserState.key``): also the CSS modifier ``vl-state-<key>``.
WAITING, STARTED, IN_PROGRESS, RETRY_ASKED = "waiting", "started", "in_progress", "retry_asked"
VERIFIED, NOT_VERIFIED, IN_REVIEW, EXPIRED, CANCELED = "verified", "not_verified", "in_review", "expired", "canceled"

OPEN_STATES = (WAITING, STARTED, IN_PROGRESS, RETRY_ASKED)


@dataclass(frozen=True)
class UserState:
    """``key`` (one of the constants above), ``label`` (a few words: lists, the live status),
    ``heading`` (the status page's headline once final), ``sentence`` (what happens next) and
    ``tone`` (``neutral``, ``progress``, ``success``, ``danger``, ``warning``: colour and icon)."""

    key: str
    label: Promise
    heading: Promise
    sentence: Promise
    tone: str

    @property
    def is_open(self) -> bool:
        return self.key in OPEN_STATES

    @property
    def icon(self) -> str:
        """A symbol for the tone, beside the words (never instead of them)."""
        return TONE_ICONS[self.tone]


TONE_ICONS = {"neutral": "○", "progress": "…", "success": "✓", "danger": "✕", "warning": "!"}

STATES = {
    WAITING: UserState(
        WAITING,
        _("Waiting for you to start"),
        _("Waiting for you to start"),
        _("Open the link on this device, or scan the code with your phone."),
        "neutral",
    ),
    STARTED: UserState(STARTED, _("Started"), _("Started"), _("Keep going in the verification window."), "progress"),
    IN_PROGRESS: UserState(
        IN_PROGRESS,
        _("In progress"),
        _("In progress"),
        _("The check is under way. This page updates by itself."),
        "progress",
    ),
    RETRY_ASKED: UserState(
        RETRY_ASKED,
        _("Needs another try"),
        _("The check needs to be done again."),
        _("Please try again: it takes about a minute."),
        "warning",
    ),
    VERIFIED: UserState(
        VERIFIED, _("Verified"), _("You are verified."), _("Thank you. You can continue where you were."), "success"
    ),
    NOT_VERIFIED: UserState(
        NOT_VERIFIED,
        _("Not verified"),
        _("We could not verify you this time."),
        _("You can try again now; good light and a steady camera help."),
        "danger",
    ),
    IN_REVIEW: UserState(
        IN_REVIEW,
        _("Being reviewed"),
        _("Your verification is being reviewed."),
        _("A person is looking at it; you can continue meanwhile and will hear from us."),
        "warning",
    ),
    EXPIRED: UserState(
        EXPIRED,
        _("Expired"),
        _("The link expired before the check was finished."),
        _("You can start again with a new link."),
        "neutral",
    ),
    CANCELED: UserState(
        CANCELED,
        _("Canceled"),
        _("This verification was canceled."),
        _("You can start again whenever you are ready."),
        "neutral",
    ),
}


def user_state(session: VerificationSession) -> UserState:
    """The state a user reads for ``session``."""
    status = session.status
    if status == Status.CREATED:
        return STATES[WAITING]
    if status in (Status.CAPTCHA_OK, Status.IN_PROGRESS):
        if session.provider_verdict == Verdict.RESUBMISSION:
            return STATES[RETRY_ASKED]
        return STATES[STARTED if status == Status.CAPTCHA_OK else IN_PROGRESS]
    if status == Status.DONE:
        if session.decision == Decision.APPROVED:
            return STATES[VERIFIED]
        if session.decision == Decision.REJECTED:
            return STATES[NOT_VERIFIED]
        return STATES[IN_REVIEW]
    if status == Status.FAILED:
        return STATES[NOT_VERIFIED]
    if status == Status.EXPIRED:
        return STATES[EXPIRED]
    return STATES[CANCELED]


def status_label(session: VerificationSession) -> str:
    """``user_state(session).label``, as text."""
    return str(user_state(session).label)


#: What a user needs for a flow (``BaseProvider.user_needs``), in words for the start page.
NEEDS = {
    "camera": _("a camera, for a short selfie video"),
    "id_document": _("an identity document: passport, ID card or driving licence"),
    "national_id": _("your national ID card"),
    "phone": _("your phone, to receive a code"),
}


def user_needs(backend: object) -> list[Promise]:
    """What ``backend``'s flow asks of the user, in words (unknown keys are left out)."""
    return [NEEDS[need] for need in getattr(backend, "user_needs", ("camera",)) if need in NEEDS]
