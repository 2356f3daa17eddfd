"""A staff member reviews an outcome in the admin, in headless Chromium."""

import re

import pytest

pytestmark = pytest.mark.browser

CREATE = (
    "from django.contrib.auth.models import User; from django.utils import timezone; "
    "from verification_link.models import VerificationSession; from verification_link.testing import ooto_result; "
    "scopes = ['liveness', 'deepfake']; "
    "s = VerificationSession.objects.create(user=User.objects.get(username='demo'), provider='sandbox', "
    "scopes=scopes, status='DONE', decision='review', finished_at=timezone.now(), "
    "result=ooto_result(scopes, fine={'deepfake': False})); "
    "a = VerificationSession.objects.create(provider='sandbox', status='DONE', decision='approved', scopes=scopes, "
    "finished_at=timezone.now(), result=ooto_result(scopes)); "
    "print(a.pk); print(s.pk)"
)


def test_staff_reject_a_session_in_review_with_a_note(page, demo_site):
    approved_id, session_id = demo_site.manage("shell", "-c", CREATE).strip().splitlines()[-2:]
    page.goto("/admin/login/?next=/admin/verification_link/verificationsession/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/verification_link/verificationsession/")

    filters = page.locator("#changelist-filter")
    filters.get_by_role("link", name="Done", exact=True).click()
    page.wait_for_url(re.compile(r"status__exact=DONE"))
    filters.get_by_role("link", name="Needs review", exact=True).click()
    page.wait_for_url(re.compile(r"decision__exact=review"))
    # The demo site is shared: other tests' sessions in review may be listed too, never an approved one.
    rows = page.locator("#result_list tbody tr")
    assert rows.get_by_role("link", name=session_id[:8]).count() == 1
    assert rows.get_by_role("link", name=approved_id[:8]).count() == 0
    rows.get_by_role("link", name=session_id[:8]).click()

    page.wait_for_url(re.compile(rf"/{session_id}/change/"))
    assert page.get_by_text("deepfake").first.is_visible()
    page.get_by_role("link", name="Reject").click()
    page.wait_for_url(re.compile(rf"/{session_id}/reject/"))
    page.get_by_label("Note").fill("Deepfake check failed; the selfie is a screen replay.")
    page.get_by_role("button", name="Reject").click()

    page.wait_for_url(re.compile(rf"/{session_id}/change/"))
    assert page.get_by_text("1 session rejected.").is_visible()
    decision = page.locator(".field-decision .readonly")
    assert decision.inner_text().strip() == "Rejected"
    assert "screen replay" in page.locator(".field-review_note .readonly").inner_text()
    timeline = page.locator(".field-timeline_full")
    assert "Reviewed" in timeline.inner_text() and "admin" in timeline.inner_text()
