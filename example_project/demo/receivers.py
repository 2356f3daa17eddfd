"""The pattern the README teaches: react to ``verification_finished``, after commit, once."""

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from verification_link.dblock import take_write_lock
from verification_link.models import VerificationSession
from verification_link.signals import verification_finished, verification_reviewed

from .models import Profile


@receiver(verification_finished, sender=VerificationSession)
def mark_user_verified(sender, session, status, source, **kwargs):
    if session.user_id and status == VerificationSession.Status.DONE and session.decision == "approved":
        with transaction.atomic():
            # update_or_create reads, then writes: on SQLite take the write lock first, or a
            # concurrent writer (a webhook, the return view) makes it fail with "database is locked".
            take_write_lock(Profile)
            Profile.objects.update_or_create(
                user_id=session.user_id, defaults={"identity_verified": True, "verified_at": timezone.now()}
            )


@receiver(verification_reviewed, sender=VerificationSession)
def follow_staff_review(sender, session, decision, reviewer, **kwargs):
    # A staff decision later on (reviewer set) overrides the automatic one.
    if reviewer is not None and session.user_id:
        verified = decision == VerificationSession.Decision.APPROVED
        with transaction.atomic():
            take_write_lock(Profile)  # as above
            Profile.objects.update_or_create(
                user_id=session.user_id,
                defaults={"identity_verified": verified, "verified_at": timezone.now() if verified else None},
            )
