"""The example project installs the sandbox only when it is in use, and wires it with the
credentials derived from its own ``SECRET_KEY``; it follows the visitor's language, and its
templates override the app's base template.

Each case imports the example's settings in a fresh interpreter (they are read from the
environment at import time), without setting Django up — but for the cases that resolve its
templates and URLs, which set it up (no database).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json
from example_project import settings as s
sandbox = s.VERIFICATION_LINK["PROVIDERS"].get("sandbox") or {}
valify = s.VERIFICATION_LINK["PROVIDERS"].get("sandbox_valify") or {}
print(json.dumps({
    "installed": "verification_link.sandbox" in s.INSTALLED_APPS,
    "aliases": sorted(s.VERIFICATION_LINK["PROVIDERS"]),
    "user_providers": s.VERIFICATION_LINK["USER_PROVIDERS"],
    "ooto_app_id": sandbox.get("APP_ID"),
    "ooto_app_key": sandbox.get("APP_KEY"),
    "valify_api_key": valify.get("API_KEY"),
    "valify_webhook_secrets": valify.get("WEBHOOK_SECRETS"),
    "sandbox_settings": getattr(s, "VERIFICATION_LINK_SANDBOX", None),
    "installed_apps": s.INSTALLED_APPS,
    "middleware": s.MIDDLEWARE,
    "languages": [code for code, _name in getattr(s, "LANGUAGES", [])],
}))
"""

SETUP_PROBE = """
import json, os
os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
import django
django.setup()
from django.conf import settings
from django.template.loader import get_template
from django.urls import reverse
from django.utils.translation import get_language_bidi, override
with override("ar"):
    bidi = get_language_bidi()
print(json.dumps({
    "base": get_template("verification_link/base.html").origin.name,
    "demo_base": get_template("demo/base.html").origin.name,
    "set_language": reverse("set_language"),
    "favicon": reverse("favicon"),
    "arabic_is_bidi": bidi,
    "language_names": [str(name) for _code, name in settings.LANGUAGES],
}))
"""


def example_settings(probe: str = PROBE, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VL_", "DJANGO_", "OOTO_", "VALIFY_"))}
    clean.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT / "example_project",
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("provider", ["sandbox", "sandbox_valify"])
def test_a_sandbox_alias_installs_the_sandbox(provider):
    from verification_link.sandbox.credentials import sandbox_credentials

    found = example_settings(VL_PROVIDER=provider, DJANGO_SECRET_KEY="site-secret-one")
    assert found["installed"] is True
    assert found["user_providers"] == [provider]
    derived = sandbox_credentials("site-secret-one")
    assert (found["ooto_app_id"], found["ooto_app_key"]) == (derived["OOTO_APP_ID"], derived["OOTO_APP_KEY"])
    assert found["valify_api_key"] == derived["VALIFY_API_KEY"]
    assert found["valify_webhook_secrets"] == [derived["VALIFY_WEBHOOK_SECRET"]]
    assert "sandbox-key" not in json.dumps(found) and "sandbox-webhook-secret" not in json.dumps(found)


def test_the_default_is_the_ooto_sandbox():
    found = example_settings()
    assert found["installed"] is True and found["user_providers"] == ["sandbox"]


@pytest.mark.parametrize(
    ("provider", "env"),
    [
        ("ooto", {"OOTO_APP_ID": "x", "OOTO_APP_KEY": "y"}),
        ("valify", {"VALIFY_API_KEY": "x", "VALIFY_WEBHOOK_SECRET": "y"}),
    ],
)
def test_a_real_provider_leaves_the_sandbox_out(provider, env):
    found = example_settings(VL_PROVIDER=provider, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="s3cret", **env)
    assert found["installed"] is False
    assert found["aliases"] == [provider]  # no sandbox alias a user or a forged URL could reach
    assert found["user_providers"] == [provider]
    assert found["sandbox_settings"] is None


def test_locale_middleware_sits_between_the_session_and_common_middleware():
    middleware = example_settings()["middleware"]
    locale = middleware.index("django.middleware.locale.LocaleMiddleware")
    assert middleware.index("django.contrib.sessions.middleware.SessionMiddleware") < locale
    assert locale < middleware.index("django.middleware.common.CommonMiddleware")
    assert middleware.count("django.middleware.locale.LocaleMiddleware") == 1


def test_the_languages_of_the_switch():
    # Lazy names: importing the settings translates nothing (it would fail before Django is set up).
    assert example_settings()["languages"] == ["en", "ar", "fr", "es"]
    assert example_settings(SETUP_PROBE)["language_names"] == ["English", "Arabic", "French", "Spanish"]


def test_the_shop_overrides_the_apps_base_template_and_serves_the_switch_and_the_icon():
    apps = example_settings()["installed_apps"]
    assert apps.index("demo") < apps.index("verification_link")  # the site's templates come first
    found = example_settings(SETUP_PROBE)
    demo_templates = ROOT / "example_project" / "demo" / "templates"
    assert Path(found["base"]) == demo_templates / "verification_link" / "base.html"
    assert Path(found["demo_base"]) == demo_templates / "demo" / "base.html"
    assert (found["set_language"], found["favicon"]) == ("/i18n/setlang/", "/favicon.ico")
    assert found["arabic_is_bidi"] is True
