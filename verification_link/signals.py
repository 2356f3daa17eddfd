"""Signals. All have ``sender=VerificationSession`` and a ``session`` argument, and are sent with
``transaction.on_commit``: after the change is durable, exactly once per real transition, never for a
rolled-back or ignored one.

- ``verification_created(session)``
- ``verification_status_changed(session, old_status, new_status, source)``
- ``verification_finished(session, status, source)`` — once per session, at its final status
- ``verification_reviewed(session, decision, reviewer)`` — ``reviewer`` is None for the policy
- ``verification_lapsed(session)`` — once per approved session, when a sweep sees its validity
  (``VALID_FOR_DAYS``) end

``source`` is one of ``callback``, ``webhook``, ``poll``, ``return``, ``admin``, ``api``, ``expiry``.
"""

from django.dispatch import Signal

verification_created = Signal()
verification_status_changed = Signal()
verification_finished = Signal()
verification_reviewed = Signal()
verification_lapsed = Signal()
