"""Structured log fields: every record of our loggers carries ``session_id``, ``provider`` and
``source`` — set by the context of the work (a start, a webhook, a callback, a poll, a staff
action), empty strings outside any — without a log call of ours naming them."""

import importlib
import json
import logging
import pkgutil
from datetime import timedelta

import pytest
from django.utils import timezone

import verification_link
from verification_link import logfields, services
from verification_link.exceptions import ProviderError
from verification_link.logfields import LogFieldsFilter
from verification_link.models import VerificationSession

from .test_standard_webhooks import SECRET, library_headers, post, standard_valify, valify_body  # noqa: F401

pytestmark = pytest.mark.django_db


def ours(caplog):
    return [record for record in caplog.records if record.name.split(".")[0] == "verification_link"]


def fields(record):
    return (record.session_id, record.provider, record.source)


def test_a_start_logs_its_session_provider_and_source(fake_ooto, user, caplog):
    caplog.set_level(logging.INFO, logger="verification_link")
    session = services.start_verification(user=user, provider="ooto")
    created = [record for record in ours(caplog) if "created at" in record.getMessage()]
    assert [fields(record) for record in created] == [(str(session.pk), "ooto", "start")]


def test_a_failed_start_names_the_session_it_would_have_been(fake_ooto, user, caplog):
    caplog.set_level(logging.INFO, logger="verification_link")
    fake_ooto.fail_next(500)
    with pytest.raises(ProviderError):
        services.start_verification(user=user)
    records = ours(caplog)
    assert records
    for record in records:
        assert record.provider == "ooto" and record.source == "start" and len(record.session_id) == 36


def test_a_webhook_logs_its_session_provider_and_source(standard_valify, client, caplog, commit):  # noqa: F811
    session = VerificationSession.objects.create(provider="valify", token="tok-l1", status="IN_PROGRESS")
    body = valify_body(session)
    caplog.set_level(logging.INFO, logger="verification_link")
    with commit():
        assert post(client, body, library_headers(SECRET, body, msg_id="msg_l1")).status_code == 200
    moved = [record for record in ours(caplog) if "->" in record.getMessage()]
    assert [fields(record) for record in moved] == [(str(session.pk), "valify", "webhook")]


def test_a_refused_webhook_logs_no_session_and_only_a_configured_alias(standard_valify, client, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="verification_link")
    body = b"{}"
    assert post(client, body, library_headers("whsec_" + "A" * 32, body)).status_code == 401
    hostile = "evil\nalias"
    client.post(f"/verify/webhook/{hostile}/", data=body, content_type="application/json")
    records = ours(caplog)
    assert {fields(record) for record in records} <= {("", "valify", "webhook"), ("", "", "webhook")}
    assert ("", "valify", "webhook") in {fields(record) for record in records}


def test_a_callback_logs_its_session(fake_ooto, user, client, caplog, commit):
    with commit():
        session = services.start_verification(user=user)
    fake_ooto.complete(session)
    caplog.set_level(logging.INFO, logger="verification_link")
    with commit():
        url = f"/verify/callback/ooto/{session.callback_secret}/"
        assert client.post(url, data=b"{}", content_type="application/json").status_code == 202
    moved = [record for record in ours(caplog) if "->" in record.getMessage()]
    assert [fields(record) for record in moved] == [(str(session.pk), "ooto", "callback")]


def test_a_poll_sweep_logs_each_session_it_polls(fake_ooto, user, caplog, vl_settings):
    vl_settings(REUSE_OPEN_SESSIONS=False)
    sessions = [services.start_verification(user=user) for _ in range(2)]
    for session in sessions:
        fake_ooto.complete(session)
    caplog.set_level(logging.INFO, logger="verification_link")
    services.run_poll_sweep(now=timezone.now() + timedelta(hours=1), concurrency=1)
    moved = sorted(fields(record) for record in ours(caplog) if "->" in record.getMessage())
    assert moved == sorted((str(session.pk), "ooto", "poll") for session in sessions)


def test_a_failing_poll_names_its_session(fake_ooto, user, caplog):
    session = services.start_verification(user=user)
    fake_ooto.fail_next(500)
    caplog.set_level(logging.INFO, logger="verification_link")
    services.run_poll_sweep(now=timezone.now() + timedelta(hours=1), concurrency=1)
    failed = [record for record in ours(caplog) if "refresh failed" in record.getMessage()]
    assert [fields(record) for record in failed] == [(str(session.pk), "ooto", "poll")]


def test_a_staff_cancel_logs_admin(fake_ooto, user, caplog, commit):
    session = services.start_verification(user=user)
    caplog.set_level(logging.INFO, logger="verification_link")
    services.cancel_session(session)
    moved = [record for record in ours(caplog) if "->" in record.getMessage()]
    assert [fields(record) for record in moved] == [(str(session.pk), "ooto", "admin")]


@pytest.mark.parametrize("name", ["verification_link", "verification_link.tasks", "verification_link.conf"])
def test_outside_any_context_the_fields_are_empty_not_missing(name, caplog, fake_ooto, user):
    services.start_verification(user=user)  # a context before this one must not leak into it
    caplog.set_level(logging.INFO, logger="verification_link")
    logging.getLogger(name).info("nothing in particular")
    [record] = [record for record in ours(caplog) if record.getMessage() == "nothing in particular"]
    assert fields(record) == ("", "", "")


def test_a_field_given_by_the_call_is_kept_and_nested_contexts_restore():
    record = logging.LogRecord("verification_link", logging.INFO, __file__, 1, "m", (), None)
    record.session_id = "mine"
    with logfields.log_context(session="s-1", provider="ooto", source="poll"):
        with logfields.log_context(source="admin"):
            assert logfields.current() == logfields.LogFields("s-1", "ooto", "admin")
            LogFieldsFilter().filter(record)
        assert logfields.current().source == "poll"
    assert logfields.current() == logfields.LogFields()
    assert fields(record) == ("mine", "ooto", "admin")
    logfields.bind(session="outside")  # outside any context: nothing sticks to the thread
    assert logfields.current() == logfields.LogFields()


def test_a_json_formatter_gets_the_fields(fake_ooto, user):
    lines = []

    class JsonLines(logging.Handler):
        def emit(self, record):
            lines.append(json.dumps({name: getattr(record, name) for name in ("message", *logfields.FIELDS)}))

        def handle(self, record):
            record.message = record.getMessage()
            return super().handle(record)

    handler = JsonLines(level=logging.INFO)
    logger = logging.getLogger("verification_link")
    logger.addHandler(handler)
    try:
        session = services.start_verification(user=user)
    finally:
        logger.removeHandler(handler)
    assert {"session_id": str(session.pk), "provider": "ooto", "source": "start"}.items() <= json.loads(
        lines[-1]
    ).items()


def test_every_logger_of_ours_has_the_filter():
    for module in pkgutil.walk_packages(verification_link.__path__, "verification_link."):
        if ".migrations." not in module.name:
            importlib.import_module(module.name)
    loggers = {
        name: logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and name.split(".")[0] == "verification_link"
    }
    assert loggers
    missing = [
        name for name, logger in loggers.items() if not any(isinstance(f, LogFieldsFilter) for f in logger.filters)
    ]
    assert missing == [], f"add these to logfields.LOGGER_NAMES: {missing}"
