"""Persona: the Inquiries wire format, status mapping, verdicts and checks, webhooks signed as
Persona documents it, hostile answers, redaction, secrets.

Persona ships no Python SDK (docs/providers/persona.rst, "SDK"): deliveries are signed here by
``persona_header``, written from the docs' scheme, and checked against ``docs_sample_verifies``,
the Python sample of https://docs.withpersona.com/docs/webhooks-best-practices, step for step.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any

import pytest
from django.test import override_settings

from verification_link import services
from verification_link.exceptions import ProviderUnavailable
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers.persona import PersonaProvider
from verification_link.providers.types import Verdict
from verification_link.webhooks import WebhookRefused

from .provider_contract import APPROVED, DECLINED, OPEN, ProviderContract

Status = VerificationSession.Status
BASE = "https://persona.test/api/v1"
INQ = "inq_2kcNW1mdvX7ZrYGbLgR8tQ3fPqs9"
LINK = "https://withpersona.com/verify?code=us1-TESTCODE"
API_KEY = "persona_sandbox_KEY-SECRET-0123"
NOW = int(time.time())


def persona_header(secret: str, body: bytes, t: int) -> str:
    """Persona's scheme, written independently of ``verification_link.webhooks``."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def docs_sample_verifies(secret: str, header: str, body: bytes) -> bool:
    """The docs' Python sample (basic case), as published."""
    t, v1 = [value.split("=")[1] for value in header.split(",")]
    computed_digest = hmac.new(secret.encode(), (t + "." + body.decode("utf-8")).encode(), "sha256").hexdigest()
    return hmac.compare_digest(v1, computed_digest)


def check(name, status="passed", reasons=(), requirement="required"):
    return {"name": name, "status": status, "reasons": list(reasons), "requirement": requirement, "metadata": {}}


def verifications(outcome: str) -> list[dict[str, Any]]:
    face = "failed" if outcome == DECLINED else "passed"
    government = {
        "type": "verification/government-id",
        "id": "ver_gov1",
        "attributes": {
            "status": "passed",
            "entity-confidence-score": 96.2,
            "checks": [check("id_tamper_detection"), check("id_selfie_comparison")],
            "name-first": "JANE",
            "identification-number": "Y123ABC",
            "front-photo-url": "https://files.withpersona.com/front.jpg?access_token=TOKEN",
        },
    }
    selfie = {
        "type": "verification/selfie",
        "id": "ver_selfie1",
        "attributes": {
            "status": "failed" if outcome == DECLINED else "passed",
            "checks": [
                check("selfie_liveness_detection"),
                check("selfie_id_comparison", face, ["face_mismatch"] if face == "failed" else ()),
            ],
            "selfie-photo-url": "https://files.withpersona.com/selfie.jpg",
        },
    }
    return [government, selfie] if outcome != OPEN else []


def inquiry(status: str, *, reference: str = "", inquiry_id: str = INQ) -> dict[str, Any]:
    return {
        "type": "inquiry",
        "id": inquiry_id,
        "attributes": {
            "status": status,
            "reference-id": None,
            "note": reference or None,
            "tags": [],
            "created-at": "2025-01-01T10:00:00.000Z",
            "name-first": "Jane",
            "name-last": "Doe",
            "birthdate": "1995-09-08",
            "email-address": "jane@doe.example",
            "fields": {"name-first": {"type": "string", "value": "Jane"}},
        },
        "relationships": {"verifications": {"data": [{"type": "verification/selfie", "id": "ver_selfie1"}]}},
    }


STATUS_OF = {OPEN: "pending", APPROVED: "approved", DECLINED: "declined"}
EVENT_OF = {"pending": "inquiry.transitioned", "approved": "inquiry.approved", "declined": "inquiry.declined"}


def event(status: str, *, delivery="evt_1", reference="", outcome=None, name=None, inquiry_id=INQ) -> dict:
    outcome = outcome or {v: k for k, v in STATUS_OF.items()}.get(status, APPROVED)
    return {
        "data": {
            "type": "event",
            "id": delivery,
            "attributes": {
                "name": name or EVENT_OF.get(status, f"inquiry.{status}"),
                "payload": {
                    "data": inquiry(status, reference=reference, inquiry_id=inquiry_id),
                    "included": verifications(outcome),
                },
                "created-at": "2025-01-01T10:05:00.000Z",
            },
        }
    }


def inflect(value: Any, style: str) -> Any:
    """Persona's Key-Inflection applied to keys (not values) at every depth."""
    if isinstance(value, list):
        return [inflect(item, style) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        parts = key.split("-")
        key = "_".join(parts) if style == "snake" else parts[0] + "".join(p.title() for p in parts[1:])
        out[key] = item if key == "fields" else inflect(item, style)
    return out


class TestPersonaContract(ProviderContract):
    ALIAS = "persona_test"
    BASE_URL = BASE
    SECRET = "wbhsec_current-SECRET-4a1b"
    OLD_SECRET = "wbhsec_old-SECRET-9f8e"
    SIGNS_TIMESTAMP = True
    SIGNATURE_HEADER = "Persona-Signature"
    CREATE_ENDPOINT = ("POST", f"{BASE}/inquiries")

    def alias_config(self):
        return {
            "BACKEND": "verification_link.providers.persona.PersonaProvider",
            "API_KEY": API_KEY,
            "TEMPLATE_ID": "itmpl_TEMPLATE123",
            "BASE_URL": self.BASE_URL,
            "WEBHOOK_SECRETS": [self.SECRET, self.OLD_SECRET],
        }

    def external_id(self):
        return INQ

    def hosted_url(self):
        return LINK

    def mock_create(self, rsps):
        rsps.post(f"{BASE}/inquiries", json={"data": inquiry("created")}, status=201)
        rsps.post(f"{BASE}/inquiries/{INQ}/generate-one-time-link", json={"data": inquiry("created"), "meta": {
            "one-time-link": LINK, "one-time-link-short": "https://perso.na/verify?code=ABC"}})  # fmt: skip

    def assert_create_request(self, calls):
        create, link = calls
        headers = create.request.headers
        assert headers["Authorization"] == f"Bearer {API_KEY}"
        assert headers["Persona-Version"] == "2023-01-05"
        assert headers["Key-Inflection"] == "kebab"
        assert headers["Content-Type"] == "application/json"
        body = json.loads(create.request.body)
        session = VerificationSession.objects.get()
        assert body == {
            "data": {
                "attributes": {
                    "inquiry-template-id": "itmpl_TEMPLATE123",
                    "redirect-uri": f"https://www.example.com/verify/s/{session.pk}/return/",
                    "note": str(session.pk),
                }
            },
            "meta": {"expiration-after-create-interval-seconds": 86400},
        }
        assert link.request.url == f"{BASE}/inquiries/{INQ}/generate-one-time-link"
        assert json.loads(link.request.body) == {"meta": {"expires-in-seconds": 86400}}
        assert link.request.headers["Authorization"] == f"Bearer {API_KEY}"

    def mock_status(self, rsps, session, outcome):
        status = STATUS_OF[outcome]
        rsps.get(f"{BASE}/inquiries/{INQ}", json={"data": inquiry(status), "included": verifications(outcome)})

    def webhook(self, session, outcome, *, secret=None, timestamp=None, delivery="evt_1"):
        body = json.dumps(event(STATUS_OF[outcome], delivery=delivery, reference=str(session.pk))).encode()
        header = persona_header(secret or self.SECRET, body, NOW if timestamp is None else timestamp)
        return body, {"Persona-Signature": header}

    def mock_cancel(self, rsps, session):
        rsps.post(f"{BASE}/inquiries/{INQ}/expire", json={"data": inquiry("expired")})

    # -- Persona-specific ------------------------------------------------------------------------

    def test_the_signer_agrees_with_the_docs_sample(self, backend):
        body = json.dumps(event("approved")).encode()
        header = persona_header(self.SECRET, body, NOW)
        assert docs_sample_verifies(self.SECRET, header, body)
        assert not docs_sample_verifies(self.OLD_SECRET, header, body)
        # Our verifier accepts what the independent signer made, and its own signature matches it.
        verifier = backend.webhook_verifier()
        assert verifier.verify({"Persona-Signature": header}, body, now=NOW) == ""
        assert verifier.sign(body, timestamp=NOW) == {"Persona-Signature": header}
        with pytest.raises(WebhookRefused):
            verifier.verify({"Persona-Signature": header}, body + b" ", now=NOW)

    @pytest.mark.parametrize("order", ["new first", "old first"])
    def test_rotation_header_with_two_space_separated_sets(self, backend, order):
        body = json.dumps(event("approved")).encode()
        sets = [persona_header(self.SECRET, body, NOW), persona_header("wbhsec_retired", body, NOW - 5)]
        header = " ".join(sets if order == "new first" else sets[::-1])
        assert backend.webhook_verifier().verify({"Persona-Signature": header}, body, now=NOW) == ""
        # Only the current one configured: still accepted by its set; neither set: refused.
        only_retired = " ".join(persona_header(s, body, NOW) for s in ("wbhsec_a", "wbhsec_b"))
        with pytest.raises(WebhookRefused):
            backend.webhook_verifier().verify({"Persona-Signature": only_retired}, body, now=NOW)

    def test_a_signature_under_someone_elses_timestamp_is_refused(self, backend):
        body = json.dumps(event("approved")).encode()
        signed = persona_header(self.SECRET, body, NOW)
        forged = signed.replace(f"t={NOW}", f"t={NOW + 1}")
        with pytest.raises(WebhookRefused):
            backend.webhook_verifier().verify({"Persona-Signature": forged}, body, now=NOW)

    def test_delivery_id_is_the_event_id(self, backend):
        assert backend.parse_webhook(event("approved", delivery="evt_abc")).delivery_id == "evt_abc"
        without = event("approved")
        del without["data"]["id"]
        assert backend.parse_webhook(without).delivery_id == f"{INQ}:inquiry.approved:approved"

    @pytest.mark.parametrize("style", ["kebab", "snake", "camel"])
    def test_every_key_inflection_is_read(self, backend, style):
        body = event("declined", reference="6f1c2b1e-0000-4000-8000-000000000001")
        body = body if style == "kebab" else inflect(body, style)
        parsed = backend.parse_webhook(body)
        assert parsed.external_id == INQ and parsed.delivery_id == "evt_1"
        assert parsed.session_id == "6f1c2b1e-0000-4000-8000-000000000001"
        assert parsed.report.status == Status.FAILED
        assert parsed.report.reasons == ("face_mismatch",)
        rows = {row.scope: row for row in backend.check_rows(["document"], parsed.report.result)}
        assert rows["face_match"].passed is False and rows["document"].score == 96.2
        assert backend.storable_body(body)["data"]["id"] == "evt_1"
        assert "Jane" not in json.dumps(backend.storable_body(body))

    @pytest.mark.parametrize(
        ("status", "expected", "verdict"),
        [
            ("created", Status.CREATED, Verdict.NONE),
            ("pending", Status.IN_PROGRESS, Verdict.NONE),
            ("needs_review", Status.IN_PROGRESS, Verdict.REVIEW),
            ("completed", Status.IN_PROGRESS, Verdict.NONE),  # AWAIT_DECISION by default: Persona decides next
            ("approved", Status.DONE, Verdict.APPROVED),
            ("failed", Status.FAILED, Verdict.DECLINED),
            ("declined", Status.FAILED, Verdict.DECLINED),
            ("expired", Status.EXPIRED, Verdict.NONE),
        ],
    )
    def test_every_status_maps(self, backend, status, expected, verdict):
        outcome = DECLINED if verdict == Verdict.DECLINED else APPROVED
        report = backend.parse_inquiry(inquiry(status), verifications(outcome), operation="t")
        assert (report.status, report.verdict, report.provider_status) == (expected, verdict, status)
        assert report.reasons == (("face_mismatch",) if verdict == Verdict.DECLINED else ())

    def test_await_decision_keeps_completed_open(self, settings):
        config = {**self.alias_config(), "AWAIT_DECISION": True}
        backend = PersonaProvider("p", config)
        report = backend.parse_inquiry(inquiry("completed"), verifications(APPROVED), operation="t")
        assert (report.status, report.verdict) == (Status.IN_PROGRESS, Verdict.NONE)
        assert backend.parse_inquiry(inquiry("approved"), [], operation="t").status == Status.DONE

    def test_without_await_decision_completed_is_done_and_the_checks_decide(self, settings):
        backend = PersonaProvider("p", {**self.alias_config(), "AWAIT_DECISION": False})
        report = backend.parse_inquiry(inquiry("completed"), verifications(APPROVED), operation="t")
        assert (report.status, report.verdict) == (Status.DONE, Verdict.NONE)

    @pytest.mark.parametrize(
        ("key", "value"), [("LINK", "inquiry-id"), ("AWAIT_DECISION", "yes"), ("REFERENCE_FIELD", "x")]
    )
    def test_a_wrong_setting_is_refused_where_it_is_used(self, key, value):
        from verification_link.exceptions import ConfigurationError

        with pytest.raises(ConfigurationError, match=key):
            PersonaProvider("p", {**self.alias_config(), key: value})

    def test_requires_retry_is_resubmission(self, backend):
        retry = verifications(APPROVED)[:1]
        retry[0]["attributes"]["status"] = "requires_retry"
        retry[0]["attributes"]["checks"].append(check("id_blur_detection", "failed", ["blurry"], "requires_retry"))
        report = backend.parse_inquiry(inquiry("pending"), retry, operation="t")
        assert (report.status, report.verdict, report.reasons) == (
            Status.IN_PROGRESS,
            Verdict.RESUBMISSION,
            ("blurry",),
        )

    def test_a_status_persona_added_later_keeps_the_session_open(self, rsps, started, backend):
        rsps.get(f"{BASE}/inquiries/{INQ}", json={"data": inquiry("on_hold_2030")})
        report = backend.get_status(started)
        assert (report.status, report.provider_status) == (Status.IN_PROGRESS, "on_hold_2030")
        assert backend.parse_webhook(event("on_hold_2030")).report is None

    def test_check_rows_and_scope_outcomes(self, backend):
        report = backend.parse_inquiry(inquiry("declined"), verifications(DECLINED), operation="t")
        rows = {row.scope: row for row in backend.check_rows(["document", "id_number"], report.result)}
        assert rows["document"].passed is True and rows["document"].score == 96.2
        assert rows["liveness"].passed is True
        assert (rows["face_match"].passed, rows["face_match"].detail) == (False, "face_mismatch")
        assert rows["id_number"].passed is None  # asked for, no database verification ran
        outcomes = backend.scope_outcomes(["document", "liveness", "face_match"], report.result)
        assert outcomes == {"document": True, "liveness": True, "face_match": False}

    def test_identity_data_is_never_kept_by_default(self, backend):
        report = backend.parse_inquiry(inquiry("approved"), verifications(APPROVED), operation="t")
        text = json.dumps(report.result)
        for value in ("Jane", "JANE", "Y123ABC", "1995-09-08", "front.jpg", "selfie.jpg", "jane@doe"):
            assert value not in text
        kept = json.dumps(backend.storable_body(event("approved")))
        for value in ("Jane", "JANE", "Y123ABC", "1995-09-08", "access_token", "jane@doe"):
            assert value not in kept
        assert "selfie_id_comparison" in kept and "approved" in kept

    def test_store_sensitive_keeps_identity_hidden_from_staff(self):
        backend = PersonaProvider("p", {**self.alias_config(), "STORE_SENSITIVE": True})
        report = backend.parse_inquiry(inquiry("approved"), verifications(APPROVED), operation="t")
        assert report.result["identity"]["inquiry"]["birthdate"] == "1995-09-08"
        assert report.result["identity"]["verifications"][0]["identification-number"] == "Y123ABC"
        assert "identity" not in backend.sensitive_parts_removed(report.result)
        assert "Y123ABC" not in json.dumps(backend.sensitive_parts_removed(report.result))

    def test_webhook_body_kept_without_identity(self, client, rsps, started, commit):
        assert self.deliver(client, rsps, started, APPROVED, commit).status_code == 200
        stored = VerificationEvent.objects.filter(kind="webhook").latest("id")
        assert stored.body and "Jane" not in stored.body and "Y123ABC" not in stored.body
        assert "evt_1" in stored.body

    def test_verification_events_pull_the_inquiry(self, client, rsps, started, commit, signal_log):
        self.mock_status(rsps, started, APPROVED)
        verification = verifications(APPROVED)[1]
        verification["relationships"] = {"inquiry": {"data": {"type": "inquiry", "id": INQ}}}
        body = json.dumps({"data": {"type": "event", "id": "evt_v1", "attributes": {
            "name": "verification.passed", "payload": {"data": verification}}}}).encode()  # fmt: skip
        with commit():
            response = self.post_webhook(client, body, {"Persona-Signature": persona_header(self.SECRET, body, NOW)})
        assert response.json() == {"status": "processed"}
        assert rsps.calls[-1].request.url == f"{BASE}/inquiries/{INQ}?include=verifications"
        started.refresh_from_db()
        assert started.status == Status.DONE and len(signal_log.of("verification_finished")) == 1

    @pytest.mark.parametrize("name", ["inquiry-session.started", "account.created", "report/watchlist.ready"])
    def test_events_that_say_nothing_of_the_state_are_ignored(self, backend, name):
        body = event("approved", name=name)
        if name.startswith("account"):
            body["data"]["attributes"]["payload"]["data"]["type"] = "account"
        assert backend.parse_webhook(body).ignored

    @pytest.mark.parametrize(
        "payload",
        [{}, {"data": []}, {"data": {"attributes": "x"}}, {"data": {"attributes": {"name": 5, "payload": {}}}}],
    )
    def test_hostile_webhook_bodies_change_nothing(self, backend, payload):
        parsed = backend.parse_webhook(payload)
        assert parsed.ignored and parsed.report is None
        assert isinstance(backend.storable_body(payload), dict)

    def test_webhook_of_an_unreadable_inquiry_asks_persona(self, backend):
        body = event("approved")
        body["data"]["attributes"]["payload"]["included"] = "not a list"
        parsed = backend.parse_webhook(body)
        assert parsed.pull and parsed.external_id == INQ and parsed.report is None

    @pytest.mark.parametrize(
        "answer",
        [
            [],
            "text",
            {"data": None},
            {"data": {"id": INQ}},
            {"data": {"id": INQ, "attributes": []}},
            {"data": {"id": INQ, "attributes": {"status": None}}},
            {"data": {"id": INQ, "attributes": {"status": 5}}},
            {"data": {"id": 5, "attributes": {"status": "approved"}}},
            {"data": {"id": INQ, "attributes": {"status": "approved"}}, "included": {"a": 1}},
        ],
    )
    def test_hostile_status_answers_are_unavailable(self, rsps, started, backend, answer):
        rsps.get(f"{BASE}/inquiries/{INQ}", json=answer)
        with pytest.raises(ProviderUnavailable):
            backend.get_status(started)

    def test_hostile_included_items_are_skipped(self, backend):
        included = [5, None, {"type": "verification/selfie", "attributes": {"checks": [1, {"reasons": "x"}]}}]
        report = backend.parse_inquiry(inquiry("declined"), included, operation="t")
        assert report.status == Status.FAILED
        assert report.reasons == ()
        assert [(row.scope, row.passed) for row in backend.check_rows(["liveness"], report.result)] == [
            ("liveness", None)
        ]

    @pytest.mark.parametrize(
        "answer",
        [{}, {"data": {"id": 7}}, {"data": {"id": "evil"}}, {"data": {"id": "inq_\n"}}, [], {"data": "inq_1"}],
    )
    def test_hostile_create_answers_are_unavailable(self, rsps, user, answer):
        rsps.post(f"{BASE}/inquiries", json=answer, status=201)
        with pytest.raises(ProviderUnavailable):
            services.start_verification(user=user, provider=self.ALIAS)

    @pytest.mark.parametrize("meta", [None, {}, {"one-time-link": 5}, {"one-time-link": "javascript:x"}])
    def test_hostile_one_time_link_answers_are_unavailable(self, rsps, user, meta):
        rsps.post(f"{BASE}/inquiries", json={"data": inquiry("created")}, status=201)
        rsps.post(f"{BASE}/inquiries/{INQ}/generate-one-time-link", json={"meta": meta})
        with pytest.raises(ProviderUnavailable):
            services.start_verification(user=user, provider=self.ALIAS)

    def test_inquiry_id_link_needs_no_second_call(self, rsps, user, settings):
        providers = settings.VERIFICATION_LINK["PROVIDERS"]
        changed = {**providers[self.ALIAS], "LINK": "inquiry_id", "LANGUAGE": "de", "REFERENCE_FIELD": "reference-id"}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": {**providers, self.ALIAS: changed}}
        rsps.post(f"{BASE}/inquiries", json={"data": inquiry("created")}, status=201)
        session = services.start_verification(user=user, provider=self.ALIAS)
        assert session.url == f"https://inquiry.withpersona.com/verify?inquiry-id={INQ}&language=de"
        assert len(rsps.calls) == 1
        attributes = json.loads(rsps.calls[0].request.body)["data"]["attributes"]
        assert attributes["reference-id"] == str(session.pk) and "note" not in attributes

    @pytest.mark.parametrize(
        ("template", "key"),
        [("itmpl_A", "inquiry-template-id"), ("itmplv_B", "inquiry-template-version-id"), ("tmpl_C", "template-id")],
    )
    def test_template_id_kinds(self, rsps, user, settings, template, key):
        providers = settings.VERIFICATION_LINK["PROVIDERS"]
        changed = {**providers[self.ALIAS], "TEMPLATE_ID": template}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": {**providers, self.ALIAS: changed}}
        self.mock_create(rsps)
        services.start_verification(user=user, provider=self.ALIAS)
        assert json.loads(rsps.calls[0].request.body)["data"]["attributes"][key] == template

    def test_cancel_expires_the_inquiry(self, rsps, started):
        self.mock_cancel(rsps, started)
        services.cancel_session(started)
        assert rsps.calls[-1].request.method == "POST"
        assert rsps.calls[-1].request.url == f"{BASE}/inquiries/{INQ}/expire"

    def test_redaction_deletes_the_inquiry(self, rsps, started, backend):
        rsps.delete(f"{BASE}/inquiries/{INQ}", json={"data": inquiry("approved")})
        backend.redact_session(started)
        call = rsps.calls[-1].request
        assert (call.method, call.url) == ("DELETE", f"{BASE}/inquiries/{INQ}")
        assert call.headers["Authorization"] == f"Bearer {API_KEY}" and not call.body

    def test_error_code_is_the_errors_title(self, rsps, user):
        rsps.post(f"{BASE}/inquiries", json={"errors": [{"title": "Bad Request", "details": "x"}]}, status=400)
        with pytest.raises(Exception) as caught:
            services.start_verification(user=user, provider=self.ALIAS)
        assert caught.value.code == "Bad Request"

    def test_no_key_mode_warnings_persona_documents_no_prefixes(self):
        assert PersonaProvider.key_prefixes == {}
        with override_settings(DEBUG=True):
            assert not [m for m in PersonaProvider.check_config("p", self.alias_config()) if m.id.endswith("W005")]

    @pytest.mark.parametrize(
        ("key", "value"),
        [("LINK", "qr"), ("REFERENCE_FIELD", "tags"), ("STORE_SENSITIVE", "False"), ("CHECKS", {"liveness": "x"})],
    )
    def test_wrong_settings_name_their_key(self, key, value):
        messages = PersonaProvider.check_config("p", {**self.alias_config(), key: value})
        assert any(key in m.msg and m.id == "verification_link.E020" for m in messages)
        assert not PersonaProvider.check_config("p", self.alias_config())

    def test_webhook_settings_are_checked_with_personas_defaults(self):
        config = {**self.alias_config(), "WEBHOOK_SECRETS": "one-string"}
        assert any(m.id == "verification_link.E009" for m in PersonaProvider.check_config("p", config))

    def test_secrets_absent_from_reprs(self, backend):
        texts = [repr(backend), str(backend), repr(backend.webhook_verifier())]
        for secret in (API_KEY, self.SECRET, self.OLD_SECRET):
            assert all(secret not in text for text in texts)


def test_verification_rows_match_only_their_kind():
    backend = PersonaProvider("p", {"API_KEY": "k", "TEMPLATE_ID": "itmpl_x"})
    result = {"verifications": [{"type": "database-standard", "status": "passed", "checks": []}]}
    rows = {row.scope: row.passed for row in backend.check_rows([], result)}
    assert rows == {"id_number": True}
    assert re.fullmatch(r"inq_\w+", INQ)
