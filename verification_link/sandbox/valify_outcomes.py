"""The outcomes a Valify sandbox user can pick, and the fake ``result`` of the webhook.

Valify does not document its webhook payload; this shape is the sandbox's own (see
``valify_views``). Values are fixed and plausible, not meaningful: one outcome always yields the
same result.
"""

from __future__ import annotations

import base64
from typing import Any

from django.utils.translation import gettext_lazy as _

PASS_ALL = "pass"
ID_UNREADABLE = "id_unreadable"
FACE_MISMATCH = "face_mismatch"
ABANDON = "abandon"
CANCEL = "cancel"

#: (value, button label), in the order the picker shows them.
OUTCOMES = (
    (PASS_ALL, _("Pass all")),
    (ID_UNREADABLE, _("ID unreadable")),
    (FACE_MISMATCH, _("Face mismatch")),
    (ABANDON, _("Abandon")),
    (CANCEL, _("Cancel")),
)

#: Final outcome → (webhook ``status``, ``reason``). ``ABANDON`` is not final: no webhook.
FINAL_OUTCOMES: dict[str, tuple[str, str | None]] = {
    PASS_ALL: ("success", None),
    ID_UNREADABLE: ("failed", ID_UNREADABLE),
    FACE_MISMATCH: ("failed", FACE_MISMATCH),
    CANCEL: ("canceled", None),
}

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
    if status == "canceled":
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
    return result
