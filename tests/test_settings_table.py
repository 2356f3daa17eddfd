"""The settings table: unknown keys (with a did-you-mean) and every key's type and range, each
reported by ``manage.py check`` naming the exact key — top level, per alias of every backend, and
the sandbox — and validated again where the value is used."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import Tags, run_checks
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tests.acme_provider import AcmeProvider
from verification_link import conf
from verification_link.exceptions import ConfigurationError
from verification_link.providers.ooto import OotoProvider
from verification_link.sandbox.conf import DERIVED, QUIET_AT_USE, SANDBOX_KEYS, sandbox_setting
from verification_link.settings_table import INVALID, TEXT, TOP_LEVEL, alias_keys, optional, own

ROOT = Path(__file__).resolve().parents[1]
OOTO = {"BACKEND": "verification_link.providers.ooto.OotoProvider", "APP_ID": "id", "APP_KEY": "key"}
BASE = {"DEFAULT_PROVIDER": "ooto", "PROVIDERS": {"ooto": OOTO}, "PUBLIC_BASE_URL": "https://www.example.com"}
BACKENDS = [
    "verification_link.providers.ooto.OotoProvider",
    "verification_link.providers.valify.ValifyProvider",
    "verification_link.providers.stripe_identity.StripeIdentityProvider",
    "verification_link.providers.persona.PersonaProvider",
    "verification_link.providers.onfido.OnfidoProvider",
    "verification_link.providers.veriff.VeriffProvider",
    "verification_link.providers.sumsub.SumsubProvider",
    "verification_link.providers.didit.DiditProvider",
]


def vl_messages():
    # Not the model checks: they may need the database (JSONField on Django 6.1+).
    # W004: the test settings are a staging site's (the sandbox allowed with DEBUG off).
    found = run_checks(tags=[Tags.compatibility, Tags.security])
    return [m for m in found if m.id and m.id.startswith("verification_link.") and m.id != "verification_link.W004"]


def settings_with(**changes):
    return override_settings(VERIFICATION_LINK={**BASE, **changes})


def wrong_values(kind):
    """The kind's own counterexamples that it refuses (a wrong type, one out of range)."""
    return [value for value in (kind.wrong_type, kind.out_of_range) if value is not None and kind(value) is INVALID]


def cases(table, skip=()):
    return [
        pytest.param(name, value, id=f"{name}={value!r}")
        for name, setting in table.items()
        if name not in skip
        for value in wrong_values(setting.kind)
    ]


def backend_class(path):
    from django.utils.module_loading import import_string

    return import_string(path)


def valid_alias(path):
    backend = backend_class(path)
    return {"BACKEND": path, **dict.fromkeys(backend.required_settings, "x")}


def alias_cases():
    return [
        pytest.param(path, name, value, id=f"{path.rsplit('.', 1)[1]}.{name}={value!r}")
        for path in BACKENDS
        for name, setting in alias_keys(backend_class(path)).items()
        for value in wrong_values(setting.kind)
    ]


def assert_reported(messages, check_id, key):
    named = [m for m in messages if m.id == check_id and key in m.msg]
    assert named, f"no {check_id} naming {key}: {[(m.id, m.msg) for m in messages]}"


# -- unknown keys ------------------------------------------------------------------------------------


def test_an_unknown_top_level_key_is_an_error_with_a_did_you_mean():
    with settings_with(MAX_ATTEMPT=3):
        messages = vl_messages()
    [message] = [m for m in messages if m.id == "verification_link.E015"]
    assert message.is_serious()
    assert 'VERIFICATION_LINK["MAX_ATTEMPT"]' in message.msg
    assert "'MAX_ATTEMPTS'" in message.hint


def test_an_unknown_alias_key_is_an_error_naming_its_path_with_a_did_you_mean():
    with settings_with(PROVIDERS={"ooto": {**OOTO, "APP_KEYY": "key"}}):
        messages = vl_messages()
    [message] = [m for m in messages if m.id == "verification_link.E016"]
    assert message.is_serious()
    assert 'VERIFICATION_LINK["PROVIDERS"]["ooto"]["APP_KEYY"]' in message.msg
    assert "'APP_KEY'" in message.hint


def test_a_misspelt_webhook_secret_key_is_reported():
    # The typo that would leave every webhook refused (or a guard off) without a word.
    valify = {"BACKEND": "verification_link.providers.valify.ValifyProvider", "API_KEY": "k", "WEBHOOK_SECRET": "s"}
    with settings_with(PROVIDERS={"ooto": OOTO, "valify": valify}):
        messages = vl_messages()
    [message] = [m for m in messages if m.id == "verification_link.E016"]
    assert 'VERIFICATION_LINK["PROVIDERS"]["valify"]["WEBHOOK_SECRET"]' in message.msg
    assert "'WEBHOOK_SECRETS'" in message.hint


def test_webhook_keys_are_unknown_to_a_backend_that_receives_no_webhooks():
    with settings_with(PROVIDERS={"ooto": {**OOTO, "WEBHOOK_SECRETS": ["s"]}}):
        messages = vl_messages()
    assert_reported(messages, "verification_link.E016", 'VERIFICATION_LINK["PROVIDERS"]["ooto"]["WEBHOOK_SECRETS"]')


def test_an_unknown_sandbox_key_is_an_error_with_a_did_you_mean():
    with override_settings(VERIFICATION_LINK_SANDBOX={"ALLOW_WITHOUT_DEBUG": True, "CALLBACK_SYNK": True}):
        messages = vl_messages()
    [message] = [m for m in messages if m.id == "verification_link.E017"]
    assert 'VERIFICATION_LINK_SANDBOX["CALLBACK_SYNK"]' in message.msg
    assert "'CALLBACK_SYNC'" in message.hint


def test_a_backend_that_declares_no_keys_gets_a_warning_not_an_error():
    acme = {"BACKEND": "tests.acme_provider.AcmeProvider", "API_TOKEN": "t", "REGION": "eu"}
    assert "config_keys" not in vars(AcmeProvider)
    with settings_with(PROVIDERS={"ooto": OOTO, "acme": acme}):
        messages = vl_messages()
    assert [(type(m), m.id) for m in messages] == [(CheckWarning, "verification_link.W008")]
    assert 'VERIFICATION_LINK["PROVIDERS"]["acme"]["REGION"]' in messages[0].msg


class TenantOoto(OotoProvider):
    """A site's subclass of a built-in backend that reads a key of its own, declaring none."""

    def auth_headers(self):
        return {**super().auth_headers(), "X-Tenant": str(self.setting("TENANT"))}


class DeclaredTenantOoto(TenantOoto):
    config_keys = {**OotoProvider.config_keys, "TENANT": own(None, optional(TEXT), "The tenant sent with each call.")}


def test_a_subclass_of_a_built_in_backend_that_declares_no_keys_gets_a_warning_for_its_own_only():
    alias = {**OOTO, "BACKEND": "tests.test_settings_table.TenantOoto", "TTL": 600, "TENANT": "t1"}
    with settings_with(PROVIDERS={"ooto": alias}):
        messages = vl_messages()
    assert [(type(m), m.id) for m in messages] == [(CheckWarning, "verification_link.W008")]
    assert 'VERIFICATION_LINK["PROVIDERS"]["ooto"]["TENANT"]' in messages[0].msg
    assert "**OotoProvider.config_keys" in messages[0].hint


def test_a_subclass_that_declares_its_keys_is_checked_like_a_built_in_backend():
    alias = {**OOTO, "BACKEND": "tests.test_settings_table.DeclaredTenantOoto", "TTL": 600, "TENANT": "t1"}
    with settings_with(PROVIDERS={"ooto": alias}):
        assert vl_messages() == []
    with settings_with(PROVIDERS={"ooto": {**alias, "TENANTT": "t1"}}):
        messages = vl_messages()
    assert [m.id for m in messages] == ["verification_link.E016"]
    assert 'VERIFICATION_LINK["PROVIDERS"]["ooto"]["TENANTT"]' in messages[0].msg
    assert "'TENANT'" in messages[0].hint


def test_the_test_settings_and_every_default_pass():
    assert vl_messages() == []
    for table in (TOP_LEVEL, SANDBOX_KEYS, *(alias_keys(backend_class(path)) for path in BACKENDS)):
        for name, setting in table.items():
            if not setting.required and setting.default is not DERIVED:  # derived: read from SECRET_KEY
                assert setting.kind(setting.default) is not INVALID, name


# -- wrong types and ranges, every key -----------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), cases(TOP_LEVEL))
def test_a_wrong_top_level_value_is_reported_naming_the_key(name, value):
    with settings_with(**{name: value}):
        messages = vl_messages()
    assert_reported(messages, TOP_LEVEL[name].check_id, conf.key_path(name))
    assert all(m.is_serious() for m in messages if m.id == TOP_LEVEL[name].check_id)


@pytest.mark.parametrize(("path", "name", "value"), alias_cases())
def test_a_wrong_alias_value_is_reported_naming_the_key(path, name, value):
    alias = {**valid_alias(path), name: value}
    with settings_with(PROVIDERS={"ooto": OOTO, "other": alias}):
        messages = vl_messages()
    row = alias_keys(backend_class(path))[name]
    assert_reported(messages, row.check_id, conf.key_path("PROVIDERS", "other", name))


@pytest.mark.parametrize(("name", "value"), cases(SANDBOX_KEYS))
def test_a_wrong_sandbox_value_is_reported_naming_the_key(name, value):
    # DEBUG is off in the test settings: ALLOW_WITHOUT_DEBUG's own check (E012) speaks for it.
    with override_settings(VERIFICATION_LINK_SANDBOX={name: value}):
        messages = vl_messages()
    assert_reported(messages, SANDBOX_KEYS[name].check_id, f'VERIFICATION_LINK_SANDBOX["{name}"]')


def test_messages_never_show_a_secret_value():
    secret = "sk_live_TOPSECRET"
    stripe = {"BACKEND": BACKENDS[2], "API_KEY": secret, "WEBHOOK_SECRETS": [secret, 5], "API_KEYY": secret}
    with settings_with(PROVIDERS={"ooto": OOTO, "stripe": stripe}):
        messages = vl_messages()
    assert {m.id for m in messages} >= {"verification_link.E016", "verification_link.E009"}
    assert all("TOPSECRET" not in f"{m.msg} {m.hint}" for m in messages)


def test_one_message_per_key_where_a_specific_check_already_names_it():
    with settings_with(PROVIDERS={"ooto": {**OOTO, "TTL": "1h"}}):
        messages = vl_messages()
    assert [m.id for m in messages] == ["verification_link.E006"]


# -- where the value is used ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), cases(TOP_LEVEL, skip=set(TOP_LEVEL) - conf.FAIL_CLOSED))
def test_the_resolver_refuses_a_wrong_value_of_a_guard_naming_the_key(name, value):
    with settings_with(**{name: value}), pytest.raises(ConfigurationError) as raised:
        conf.get(name)
    assert conf.key_path(name) in str(raised.value)
    assert repr(value) not in str(raised.value)


@pytest.mark.parametrize(("name", "value"), cases(TOP_LEVEL, skip=conf.RESOLVED_ELSEWHERE | conf.FAIL_CLOSED))
def test_the_resolver_logs_a_wrong_value_of_any_other_key_and_uses_the_default(name, value, caplog):
    with settings_with(**{name: value}), caplog.at_level(logging.ERROR, logger="verification_link.conf"):
        assert conf.get(name) == conf.DEFAULTS[name]
    [record] = caplog.records
    assert conf.key_path(name) in record.getMessage()
    assert repr(value) not in record.getMessage()


@pytest.mark.parametrize(("name", "value"), cases(TOP_LEVEL, skip=set(TOP_LEVEL) - set(conf.GUARDS)))
def test_a_guard_with_a_wrong_value_keeps_its_default_and_logs_the_key(name, value, caplog):
    with settings_with(**{name: value}), caplog.at_level(logging.ERROR, logger="verification_link.conf"):
        assert conf.guarded(name) == conf.DEFAULTS[name]
    assert conf.key_path(name) in caplog.text


@pytest.mark.parametrize(("name", "value"), cases(SANDBOX_KEYS, skip=QUIET_AT_USE))
def test_a_wrong_sandbox_value_is_refused_where_it_is_read(name, value):
    with override_settings(VERIFICATION_LINK_SANDBOX={name: value}), pytest.raises(ImproperlyConfigured) as raised:
        sandbox_setting(name)
    assert f'VERIFICATION_LINK_SANDBOX["{name}"]' in str(raised.value)


def test_digits_from_the_environment_count_as_the_number():
    with settings_with(POLL_INTERVAL="30", EXPIRY_GRACE="0", CONNECT_TIMEOUT="7"):
        assert (conf.get("POLL_INTERVAL"), conf.get("EXPIRY_GRACE"), conf.get("CONNECT_TIMEOUT")) == (30, 0, 7)
        assert vl_messages() == []


def test_a_blank_environment_variable_is_unset():
    with settings_with(PUBLIC_BASE_URL="", DEFAULT_NEXT_URL=""):
        assert conf.get("PUBLIC_BASE_URL") is None
        assert conf.get("DEFAULT_NEXT_URL") is None


# -- the example project -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["sandbox", "sandbox_valify", "sandbox_persona", "sandbox_didit"])
def test_the_example_project_passes_every_check(provider):
    env = {"PATH": "/usr/bin:/bin", "VL_PROVIDER": provider, "DJANGO_DEBUG": "1"}
    proc = subprocess.run(
        [sys.executable, "example_project/manage.py", "check", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_a_guard_set_to_an_integral_float_is_the_number_it_equals_without_an_error(caplog):
    with settings_with(RETENTION_DAYS=30.0, MAX_EVENT_BODY_BYTES=4096.0), caplog.at_level(logging.ERROR):
        assert vl_messages() == []
        assert (conf.guarded("RETENTION_DAYS"), conf.guarded("MAX_EVENT_BODY_BYTES")) == (30, 4096)
    assert caplog.records == []
