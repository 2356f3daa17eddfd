"""The example site, end to end in headless Chromium, against the built-in sandbox."""

import re
import subprocess
import time

import pytest
from playwright.sync_api import expect

from .test_accessibility import assert_accessible

pytestmark = pytest.mark.browser
# The status page; "?returned=1" when the browser came back before the outcome was known.
STATUS_PAGE = re.compile(r"/verify/s/[0-9a-f-]+/(\?returned=1)?$")


def log_in(page, username="demo", password="demo"):
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


def walk_sandbox(page, outcome="Pass all"):
    """Captcha, one page per scope, then the outcome picker of the sandbox's hosted flow."""
    page.get_by_label("I am not a robot").check()
    page.get_by_role("button", name="Continue").click()
    for _ in range(10):
        if page.get_by_role("heading", name="Choose the outcome").count():
            break
        page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name=outcome).click()


def profile_verified(demo_site, username):
    out = demo_site.manage(
        "shell",
        "-c",
        "from demo.models import Profile; "
        f"print(Profile.objects.filter(user__username='{username}', identity_verified=True).exists())",
    )
    return out.strip().splitlines()[-1] == "True"  # Django 5.2+ shells may print a banner first


def test_continue_here_pass_all_marks_the_user_verified(page, demo_site):
    log_in(page)
    assert page.locator("#unverified-badge").is_visible()
    page.click("#verify-link")
    page.get_by_role("button", name="Continue here").click()
    page.wait_for_url(re.compile(r"/sandbox/ooto/flow/"))
    assert page.get_by_text("Sandbox — not a real verification").is_visible()
    walk_sandbox(page, "Pass all")
    # Back through the return view to the owner's status page, showing the outcome.
    page.wait_for_url(STATUS_PAGE)
    assert page.locator("#vl-outcome").inner_text() == "You are verified."
    assert profile_verified(demo_site, "demo")
    page.goto("/")
    assert page.locator("#verified-badge").is_visible()


def test_phone_hand_off_qr_decodes_to_the_link_and_the_page_updates_live(page, browser, demo_site, tmp_path):
    demo_site.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('phoebe', password='phoebe')",
    )
    log_in(page, "phoebe", "phoebe")
    page.click("#verify-link")
    page.get_by_role("button", name="Continue on my phone").click()
    page.wait_for_url(STATUS_PAGE)
    link = page.locator("#vl-link").get_attribute("href")
    assert "/sandbox/ooto/flow/" in link
    qr = page.locator("#vl-qr")
    qr.wait_for()
    png = tmp_path / "qr.png"
    qr.screenshot(path=str(png))
    decoded = subprocess.run(["zbarimg", "--raw", "-q", str(png)], capture_output=True, text=True, timeout=30)
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stdout.strip() == link

    # The phone: another browser, not logged in, opens what it scanned.
    phone = browser.new_context(base_url=demo_site.base_url, viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone_page = phone.new_page()
        phone_page.goto(decoded.stdout.strip())
        # The captcha on the phone: the computer's page learns it within about LIVE_POLL_SECONDS (3).
        phone_page.get_by_label("I am not a robot").check()
        phone_page.get_by_role("button", name="Continue").click()
        passed_captcha = time.monotonic()
        expect(page.locator("#vl-status-label")).to_have_text("Started", timeout=10_000)
        assert time.monotonic() - passed_captcha < 5  # at most LIVE_POLL_SECONDS and one tick of the page
        for _ in range(10):
            if phone_page.get_by_role("heading", name="Choose the outcome").count():
                break
            phone_page.get_by_role("button", name="Continue").click()
        phone_page.get_by_role("button", name="Pass all").click()
        phone_page.wait_for_url(re.compile(r"/return/"))
        assert phone_page.get_by_role("heading", name="Thank you").is_visible()
        # The phone learns nothing about the result (the site's own layout around it may say anything).
        assert "verified" not in phone_page.locator("#content").inner_text().lower()
    finally:
        phone.close()

    # The computer's status page notices by itself (no manual reload).
    page.locator("#vl-outcome").wait_for(timeout=30_000)
    assert page.locator("#vl-outcome").inner_text() == "You are verified."
    assert profile_verified(demo_site, "phoebe")


def test_valify_sandbox_pass_all_marks_the_user_verified(page, valify_site):
    log_in(page)
    page.click("#verify-link")
    page.get_by_role("button", name="Continue here").click()
    page.wait_for_url(re.compile(r"/sandbox/valify/\?token="))
    for _ in range(3):  # national ID, face match, phone
        assert_accessible(page, "valify sandbox step")
        page.get_by_role("button", name="Continue").click()
    assert_accessible(page, "valify sandbox outcome")
    page.get_by_role("button", name="Pass all").click()
    # Back on the status page; the signed account-level webhook brings the outcome (live update).
    page.wait_for_url(STATUS_PAGE)
    page.locator("#vl-outcome").wait_for(timeout=30_000)
    assert page.locator("#vl-outcome").inner_text() == "You are verified."
    assert profile_verified(valify_site, "demo")
    events = valify_site.manage(
        "shell",
        "-c",
        "from verification_link.models import VerificationEvent as E; "
        "print(list(E.objects.filter(kind='webhook', session__user__username='demo')"
        ".values_list('valid', 'processed', 'error')))",
    )  # the site is shared: other tests' users have webhooks of their own
    assert events.strip().splitlines()[-1] == "[(True, True, '')]"


@pytest.mark.parametrize(
    ("outcome", "state", "heading"),
    [("Needs review", "in_review", "Your verification is being reviewed."), ("Let it expire now", "expired", None)],
)
def test_the_valify_sandbox_reaches_review_and_expiry(page, valify_site, outcome, state, heading):
    username = f"valify{state.replace('_', '')}"
    valify_site.manage(
        "shell",
        "-c",
        f"from django.contrib.auth.models import User; User.objects.create_user('{username}', password='{username}')",
    )
    log_in(page, username, username)
    page.goto("/verify/start/")
    page.get_by_role("button", name="Continue here").click()
    page.wait_for_url(re.compile(r"/sandbox/valify/\?token="))
    for _ in range(3):
        page.get_by_role("button", name="Continue").click()
    assert page.locator(f"#hint-{page.get_by_role('button', name=outcome).get_attribute('value')}").is_visible()
    page.get_by_role("button", name=outcome).click()
    page.wait_for_url(STATUS_PAGE)
    page.locator(f"[data-state={state}] #vl-outcome").wait_for(timeout=30_000)
    if heading:
        assert page.locator("#vl-outcome").inner_text() == heading


def test_a_decline_then_try_again_then_a_pass(page, demo_site):
    """A failed check offers "Try again": a new attempt linked to the failed one, through the
    sandbox once more, ends verified; the status page lists both attempts."""
    demo_site.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('declan', password='declan')",
    )
    log_in(page, "declan", "declan")
    page.click("#verify-link")
    page.get_by_role("button", name="Continue here").click()
    page.wait_for_url(re.compile(r"/sandbox/ooto/flow/"))
    walk_sandbox(page, "Liveness fails")
    page.wait_for_url(STATUS_PAGE)
    failed_url = page.url.split("?")[0]
    assert page.locator("#vl-outcome").inner_text() == "We could not verify you this time."
    assert not profile_verified(demo_site, "declan")

    page.get_by_role("button", name="Try again", exact=True).click()
    page.wait_for_url(re.compile(r"/sandbox/ooto/flow/"))
    walk_sandbox(page, "Pass all")
    page.wait_for_url(STATUS_PAGE)
    assert page.url != failed_url
    assert page.locator("#vl-outcome").inner_text() == "You are verified."
    attempts = page.locator("#vl-attempts li")
    assert attempts.count() == 2
    assert demo_site.base_url + attempts.nth(0).get_by_role("link").get_attribute("href") == failed_url
    assert "Not verified" in attempts.nth(0).inner_text()
    assert profile_verified(demo_site, "declan")

    # The failed attempt's page now points to the newer one and offers no second retry.
    page.goto(failed_url)
    assert page.locator("#vl-replaced-by").is_visible()
    assert page.get_by_role("button", name="Try again", exact=True).count() == 0
