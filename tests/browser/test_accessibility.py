"""Every user and sandbox page through axe-core (``axe-playwright-python``), left to right and
right to left, light and dark, desktop and phone: no serious or critical violation. A keyboard-only
walk through the whole flow. Full-page screenshots of each page land in ``VL_SCREENSHOTS``
(default ``screenshots/`` beside the repository's tests) for a person to look at."""

import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("VL_SCREENSHOTS", ROOT / "screenshots"))
STATUS_PAGE = re.compile(r"/verify/s/[0-9a-f-]+/(\?returned=1)?$")
BLOCKING = ("serious", "critical")

VARIANTS = [
    pytest.param({"locale": "en-US", "color_scheme": "light"}, "ltr", id="ltr-light-desktop"),
    pytest.param({"locale": "en-US", "color_scheme": "dark", "mobile": True}, "ltr", id="ltr-dark-phone"),
    pytest.param({"locale": "ar", "color_scheme": "light", "mobile": True}, "rtl", id="rtl-light-phone"),
    pytest.param({"locale": "ar", "color_scheme": "dark"}, "rtl", id="rtl-dark-desktop"),
]


def new_user(site, name):
    site.manage(
        "shell",
        "-c",
        f"from django.contrib.auth.models import User; User.objects.create_user('{name}', password='{name}')",
    )


def open_context(browser, site, variant):
    options = {"base_url": site.base_url, "locale": variant["locale"], "color_scheme": variant["color_scheme"]}
    if variant.get("mobile"):
        options.update(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    else:
        options.update(viewport={"width": 1280, "height": 900})
    return browser.new_context(**options)


@contextmanager
def logged_in(browser, site, variant, username):
    """A new user ``username`` of ``site``, logged in, in a fresh browser context of ``variant``: its page."""
    new_user(site, username)
    context = open_context(browser, site, variant)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        log_in(page, username)
        yield page
    finally:
        context.close()


def log_in(page, username):
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", username)
    page.locator("form button[type=submit], form input[type=submit]").last.click()
    page.wait_for_url("**/")


def assert_accessible(page, what):
    """No serious or critical axe violation on ``page`` (for the other suites' walks)."""
    from axe_playwright_python.sync_playwright import Axe

    page.wait_for_load_state("load")
    violations = [v for v in Axe().run(page).response["violations"] if v.get("impact") in BLOCKING]
    found = [f"{v['id']} at {[node['target'] for node in v['nodes']][:3]}" for v in violations]
    assert not found, f"{what}: " + "; ".join(found)


class Audit:
    """Runs axe on each page it is shown, keeps a screenshot, and collects what blocks."""

    def __init__(self, name, direction):
        from axe_playwright_python.sync_playwright import Axe

        self.axe, self.name, self.direction = Axe(), name, direction
        self.problems, self.pages = [], []

    def check(self, page, what):
        page.wait_for_load_state("load")
        assert page.locator("html").get_attribute("dir") == self.direction, f"{what}: dir"
        results = self.axe.run(page)
        for violation in results.response["violations"]:
            if violation.get("impact") in BLOCKING:
                targets = [node["target"] for node in violation["nodes"]][:3]
                self.problems.append(f"{what}: {violation['id']} ({violation['impact']}) at {targets}")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{self.name}-{len(self.pages):02d}-{what}.png"), full_page=True)
        self.pages.append(what)


@pytest.mark.look
@pytest.mark.parametrize(("variant", "direction"), VARIANTS)
def test_every_user_and_sandbox_page_has_no_serious_violation(browser, demo_site, variant, direction, request):
    name = request.node.callspec.id
    audit = Audit(name, direction)
    with logged_in(browser, demo_site, variant, f"axe{name.replace('-', '')}") as page:
        page.goto("/verify/start/")
        audit.check(page, "start")
        page.locator("button[value=qr]").first.click()
        page.wait_for_url(STATUS_PAGE)
        audit.check(page, "status-open")
        page.locator("#vl-cancel").click()
        page.locator("#vl-outcome").wait_for()
        audit.check(page, "status-canceled")
        page.locator("#vl-start-again").click()  # "Start again" here: the sandbox's flow
        page.wait_for_url(re.compile(r"/sandbox/ooto/flow/"))
        audit.check(page, "sandbox-captcha")
        page.locator("input[name=not_a_robot]").check()
        page.locator("form button[type=submit]").first.click()
        for step in range(10):
            if page.locator("button[name=outcome]").count():
                break
            audit.check(page, f"sandbox-step-{step}")
            page.locator("form button[type=submit]").first.click()
        audit.check(page, "sandbox-outcome")
        page.locator("button[name=outcome][value=liveness_fails]").click()
        page.wait_for_url(STATUS_PAGE)
        page.locator("#vl-outcome").wait_for()
        audit.check(page, "status-not-verified")
        page.locator("#vl-retry").click()
        page.wait_for_url(re.compile(r"/sandbox/ooto/flow/"))
        through_the_ooto_flow(page, "pass")
        page.wait_for_url(STATUS_PAGE)
        page.locator("#vl-outcome").wait_for()
        audit.check(page, "status-verified")
    assert len(audit.pages) >= 7
    assert not audit.problems, "\n".join(audit.problems)


@pytest.mark.look
@pytest.mark.parametrize(("variant", "direction"), VARIANTS)
def test_the_pages_of_a_start_refused_have_no_serious_violation(browser, refusing_site, variant, direction, request):
    """The provider down (its port closed), then the attempt limit (one start a day, one on record)."""
    name = request.node.callspec.id
    username = f"refused{name.replace('-', '')}"
    audit = Audit(f"refused-{name}", direction)
    with logged_in(browser, refusing_site, variant, username) as page:
        page.goto("/verify/start/")
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            page.locator("button[value=redirect]").click()
        assert answer.value.status == 503
        assert page.locator("[data-state=unavailable]").count() == 1
        audit.check(page, "provider-error")
        page.locator("#vl-try-again").click()
        page.wait_for_url("**/verify/start/")
        refusing_site.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; from verification_link.models import VerificationSession; "
            f"VerificationSession.objects.create(user=User.objects.get(username='{username}'), provider='ooto', "
            "status='FAILED', decision='rejected')",
        )
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            page.locator("button[value=qr]").click()
        assert answer.value.status == 429
        assert page.locator("[data-state=too_many_attempts]").count() == 1
        audit.check(page, "too-many-attempts")
        page.locator("#vl-continue").click()
        page.wait_for_url(f"{refusing_site.base_url}/")
    assert audit.pages == ["provider-error", "too-many-attempts"]
    assert not audit.problems, "\n".join(audit.problems)


@pytest.mark.look
@pytest.mark.parametrize(
    ("variant", "lang", "direction"),
    [
        *(pytest.param(p.values[0], "ar" if p.values[1] == "rtl" else "en", p.values[1], id=p.id) for p in VARIANTS),
        pytest.param({"locale": "fr", "color_scheme": "light"}, "en", "ltr", id="fr-light-desktop"),
    ],
)
def test_the_valify_flow_speaks_the_users_language_where_valify_does(
    browser, valify_site, variant, lang, direction, request
):
    """A link made for an Arabic visitor has ``lang=ar``, for an English one ``en``; Valify has no
    French: a French visitor's link is made with ``en``. Every page of the flow through axe."""
    name = request.node.callspec.id
    username = f"valify{name.replace('-', '')}"
    audit = Audit(f"valify-{name}", direction)
    with logged_in(browser, valify_site, variant, username) as page:
        page.goto("/verify/start/")
        assert page.locator("html").get_attribute("lang") == variant["locale"].split("-")[0].lower()
        page.locator("button[value=redirect]").click()
        page.wait_for_url(re.compile(r"/sandbox/valify/\?token="))
        link = page.url
        for step in range(5):
            assert page.locator("html").get_attribute("lang") == lang
            if page.locator("button[name=outcome]").count():
                break
            audit.check(page, f"valify-step-{step}")
            page.locator("main form button[type=submit]").first.click()
        audit.check(page, "valify-outcome")
        page.locator("button[name=outcome][value=pass]").click()
        page.wait_for_url(STATUS_PAGE)
        page.locator("[data-state=verified] #vl-outcome").wait_for(timeout=30_000)
        assert page.goto(link).status == 410  # the spent link, opened again: the visitor's language
        audit.check(page, "valify-spent-link")
    assert audit.pages == ["valify-step-0", "valify-step-1", "valify-step-2", "valify-outcome", "valify-spent-link"]
    assert not audit.problems, "\n".join(audit.problems)


EMULATORS = ("stripe_identity", "persona", "onfido", "veriff", "sumsub", "didit")


@pytest.mark.look
@pytest.mark.parametrize(("variant", "direction"), VARIANTS)
def test_every_emulators_hosted_page_has_no_serious_violation(browser, demo_site, variant, direction, request):
    """The hosted page of each emulator, its link made by the provider's real client (staff code
    may start at any alias; users of the demo only at the OOTO sandbox)."""
    name = request.node.callspec.id
    username = f"hosted{name.replace('-', '')}"
    audit = Audit(f"hosted-{name}", direction)
    with logged_in(browser, demo_site, variant, username) as page:
        made = demo_site.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; from verification_link import services; "
            f"user = User.objects.get(username='{username}'); "
            f"[print(services.start_verification(user=user, provider='sandbox_' + emulator).url) for emulator in "
            f"{EMULATORS!r}]",
        )
        links = [line for line in made.splitlines() if line.startswith("http")]
        assert len(links) == len(EMULATORS), made
        for emulator, link in zip(EMULATORS, links, strict=True):
            assert page.goto(link).status == 200, emulator
            audit.check(page, f"{emulator}-hosted-page")
    assert len(audit.pages) == len(EMULATORS)
    assert not audit.problems, "\n".join(audit.problems)


@pytest.mark.look
@pytest.mark.parametrize(("variant", "direction"), VARIANTS)
def test_the_emulators_closed_pages_have_no_serious_violation(browser, demo_site, variant, direction, request):
    """A link made with no return URL (our clients always send one; another caller of the emulator
    may not) ends on the emulator's own "you can close this page" (the OOTO one: Valify's create
    refuses a link without ``return_url``; its fallback renders the same template)."""
    name = request.node.callspec.id
    lang = "ar" if direction == "rtl" else "en"
    audit = Audit(f"closed-{name}", direction)
    made = demo_site.manage(
        "shell",
        "-c",
        "import uuid; from verification_link.providers import get_provider; "
        "from verification_link.providers.types import CreateRequest; "
        "print(get_provider('sandbox').create_session(CreateRequest(session_id=uuid.uuid4(), scopes=['liveness'], "
        f"metadata={{}}, callback_url='', return_url='', ttl=600, language='{lang}')).url)",
    )
    (ooto_link,) = [line for line in made.splitlines() if line.startswith("http")]
    context = open_context(browser, demo_site, variant)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(ooto_link)
        through_the_ooto_flow(page, "pass")
        page.wait_for_load_state("load")
        assert "/sandbox/ooto/" in page.url and page.locator("main form").count() == 0, page.url
        audit.check(page, "ooto-closed")
    finally:
        context.close()
    assert audit.pages == ["ooto-closed"]
    assert not audit.problems, "\n".join(audit.problems)


def sandbox_outcome(page, outcome):
    """From the status page's "Continue on this device" through the OOTO sandbox to ``outcome``;
    the sandbox link's URL."""
    page.locator("#vl-link").click()
    page.wait_for_url(re.compile(r"/sandbox/ooto/flow/"))
    link = page.url
    through_the_ooto_flow(page, outcome)
    page.wait_for_url(STATUS_PAGE)
    return link


def through_the_ooto_flow(page, outcome):
    """On the OOTO sandbox's first page: the captcha, each step, then ``outcome``'s button."""
    page.locator("input[name=not_a_robot]").check()
    page.locator("form button[type=submit]").first.click()
    for _ in range(10):
        if page.locator("button[name=outcome]").count():
            break
        page.locator("form button[type=submit]").first.click()
    page.locator(f"button[name=outcome][value={outcome}]").click()


@pytest.mark.look
@pytest.mark.parametrize(("variant", "direction"), VARIANTS)
def test_the_pages_of_review_expiry_and_leaving_have_no_serious_violation(
    browser, demo_site, variant, direction, request
):
    """The sandbox's "Needs review", "Let it expire now" and "Abandon" (the user came back before the end)."""
    name = request.node.callspec.id
    username = f"other{name.replace('-', '')}"
    audit = Audit(f"other-{name}", direction)

    def start_on_this_device(page):
        page.goto("/verify/start/")
        page.locator("button[value=qr]").first.click()  # the status page first: its link leads on
        page.wait_for_url(STATUS_PAGE)

    with logged_in(browser, demo_site, variant, username) as page:
        for outcome, state, what in [
            ("expire_now", "expired", "status-expired"),
            ("needs_review", "in_review", "status-in-review"),
        ]:
            start_on_this_device(page)
            link = sandbox_outcome(page, outcome)
            page.locator(f"[data-state={state}] #vl-outcome").wait_for()
            audit.check(page, what)
        assert page.goto(link).status == 410  # the spent link, opened again
        audit.check(page, "sandbox-spent-link")
        start_on_this_device(page)
        sandbox_outcome(page, "abandon")
        page.locator("#vl-returned").wait_for()
        assert page.locator("#vl-start-again").count() == 1
        audit.check(page, "status-returned")
    assert audit.pages == ["status-expired", "status-in-review", "sandbox-spent-link", "status-returned"]
    assert not audit.problems, "\n".join(audit.problems)


def test_the_whole_flow_by_keyboard_alone(browser, demo_site):
    """Tab, Shift+Tab, Space and Enter only, from the start page to "You are verified": every
    control is reachable and shows where the focus is."""
    new_user(demo_site, "keys")
    context = open_context(browser, demo_site, {"locale": "en-US", "color_scheme": "light"})
    page = context.new_page()
    page.set_default_timeout(20_000)

    def tab_to(selector, limit=40):
        target = page.locator(selector).first
        for _ in range(limit):
            page.keyboard.press("Tab")
            if target.evaluate("element => element === document.activeElement"):
                outline = target.evaluate("element => getComputedStyle(element).outlineStyle")
                assert outline != "none", f"{selector}: no visible focus"
                return
        raise AssertionError(f"{selector} is not reachable by Tab")

    def press_enter_and_wait():
        with page.expect_navigation():
            page.keyboard.press("Enter")

    try:
        log_in(page, "keys")
        page.goto("/verify/start/")
        tab_to("button[value=redirect]")
        press_enter_and_wait()
        page.wait_for_url(re.compile(r"/sandbox/ooto/flow/"))
        tab_to("input[name=not_a_robot]")
        page.keyboard.press("Space")
        assert page.locator("input[name=not_a_robot]").is_checked()
        tab_to("form:has(input[name=not_a_robot]) button[type=submit]")
        press_enter_and_wait()
        for _ in range(10):
            if page.locator("button[name=outcome]").count():
                break
            tab_to("main form button[type=submit]")
            press_enter_and_wait()
        tab_to("button[name=outcome][value=pass]")
        press_enter_and_wait()
        page.wait_for_url(STATUS_PAGE)
        assert page.locator("#vl-outcome").inner_text() == "You are verified."
        tab_to("#vl-continue")
        press_enter_and_wait()
        assert page.url == f"{demo_site.base_url}/"
    finally:
        context.close()
