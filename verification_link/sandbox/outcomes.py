"""The outcomes a sandbox user can pick, and the fake OOTO ``result`` each one produces.

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
LIVENESS_FAILS = "liveness_fails"
DEEPFAKE_DETECTED = "deepfake_detected"
POOR_QUALITY = "poor_quality"
ABANDON = "abandon"
CANCEL = "cancel"

#: (value, button label), in the order the picker shows them.
OUTCOMES = (
    (PASS_ALL, _("Pass all")),
    (LIVENESS_FAILS, _("Liveness fails")),
    (DEEPFAKE_DETECTED, _("Deepfake detected")),
    (POOR_QUALITY, _("Poor quality")),
    (ABANDON, _("Abandon")),
    (CANCEL, _("Cancel")),
)

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
    """The ``result`` object for a final ``outcome`` (not ``ABANDON``/``CANCEL``).

    Every requested scope gets an entry; the face-analysis parts (``quality``, ``box``,
    ``landmarks``, ``demography``) are always present, as when a face was captured.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible fake values, not secrets
    result: dict[str, Any] = {}
    if "liveness" in scopes:
        if outcome == LIVENESS_FAILS:
            result["liveness"] = {"fine": False, "score": _score(rng, 0.2, 0.3)}
        else:
            result["liveness"] = {"fine": True, "score": _score(rng, 0.9, 0.99)}
    if "deepfake" in scopes:
        if outcome == DEEPFAKE_DETECTED:
            result["deepfake"] = {"fine": False, "score": _score(rng, 0.1, 0.3)}
        else:
            result["deepfake"] = {"fine": True, "score": _score(rng, 0.9, 0.99)}
    if "search" in scopes:
        result["search"] = {"similarity": _score(rng, 0.85, 0.95), "templateId": _uuid(rng)}
    if "enroll" in scopes:
        result["enroll"] = {"templateId": _uuid(rng)}
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
