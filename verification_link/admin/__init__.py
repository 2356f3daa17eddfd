"""Staff review in the Django admin.

- Sessions: a fast list (constant queries, no full ``COUNT(*)``, a summary of the last 24 h and 7
  days in one query), a read-only detail with the result made readable and the event timeline, and
  actions — refresh, cancel, approve, reject — that go through the services, singly from the detail
  page and in bulk from the list, each recorded as an event with the staff user.
- Events: a read-only list, linked to sessions.
- Biometric and demographic parts (``SENSITIVE_RESULT_KEYS``), raw bodies and the hand-off link are
  shown only to users with ``verification_link.view_sensitive_result`` — in every page and export.
- Nobody edits ``status``, ``result`` or events by hand: every field is read-only, and the change
  form accepts no POST.

A package with a module per concern: ``sessions`` and ``events`` (the registered admins),
``listing``, ``display`` and ``actions`` (the parts of the session admin).
"""

from .actions import ACTIONS, DecisionForm, NoteForm, SessionAction, decision_refusal
from .display import STATUS_COLOURS, pretty_body, pretty_json, status_badge
from .events import VerificationEventAdmin
from .listing import CappedCountPaginator, ProviderFilter, RefusesNulParameters, month_links
from .sessions import VerificationSessionAdmin

__all__ = [
    "ACTIONS",
    "STATUS_COLOURS",
    "CappedCountPaginator",
    "DecisionForm",
    "NoteForm",
    "ProviderFilter",
    "RefusesNulParameters",
    "SessionAction",
    "VerificationEventAdmin",
    "VerificationSessionAdmin",
    "decision_refusal",
    "month_links",
    "pretty_body",
    "pretty_json",
    "status_badge",
]
