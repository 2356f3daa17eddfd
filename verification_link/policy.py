"""The default decision policy, run once when a session reaches a final status.

Replace it with ``VERIFICATION_LINK["DECISION_POLICY"] = "myapp.policy.decide"``: a callable taking
the (locked, already updated) session and returning a ``VerificationSession.Decision`` value, or
``""`` to leave the session undecided.
"""

from __future__ import annotations

from .models import VerificationSession
from .providers import get_provider
from .providers.types import Verdict

Decision = VerificationSession.Decision
Status = VerificationSession.Status


def default_decision_policy(session: VerificationSession) -> str:
    """
    The provider's own verdict (``session.provider_verdict``) comes first where it gave one;
    the checks of the requested scopes decide where it did not (OOTO, Valify).

    ========  ========================  ===========================================  =============
    status    provider verdict          checks of the requested scopes                decision
    ========  ========================  ===========================================  =============
    FAILED    ``review``                (any)                                         ``review``
    FAILED    other                     (any)                                         ``rejected``
    DONE      ``declined``              (any)                                         ``rejected``
    DONE      ``review``/resubmission   (any)                                         ``review``
    DONE      ``approved``              none failed                                   ``approved``
    DONE      ``approved``              any failed                                    ``review``
    DONE      none                      every one passed                              ``approved``
    DONE      none                      any failed or missing                         ``review``
    EXPIRED   (any)                     (any)                                         undecided
    CANCELED  (any)                     (any)                                         undecided
    ========  ========================  ===========================================  =============
    """
    verdict = session.provider_verdict
    if session.status == Status.FAILED:
        # A provider's technical failure (Onfido "error") is no judgement of the person: review.
        return Decision.REVIEW if verdict == Verdict.REVIEW else Decision.REJECTED
    if session.status != Status.DONE:
        return Decision.UNDECIDED
    if verdict == Verdict.DECLINED:
        return Decision.REJECTED
    if verdict in (Verdict.REVIEW, Verdict.RESUBMISSION):
        return Decision.REVIEW
    outcomes = get_provider(session.provider).scope_outcomes(session.scopes, session.result or {})
    if verdict == Verdict.APPROVED:
        return Decision.REVIEW if any(passed is False for passed in outcomes.values()) else Decision.APPROVED
    if outcomes and all(passed is True for passed in outcomes.values()):
        return Decision.APPROVED
    return Decision.REVIEW
