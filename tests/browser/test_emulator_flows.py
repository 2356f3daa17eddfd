"""Each hosted-provider emulator walked in headless Chromium on the example site, switched to it
by ``VL_PROVIDER``: start → the provider's hosted page → an outcome → back on the status page,
the outcome brought by the provider's signed webhook (and, where the provider is polled, the
return view's own status call)."""

import re
import time

import pytest

from .conftest import serve_demo
from .test_accessibility import assert_accessible
from .test_accessibility import log_in as log_in_in_any_language
from .test_demo_flow import log_in, profile_verified

pytestmark = pytest.mark.browser
# The status page; "?returned=1" when the browser came back before the outcome was known.
STATUS_PAGE = re.compile(r"/verify/s/[0-9a-f-]+/(\?returned=1)?$")

EMULATORS = ("stripe_identity", "persona", "onfido", "veriff", "sumsub", "didit")


@pytest.fixture(params=EMULATORS)
def emulator_site(request, tmp_path_factory):
    with serve_demo(tmp_path_factory.mktemp(f"demo-{request.param}"), f"sandbox_{request.param}") as site:
        site.emulator = request.param
        yield site


@pytest.fixture
def emulator_page(browser, emulator_site):
    context = browser.new_context(base_url=emulator_site.base_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def walk(page, site, outcome):
    log_in(page)
    page.click("#verify-link")
    page.get_by_role("button", name="Continue here").click()
    page.wait_for_url(re.compile(rf"/sandbox/hosted/{site.emulator}/"))
    assert page.get_by_text("Sandbox — not a real verification").is_visible()
    assert_accessible(page, f"{site.emulator} hosted page")
    page.get_by_role("button", name=outcome).click()
    page.wait_for_url(STATUS_PAGE)
    page.locator("#vl-outcome").wait_for(timeout=30_000)
    assert_accessible(page, f"{site.emulator} outcome")
    return page.locator("#vl-outcome").inner_text()


def test_the_hosted_page_right_to_left_and_dark(browser, emulator_site):
    context = browser.new_context(base_url=emulator_site.base_url, locale="ar", color_scheme="dark")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        log_in_in_any_language(page, "demo")  # the login page is in Arabic: found by its form
        page.goto("/verify/start/")
        page.locator("button[value=redirect]").click()
        page.wait_for_url(re.compile(rf"/sandbox/hosted/{emulator_site.emulator}/"))
        assert page.locator("html").get_attribute("dir") == "rtl"
        assert_accessible(page, f"{emulator_site.emulator} hosted page, rtl dark")
    finally:
        context.close()


def test_pass_every_check_marks_the_user_verified(emulator_page, emulator_site):
    assert walk(emulator_page, emulator_site, "Pass every check") == "You are verified."
    # The receiver runs once the webhook's transaction commits: the page may show DONE a moment before.
    deadline = time.monotonic() + 15
    while not profile_verified(emulator_site, "demo"):
        assert time.monotonic() < deadline, "verification_finished never marked the user verified"
        time.sleep(0.5)
    events = emulator_site.manage(
        "shell",
        "-c",
        "from verification_link.models import VerificationEvent as E; "
        "print(all(v for v in E.objects.filter(kind='webhook').values_list('valid', flat=True)))",
    )
    assert events.strip().splitlines()[-1] == "True"
