"""The sandbox's credentials and webhook secret are derived per site from ``SECRET_KEY``.

Fixed strings in a public package are known to everyone; derived ones differ per site, are read
lazily (``override_settings`` works), and a site's settings.py configures its provider aliases
with the same values through ``sandbox_credentials(SECRET_KEY)`` before Django is set up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

import verification_link
from verification_link.sandbox import conf as sandbox_conf
from verification_link.sandbox.conf import sandbox_setting
from verification_link.sandbox.credentials import CREDENTIAL_NAMES, EMULATOR_CREDENTIALS, sandbox_credentials

ROOT = Path(__file__).resolve().parents[2]
FIXED = ("sandbox-app", "sandbox-key", "sandbox-valify-key", "sandbox-webhook-secret")
NAMES = ("OOTO_APP_ID", "OOTO_APP_KEY", "VALIFY_API_KEY", "VALIFY_WEBHOOK_SECRET", *EMULATOR_CREDENTIALS)


def test_every_value_is_derived_from_the_secret_key():
    one, other = sandbox_credentials("site-one-secret"), sandbox_credentials("site-two-secret")
    assert tuple(one) == NAMES == CREDENTIAL_NAMES
    for name in NAMES:
        assert one[name] != other[name], name
        assert one[name] == sandbox_credentials("site-one-secret")[name]  # stable across restarts
        assert one[name] not in FIXED and "site-one-secret" not in one[name]
    # One value known (the app id is sent in the clear) tells nothing of another.
    assert len(set(one.values())) == len(NAMES)


def test_emulator_keys_carry_the_real_providers_test_prefixes():
    keys = sandbox_credentials("k")
    assert keys["STRIPE_IDENTITY_API_KEY"].startswith("sk_test_")
    assert keys["STRIPE_IDENTITY_WEBHOOK_SECRET"].startswith("whsec_")
    assert keys["SUMSUB_APP_TOKEN"].startswith("sbx:")
    for name, prefix in EMULATOR_CREDENTIALS.items():
        assert keys[name].startswith(prefix) and len(keys[name]) >= len(prefix) + 32, name


def test_the_derivation_is_hmac_sha256_of_the_name_under_the_secret_key():
    import hashlib
    import hmac

    key = sandbox_credentials("k")["OOTO_APP_KEY"]
    digest = hmac.new(b"k", b"verification_link.sandbox.OOTO_APP_KEY", hashlib.sha256).hexdigest()
    assert len(key) >= 32 and digest.startswith(key)


def test_bytes_and_str_secret_keys_agree_and_an_empty_one_is_refused():
    assert sandbox_credentials(b"k") == sandbox_credentials("k")
    with pytest.raises(ValueError, match="SECRET_KEY"):
        sandbox_credentials("")


def test_the_values_never_show_in_a_repr():
    credentials = sandbox_credentials("k")
    for text in (repr(credentials), str(credentials), f"{credentials}"):
        for value in credentials.values():
            assert value not in text
    assert dict(credentials)["VALIFY_API_KEY"] == credentials["VALIFY_API_KEY"]  # still a plain mapping


def test_the_sandbox_defaults_are_the_derived_values(settings):
    expected = sandbox_credentials(settings.SECRET_KEY)
    assert {name: sandbox_setting(name) for name in NAMES} == dict(expected)
    settings.SECRET_KEY = "another-site-secret"  # read lazily: at each use
    assert {name: sandbox_setting(name) for name in NAMES} == dict(sandbox_credentials("another-site-secret"))


def test_explicit_settings_still_override(settings):
    settings.VERIFICATION_LINK_SANDBOX = {"OOTO_APP_KEY": "my-key", "VALIFY_WEBHOOK_SECRET": ""}
    assert sandbox_setting("OOTO_APP_KEY") == "my-key"
    assert sandbox_setting("VALIFY_WEBHOOK_SECRET") == ""  # empty still means "send no webhook"
    assert sandbox_setting("VALIFY_API_KEY") == sandbox_credentials(settings.SECRET_KEY)["VALIFY_API_KEY"]


def test_the_fixed_strings_are_gone():
    assert not set(FIXED) & {str(value) for value in sandbox_conf.DEFAULTS.values()}
    package = Path(verification_link.__file__).resolve().parent
    for path in package.rglob("*.py"):
        text = path.read_text()
        for fixed in FIXED:
            assert f'"{fixed}"' not in text, f"{fixed} in {path}"


@pytest.mark.django_db
@pytest.mark.urls("tests.sandbox.urls_sandbox")
def test_the_emulators_refuse_the_old_fixed_credentials(client):
    ooto = client.post(
        reverse("verification_link_sandbox:ooto_create"),
        data=json.dumps({"scopes": ["liveness"]}),
        content_type="application/json",
        headers={"APP-ID": "sandbox-app", "APP-KEY": "sandbox-key"},
    )
    valify = client.post(
        reverse("verification_link_sandbox:valify_create") + "?lang=en",
        data=json.dumps({"return_url": "https://a.example/", "reference_id": "r", "expires_at": "2999-01-01T00:00Z"}),
        content_type="application/json",
        headers={"X-Valify-Api-Key": "sandbox-valify-key"},
    )
    assert (ooto.status_code, valify.status_code) == (401, 401)


def test_the_helper_is_safe_to_import_from_a_settings_module():
    # A settings.py imports it before Django is set up: no settings, no app registry, no models.
    code = (
        "import sys\n"
        "from verification_link.sandbox.credentials import sandbox_credentials\n"
        "values = sandbox_credentials('k')\n"
        "assert len(values) == 17\n"
        "loaded = [m for m in sys.modules if m == 'django.db.models' or m.startswith(('django.conf', 'django.apps'))]\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
