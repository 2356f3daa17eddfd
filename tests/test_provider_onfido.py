"""Onfido: the provider contract, and Onfido's own wire: two-call create, workflow run statuses,
webhook signatures checked by Onfido's SDK, check rows, redaction, hostile answers."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import onfido
import pytest
import responses
from django.core.checks import Tags, run_checks

from verification_link import services
from verification_link.exceptions import (
    ConfigurationError,
    InvalidRequest,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
)
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider
from verification_link.providers.onfido import OnfidoProvider
from verification_link.providers.types import CheckRow

from .provider_contract import APPROVED, DECLINED, OPEN, ProviderContract

Status = VerificationSession.Status
BASE = "https://api.onfido.test/v3.6"
TOKEN = "api_sandbox.onfido-token-SECRET"
WORKFLOW_ID = "0f6e5d1c-3a7b-4c2e-9d8f-1a2b3c4d5e6f"
APPLICANT_ID = "5a1f0c2e-7b3d-4e6f-8a9b-0c1d2e3f4a5b"
RUN_ID = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
HOSTED = "https://eu.onfido.app/l/abcdef"
STATUSES = {OPEN: "processing", APPROVED: "approved", DECLINED: "declined"}


def run_answer(status: str = "awaiting_input", **extra: Any) -> dict[str, Any]:
    answer = {
        "id": RUN_ID,
        "applicant_id": APPLICANT_ID,
        "workflow_id": WORKFLOW_ID,
        "workflow_version_id": 3,
        "status": status,
        "output": {},
        "reasons": [],
        "error": None,
        "customer_user_id": "x",
        "dashboard_url": f"https://dashboard.onfido.com/results/{RUN_ID}",
        "link": {"url": HOSTED, "expires_at": "2030-01-02T03:04:05Z", "language": None},
    }
    answer.update(extra)
    return answer


def sign(secret: str, body: bytes) -> str:
    """Onfido's scheme, written out independently of the package: hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sdk_reads(secret: str, body: bytes, signature: str):
    return onfido.WebhookEventVerifier(secret).read_payload(body.decode("utf-8"), signature)


class TestOnfidoContract(ProviderContract):
    ALIAS = "onfido_under_test"
    BASE_URL = BASE
    WEBHOOK_PULLS = True
    CREATE_ENDPOINT = ("POST", f"{BASE}/applicants")
    SIGNATURE_HEADER = "X-SHA2-Signature"

    def alias_config(self) -> dict[str, Any]:
        return {
            "BACKEND": "verification_link.providers.onfido.OnfidoProvider",
            "API_TOKEN": TOKEN,
            "WORKFLOW_ID": WORKFLOW_ID,
            "BASE_URL": self.BASE_URL,
            "WEBHOOK_SECRETS": [self.SECRET, self.OLD_SECRET],
        }

    def external_id(self) -> str:
        return RUN_ID

    def hosted_url(self) -> str:
        return HOSTED

    def mock_create(self, rsps, applicant_id: str = APPLICANT_ID) -> None:
        rsps.post(f"{BASE}/applicants", status=201, json={"id": applicant_id, "first_name": "Verification"})
        rsps.post(f"{BASE}/workflow_runs", status=201, json=run_answer())

    def assert_create_request(self, calls) -> None:
        assert [(c.request.method, c.request.url) for c in calls] == [
            ("POST", f"{BASE}/applicants"),
            ("POST", f"{BASE}/workflow_runs"),
        ]
        for call in calls:
            assert call.request.headers["Authorization"] == f"Token token={TOKEN}"
            assert call.request.headers["Content-Type"] == "application/json"
        assert json.loads(calls[0].request.body) == {"first_name": "Verification", "last_name": "Applicant"}
        run = json.loads(calls[1].request.body)
        session = VerificationSession.objects.get()
        assert set(run) == {"workflow_id", "applicant_id", "customer_user_id", "link"}
        assert (run["workflow_id"], run["applicant_id"]) == (WORKFLOW_ID, APPLICANT_ID)
        assert run["customer_user_id"] == str(session.pk)
        return_url = f"https://www.example.com/verify/s/{session.pk}/return/"
        assert run["link"]["completed_redirect_url"] == run["link"]["expired_redirect_url"] == return_url
        assert run["link"]["expires_at"].endswith("Z")
        assert session.token == APPLICANT_ID  # kept for the redaction

    def mock_status(self, rsps, session, outcome) -> None:
        extra = {"reasons": ["document_rejected"]} if outcome == DECLINED else {}
        output = {"document": {"result": "clear"}, "face_match": {"result": "clear", "score": 0.9}}
        rsps.get(f"{BASE}/workflow_runs/{RUN_ID}", json=run_answer(STATUSES[outcome], output=output, **extra))

    def webhook(self, session, outcome, *, secret=None, timestamp=None, delivery="evt_1"):
        status = STATUSES[outcome]
        body = json.dumps(
            {
                "payload": {
                    "resource_type": "workflow_run",
                    "action": "workflow_run.completed",
                    "object": {
                        "id": session.external_id,
                        "status": status,
                        "completed_at_iso8601": "2030-01-01T00:00:00Z",
                        "href": f"{BASE}/workflow_runs/{session.external_id}",
                    },
                }
            }
        ).encode()
        signature = sign(secret or self.SECRET, body)
        if secret is None:  # what we send is what Onfido's own SDK accepts
            assert sdk_reads(self.SECRET, body, signature).payload.object.id == session.external_id
        return body, {"X-SHA2-Signature": signature}


# -- the SDK and the signature ----------------------------------------------------------------------

ALIAS = TestOnfidoContract.ALIAS
SECRET = TestOnfidoContract.SECRET


@pytest.fixture
def onfido_alias(settings, db):
    providers = {**settings.VERIFICATION_LINK["PROVIDERS"], ALIAS: TestOnfidoContract().alias_config()}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
    return get_provider(ALIAS)


def configure(settings, **changes):
    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers[ALIAS] = {**providers[ALIAS], **changes}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
    return get_provider(ALIAS)


def test_the_sdk_verifies_what_our_verifier_signs_and_ours_what_the_sdk_would(onfido_alias):
    body = json.dumps({"payload": {"resource_type": "workflow_run", "action": "workflow_run.completed"}}).encode()
    headers = onfido_alias.webhook_verifier().sign(body)
    assert set(headers) == {"X-SHA2-Signature"}
    event = sdk_reads(SECRET, body, headers["X-SHA2-Signature"])
    assert event.payload.resource_type == "workflow_run"
    with pytest.raises(onfido.OnfidoInvalidSignatureError):
        sdk_reads("another-token", body, headers["X-SHA2-Signature"])
    # and ours accepts the independent computation, lower-case hex, and refuses a tampered body
    onfido_alias.webhook_verifier().verify({"X-SHA2-Signature": sign(SECRET, body)}, body)
    from verification_link.webhooks import WebhookRefused

    with pytest.raises(WebhookRefused):
        onfido_alias.webhook_verifier().verify({"X-SHA2-Signature": sign(SECRET, body)}, body + b" ")


def test_the_sdk_verifies_the_emulators_webhook(onfido_alias, settings):
    from verification_link.sandbox.conf import sandbox_setting
    from verification_link.sandbox.emulators.onfido import EMULATOR

    run = EMULATOR.create(request_data={"applicant_id": APPLICANT_ID, "workflow_id": WORKFLOW_ID})
    run.status, run.outcome = "approved", "pass"
    body, headers = EMULATOR.webhook(run, event="outcome")
    event = sdk_reads(sandbox_setting("ONFIDO_WEBHOOK_SECRET"), body, headers["X-SHA2-Signature"])
    assert (event.payload.object.id, event.payload.object.status.value) == (run.external_id, "approved")
    assert str(event.payload.resource.applicant_id) == APPLICANT_ID
    with pytest.raises(onfido.OnfidoInvalidSignatureError):
        sdk_reads("not-the-secret", body, headers["X-SHA2-Signature"])


# -- statuses, verdicts, reasons ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "verdict"),
    [
        ("awaiting_input", Status.IN_PROGRESS, ""),
        ("processing", Status.IN_PROGRESS, ""),
        ("awaiting_client_input", Status.IN_PROGRESS, ""),
        ("review", Status.IN_PROGRESS, "review"),
        ("approved", Status.DONE, "approved"),
        ("declined", Status.FAILED, "declined"),
        ("error", Status.FAILED, "review"),  # Onfido's failure, not the person's: reviewed, not rejected
        ("abandoned", Status.EXPIRED, ""),
    ],
)
def test_every_run_status_maps(onfido_alias, raw, status, verdict):
    report = onfido_alias.parse_run(run_answer(raw))
    assert (report.status, report.verdict, report.provider_status) == (status, verdict, raw)
    assert report.result["status"] == raw


def test_reasons_and_error_type_become_reason_codes(onfido_alias):
    assert onfido_alias.parse_run(run_answer("declined", reasons=["doc_expired", "face"])).reasons == (
        "doc_expired",
        "face",
    )
    report = onfido_alias.parse_run(run_answer("error", error={"type": "task_failed", "message": "x"}))
    assert report.reasons == ("task_failed",)
    assert report.result["error"]["type"] == "task_failed"
    assert onfido_alias.parse_run(run_answer("approved")).expires_at.isoformat() == "2030-01-02T03:04:05+00:00"


def test_review_keeps_the_session_open_with_the_verdict(onfido_alias, user, commit):
    with responses.RequestsMock() as rsps:
        TestOnfidoContract().mock_create(rsps)
        session = services.start_verification(user=user, provider=ALIAS)
        rsps.get(f"{BASE}/workflow_runs/{RUN_ID}", json=run_answer("review", reasons=["manual"]))
        with commit():
            services.refresh_session(session)
    session.refresh_from_db()
    assert (session.status, session.provider_status, session.provider_verdict) == (
        Status.IN_PROGRESS,
        "review",
        "review",
    )


# -- check rows, sensitive data ----------------------------------------------------------------------

OUTPUT = {
    "document": {"result": "consider", "sub_result": "rejected", "document_number": "X123", "dob": "1990-01-01"},
    "liveness": True,
    "face_match": {"result": "clear", "score": 0.87},
    "first_name": "Ann",
    "last_name": "Example",
}


def test_check_rows_read_the_output(onfido_alias):
    result = onfido_alias.parse_run(run_answer("declined", output=OUTPUT, reasons=["document_rejected"])).result
    rows = onfido_alias.check_rows(["document", "face_match"], result)
    assert rows == [
        CheckRow("document", False, None, "rejected"),
        CheckRow("liveness", True, None, ""),
        CheckRow("face_match", True, 0.87, "clear"),
        CheckRow("workflow", False, None, "document_rejected"),
    ]
    assert onfido_alias.scope_outcomes(["document", "face_match"], result) == {"document": False, "face_match": True}
    empty = onfido_alias.parse_run(run_answer("approved")).result
    assert onfido_alias.scope_outcomes(["document"], empty) == {"document": None}
    assert onfido_alias.check_rows(["document"], empty)[-1] == CheckRow("workflow", True, None, "approved")


@pytest.mark.parametrize(
    ("value", "row"),
    [
        ({"result": "clear", "sub_result": "suspected"}, CheckRow("document", False, None, "suspected")),
        ({"result": "clear", "sub_result": "clear", "score": 1}, CheckRow("document", True, 1.0, "clear")),
        ({"result": "unidentified"}, CheckRow("document", None, None, "unidentified")),
        ({"score": True}, CheckRow("document", None, None, "")),
        ("Consider", CheckRow("document", False, None, "Consider")),
        (False, CheckRow("document", False, None, "")),
        (["clear"], CheckRow("document", None, None, "")),
    ],
)
def test_each_output_value_shape_reads_as_a_row(onfido_alias, value, row):
    assert onfido_alias.check_rows(["document"], {"output": {"document": value}})[0] == row


def test_output_checks_setting_with_dotted_paths(onfido_alias, settings):
    backend = configure(settings, OUTPUT_CHECKS={"document": "doc_report.result", "face_match": "selfie"})
    result = {"status": "approved", "output": {"doc_report": {"result": "clear"}, "selfie": "consider"}}
    assert backend.scope_outcomes(["document", "face_match", "liveness"], result) == {
        "document": True,
        "face_match": False,
        "liveness": None,
    }


def test_identity_data_is_hidden_and_stripped_from_kept_bodies(onfido_alias):
    result = onfido_alias.parse_run(run_answer("approved", output=OUTPUT)).result
    assert result["output"]["first_name"] == "Ann"  # stored for staff with the permission
    hidden = onfido_alias.sensitive_parts_removed(result)
    text = json.dumps(hidden)
    for value in ("Ann", "Example", "X123", "1990-01-01"):
        assert value not in text
    assert hidden["output"]["document"]["result"] == "consider"
    body = {"payload": {"resource": {"output": OUTPUT, "link": {"url": HOSTED}, "status": "approved"}}}
    kept = json.dumps(onfido_alias.storable_body(body))
    for value in ("Ann", "X123", HOSTED):
        assert value not in kept
    assert '"status": "approved"' in kept
    assert body["payload"]["resource"]["link"] == {"url": HOSTED}  # not modified


# -- create: names, language, hostile answers ----------------------------------------------------------


def test_names_from_metadata_and_placeholders_from_settings(onfido_alias, user, settings):
    with responses.RequestsMock() as rsps:
        TestOnfidoContract().mock_create(rsps)
        services.start_verification(
            user=user, provider=ALIAS, metadata={"first_name": "Ann", "last_name": "Lee"}, reuse=False
        )
        assert json.loads(rsps.calls[0].request.body) == {"first_name": "Ann", "last_name": "Lee"}
        configure(settings, APPLICANT_FIRST_NAME="Site", APPLICANT_LAST_NAME="User", LANGUAGE="de", TAGS=["web"])
        rsps.reset()
        TestOnfidoContract().mock_create(rsps, applicant_id=str(uuid.uuid4()))
        services.start_verification(user=user, provider=ALIAS, reuse=False)
        assert json.loads(rsps.calls[0].request.body) == {"first_name": "Site", "last_name": "User"}
        run = json.loads(rsps.calls[1].request.body)
        assert (run["link"]["language"], run["tags"]) == ("de_DE", ["web"])


def test_bad_names_are_refused_before_any_call(onfido_alias, user, settings):
    with responses.RequestsMock() as rsps:
        with pytest.raises(InvalidRequest):
            services.start_verification(user=user, provider=ALIAS, metadata={"first_name": "<script>"})
        configure(settings, APPLICANT_LAST_NAME="")
        with pytest.raises(ConfigurationError):
            services.start_verification(user=user, provider=ALIAS)
        assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    ("applicant", "run"),
    [
        ({"first_name": "x"}, None),
        ([APPLICANT_ID], None),
        ({"id": ""}, None),
        ({"id": APPLICANT_ID}, []),
        ({"id": APPLICANT_ID}, {"link": {"url": HOSTED}}),
        ({"id": APPLICANT_ID}, run_answer(link=None)),
        ({"id": APPLICANT_ID}, run_answer(link={"url": "javascript:alert(1)"})),
        ({"id": APPLICANT_ID}, run_answer(link={"url": HOSTED, "expires_at": "tomorrow"})),
    ],
)
def test_malformed_create_answers_are_unavailable_and_the_applicant_is_deleted(onfido_alias, user, applicant, run):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post(f"{BASE}/applicants", status=201, json=applicant)
        rsps.post(f"{BASE}/workflow_runs", status=201, json=run)
        rsps.delete(f"{BASE}/applicants/{APPLICANT_ID}", status=204)
        with pytest.raises(ProviderUnavailable):
            services.start_verification(user=user, provider=ALIAS)
        deleted = [c for c in rsps.calls if c.request.method == "DELETE"]
        assert len(deleted) == (1 if run is not None else 0)
    assert not VerificationSession.objects.exists()


def test_a_refused_run_deletes_the_applicant_and_keeps_the_error_type(onfido_alias, user):
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/applicants", status=201, json={"id": APPLICANT_ID})
        error = {"error": {"type": "validation_error", "message": "bad", "fields": {"workflow_id": ["x"]}}}
        rsps.post(f"{BASE}/workflow_runs", status=422, json=error)
        rsps.delete(f"{BASE}/applicants/{APPLICANT_ID}", status=500)  # best effort: logged, not raised
        with pytest.raises(ProviderRejected) as caught:
            services.start_verification(user=user, provider=ALIAS)
    assert caught.value.code == "validation_error"


@pytest.mark.parametrize(
    "answer",
    [
        "not json",
        [run_answer("approved")],
        run_answer(7),
        run_answer("x" * 65),
        run_answer("approved", reasons="doc"),
        run_answer("approved", reasons=[1]),
        run_answer("approved", output=["x"]),
        run_answer("approved", error="boom"),
        run_answer("approved", link="https://x"),
        run_answer("approved", link={"expires_at": "2030-01-01T00:00:00"}),
        run_answer("approved", id="another-run"),
        run_answer("approved", output={"deep": json.loads("[" * 90 + "]" * 90)}),
    ],
)
def test_hostile_status_answers_are_unavailable(onfido_alias, user, answer):
    # (A status Onfido adds later is no hostile answer: see test_an_unknown_status_keeps_the_session_open.)
    with responses.RequestsMock() as rsps:
        TestOnfidoContract().mock_create(rsps)
        session = services.start_verification(user=user, provider=ALIAS)
        kwargs = {"body": answer} if isinstance(answer, str) else {"json": answer}
        rsps.get(f"{BASE}/workflow_runs/{RUN_ID}", **kwargs)
        with pytest.raises(ProviderUnavailable):
            onfido_alias.get_status(session)


# -- webhooks Onfido sends that say nothing of a run, or hostile shapes -----------------------------------


def post(client, payload: Any):
    body = json.dumps(payload).encode()
    return client.generic(
        "POST",
        f"/verify/webhook/{ALIAS}/",
        body,
        content_type="application/json",
        HTTP_X_SHA2_SIGNATURE=sign(SECRET, body),
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"payload": {"resource_type": "check", "action": "check.completed", "object": {"id": "c1", "status": "x"}}},
        {"payload": {"resource_type": "workflow_task", "action": "workflow_task.started", "object": {"id": "t1"}}},
        {"payload": "nope"},
        {"nothing": True},
    ],
)
def test_other_events_and_odd_shapes_are_ignored(onfido_alias, client, payload):
    response = post(client, payload)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"


@pytest.mark.parametrize("obj", [{}, {"id": 5, "status": ["x"]}, "run"])
def test_a_run_event_without_a_usable_id_names_no_session(onfido_alias, client, obj):
    response = post(client, {"payload": {"resource_type": "workflow_run", "object": obj}})
    assert (response.status_code, response.json()["status"]) == (200, "unknown session")


def test_a_task_event_pulls_the_run_it_names(onfido_alias, client, user, commit):
    with responses.RequestsMock() as rsps:
        TestOnfidoContract().mock_create(rsps)
        session = services.start_verification(user=user, provider=ALIAS)
        rsps.get(f"{BASE}/workflow_runs/{RUN_ID}", json=run_answer("processing"))
        task = {
            "resource_type": "workflow_task",
            "action": "workflow_task.started",
            "object": {"id": "task_1", "status": "started"},
            "resource": {"workflow_run_id": RUN_ID, "customer_user_id": str(session.pk)},
        }
        with commit():
            assert post(client, {"payload": task}).json()["status"] == "processed"
        assert len(rsps.calls) == 3
    session.refresh_from_db()
    assert session.status == Status.IN_PROGRESS
    event = VerificationEvent.objects.filter(kind=VerificationEvent.Kind.WEBHOOK).latest("id")
    assert event.delivery_id == "task_1:workflow_task.started:started"


def test_the_report_is_a_pull_named_by_run_customer_user_id_and_applicant(onfido_alias):
    parsed = onfido_alias.parse_webhook(
        {
            "payload": {
                "resource_type": "workflow_run",
                "action": "workflow_run.completed",
                "object": {"id": RUN_ID, "status": "approved"},
                "resource": {"customer_user_id": "sess-1", "applicant_id": APPLICANT_ID},
            }
        }
    )
    assert (parsed.pull, parsed.report, parsed.ignored) == (True, None, False)
    assert (parsed.external_id, parsed.session_id, parsed.token) == (RUN_ID, "sess-1", APPLICANT_ID)
    assert parsed.delivery_id == f"{RUN_ID}:workflow_run.completed:approved"


# -- redaction -----------------------------------------------------------------------------------------


def test_redaction_deletes_the_applicant(onfido_alias, user):
    assert onfido_alias.supports_redaction and not onfido_alias.supports_cancel
    with responses.RequestsMock() as rsps:
        TestOnfidoContract().mock_create(rsps)
        session = services.start_verification(user=user, provider=ALIAS)
        rsps.delete(f"{BASE}/applicants/{APPLICANT_ID}", status=204)
        onfido_alias.redact_session(session)
        call = rsps.calls[-1].request
        assert (call.method, call.url, call.body) == ("DELETE", f"{BASE}/applicants/{APPLICANT_ID}", None)
        assert call.headers["Authorization"] == f"Token token={TOKEN}"
        rsps.replace(responses.DELETE, f"{BASE}/applicants/{APPLICANT_ID}", status=404, json={"error": {}})
        onfido_alias.redact_session(session)  # already deleted: done
        for status, error in ((401, ProviderAuthError), (500, ProviderUnavailable), (422, ProviderRejected)):
            rsps.replace(responses.DELETE, f"{BASE}/applicants/{APPLICANT_ID}", status=status)
            with pytest.raises(error):
                onfido_alias.redact_session(session)


# -- configuration -------------------------------------------------------------------------------------


def check_ids(settings) -> list[str]:
    return [m.id for m in run_checks(tags=[Tags.compatibility]) if ALIAS in m.msg]


def test_key_mode_warnings(onfido_alias, settings):
    settings.DEBUG = True
    configure(settings, API_TOKEN="api_live.abc")
    assert "verification_link.W005" in check_ids(settings)
    configure(settings, API_TOKEN="api_sandbox.abc")
    assert "verification_link.W005" not in check_ids(settings)
    settings.DEBUG = False
    assert "verification_link.W006" in check_ids(settings)
    configure(settings, API_TOKEN="api_live.abc")
    assert "verification_link.W006" not in check_ids(settings)


def test_language_and_webhook_settings_are_checked(onfido_alias, settings):
    configure(settings, LANGUAGE="klingon")
    assert "verification_link.E010" in check_ids(settings)
    configure(settings, LANGUAGE="pt", WEBHOOK_SECRETS=[])
    ids = check_ids(settings)
    assert "verification_link.E010" not in ids
    assert "verification_link.W003" in ids


def test_language_codes():
    assert [OnfidoProvider.language_code(v) for v in ("en", "de-DE", "fr_fr", "nl_NL", "xx", None, "")] == [
        "en_US",
        "de_DE",
        "fr_FR",
        "nl_NL",
        "",
        "",
        "",
    ]


def test_secrets_stay_out_of_reprs(onfido_alias):
    texts = [repr(onfido_alias), repr(onfido_alias.webhook_verifier()), str(onfido_alias.__dict__.get("alias"))]
    for text in texts:
        assert TOKEN not in text and SECRET not in text


def test_an_unknown_status_keeps_the_session_open(onfido_alias):
    report = get_provider(ALIAS).parse_run(run_answer("finished"))
    assert (report.status, report.provider_status, report.verdict) == (Status.IN_PROGRESS, "finished", "")


def test_an_error_run_is_reviewed_not_rejected(onfido_alias):
    from verification_link.policy import default_decision_policy

    session = VerificationSession(provider=ALIAS, status=Status.FAILED, provider_verdict="review")
    assert default_decision_policy(session) == VerificationSession.Decision.REVIEW
    session.provider_verdict = "declined"
    assert default_decision_policy(session) == VerificationSession.Decision.REJECTED
