"""Veriff: the provider contract, request signing checked against Veriff's own recipe, status
mapping, verdicts and reasons, check rows, identity data kept out, hostile answers.

Veriff has no Python SDK. The signatures here are computed by ``veriff_recipe``: an independent
transcription of ``generateSignature`` in Veriff's js-integration-demo (src/api.ts:
``crypto.createHmac("sha256", secret).update(Buffer.from(payload, "utf8")).digest("hex")``), pinned
by vectors computed with that very Node.js code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
import requests
import responses

from tests.provider_contract import APPROVED, DECLINED, OPEN, ProviderContract
from verification_link import services
from verification_link.exceptions import ProviderAuthError, ProviderRejected, ProviderUnavailable
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider
from verification_link.providers import veriff as veriff_module
from verification_link.providers.types import Verdict

Status = VerificationSession.Status
BASE = "https://veriff.test"
API_KEY = "4a4a2b7e-veriff-api-key-SECRET"
SHARED = "current-webhook-SECRET"
OLD = "old-webhook-SECRET"
EXTERNAL_ID = "5a2358e7-fd31-4fcb-a23f-4d76651ba68a"
HOSTED = "https://alchemy.veriff.com/v/eyJhbGciOi-sample"

#: Computed with Node.js 20 running the js-integration-demo's generateSignature (see module docstring):
#: secret "abcdef12-abcd-abcd-abcd-abcdef012345".
VECTOR_SECRET = "abcdef12-abcd-abcd-abcd-abcdef012345"
VECTOR_BODY = '{"verification":{"vendorData":"12345678"}}'  # JSON.stringify({verification: {vendorData: "12345678"}})
VECTOR_BODY_SIGNATURE = "5ced8c6f9c39ffebb3d85c455aa87e8338f99a150b413607668cf76771568bc4"
VECTOR_SESSION_ID = "f04bdb47-d3be-4b28-b028-a652feb060b5"
VECTOR_SESSION_SIGNATURE = "e37fd070cea548e430c624109ca4b0d7e79bcdef52131c90a2889ca24ad15ab0"


def veriff_recipe(payload: str | bytes, secret: str) -> str:
    """js-integration-demo ``generateSignature``: HMAC-SHA256 keyed with the secret's UTF-8
    bytes over the payload's UTF-8 bytes, hex digest."""
    data = payload if isinstance(payload, bytes) else payload.encode("utf-8")
    mac = hmac.HMAC(bytes(secret, "utf-8"), digestmod=hashlib.sha256)
    mac.update(data)
    return mac.hexdigest()


def decision(status: str, *, reason_code: Any = None, reason: Any = None, **extra: Any) -> dict[str, Any]:
    codes = {"approved": 9001, "declined": 9102, "resubmission_requested": 9103, "review": 9121}
    body = {
        "id": EXTERNAL_ID,
        "attemptId": "a1b2c3d4-0000-4000-8000-000000000001",
        "vendorData": None,
        "status": status,
        "code": codes.get(status, 9104) if isinstance(status, str) else 0,
        "reason": reason,
        "reasonCode": reason_code,
        "decisionTime": "2019-11-06T07:18:36.916Z",
        "acceptanceTime": "2019-11-06T07:15:27.000Z",
        "person": {"firstName": "SARAH", "lastName": "MORGAN", "dateOfBirth": "1967-03-30", "idNumber": "38001085718"},
        "document": {"type": "DRIVERS_LICENSE", "number": "MORGA753116SM9IJ", "country": "GB"},
        "riskLabels": [],
        "additionalVerifiedData": {"estimatedAge": 32},
        "comments": [],
    }
    body.update(extra)
    return body


def decision_answer(verification: Any) -> dict[str, Any]:
    return {"status": "success", "verification": verification, "technicalData": {"ip": "186.153.67.122"}}


class TestVeriffContract(ProviderContract):
    ALIAS = "veriff_test"
    BASE_URL = BASE
    SECRET = SHARED
    OLD_SECRET = OLD
    CREATE_ENDPOINT = ("POST", f"{BASE}/v1/sessions")
    SIGNATURE_HEADER = "X-HMAC-SIGNATURE"

    def alias_config(self) -> dict[str, Any]:
        return {
            "BACKEND": "verification_link.providers.veriff.VeriffProvider",
            "API_KEY": API_KEY,
            "SHARED_SECRET": SHARED,
            "BASE_URL": BASE,
            "WEBHOOK_SECRETS": [SHARED, OLD],
        }

    def external_id(self) -> str:
        return EXTERNAL_ID

    def hosted_url(self) -> str:
        return HOSTED

    def mock_create(self, rsps: responses.RequestsMock) -> None:
        created = {"id": EXTERNAL_ID, "url": HOSTED, "vendorData": "x", "host": "https://alchemy.veriff.com"}
        created |= {"status": "created", "sessionToken": "eyJhbGciOiJIUzI1NiJ9.legacy-SECRET"}
        rsps.add("POST", f"{BASE}/v1/sessions", json={"status": "success", "verification": created}, status=201)

    def assert_create_request(self, calls: list[Any]) -> None:
        assert len(calls) == 1
        request = calls[0].request
        assert request.method == "POST"
        assert request.url == f"{BASE}/v1/sessions"
        assert request.headers["X-AUTH-CLIENT"] == API_KEY
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-HMAC-SIGNATURE"] == veriff_recipe(request.body, SHARED)
        body = json.loads(request.body)
        assert set(body) == {"verification"}
        assert set(body["verification"]) == {"callback", "vendorData"}
        session = VerificationSession.objects.get(external_id=EXTERNAL_ID)
        assert body["verification"]["vendorData"] == str(session.pk)
        assert body["verification"]["callback"] == f"https://www.example.com/verify/s/{session.pk}/return/"

    def mock_status(self, rsps: responses.RequestsMock, session: VerificationSession, outcome: str) -> None:
        verification = None
        if outcome == APPROVED:
            verification = decision("approved", vendorData=str(session.pk))
        elif outcome == DECLINED:
            verification = decision("declined", reason_code=102, reason="Suspected document tampering")
        rsps.add("GET", f"{BASE}/v1/sessions/{EXTERNAL_ID}/decision", json=decision_answer(verification))

    def webhook(self, session, outcome, *, secret=None, timestamp=None, delivery="evt_1"):
        # Veriff sends no delivery id: the same outcome is the same body, hence a duplicate.
        if outcome == OPEN:
            payload: dict[str, Any] = {"id": EXTERNAL_ID, "feature": "selfid", "code": 7002, "action": "submitted"}
            payload["vendorData"] = str(session.pk)
        elif outcome == APPROVED:
            payload = decision_answer(decision("approved", vendorData=str(session.pk)))
        else:
            payload = decision_answer(decision("declined", reason_code=102, reason="Suspected document tampering"))
        body = json.dumps(payload).encode()
        return body, {"X-AUTH-CLIENT": API_KEY, "X-HMAC-SIGNATURE": veriff_recipe(body, secret or SHARED)}

    # -- signing: Veriff's recipe, fixed vectors ----------------------------------------------------------

    def test_recipe_vectors_computed_with_veriffs_node_code(self):
        assert veriff_recipe(VECTOR_BODY, VECTOR_SECRET) == VECTOR_BODY_SIGNATURE
        assert veriff_recipe(VECTOR_SESSION_ID, VECTOR_SECRET) == VECTOR_SESSION_SIGNATURE
        assert veriff_module.sign(VECTOR_SECRET, VECTOR_BODY.encode()) == VECTOR_BODY_SIGNATURE
        assert veriff_module.sign(VECTOR_SECRET, VECTOR_SESSION_ID) == VECTOR_SESSION_SIGNATURE

    def test_request_headers_sign_the_body_or_the_session_id(self, backend):
        post = backend.request_headers("POST", "/v1/sessions", VECTOR_BODY.encode())
        assert post["X-HMAC-SIGNATURE"] == veriff_recipe(VECTOR_BODY, SHARED)
        for method in ("GET", "DELETE"):
            for path in (f"/v1/sessions/{VECTOR_SESSION_ID}/decision", f"/v1/sessions/{VECTOR_SESSION_ID}"):
                headers = backend.request_headers(method, path, b"")
                assert headers["X-HMAC-SIGNATURE"] == veriff_recipe(VECTOR_SESSION_ID, SHARED), (method, path)
                assert headers["X-AUTH-CLIENT"] == API_KEY
                assert headers["Content-Type"] == "application/json"

    def test_vector_through_the_provider(self, settings):
        providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
        providers[self.ALIAS] = {**self.alias_config(), "SHARED_SECRET": VECTOR_SECRET}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
        headers = get_provider(self.ALIAS).request_headers("GET", f"/v1/sessions/{VECTOR_SESSION_ID}/decision", b"")
        assert headers["X-HMAC-SIGNATURE"] == VECTOR_SESSION_SIGNATURE

    def test_poll_signs_the_session_id(self, rsps, started):
        self.mock_status(rsps, started, OPEN)
        services.refresh_session(started)
        call = rsps.calls[-1].request
        assert call.method == "GET"
        assert call.url == f"{BASE}/v1/sessions/{EXTERNAL_ID}/decision"
        assert call.headers["X-HMAC-SIGNATURE"] == veriff_recipe(EXTERNAL_ID, SHARED)
        assert call.headers["X-AUTH-CLIENT"] == API_KEY

    def test_language_and_base_url_with_version(self, rsps, user, settings):
        providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
        providers[self.ALIAS] = {**self.alias_config(), "BASE_URL": f"{BASE}/v1/", "LANGUAGE": "et"}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
        self.mock_create(rsps)
        services.start_verification(user=user, provider=self.ALIAS)
        assert rsps.calls[0].request.url == f"{BASE}/v1/sessions"
        assert json.loads(rsps.calls[0].request.body)["verification"]["lang"] == "et"

    # -- webhook secrets: the shared secret by default -------------------------------------------------

    def test_webhook_secrets_default_to_the_shared_secret(self, client, settings, started, commit):
        providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
        config = {key: value for key, value in self.alias_config().items() if key != "WEBHOOK_SECRETS"}
        providers[self.ALIAS] = config
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
        backend = get_provider(self.ALIAS)
        assert backend.webhook_verifier().configured
        assert not [m for m in backend.check_config(self.ALIAS, config) if m.id == "verification_link.W003"]
        body, headers = self.webhook(started, APPROVED, secret=OLD)
        assert self.post_webhook(client, body, headers).status_code == 401  # OLD is not configured now
        body, headers = self.webhook(started, APPROVED, secret=SHARED)
        with commit():
            assert self.post_webhook(client, body, headers).status_code == 200
        started.refresh_from_db()
        assert started.status == Status.DONE
        assert SHARED not in repr(backend.webhook_verifier())

    def test_upper_case_hex_signature_is_accepted(self, client, started, commit):
        body, headers = self.webhook(started, APPROVED)
        headers["X-HMAC-SIGNATURE"] = headers["X-HMAC-SIGNATURE"].upper()
        with commit():
            assert self.post_webhook(client, body, headers).status_code == 200
        started.refresh_from_db()
        assert started.status == Status.DONE

    def test_tampered_body_is_refused(self, client, started):
        body, headers = self.webhook(started, APPROVED)
        tampered = body.replace(b'"approved"', b'"declined"')
        assert self.post_webhook(client, tampered, headers).status_code == 401
        started.refresh_from_db()
        assert started.status == Status.CREATED

    # -- status mapping, verdict, reasons ---------------------------------------------------------------

    @pytest.mark.parametrize(
        ("raw", "status", "verdict"),
        [
            ("created", Status.CREATED, Verdict.NONE),
            ("started", Status.IN_PROGRESS, Verdict.NONE),
            ("submitted", Status.IN_PROGRESS, Verdict.NONE),
            ("review", Status.IN_PROGRESS, Verdict.REVIEW),
            ("resubmission_requested", Status.IN_PROGRESS, Verdict.RESUBMISSION),
            ("approved", Status.DONE, Verdict.APPROVED),
            ("declined", Status.FAILED, Verdict.DECLINED),
            ("expired", Status.EXPIRED, Verdict.NONE),
            ("abandoned", Status.EXPIRED, Verdict.NONE),
        ],
    )
    def test_every_status_maps(self, rsps, started, backend, raw, status, verdict):
        rsps.add("GET", f"{BASE}/v1/sessions/{EXTERNAL_ID}/decision", json=decision_answer(decision(raw)))
        report = backend.get_status(started)
        assert (report.status, report.verdict, report.provider_status) == (status, verdict, raw)
        parsed = backend.parse_webhook(decision_answer(decision(raw)))
        assert parsed.report is not None
        assert (parsed.report.status, parsed.report.verdict) == (status, verdict)

    def test_no_decision_yet_is_created(self, rsps, started, backend):
        rsps.add("GET", f"{BASE}/v1/sessions/{EXTERNAL_ID}/decision", json=decision_answer(None))
        report = backend.get_status(started)
        assert (report.status, report.provider_status, report.verdict) == (Status.CREATED, "", "")

    @pytest.mark.parametrize(
        ("code", "text", "reasons"),
        [
            (102, "Suspected document tampering", ("102",)),
            ("204", None, ("204",)),
            (None, "Known fraud", ("Known fraud",)),
            (None, None, ()),
        ],
    )
    def test_reasons_are_the_reason_codes(self, backend, code, text, reasons):
        report, _ = backend.decision_report(decision("declined", reason_code=code, reason=text))
        assert report.reasons == reasons

    def test_review_then_resubmission_then_approval(self, client, started, signal_log, commit):
        for status, extra in (("review", {}), ("resubmission_requested", {"reasonCode": 204})):
            body = json.dumps(decision_answer(decision(status, **extra))).encode()
            with commit():
                response = self.post_webhook(client, body, {"X-HMAC-SIGNATURE": veriff_recipe(body, SHARED)})
            assert response.json()["status"] == "processed"
            started.refresh_from_db()
            assert (started.status, started.provider_status) == (Status.IN_PROGRESS, status)
        assert started.provider_verdict == Verdict.RESUBMISSION and started.provider_reasons == ["204"]
        # The new attempt's approval is another delivery (its attemptId differs).
        final = decision("approved", attemptId="a1b2c3d4-0000-4000-8000-000000000002")
        body = json.dumps(decision_answer(final)).encode()
        with commit():
            response = self.post_webhook(client, body, {"X-HMAC-SIGNATURE": veriff_recipe(body, SHARED)})
        assert response.json()["status"] == "processed"
        started.refresh_from_db()
        assert started.status == Status.DONE and started.decision == VerificationSession.Decision.APPROVED
        assert len(signal_log.of("verification_finished")) == 1

    def test_event_webhook_starts_the_session(self, client, started, commit):
        payload = {"id": EXTERNAL_ID, "feature": "selfid", "code": 7001, "action": "started"}
        body = json.dumps(payload).encode()
        with commit():
            response = self.post_webhook(client, body, {"X-HMAC-SIGNATURE": veriff_recipe(body, SHARED)})
        assert response.json()["status"] == "processed"
        started.refresh_from_db()
        assert (started.status, started.provider_status) == (Status.IN_PROGRESS, "started")

    def test_delivery_ids(self, backend):
        parsed = backend.parse_webhook(decision_answer(decision("approved")))
        assert parsed.delivery_id == f"{EXTERNAL_ID}:approved:a1b2c3d4-0000-4000-8000-000000000001"
        assert parsed.external_id == EXTERNAL_ID and not parsed.pull
        parsed = backend.parse_webhook(decision_answer(decision("approved", attemptId=None)))
        assert parsed.delivery_id == f"{EXTERNAL_ID}:approved:2019-11-06T07:18:36.916Z"
        event = backend.parse_webhook({"id": EXTERNAL_ID, "action": "submitted", "code": 7002, "vendorData": "v"})
        assert event.delivery_id == f"{EXTERNAL_ID}:submitted:7002" and event.session_id == "v"

    @pytest.mark.parametrize(
        "payload",
        [
            {"id": EXTERNAL_ID, "action": "media_uploaded"},
            {"checkType": "updated_result", "sessionId": EXTERNAL_ID, "matchStatus": "possible_match"},
            {"verification": [1, 2]},
            {"action": ["started"], "id": EXTERNAL_ID},
        ],
    )
    def test_webhooks_that_say_nothing_of_a_state_are_ignored(self, client, started, payload):
        body = json.dumps(payload).encode()
        response = self.post_webhook(client, body, {"X-HMAC-SIGNATURE": veriff_recipe(body, SHARED)})
        assert (response.status_code, response.json()["status"]) == (200, "ignored")
        started.refresh_from_db()
        assert started.status == Status.CREATED

    @pytest.mark.parametrize(
        "verification",
        [
            decision("inflow_completed"),
            decision(None),
            decision(["approved"]),
            decision("declined", reason_code={"code": 1}),
            decision("declined", reason=["x"]),
            decision("approved", reason_code=True),
        ],
    )
    def test_signed_decisions_of_unknown_shape_change_nothing(self, client, started, verification):
        body = json.dumps(decision_answer(verification)).encode()
        response = self.post_webhook(client, body, {"X-HMAC-SIGNATURE": veriff_recipe(body, SHARED)})
        assert (response.status_code, response.json()["status"]) == (200, "unknown status")
        started.refresh_from_db()
        assert started.status == Status.CREATED

    # -- hostile answers ----------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "answer",
        [
            [],
            "approved",
            {},
            {"status": "success"},
            {"verification": "approved"},
            {"verification": []},
            {"verification": decision("weird")},
            {"verification": decision(7)},
            {"verification": decision("declined", reason_code=[102])},
            {"verification": decision("approved", reason=5)},
            {"verification": decision("approved", id="another-session")},
            {"verification": decision("approved", id=5)},
        ],
    )
    def test_hostile_decision_answers_are_unavailable(self, rsps, started, backend, answer):
        rsps.add("GET", f"{BASE}/v1/sessions/{EXTERNAL_ID}/decision", json=answer)
        with pytest.raises(ProviderUnavailable):
            backend.get_status(started)

    def test_non_json_decision_answer_is_unavailable(self, rsps, started, backend):
        rsps.add("GET", f"{BASE}/v1/sessions/{EXTERNAL_ID}/decision", body="<html>oops</html>")
        with pytest.raises(ProviderUnavailable):
            backend.get_status(started)

    def test_deeply_nested_decision_is_unavailable(self, rsps, started, backend):
        nested: Any = "x"
        for _ in range(200):
            nested = {"a": nested}
        rsps.add(
            "GET", f"{BASE}/v1/sessions/{EXTERNAL_ID}/decision", json={"verification": decision("approved", x=nested)}
        )
        with pytest.raises(ProviderUnavailable):
            backend.get_status(started)

    @pytest.mark.parametrize(
        "answer",
        [
            [],
            {},
            {"status": "success", "verification": None},
            {"verification": ["x"]},
            {"verification": {"id": 5, "url": HOSTED}},
            {"verification": {"id": "", "url": HOSTED}},
            {"verification": {"id": "x" * 300, "url": HOSTED}},
            {"verification": {"id": EXTERNAL_ID}},
            {"verification": {"id": EXTERNAL_ID, "url": "javascript:alert(1)"}},
            {"verification": {"id": EXTERNAL_ID, "url": ["https://x"]}},
        ],
    )
    def test_hostile_create_answers_are_unavailable(self, rsps, user, answer):
        rsps.add("POST", f"{BASE}/v1/sessions", json=answer, status=201)
        with pytest.raises(ProviderUnavailable):
            services.start_verification(user=user, provider=self.ALIAS)
        assert not VerificationSession.objects.exists()

    @pytest.mark.parametrize(
        ("status", "code", "error"),
        [
            (400, 1102, ProviderRejected),
            (401, 1803, ProviderAuthError),
            (401, 1819, ProviderAuthError),
            (404, "404", ProviderRejected),
            (500, 500, ProviderUnavailable),
        ],
    )
    def test_error_codes_are_kept(self, rsps, user, status, code, error):
        body = {"status": "fail", "code": code, "message": "no"}
        rsps.add("POST", f"{BASE}/v1/sessions", json=body, status=status)
        with pytest.raises(error) as caught:
            services.start_verification(user=user, provider=self.ALIAS)
        assert caught.value.code == code

    def test_poll_timeout_is_unavailable(self, rsps, started, backend):
        rsps.add("GET", f"{BASE}/v1/sessions/{EXTERNAL_ID}/decision", body=requests.ConnectTimeout("slow"))
        with pytest.raises(ProviderUnavailable):
            backend.get_status(started)

    # -- results: check rows, identity data ---------------------------------------------------------------

    def test_check_rows_of_an_approval(self, backend):
        report, _ = backend.decision_report(decision("approved"))
        rows = {row.scope: row for row in backend.check_rows(["document", "face_match", "liveness"], report.result)}
        assert [rows[name].passed for name in ("decision", "document", "face_match", "liveness")] == [True] * 4
        assert "risk_labels" not in rows

    @pytest.mark.parametrize(
        ("code", "document", "face_match"),
        [(103, None, False), (120, None, False), (102, False, None), ("205", False, None), (106, None, None)],
    )
    def test_check_rows_of_a_decline(self, backend, code, document, face_match):
        report, _ = backend.decision_report(decision("declined", reason_code=code, reason="because"))
        rows = {row.scope: row for row in backend.check_rows(["document", "face_match"], report.result)}
        assert rows["decision"].passed is False
        assert rows["decision"].detail == f"declined {code} because"
        assert (rows["document"].passed, rows["face_match"].passed) == (document, face_match)
        failed = [row for row in rows.values() if row.scope != "decision" and row.passed is False]
        assert all(row.detail == str(code) for row in failed)
        outcomes = backend.scope_outcomes(["document", "face_match"], report.result)
        assert outcomes == {"document": document, "face_match": face_match}

    def test_check_rows_survive_any_stored_shape(self, backend):
        hostile = {"status": ["x"], "reasonCode": {"a": 1}, "reason": 5, "riskLabels": "x", "decisionScore": True}
        rows = backend.check_rows(["document"], hostile)
        assert [(row.scope, row.passed) for row in rows] == [("decision", None), ("document", None)]
        labels = {
            "status": "review",
            "riskLabels": [{"label": "document_crosslinked_with_fraud"}, "x", {"label": ["x"]}],
        }
        rows = {row.scope: row for row in backend.check_rows([], labels)}
        assert rows["risk_labels"].detail == "document_crosslinked_with_fraud"

    def test_identity_data_hidden_and_not_kept_in_bodies(self, client, started, backend, commit):
        report, _ = backend.decision_report(decision("approved"))
        visible = backend.sensitive_parts_removed(report.result)
        assert not {"person", "document", "additionalVerifiedData"} & set(visible)
        assert visible["status"] == "approved"
        body, headers = self.webhook(started, APPROVED)
        with commit():
            assert self.post_webhook(client, body, headers).status_code == 200
        event = VerificationEvent.objects.filter(kind=VerificationEvent.Kind.WEBHOOK).latest("id")
        for datum in ("SARAH", "MORGAN", "1967-03-30", "38001085718", "MORGA753116SM9IJ", "186.153.67.122"):
            assert datum not in event.body
        assert json.loads(event.body)["verification"]["status"] == "approved"
        started.refresh_from_db()
        assert started.result["person"]["firstName"] == "SARAH"  # kept for staff with the permission

    # -- redaction ------------------------------------------------------------------------------------------

    def test_redaction_needs_delete_enabled(self, rsps, started, backend):
        before = len(rsps.calls)
        with pytest.raises(NotImplementedError, match="DELETE_ENABLED"):
            backend.redact_session(started)
        assert len(rsps.calls) == before

    def test_redaction_wire_format(self, rsps, started, settings):
        providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
        providers[self.ALIAS] = {**self.alias_config(), "DELETE_ENABLED": True}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
        rsps.add("DELETE", f"{BASE}/v1/sessions/{EXTERNAL_ID}", json={"status": "success"})
        get_provider(self.ALIAS).redact_session(started)
        call = rsps.calls[-1].request
        assert (call.method, call.url, call.body) == ("DELETE", f"{BASE}/v1/sessions/{EXTERNAL_ID}", None)
        assert call.headers["X-HMAC-SIGNATURE"] == veriff_recipe(EXTERNAL_ID, SHARED)
        assert call.headers["X-AUTH-CLIENT"] == API_KEY

    def test_redaction_refused_is_rejected(self, rsps, started, settings):
        providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
        providers[self.ALIAS] = {**self.alias_config(), "DELETE_ENABLED": True}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
        body = {"status": "fail", "code": 1104, "message": "Session is not in a completed status."}
        rsps.add("DELETE", f"{BASE}/v1/sessions/{EXTERNAL_ID}", json=body, status=400)
        with pytest.raises(ProviderRejected):
            get_provider(self.ALIAS).redact_session(started)

    def test_ids_in_paths_are_quoted(self, backend):
        assert backend.session_path("a/b?c", "/decision") == "/v1/sessions/a%2Fb%3Fc/decision"
        assert backend.request_headers("GET", "/v1/sessions/a%2Fb%3Fc/decision", b"")[
            "X-HMAC-SIGNATURE"
        ] == veriff_recipe("a/b?c", SHARED)

    def test_secrets_absent_from_the_created_session(self, started):
        assert started.token == ""  # the legacy sessionToken is a bearer secret, and not needed
        assert "legacy-SECRET" not in repr(started)
        assert uuid.UUID(str(started.pk))
