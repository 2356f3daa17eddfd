"""Stripe Identity: the provider contract, webhooks signed by Stripe's own SDK, the status mapping,
check rows, identity data kept from staff and from stored bodies, hostile answers, cancel and redact."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl

import pytest
import responses
import stripe
from django.core.checks import Tags, run_checks
from responses import matchers

from verification_link import services
from verification_link.exceptions import (
    ConfigurationError,
    InvalidRequest,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
)
from verification_link.models import VerificationSession
from verification_link.providers import get_provider
from verification_link.providers.types import CheckRow
from verification_link.webhooks import WebhookRefused

from .provider_contract import APPROVED, DECLINED, OPEN, ProviderContract

Status = VerificationSession.Status
ALIAS = "stripe_identity"
BASE = "https://api.stripe.test"
SESSIONS = f"{BASE}/v1/identity/verification_sessions"
API_KEY = "sk_test_contract-key-SECRET"

#: What Stripe answers for each contract outcome (status, last_error).
OUTCOMES = {
    OPEN: ("processing", None),
    APPROVED: ("verified", None),
    DECLINED: ("requires_input", {"code": "selfie_face_mismatch", "reason": "The face does not match."}),
}
REPORT = {
    "id": "vr_1",
    "object": "identity.verification_report",
    "type": "document",
    "document": {
        "status": "verified",
        "error": None,
        "type": "passport",
        "first_name": "Jenny",
        "last_name": "Rosen",
        "dob": {"day": 1, "month": 1, "year": 1990},
        "number": "P1234567",
        "address": {"city": "Paris"},
        "files": ["file_front"],
        "issuing_country": "FR",
    },
    "selfie": {
        "status": "unverified",
        "error": {"code": "selfie_face_mismatch", "reason": "no match"},
        "document": "file_doc_face",
        "selfie": "file_selfie",
    },
    "email": {"status": "verified", "error": None, "email": "jenny@example.com"},
}


def vs(status="requires_input", last_error=None, **extra):
    """A VerificationSession as Stripe sends it."""
    return {
        "id": "vs_0001",
        "object": "identity.verification_session",
        "client_reference_id": extra.pop("ours", None),
        "last_error": last_error,
        "last_verification_report": None,
        "livemode": False,
        "metadata": {},
        "status": status,
        "type": "document",
        "url": "https://verify.stripe.com/start/test_abc" if status == "requires_input" else None,
        **extra,
    }


def event(obj, kind=None, event_id="evt_1"):
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2026-10-28.endive",
        "type": kind or f"identity.verification_session.{obj['status']}",
        "data": {"object": obj},
    }


class TestStripeIdentityContract(ProviderContract):
    ALIAS = ALIAS
    BASE_URL = BASE
    SECRET = "whsec_current-webhook-SECRET"
    OLD_SECRET = "whsec_old-webhook-SECRET"
    SIGNS_TIMESTAMP = True
    WEBHOOK_PULLS = True  # every state event is confirmed by a retrieve (the report expanded), but "canceled"
    CREATE_ENDPOINT = ("POST", SESSIONS)
    SIGNATURE_HEADER = "Stripe-Signature"

    def alias_config(self):
        return {
            "BACKEND": "verification_link.providers.stripe_identity.StripeIdentityProvider",
            "API_KEY": API_KEY,
            "BASE_URL": BASE,
            "WEBHOOK_SECRETS": [self.SECRET, self.OLD_SECRET],
        }

    def external_id(self):
        return "vs_0001"

    def hosted_url(self):
        return "https://verify.stripe.com/start/test_abc"

    def mock_create(self, rsps):
        rsps.add("POST", SESSIONS, json=vs())

    def assert_create_request(self, calls):
        (call,) = calls
        assert call.request.method == "POST"
        assert call.request.url == SESSIONS
        assert call.request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert "Stripe-Version" not in call.request.headers
        form = dict(parse_qsl(call.request.body.decode()))
        session = VerificationSession.objects.get()
        assert form == {
            "type": "document",
            "client_reference_id": str(session.pk),
            "metadata[verification_session_id]": str(session.pk),
            "return_url": f"https://www.example.com/verify/s/{session.pk}/return/",
        }
        assert session.token == ""  # the client secret is for Stripe.js, never kept

    def mock_status(self, rsps, session, outcome):
        status, error = OUTCOMES[outcome]
        rsps.add(
            "GET",
            f"{SESSIONS}/{session.external_id}",
            json=vs(status, error, ours=str(session.pk)),
            match=[matchers.query_string_matcher("expand%5B%5D=last_verification_report")],
        )

    def mock_cancel(self, rsps, session):
        rsps.add("POST", f"{SESSIONS}/{self.external_id()}/cancel", json=vs("canceled"))

    def webhook(self, session, outcome, *, secret=None, timestamp=None, delivery="evt_1"):
        status, error = OUTCOMES[outcome]
        payload = json.dumps(event(vs(status, error, ours=str(session.pk)), event_id=delivery))
        header = stripe.WebhookSignature.generate_signature_header(payload, secret or self.SECRET, timestamp)
        return payload.encode(), {"Stripe-Signature": header}

    # -- Stripe's own versions of two contract tests ---------------------------------------------

    def test_cancel(self, rsps, started, backend):
        """The contract's cancel, and the call Stripe receives."""
        super().test_cancel(rsps, started, backend)
        call = rsps.calls[-1].request
        assert (call.method, call.url, call.body) == ("POST", f"{SESSIONS}/vs_0001/cancel", None)

    def test_webhook_declined_fails_with_reasons(self, client, rsps, started, signal_log, commit):
        """Stripe has no final decline: a failed check sends the session back to ``requires_input``
        with ``last_error``, and the user may retry in the same session. So the Stripe equivalent of
        "declined" leaves the session open (IN_PROGRESS) with verdict ``resubmission`` and the
        failed check's code as reason, finishes nothing and decides nothing; the retry that passes
        then finishes it once, approved. (The open event is confirmed by a retrieve.)"""
        self.mock_status(rsps, started, DECLINED)
        response = self.deliver(client, rsps, started, DECLINED, commit)
        assert response.status_code == 200, response.content
        assert rsps.calls[-1].request.method == "GET"  # confirmed at Stripe, not taken from the body
        started.refresh_from_db()
        assert started.status == Status.IN_PROGRESS
        assert not started.is_final
        assert started.decision == ""
        assert (started.provider_status, started.provider_verdict) == ("requires_input", "resubmission")
        assert started.provider_reasons == ["selfie_face_mismatch"]
        assert signal_log.of("verification_finished") == []
        assert self.deliver(client, rsps, started, APPROVED, commit, delivery="evt_2").status_code == 200
        started.refresh_from_db()
        assert (started.status, started.decision) == (Status.DONE, VerificationSession.Decision.APPROVED)
        assert started.provider_reasons == []
        assert len(signal_log.of("verification_finished")) == 1

    # -- Stripe-specific -------------------------------------------------------------------------

    def test_the_sdk_verifies_what_our_verifier_signs(self, backend):
        body = json.dumps(event(vs("verified")))
        headers = backend.webhook_verifier().sign(body.encode())
        assert stripe.WebhookSignature.verify_header(body, headers["Stripe-Signature"], self.SECRET, tolerance=300)
        parsed = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], self.SECRET)
        assert parsed.type == "identity.verification_session.verified"
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.WebhookSignature.verify_header(body, headers["Stripe-Signature"], self.OLD_SECRET)

    def test_the_key_is_the_whsec_string_not_its_decoding(self, backend):
        import hashlib
        import hmac

        body = b'{"id": "evt_1"}'
        stamp = int(time.time())
        mine = hmac.new(self.SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        backend.webhook_verifier().verify({"Stripe-Signature": f"t={stamp},v1={mine}"}, body)
        sdk = stripe.WebhookSignature.generate_signature_header(body.decode(), self.SECRET, stamp)
        assert sdk == f"t={stamp},v1={mine}"

    def test_tampered_body_and_other_schemes_are_refused(self, backend):
        body = json.dumps(event(vs("verified")))
        header = stripe.WebhookSignature.generate_signature_header(body, self.SECRET)
        verifier = backend.webhook_verifier()
        with pytest.raises(WebhookRefused):
            verifier.verify({"Stripe-Signature": header}, body.replace("verified", "canceled").encode())
        with pytest.raises(WebhookRefused):
            verifier.verify({"Stripe-Signature": header.replace("v1=", "v0=")}, body.encode())
        stamp = header.split(",")[0]
        verifier.verify({"Stripe-Signature": f"{stamp},v1=deadbeef,{header.split(',')[1]}"}, body.encode())

    def test_open_event_applies_its_body_without_pull(self, client, rsps, started, settings, commit):
        config = {**self.alias_config(), "PULL_OPEN_EVENTS": False}
        settings.VERIFICATION_LINK = {
            **settings.VERIFICATION_LINK,
            "PROVIDERS": {**settings.VERIFICATION_LINK["PROVIDERS"], ALIAS: config},
        }
        assert self.deliver(client, rsps, started, DECLINED, commit).status_code == 200
        assert not [call for call in rsps.calls if call.request.method == "GET"]  # no retrieve
        started.refresh_from_db()
        assert (started.status, started.provider_verdict) == (Status.IN_PROGRESS, "resubmission")

    def test_webhook_names_the_session_by_our_id_alone(self, client, rsps, started, commit):
        VerificationSession.objects.filter(pk=started.pk).update(external_id="vs_other")
        rsps.add("GET", f"{SESSIONS}/vs_other", json=vs("verified", ours=str(started.pk)))  # the confirming retrieve
        body, headers = self.webhook(started, APPROVED)
        with commit():
            assert json.loads(self.post_webhook(client, body, headers).content)["status"] == "processed"
        started.refresh_from_db()
        assert started.status == Status.DONE

    def test_redacted_and_foreign_events_are_ignored(self, client, started, commit):
        for kind in ("identity.verification_session.redacted", "payment_intent.succeeded"):
            payload = json.dumps(event(vs("verified", ours=str(started.pk)), kind=kind, event_id=kind))
            header = stripe.WebhookSignature.generate_signature_header(payload, self.SECRET)
            with commit():
                response = self.post_webhook(client, payload.encode(), {"Stripe-Signature": header})
            assert json.loads(response.content)["status"] == "ignored"
        started.refresh_from_db()
        assert not started.is_final

    def test_stored_webhook_body_keeps_no_identity_data(self, client, rsps, started, commit):
        obj = vs("verified", ours=str(started.pk), verified_outputs={"first_name": "Jenny", "dob": {"year": 1990}})
        obj["client_secret"] = "vs_0001_secret_SECRET"
        payload = json.dumps(event(obj))
        rsps.add("GET", f"{SESSIONS}/{started.external_id}", json=obj)  # the retrieve that confirms it
        header = stripe.WebhookSignature.generate_signature_header(payload, self.SECRET)
        with commit():
            self.post_webhook(client, payload.encode(), {"Stripe-Signature": header})
        stored = started.events.filter(kind="webhook").latest("id")
        assert "Jenny" not in stored.body and "1990" not in stored.body and "SECRET" not in stored.body
        assert json.loads(stored.body)["data"]["object"]["status"] == "verified"
        started.refresh_from_db()
        assert started.result["verified_outputs"]["first_name"] == "Jenny"  # kept for permitted staff


# -- mapping, results ----------------------------------------------------------------------------------


@pytest.fixture
def stripe_backend(settings, db):
    settings.VERIFICATION_LINK = {
        **settings.VERIFICATION_LINK,
        "PROVIDERS": {
            **settings.VERIFICATION_LINK["PROVIDERS"],
            ALIAS: {
                "BACKEND": "verification_link.providers.stripe_identity.StripeIdentityProvider",
                "API_KEY": API_KEY,
                "BASE_URL": BASE,
                "WEBHOOK_SECRETS": ["whsec_x"],
            },
        },
    }
    return get_provider(ALIAS)


@pytest.mark.parametrize(
    ("status", "last_error", "ours", "verdict", "reasons"),
    [
        ("requires_input", None, Status.CREATED, "", ()),
        (
            "requires_input",
            {"code": "document_expired", "reason": "x"},
            Status.IN_PROGRESS,
            "resubmission",
            ("document_expired",),
        ),
        ("requires_input", {"code": "abandoned", "reason": "x"}, Status.IN_PROGRESS, "resubmission", ("abandoned",)),
        ("requires_input", {"code": None, "reason": None}, Status.IN_PROGRESS, "resubmission", ()),
        ("processing", None, Status.IN_PROGRESS, "", ()),
        ("verified", None, Status.DONE, "approved", ()),
        ("canceled", None, Status.CANCELED, "", ()),
        ("canceled", {"code": "consent_declined", "reason": "x"}, Status.CANCELED, "", ("consent_declined",)),
    ],
)
def test_every_status_maps(stripe_backend, status, last_error, ours, verdict, reasons):
    report = stripe_backend.parse_session(vs(status, last_error))
    assert (report.status, report.provider_status, report.verdict, report.reasons) == (ours, status, verdict, reasons)
    assert report.result["status"] == status


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "verified",
        {},
        {"status": "approved"},
        {"status": "VERIFIED"},
        {"status": ["verified"]},
        {"status": "requires_input", "last_error": "document_expired"},
        {"status": "requires_input", "last_error": {"code": 7}},
        {"status": "verified", "last_verification_report": 12},
        {"status": "verified", "last_verification_report": {"document": "verified"}},
        {"status": "verified", "verified_outputs": ["Jenny"]},
        {"status": "verified", "redaction": "redacted"},
        {"status": "verified", "metadata": {"x": float("inf")}, "verified_outputs": {"x": float("nan")}},
    ],
)
def test_hostile_status_answers_are_unavailable(stripe_backend, body):
    with pytest.raises(ProviderUnavailable):
        stripe_backend.parse_session(body)


@pytest.mark.parametrize(
    "answer",
    [
        [],
        {"url": "https://verify.stripe.com/x"},
        {"id": "vs_1"},
        {"id": "vs_1", "url": "javascript:alert(1)"},
        {"id": 5, "url": "https://verify.stripe.com/x"},
        {"id": "vs_1", "url": ["https://x"]},
    ],
)
def test_hostile_create_answers_are_unavailable(stripe_backend, user, answer):
    with responses.RequestsMock() as rsps:
        rsps.add("POST", SESSIONS, json=answer)
        with pytest.raises(ProviderUnavailable):
            services.start_verification(user=user, provider=ALIAS)
    assert not VerificationSession.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"type": ["x"], "id": "evt_1"},
        {"type": "identity.verification_session.verified", "data": []},
        {"type": "identity.verification_session.verified", "data": {"object": "vs_1"}},
        {"type": "identity.verification_session.verified", "id": 9, "data": {"object": {"status": {}}}},
        {"type": "identity.verification_session.verified", "id": "evt_1", "data": {"object": {"id": 3, "metadata": 4}}},
    ],
)
def test_hostile_webhook_bodies_never_raise(stripe_backend, payload):
    parsed = stripe_backend.parse_webhook(payload)
    assert parsed.report is None
    assert parsed.ignored or not parsed.external_id


def test_webhook_report_handles_and_pull(stripe_backend):
    final = stripe_backend.parse_webhook(event(vs("verified", ours="a" * 36), event_id="evt_9"))
    # "verified" names its report by id only: confirmed by a retrieve that expands it.
    assert (final.external_id, final.session_id, final.delivery_id, final.pull) == ("vs_0001", "a" * 36, "evt_9", True)
    assert final.report is None
    canceled = stripe_backend.parse_webhook(event(vs("canceled", ours="a" * 36), event_id="evt_10"))
    assert (canceled.pull, canceled.report.status) == (False, Status.CANCELED)
    opened = stripe_backend.parse_webhook(event(vs("processing", metadata={"verification_session_id": "b"})))
    assert (opened.session_id, opened.pull, opened.report) == ("b", True, None)
    unnamed = stripe_backend.parse_webhook({**event(vs("canceled")), "id": None})
    assert (unnamed.delivery_id, unnamed.pull) == ("vs_0001:identity.verification_session.canceled:canceled", True)
    odd = stripe_backend.parse_webhook(event(vs("reviewing"), kind="identity.verification_session.processing"))
    assert (odd.report, odd.pull, odd.raw_status, odd.ignored) == (None, False, "reviewing", False)


def test_get_status_expands_the_report_and_reads_every_check(stripe_backend):
    session = VerificationSession(provider=ALIAS, external_id="vs_0001", scopes=["document", "face_match"])
    with responses.RequestsMock() as rsps:
        rsps.add(
            "GET",
            f"{SESSIONS}/vs_0001",
            json=vs("requires_input", REPORT["selfie"]["error"], last_verification_report=REPORT),
        )
        report = stripe_backend.get_status(session)
        call = rsps.calls[0].request
    assert call.url == f"{SESSIONS}/vs_0001?expand%5B%5D=last_verification_report"
    assert call.headers["Authorization"] == f"Bearer {API_KEY}"
    assert report.result["verification_report"] == "vr_1"
    assert stripe_backend.check_rows(session.scopes, report.result) == [
        CheckRow("document", True, None, ""),
        CheckRow("face_match", False, None, "selfie_face_mismatch"),
        CheckRow("email", True, None, ""),
    ]
    assert stripe_backend.scope_outcomes(session.scopes, report.result) == {"document": True, "face_match": False}


@pytest.mark.parametrize(
    ("result", "rows"),
    [
        ({"status": "verified"}, [True, True, True]),
        ({"status": "requires_input", "last_error": {"code": "selfie_manipulated"}}, [None, False, None]),
        ({"status": "requires_input", "last_error": {"code": "id_number_mismatch"}}, [None, None, False]),
        ({"status": "requires_input", "last_error": {"code": "document_expired"}}, [False, None, None]),
        ({"status": "requires_input", "last_error": {"code": "abandoned"}}, [None, None, None]),
        ({"status": "processing", "document": {"status": "odd"}}, [None, None, None]),
    ],
)
def test_rows_without_a_report_follow_the_session(stripe_backend, result, rows):
    scopes = ["document", "face_match", "id_number"]
    assert [row.passed for row in stripe_backend.check_rows(scopes, result)] == rows


def test_identity_data_is_hidden_without_the_permission(stripe_backend):
    result = stripe_backend._result(
        vs("verified", last_verification_report=REPORT, verified_outputs={"dob": 1}), "verified", "x"
    )
    hidden = json.dumps(stripe_backend.sensitive_parts_removed(result))
    for value in ("Jenny", "Rosen", "P1234567", "1990", "Paris", "file_", "jenny@example.com", "verified_outputs"):
        assert value not in hidden, value
    assert json.loads(hidden)["document"] == {
        "status": "verified",
        "error": None,
        "type": "passport",
        "issuing_country": "FR",
    }
    assert "file_selfie" in json.dumps(result)  # kept for those who may see it


# -- scopes, settings --------------------------------------------------------------------------------


def _create_form(stripe_backend, user, settings, scopes=None, **config):
    if config:
        providers = settings.VERIFICATION_LINK["PROVIDERS"]
        settings.VERIFICATION_LINK = {
            **settings.VERIFICATION_LINK,
            "PROVIDERS": {**providers, ALIAS: {**providers[ALIAS], **config}},
        }
    with responses.RequestsMock() as rsps:
        rsps.add("POST", SESSIONS, json=vs())
        services.start_verification(user=user, provider=ALIAS, scopes=scopes, reuse=False)
        return parse_qsl(rsps.calls[0].request.body.decode()), rsps.calls[0].request.headers


def test_scopes_become_type_and_options(stripe_backend, user, settings):
    form, _ = _create_form(stripe_backend, user, settings, ["document", "face_match", "id_number"])
    assert ("type", "document") in form
    assert ("options[document][require_matching_selfie]", "true") in form
    assert ("options[document][require_id_number]", "true") in form
    form, _ = _create_form(stripe_backend, user, settings, ["id_number"])
    assert ("type", "id_number") in form and not any(key.startswith("options") for key, _ in form)
    with pytest.raises(InvalidRequest):
        services.start_verification(user=user, provider=ALIAS, scopes=["face_match"])


def test_settings_flow_types_version(stripe_backend, user, settings):
    form, headers = _create_form(
        stripe_backend,
        user,
        settings,
        ALLOWED_TYPES=["passport", "id_card"],
        REQUIRE_LIVE_CAPTURE=True,
        API_VERSION="2026-10-28.endive",
    )
    assert [v for k, v in form if k == "options[document][allowed_types][]"] == ["passport", "id_card"]
    assert ("options[document][require_live_capture]", "true") in form
    assert headers["Stripe-Version"] == "2026-10-28.endive"
    form, _ = _create_form(stripe_backend, user, settings, VERIFICATION_FLOW="vf_123")
    assert ("verification_flow", "vf_123") in form and "type" not in dict(form)


def test_type_setting(stripe_backend, user, settings):
    form, _ = _create_form(stripe_backend, user, settings, TYPE="id_number")
    assert ("type", "id_number") in form
    providers = settings.VERIFICATION_LINK["PROVIDERS"]
    settings.VERIFICATION_LINK = {
        **settings.VERIFICATION_LINK,
        "PROVIDERS": {**providers, ALIAS: {**providers[ALIAS], "TYPE": "selfie"}},
    }
    with pytest.raises(ConfigurationError, match=r'\["TYPE"\]'):
        services.start_verification(user=user, provider=ALIAS)


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (
            401,
            {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}},
            ProviderAuthError,
            "invalid_request_error",
        ),
        (
            400,
            {"error": {"type": "invalid_request_error", "code": "parameter_unknown"}},
            ProviderRejected,
            "parameter_unknown",
        ),
        (404, {"error": {"code": "resource_missing"}}, ProviderRejected, "resource_missing"),
        (429, {"error": {"code": "rate_limit"}}, ProviderRejected, "rate_limit"),
        (500, {"error": {"type": "api_error"}}, ProviderUnavailable, "api_error"),
        (400, {"error": "odd"}, ProviderRejected, None),
    ],
)
def test_error_codes(stripe_backend, user, status, body, error, code):
    with responses.RequestsMock() as rsps:
        rsps.add("POST", SESSIONS, json=body, status=status)
        with pytest.raises(error) as info:
            services.start_verification(user=user, provider=ALIAS)
    assert info.value.code == code
    assert info.value.retryable is (status in (429, 500))


def test_redaction_wire_format(stripe_backend):
    session = VerificationSession(provider=ALIAS, external_id="vs_0001")
    with responses.RequestsMock() as rsps:
        rsps.add("POST", f"{SESSIONS}/vs_0001/redact", json=vs("verified", redaction={"status": "processing"}))
        stripe_backend.redact_session(session)
        call = rsps.calls[0].request
    assert (call.method, call.body, call.headers["Authorization"]) == ("POST", None, f"Bearer {API_KEY}")
    with responses.RequestsMock() as rsps:
        rsps.add("POST", f"{SESSIONS}/vs_0001/redact", json=vs("verified"))
        with pytest.raises(ProviderUnavailable):
            stripe_backend.redact_session(session)
        rsps.add("POST", f"{SESSIONS}/vs_0001/cancel", json=vs("processing"))
        with pytest.raises(ProviderUnavailable):
            stripe_backend.cancel_session(session)
    with pytest.raises(InvalidRequest):
        stripe_backend.redact_session(VerificationSession(provider=ALIAS))


@pytest.mark.parametrize(("debug", "key", "warning"), [(True, "sk_live_x", "W005"), (False, "sk_test_x", "W006")])
def test_key_mode_warnings(stripe_backend, settings, debug, key, warning):
    settings.DEBUG = debug
    providers = settings.VERIFICATION_LINK["PROVIDERS"]
    settings.VERIFICATION_LINK = {
        **settings.VERIFICATION_LINK,
        "PROVIDERS": {**providers, ALIAS: {**providers[ALIAS], "API_KEY": key}},
    }
    messages = [m for m in run_checks(tags=[Tags.compatibility]) if ALIAS in m.msg]
    assert [m.id for m in messages] == [f"verification_link.{warning}"]
    assert key not in messages[0].msg + str(messages[0].hint)


def test_webhook_settings_are_checked(stripe_backend, settings):
    settings.DEBUG = True  # no W006 for the test key
    providers = settings.VERIFICATION_LINK["PROVIDERS"]
    settings.VERIFICATION_LINK = {
        **settings.VERIFICATION_LINK,
        "PROVIDERS": {**providers, ALIAS: {**providers[ALIAS], "WEBHOOK_SECRETS": []}},
    }
    assert [m.id for m in run_checks(tags=[Tags.compatibility]) if ALIAS in m.msg] == ["verification_link.W003"]
    assert stripe_backend.webhook_verifier().scheme == "timestamped"


def test_secrets_absent_from_reprs(stripe_backend):
    report = stripe_backend.parse_session(vs("verified", verified_outputs={"first_name": "Jenny"}))
    texts = [repr(stripe_backend), repr(stripe_backend.webhook_verifier()), repr(report)]
    for text in texts:
        assert API_KEY not in text and "whsec_x" not in text and "Jenny" not in text
