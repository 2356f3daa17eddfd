"""The default decision policy, run once when a session reaches a final status.

Replace it with ``VERIFICATION_LINK["DECISION_POLICY"] = "myapp.policy.decide"``: a callable taking
the (locked, already updated) session and returning a ``VerificationSession.Decision`` value, or
``""`` to leave the session undecided.
"""

from __future__ import annotations

from .models import VerificationSession
from .providers import get_provider

Decision = VerificationSession.Decision
Status = VerificationSession.Status


def default_decision_policy(session: VerificationSession) -> str:
    """
    ========  ===========================================  =============
    status    checks of the requested scopes                decision
    ========  ===========================================  =============
    DONE      every one passed                              ``approved``
    DONE      any failed or missing                         ``review``
    FAILED    (any)                                         ``rejected``
    EXPIRED   (any)                                         undecided
    CANCELED  (any)                                         undecided
    ========  ===========================================  =============
    """
    if session.status == Status.FAILED:
        return Decision.REJECTED
    if session.status != Status.DONE:
        return Decision.UNDECIDED
    outcomes = get_provider(session.provider).scope_outcomes(session.scopes, session.result or {})
    if outcomes and all(passed is True for passed in outcomes.values()):
        return Decision.APPROVED
    return Decision.REVIEW
