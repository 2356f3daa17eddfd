"""The admin's lists fit a 1280 px wide window (issue 16, point 8), in headless Chromium."""

import pytest

pytestmark = pytest.mark.browser

SESSIONS = "/admin/verification_link/verificationsession/"
EVENTS = "/admin/verification_link/verificationevent/"

# A few sessions as a busy site has them: a long user name, every kind of outcome, a review with a
# note, events of several kinds (a webhook refused, a callback judged valid, a decision).
CREATE = (
    "from datetime import timedelta; from django.contrib.auth.models import User; "
    "from django.utils import timezone; from verification_link import services; "
    "from verification_link.models import VerificationEvent, VerificationSession; "
    "from verification_link.testing import ooto_result; "
    "now = timezone.now(); scopes = ['liveness', 'deepfake', 'search', 'enroll']; "
    "admin = User.objects.get(username='admin'); "
    "user = User.objects.get_or_create(username='alexandra.konstantinopoulou-smithson', "
    "defaults={'email': 'alexandra.konstantinopoulou-smithson@subsidiary.example.com'})[0]; "
    "made = [VerificationSession.objects.create(user=user, provider='sandbox', scopes=scopes, status=status, "
    "decision=decision, next_step=step, expires_at=now + timedelta(hours=1), "
    "finished_at=None if step else now, result=ooto_result(scopes, fine={'deepfake': False})) "
    "for status, decision, step in [('DONE', 'review', ''), ('FAILED', 'rejected', ''), "
    "('IN_PROGRESS', '', 'DEEPFAKE'), ('CAPTCHA_OK', '', 'LIVENESS'), ('EXPIRED', '', ''), ('DONE', '', '')]]; "
    "services.review_session(made[0], decision='rejected', reviewer=admin, "
    "note='The selfie is a photo of a screen; the document photo does not match the person at all.'); "
    "[VerificationEvent.objects.create(session=made[1], provider='sandbox', kind=kind, source=source, valid=valid, "
    "processed=True, old_status='IN_PROGRESS', new_status='FAILED', "
    "error='signature mismatch: the webhook was signed with an unknown secret' if valid is False else '') "
    "for kind, source, valid in [('webhook', 'webhook', False), ('callback', 'callback', True), "
    "('status_changed', 'poll', None)]]; "
    "print(len(made))"
)


@pytest.fixture
def staff_page(page, demo_site):
    demo_site.manage("shell", "-c", CREATE)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"/admin/login/?next={SESSIONS}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{SESSIONS}")
    return page


def scroll_width(page):
    return page.evaluate("document.documentElement.scrollWidth")


@pytest.mark.parametrize("url", [SESSIONS, EVENTS])
def test_the_lists_fit_1280_pixels_without_scrolling_sideways(staff_page, url):
    staff_page.goto(url)
    rows = staff_page.locator("#result_list tbody tr")
    assert rows.count() >= 3
    assert scroll_width(staff_page) <= 1280, f"{url} is {scroll_width(staff_page)} px wide"
    # And no column was squeezed into a scroll area of its own.
    assert staff_page.evaluate(
        "(() => { const r = document.querySelector('.results'); return r.scrollWidth <= r.clientWidth; })()"
    ), f"{url}: the table scrolls inside its box"
