"""The example site looks like a small shop, in headless Chromium: one layout around its pages and
the app's (the shop's override of ``verification_link/base.html``), the login page with the demo
accounts, the icon, the language switch (Arabic: right to left), the home page's list of attempts
in the app's own words, and the sandbox's "Needs review" outcome seen from the shop."""

import re

import pytest

pytestmark = pytest.mark.browser

STATUS_PAGE = re.compile(r"/verify/s/[0-9a-f-]+/$")


def new_user(demo_site, username, *, staff=False):
    create = "create_superuser" if staff else "create_user"
    demo_site.manage(
        "shell",
        "-c",
        f"from django.contrib.auth.models import User; User.objects.{create}('{username}', password='{username}')",
    )


def log_in(page, username, password):
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.locator("#content").get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


def walk_to_the_picker(page):
    """Captcha, then one page per scope, up to the outcome picker of the OOTO sandbox."""
    page.get_by_label("I am not a robot").check()
    page.get_by_role("button", name="Continue").click()
    for _ in range(10):
        if page.get_by_role("heading", name="Choose the outcome").count():
            return
        page.get_by_role("button", name="Continue").click()


def assert_shop_layout(page, username):
    header = page.locator("#shop-header")
    assert header.get_by_role("link", name="Demo shop").get_attribute("href") == "/"
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Home").is_visible()
    assert nav.get_by_role("link", name="Verify my identity").is_visible()
    assert page.locator("#shop-user").inner_text() == f"Signed in as {username}"
    assert header.get_by_role("button", name="Log out").is_visible()
    assert page.locator("#shop-footer").is_visible()
    assert page.locator("main#content").count() == 1
    assert page.locator("link[rel=icon]").get_attribute("href") == "/static/demo/favicon.svg"


def test_our_status_page_wears_the_shops_layout_and_log_out_works(page, demo_site):
    new_user(demo_site, "stella")
    log_in(page, "stella", "stella")
    assert_shop_layout(page, "stella")
    page.locator("#verify-link").click()
    assert_shop_layout(page, "stella")  # the app's start page
    assert page.title() == "Verify your identity · Demo shop"
    page.get_by_role("button", name="Continue on my phone").click()
    page.wait_for_url(STATUS_PAGE)
    assert_shop_layout(page, "stella")  # the app's status page
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").count() == 0

    page.locator("#shop-header").get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{demo_site.base_url}/")
    assert page.locator("#nav-login").is_visible()
    assert page.locator("#shop-user").count() == 0


def test_staff_see_the_admin_in_the_navigation(page, demo_site):
    log_in(page, "admin", "admin")
    admin = page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin")
    assert admin.get_attribute("href") == "/admin/"


def test_the_login_page_shows_the_demo_accounts_and_its_error(page, demo_site):
    page.goto("/login/")
    assert page.title() == "Log in · Demo shop"
    accounts = page.locator("#demo-credentials")
    assert "demo / demo" in accounts.inner_text()
    assert "admin / admin" in accounts.inner_text()
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill("wrong")
    page.locator("#content").get_by_role("button", name="Log in").click()
    alert = page.get_by_role("alert")
    assert alert.inner_text().startswith("Wrong username or password.")
    assert page.get_by_label("Password").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Username").input_value() == "demo"


def test_the_favicon_is_served(page, demo_site):
    answer = page.request.get("/favicon.ico")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
    assert answer.url.endswith("/static/demo/favicon.svg")
    assert b"<svg" in answer.body()
    first = page.request.get("/favicon.ico", max_redirects=0)
    assert (first.status, first.headers["location"]) == (301, "/static/demo/favicon.svg")


def test_the_language_switch_turns_the_pages_right_to_left(page, demo_site):
    page.goto("/login/")
    html = page.locator("html")
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("en", "ltr")
    page.locator("#shop-language").select_option("ar")
    page.locator("#language-form button").click()
    page.wait_for_load_state()
    assert page.url == f"{demo_site.base_url}/login/"  # "next" is the page the switch was on
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("ar", "rtl")
    assert page.locator("#shop-language").input_value() == "ar"
    page.goto("/")
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("ar", "rtl")

    page.locator("#shop-language").select_option("en")
    page.locator("#language-form button").click()
    page.wait_for_load_state()
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("en", "ltr")


def test_needs_review_shows_on_the_home_page_in_our_words_with_the_timezone(page, demo_site):
    new_user(demo_site, "rivka")
    log_in(page, "rivka", "rivka")
    page.locator("#verify-link").click()
    page.get_by_role("button", name="Continue here").click()
    page.wait_for_url(re.compile(r"/sandbox/ooto/flow/"))
    walk_to_the_picker(page)
    # Beside each button, what the site's default policy will decide.
    quality = page.get_by_role("button", name="Poor quality", exact=True)
    assert quality.get_attribute("aria-describedby") == "hint-poor_quality"
    hint = page.locator("#hint-poor_quality").inner_text()
    assert "Quality warnings alone do not fail the check" in hint and hint.endswith("so it approves.")
    assert "review" in page.locator("#hint-needs_review").inner_text()
    page.get_by_role("button", name="Needs review", exact=True).click()
    page.wait_for_url(STATUS_PAGE)

    page.goto("/")
    attempt = page.locator("#shop-attempts li").first
    text = attempt.inner_text()
    assert text.endswith("— Being reviewed")  # the app's label, not the provider's "Done"
    assert re.search(r"\d{4}, \d{1,2}(:\d\d)? [ap]\.m\. UTC —", text) or re.search(
        r"\d{4}, (noon|midnight) UTC —", text
    )
    assert ".." not in text
    assert page.locator("#unverified-badge").is_visible()
