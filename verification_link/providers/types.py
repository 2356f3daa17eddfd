"""The small value types a provider hands the services: what to create, what was created, what a
session's state is (``StatusReport``), and what an authenticated webhook says (``WebhookReport``).

They carry identity data and bearer secrets, so none of their reprs shows either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID


class Verdict:
    """The provider's own verdict on a finished attempt, in one vocabulary for every provider
    (``StatusReport.verdict``; ``VerificationSession.provider_verdict``). The decision policy reads it."""

    NONE = ""
    APPROVED = "approved"
    DECLINED = "declined"
    REVIEW = "review"  # the provider asks a person to look (its queue or ours)
    RESUBMISSION = "resubmission"  # the user is asked to try again in the same session

    ALL = (NONE, APPROVED, DECLINED, REVIEW, RESUBMISSION)


@dataclass(frozen=True)
class CheckRow:
    """One readable check of a result, the same for every provider: ``scope`` (its name: a
    requested scope, or a check such as ``document``, ``face_match``), passed / failed / unknown
    (``None``), a score where the provider gives one, and a short detail (a reason code)."""

    scope: str
    passed: bool | None
    score: float | None
    detail: str = ""


@dataclass(frozen=True)
class CreateRequest:
    """What the app asks a provider for when it starts a session."""

    session_id: UUID
    scopes: list[str]
    metadata: dict[str, Any]
    callback_url: str
    return_url: str
    ttl: int
    reference: str = ""
    #: The language of the hosted page (a language code, "" = the provider's default): the one the
    #: site named at the start, else the user's when the provider speaks it (``hosted_language``).
    language: str = ""

    def __repr__(self) -> str:  # the callback URL carries the session's secret; metadata is the site's
        return f"CreateRequest(session_id={self.session_id!r}, scopes={self.scopes!r}, ttl={self.ttl!r})"


@dataclass(frozen=True)
class CreatedSession:
    """What the provider answered to a create: the hand-off link and the handles to find it again."""

    url: str
    token: str
    external_id: str = ""
    expires_at: datetime | None = None

    def __repr__(self) -> str:  # the url and token are bearer secrets
        return f"CreatedSession(external_id={self.external_id!r}, expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class StatusReport:
    """An authenticated statement of a session's state, already mapped to our vocabulary.

    ``provider_status`` keeps the provider's own status value as it sent it (shown to staff,
    kept on the session); ``verdict`` (a ``Verdict``) and ``reasons`` (the provider's reason codes
    or labels, short strings) are its own judgement, carried to the decision policy."""

    status: str
    next_step: str = ""
    expires_at: datetime | None = None
    result: dict[str, Any] = field(default_factory=dict)
    provider_status: str = ""
    verdict: str = ""
    reasons: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the result holds biometric and identity data: only its top-level keys
        return (
            f"StatusReport(status={self.status!r}, next_step={self.next_step!r}, "
            f"expires_at={self.expires_at!r}, provider_status={self.provider_status!r}, "
            f"verdict={self.verdict!r}, result_keys={sorted(map(str, self.result))!r})"
        )

    def summary(self) -> dict[str, Any]:
        """What is safe to keep in the audit trail for every answer (no result payload)."""
        summary: dict[str, Any] = {
            "status": self.status,
            "next_step": self.next_step,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }
        if self.provider_status:
            summary["provider_status"] = self.provider_status
        if self.verdict:
            summary["verdict"] = self.verdict
        if self.reasons:
            summary["reasons"] = list(self.reasons)
        return summary


@dataclass(frozen=True)
class WebhookReport:
    """What an authenticated webhook says.

    Handles of the session, any of which finds it: ``token``, ``reference``, ``external_id`` (the
    provider's id of the session), ``session_id`` (our own id, where the provider echoes what we
    sent it). ``report``: what the body says of the session — ``None`` when its outcome value is
    unknown (``raw_status`` keeps it for the audit trail) or when the body is only a hint
    (``pull``). ``pull``: the body proves nothing about the outcome (Onfido signs the body but
    names no delivery); the services ask the provider (``get_status``) instead of applying it.
    ``delivery_id``: the provider's id of this delivery or event (Stripe ``evt_…``), or a key built
    from the object id, action and status where it has none; a delivery whose id was processed
    before is answered "already processed" and changes nothing. ``ignored``: an event of a type
    that says nothing about a session's state (recorded, answered 200, not applied)."""

    token: str = ""
    reference: str = ""
    report: StatusReport | None = None
    raw_status: str = ""
    external_id: str = ""
    session_id: str = ""
    delivery_id: str = ""
    pull: bool = False
    ignored: bool = False

    def __repr__(self) -> str:  # the token is the hand-off link's secret
        return (
            f"WebhookReport(external_id={self.external_id!r}, reference={self.reference!r}, "
            f"delivery_id={self.delivery_id!r}, report={self.report!r}, raw_status={self.raw_status!r})"
        )
