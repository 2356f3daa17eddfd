"""Every page of the sandbox is written in the visitor's language and direction: ``<html lang>`` and
``dir`` follow the active language (``rtl`` for Arabic), as the site's ``LocaleMiddleware`` picks it
— except the pages of a Valify link, which speak the ``lang`` the link was made for, as Valify's do.

The test settings have no ``LocaleMiddleware``; these tests add it, as a multilingual site has it,
and ask with ``Accept-Language``. One more case renders every template file of the sandbox, so a
page added later is held to the same rule.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from django.template.loader import get_template
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone, translation

from verification_link.sandbox import valify_views
from verification_link.sandbox.emulators import emulator_modules
from verification_link.sandbox.models import SandboxHostedSession, SandboxSession, SandboxValifySession

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.sandbox.urls_sandbox")]

TEMPLATES = Path(valify_views.__file__).resolve().parent / "templates"
HTML_TAG = re.compile(r"<html\b[^>]*>")


@pytest.fixture(autouse=True)
def locale_middleware(settings):
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
        "django.middleware.locale.LocaleMiddleware",
    )
    settings.MIDDLEWARE = middleware


def later() -> datetime.datetime:
    return timezone.now() + datetime.timedelta(hours=1)


def ooto_pages() -> dict[str, str]:
    """One URL per page of the OOTO flow: each stage, the closing page, the spent and unknown link."""
    flow = "verification_link_sandbox:ooto_flow"
    scopes = ["liveness"]
    rows = {
        "captcha": SandboxSession(scopes=scopes, expires_at=later()),
        "start": SandboxSession(scopes=scopes, expires_at=later(), status="CAPTCHA_OK"),
        "step": SandboxSession(scopes=scopes, expires_at=later(), status="IN_PROGRESS"),
        "outcome": SandboxSession(scopes=scopes, expires_at=later(), status="IN_PROGRESS", step_index=1),
        "invalid": SandboxSession(scopes=scopes, expires_at=later(), status="DONE"),
    }
    SandboxSession.objects.bulk_create(rows.values())
    pages = {f"ooto {name}": reverse(flow, args=[row.token]) for name, row in rows.items()}
    pages["ooto unknown"] = reverse(flow, args=["no-such-token"])
    return pages


def valify_pages(lang: str = "en") -> dict[str, str]:
    """The Valify flow's pages of a link made for ``lang``: its step and its outcome."""
    flow = reverse("verification_link_sandbox:valify_flow")
    fields = {"reference_id": "ref", "return_url": "", "expires_at": later(), "lang": lang}
    rows = {
        "step": SandboxValifySession.objects.create(**fields),
        "outcome": SandboxValifySession.objects.create(**fields, step=len(valify_views.STEPS)),
    }
    return {f"valify {name}": f"{flow}?token={row.token}" for name, row in rows.items()}


def valify_closed_pages() -> dict[str, str]:
    """The Valify pages of no open link (spent, unknown): nothing says its language but the visitor."""
    flow = reverse("verification_link_sandbox:valify_flow")
    spent = SandboxValifySession.objects.create(reference_id="ref", expires_at=later(), status="success")
    return {
        "valify invalid": f"{flow}?token={spent.token}",
        "valify unknown": f"{flow}?token=00000000-0000-4000-8000-000000000000",
    }


def hosted_pages() -> dict[str, str]:
    pages = {}
    for module in emulator_modules():
        row = SandboxHostedSession.objects.create(
            emulator=module.NAME, external_id=f"x_{module.NAME}", status="created"
        )
        pages[f"{module.NAME} page"] = reverse("verification_link_sandbox:hosted", args=[module.NAME, row.page_secret])
        pages[f"{module.NAME} unknown"] = reverse("verification_link_sandbox:hosted", args=[module.NAME, "nope"])
    return pages


@pytest.mark.parametrize(("language", "direction"), [("ar", "rtl"), ("en", "ltr"), ("fr", "ltr")])
def test_every_sandbox_page_follows_the_visitors_language(client, language, direction):
    pages = {**ooto_pages(), **valify_closed_pages(), **hosted_pages()}
    assert len(pages) >= 8 + 2 * len(emulator_modules())
    for name, url in pages.items():
        response = client.get(url, headers={"Accept-Language": language})
        assert response.status_code in (200, 404, 410), name
        tag = HTML_TAG.search(response.content.decode())
        assert tag is not None, name
        assert tag.group(0) == f'<html lang="{language}" dir="{direction}">', name


@pytest.mark.parametrize("visitor", ["ar", "en", "fr"])
@pytest.mark.parametrize(("lang", "direction", "words"), [("ar", "rtl", "اختر النتيجة"), ("en", "ltr", "Choose")])
def test_a_valify_link_speaks_the_lang_it_was_made_for_whatever_the_browser(client, visitor, lang, direction, words):
    for name, url in valify_pages(lang).items():
        response = client.get(url, headers={"Accept-Language": visitor})
        html = response.content.decode()
        assert response.status_code == 200, name
        assert HTML_TAG.search(html).group(0) == f'<html lang="{lang}" dir="{direction}">', name
    assert words in html  # the outcome page, last: in the link's language


def test_the_closing_page_after_an_outcome_is_right_to_left_too(client):
    row = SandboxSession.objects.create(scopes=["liveness"], expires_at=later(), status="IN_PROGRESS", step_index=1)
    url = reverse("verification_link_sandbox:ooto_flow", args=[row.token])
    response = client.post(url, {"step": "outcome", "outcome": "cancel"}, headers={"Accept-Language": "ar"})
    assert response.status_code == 200
    assert '<html lang="ar" dir="rtl">' in response.content.decode()
    assert "يمكنك إغلاق هذه الصفحة" in response.content.decode()  # the Arabic catalogue


@pytest.mark.parametrize(
    "template", sorted(str(path.relative_to(TEMPLATES)) for path in TEMPLATES.rglob("*.html")), ids=str
)
def test_every_template_sets_lang_and_dir(template):
    for language, direction in (("ar", "rtl"), ("en", "ltr")):
        with translation.override(language):
            html = get_template(template).render({}, request=RequestFactory().get("/"))
        assert HTML_TAG.search(html).group(0) == f'<html lang="{language}" dir="{direction}">'
