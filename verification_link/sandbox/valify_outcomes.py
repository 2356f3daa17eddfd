"""The outcomes a Valify sandbox user can pick, what each one tells the site, and the fake
``result`` of the webhook.

Every outcome the site can meet is reachable: approved (``PASS_ALL``), sent to review
(``NEEDS_REVIEW``), rejected (``ID_UNREADABLE``, ``FACE_MISMATCH``), expired (``EXPIRE_NOW``),
canceled (``CANCEL``), or nothing at all (``ABANDON``). Each button carries a hint saying what the
webhook reports and what ``verification_link.policy.default_decision_policy`` decides from it.

Valify does not document its webhook payload; this shape is the sandbox's own (see
``valify_views``). Values are fixed and plausible, not meaningful: one outcome always yields the
same result.
"""

from __future__ import annotations

import base64
from typing import Any

from django.utils.translation import gettext_lazy as _

PASS_ALL = "pass"
NEEDS_REVIEW = "needs_review"
ID_UNREADABLE = "id_unreadable"
FACE_MISMATCH = "face_mismatch"
EXPIRE_NOW = "expire_now"
ABANDON = "abandon"
CANCEL = "cancel"

#: (value, button label), in the order the picker shows them.
OUTCOMES = (
    (PASS_ALL, _("Pass all")),
    (NEEDS_REVIEW, _("Needs review")),
    (ID_UNREADABLE, _("ID unreadable")),
    (FACE_MISMATCH, _("Face mismatch")),
    (EXPIRE_NOW, _("Let it expire now")),
    (ABANDON, _("Abandon")),
    (CANCEL, _("Cancel")),
)

#: Beside each button: what the webhook reports, and what the default decision policy decides.
#: Valify gives no verdict of its own: that policy approves when every check of the result
#: (face match, liveness, phone code) passed, and sends the session to review otherwise.
HINTS = {
    PASS_ALL: _("Status success, every check passes. The default decision policy approves."),
    NEEDS_REVIEW: _(
        "Status success, but the face match is borderline (not a match). The default decision policy "
        "sends the session to review: staff approve or reject it in the admin."
    ),
    ID_UNREADABLE: _("Status failed, the ID card cannot be read. The default decision policy rejects."),
    FACE_MISMATCH: _("Status failed, the selfie does not match the ID photo. The default decision policy rejects."),
    EXPIRE_NOW: _("Status expired at once, as when the link's time runs out. No decision is made."),
    ABANDON: _("Leave without finishing: no webhook is sent. The session stays open until it expires."),
    CANCEL: _("Status canceled, as when the user gives up. No decision is made."),
}

#: Final outcome → (webhook ``status``, the session's ``reason``). ``ABANDON`` is not final: no
#: webhook. The webhook's ``reason`` is the failure's (``reason_for_webhook``).
FINAL_OUTCOMES: dict[str, tuple[str, str | None]] = {
    PASS_ALL: ("success", None),
    NEEDS_REVIEW: ("success", NEEDS_REVIEW),
    ID_UNREADABLE: ("failed", ID_UNREADABLE),
    FACE_MISMATCH: ("failed", FACE_MISMATCH),
    EXPIRE_NOW: ("expired", None),
    CANCEL: ("canceled", None),
}


def outcome_choices() -> list[dict[str, Any]]:
    """The picker's buttons: ``{"value", "label", "hint"}`` in order."""
    return [{"value": value, "label": label, "hint": HINTS[value]} for value, label in OUTCOMES]


def reason_for_webhook(status: str, reason: str | None) -> str | None:
    """The webhook's ``reason``: why a failed session failed, else ``None``."""
    return reason or None if status == "failed" else None


#: An Egyptian national ID number of the documented shape (century 2, born 1999-01-01).
OCR = {
    "national_id": "29901011234567",
    "full_name": "Sandbox Test User",
    "birth_date": "1999-01-01",
    "address": "1 Sandbox Street, Cairo",
}

# A few bytes with JPEG start/end markers, standing in for the captured images.
FRONT_IMAGE = base64.b64encode(b"\xff\xd8\xffsandbox-id-front\xff\xd9").decode()
SELFIE_IMAGE = base64.b64encode(b"\xff\xd8\xffsandbox-selfie\xff\xd9").decode()


def build_result(status: str, reason: str | None) -> dict[str, Any]:
    """The webhook's ``result`` for a final ``status`` / ``reason``.

    A canceled flow produced nothing: ``{}``. An unreadable ID yields an empty ``ocr`` and no face
    match (there is no ID portrait to compare with); a face mismatch a low non-matching score.
    """
    if status in ("canceled", "expired"):
        return {}
    result: dict[str, Any] = {
        "ocr": dict(OCR),
        "face_match": {"match": True, "score": 0.93},
        "liveness": {"passed": True, "score": 0.97},
        "phone_otp": {"verified": True},
        "images": {"front": FRONT_IMAGE, "selfie": SELFIE_IMAGE},
    }
    if reason == ID_UNREADABLE:
        result["ocr"] = {}
        result["face_match"] = {"match": False, "score": 0.0}
    elif reason == FACE_MISMATCH:
        result["face_match"] = {"match": False, "score": 0.21}
    elif reason == NEEDS_REVIEW:
        result["face_match"] = {"match": False, "score": 0.62}
    return result
