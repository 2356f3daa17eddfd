"""The outcomes a sandbox user can pick, what each one tells the site, and the fake OOTO
``result`` each one produces.

Every outcome the site can meet is reachable: approved (``PASS_ALL``, ``POOR_QUALITY``), sent to
review (``NEEDS_REVIEW``), rejected (``LIVENESS_FAILS``, ``DEEPFAKE_DETECTED``), expired
(``EXPIRE_NOW``), canceled (``CANCEL``), or nothing at all (``ABANDON``). Each button carries a hint
saying what the provider reports and what ``verification_link.policy.default_decision_policy``
decides from it, so that no outcome surprises.

Values are plausible, not meaningful. They are drawn from a generator seeded with the session
id, so one session always yields the same numbers.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any

from django.utils.translation import gettext_lazy as _

PASS_ALL = "pass"
NEEDS_REVIEW = "needs_review"
LIVENESS_FAILS = "liveness_fails"
DEEPFAKE_DETECTED = "deepfake_detected"
POOR_QUALITY = "poor_quality"
EXPIRE_NOW = "expire_now"
ABANDON = "abandon"
CANCEL = "cancel"

#: (value, button label), in the order the picker shows them.
OUTCOMES = (
    (PASS_ALL, _("Pass all")),
    (NEEDS_REVIEW, _("Needs review")),
    (LIVENESS_FAILS, _("Liveness fails")),
    (DEEPFAKE_DETECTED, _("Deepfake detected")),
    (POOR_QUALITY, _("Poor quality")),
    (EXPIRE_NOW, _("Let it expire now")),
    (ABANDON, _("Abandon")),
    (CANCEL, _("Cancel")),
)

#: Beside each button: what the provider reports, and what the default decision policy
#: (``verification_link.policy.default_decision_policy``) decides from it. OOTO gives no verdict of
#: its own, so that policy decides from the checks of the requested scopes alone: liveness and
#: deepfake by their ``fine`` flag, search and enroll by a returned ``templateId``. The face-quality
#: checks (``result["quality"]``) are not among them.
HINTS = {
    PASS_ALL: _("Status DONE, every requested check passes. The default decision policy approves."),
    NEEDS_REVIEW: _(
        "Status DONE, but the first requested check comes back inconclusive (not passed). The default "
        "decision policy sends the session to review: staff approve or reject it in the admin."
    ),
    LIVENESS_FAILS: _("Status FAILED, the liveness check fails. The default decision policy rejects."),
    DEEPFAKE_DETECTED: _("Status FAILED, a deepfake is detected. The default decision policy rejects."),
    POOR_QUALITY: _(
        "Status DONE, every requested check passes, with face-quality warnings (blur, exposure, "
        "occlusion, a closed eye). Quality warnings alone do not fail the check: the default decision "
        "policy looks only at the requested checks, so it approves."
    ),
    EXPIRE_NOW: _(
        "Status EXPIRED at once, as when the link's time runs out. No decision is made; the site "
        "learns it from the callback or its next status check."
    ),
    ABANDON: _(
        "Leave without finishing: nothing is reported and no callback is sent. The session stays open until it expires."
    ),
    CANCEL: _("Status CANCELED, as when the user gives up. No decision is made."),
}

#: Outcomes that only make sense when their scope was requested.
REQUIRED_SCOPE = {LIVENESS_FAILS: "liveness", DEEPFAKE_DETECTED: "deepfake"}

QUALITY_CHECKS = (
    "blur",
    "flare",
    "crfiqa",
    "emotion",
    "contrast",
    "exposure",
    "occlusion",
    "distortion",
    "uniformity",
    "macroblocks",
    "leftEyeClosed",
    "rightEyeClosed",
)

#: Checks that fail under "Poor quality".
POOR_QUALITY_CHECKS = frozenset({"blur", "exposure", "occlusion", "leftEyeClosed"})


def available_outcomes(scopes: Sequence[str]) -> list[tuple[str, Any]]:
    """The picker's choices for a session with these scopes."""
    return [
        (value, label) for value, label in OUTCOMES if value not in REQUIRED_SCOPE or REQUIRED_SCOPE[value] in scopes
    ]


def outcome_choices(scopes: Sequence[str]) -> list[dict[str, Any]]:
    """``available_outcomes`` with each one's hint: ``{"value", "label", "hint"}``."""
    return [{"value": value, "label": label, "hint": HINTS[value]} for value, label in available_outcomes(scopes)]


def _score(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 4)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _quality(rng: random.Random, failing: frozenset[str]) -> dict[str, Any]:
    quality: dict[str, Any] = {
        "yaw": round(rng.uniform(-8, 8), 2),
        "pitch": round(rng.uniform(-8, 8), 2),
        "roll": round(rng.uniform(-5, 5), 2),
    }
    for check in QUALITY_CHECKS:
        # OOTO's check scores run in both directions; only ``fine`` is meant to be read.
        if check in failing:
            quality[check] = {"fine": False, "score": _score(rng, 0.7, 0.95)}
        else:
            quality[check] = {"fine": True, "score": _score(rng, 0.0, 0.2)}
    return quality


def build_result(outcome: str, scopes: Sequence[str], seed: int) -> dict[str, Any]:
    """The ``result`` object for a final ``outcome`` (not ``ABANDON``/``CANCEL``/``EXPIRE_NOW``).

    Every requested scope gets an entry; the face-analysis parts (``quality``, ``box``,
    ``landmarks``, ``demography``) are always present, as when a face was captured. Under
    ``NEEDS_REVIEW`` the first requested scope's check is inconclusive: a borderline score with
    ``fine`` false (liveness, deepfake), or no ``templateId`` (search, enroll).
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible fake values, not secrets
    inconclusive = scopes[0] if outcome == NEEDS_REVIEW and scopes else ""
    result: dict[str, Any] = {}
    if "liveness" in scopes:
        if outcome == LIVENESS_FAILS:
            result["liveness"] = {"fine": False, "score": _score(rng, 0.2, 0.3)}
        elif inconclusive == "liveness":
            result["liveness"] = {"fine": False, "score": _score(rng, 0.45, 0.55)}
        else:
            result["liveness"] = {"fine": True, "score": _score(rng, 0.9, 0.99)}
    if "deepfake" in scopes:
        if outcome == DEEPFAKE_DETECTED:
            result["deepfake"] = {"fine": False, "score": _score(rng, 0.1, 0.3)}
        elif inconclusive == "deepfake":
            result["deepfake"] = {"fine": False, "score": _score(rng, 0.45, 0.55)}
        else:
            result["deepfake"] = {"fine": True, "score": _score(rng, 0.9, 0.99)}
    if "search" in scopes:
        if inconclusive == "search":
            result["search"] = {"similarity": _score(rng, 0.5, 0.7), "templateId": None}
        else:
            result["search"] = {"similarity": _score(rng, 0.85, 0.95), "templateId": _uuid(rng)}
    if "enroll" in scopes:
        result["enroll"] = {"templateId": None if inconclusive == "enroll" else _uuid(rng)}
    result["quality"] = _quality(rng, POOR_QUALITY_CHECKS if outcome == POOR_QUALITY else frozenset())
    x, y, w = rng.randint(150, 220), rng.randint(380, 440), rng.randint(330, 370)
    h = round(w * 1.3)
    result["box"] = {"h": h, "w": w, "x": x, "y": y}
    # Eyes, nose tip, mouth corners: five points inside the box.
    result["landmarks"] = [
        [x + round(w * fx), y + round(h * fy)]
        for fx, fy in ((0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8))
    ]
    result["demography"] = {
        "age": rng.randint(20, 60),
        "race": rng.choice(("white", "black", "asian", "indian", "middle eastern", "latino hispanic")),
        "gender": rng.choice(("male", "female")),
    }
    return result
