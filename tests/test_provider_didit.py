"""Didit: the provider contract, the webhook scheme checked against the community SDK ``didit``
(didit-sdk 0.4.0: it signs what we verify, and verifies what our emulator sends), the status
vocabulary, verdicts and reasons, check rows, hostile answers and the delete (redaction) call."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import responses
from didit.webhooks import compute_signature, verify_webhook_signature

from verification_link import services
from verification_link.exceptions import ProviderRejected, ProviderUnavailable
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider
from verification_link.providers.didit import DiditProvider, DiditWebhookVerifier, canonical_json
from verification_link.sandbox.emulators.didit import EMULATOR
from verification_link.sandbox.models import SandboxHostedSession
from verification_link.webhooks import WebhookRefused

from .provider_contract import APPROVED, DECLINED, ProviderContract

Status = VerificationSession.Status
BASE = "https://didit.test"
EXTERNAL = "11111111-2222-3333-4444-555555555555"
HOSTED = "https://verify.didit.me/session/tok_abc"
API_KEY = "didit-api-key-SECRET"
RAW_STATUS = {APPROVED: "Approved", DECLINED: "Declined", "open": "In Progress"}


def decision(status: str, *, face: str = "Approved", warnings: list[Any] | None = None) -> dict[str, Any]:
    return {
        "session_id": EXTERNAL,
        "session_number": 43762,
        "session_url": HOSTED,
        "status": status,
        "environment": "live",
        "features": ["ID_VERIFICATION", "LIVENESS", "FACE_MATCH"],
        "vendor_data": "ours",
        "contact_details": {"email": "ann@example.com"},
        "id_verifications": [
            {
                "node_id": "n1",
                "status": "Approved",
                "first_name": "Carmen",
                "last_name": "Española",
                "document_number": "CAA000000",
                "date_of_birth": "1990-05-01",
                "portrait_image": "https://media.didit.test/p.jpg",
                "warnings": [],
            }
        ],
        "liveness_checks": [{"node_id": "n2", "status": "Approved", "score": 97.5, "warnings": []}],
        "face_matches": [{"node_id": "n3", "status": face, "score": 20.0, "warnings": warnings or []}],
        "warnings": [],
    }


def outcome_decision(outcome: str) -> dict[str, Any]:
    if outcome == DECLINED:
        return decision("Declined", face="Declined", warnings=[{"risk": "LOW_FACE_MATCH_SIMILARITY"}])
    return decision(RAW_STATUS[outcome])


def sdk_signed(payload: dict[str, Any], secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers, signed by the SDK: X-Signature-V2 over the payload, X-Timestamp."""
    stamp = payload["timestamp"] if timestamp is None else timestamp
    return {"X-Timestamp": str(stamp), "X-Signature-V2": compute_signature(secret, payload, version="v2")}


class TestDiditContract(ProviderContract):
    BASE_URL = BASE
    SIGNS_TIMESTAMP = True
    CREATE_ENDPOINT = ("POST", f"{BASE}/v3/session/")
    SIGNATURE_HEADER = "X-Signature-V2"

    def alias_config(self):
        return {
            "BACKEND": "verification_link.providers.didit.DiditProvider",
            "API_KEY": API_KEY,
            "WORKFLOW_ID": "wf-0001",
            "BASE_URL": self.BASE_URL,
            "WEBHOOK_SECRETS": [self.SECRET, self.OLD_SECRET],
        }

    def external_id(self):
        return EXTERNAL

    def hosted_url(self):
        return HOSTED

    def mock_create(self, rsps):
        answer = {
            "session_id": EXTERNAL,
            "session_number": 1,
            "session_token": "tok_abc",
            "url": HOSTED,
            "status": "Not Started",
            "workflow_id": "wf-0001",
        }
        rsps.add("POST", f"{BASE}/v3/session/", json=answer, status=201)

    def assert_create_request(self, calls):
        assert len(calls) == 1
        request = calls[0].request
        assert request.url == f"{BASE}/v3/session/"
        assert request.headers["x-api-key"] == API_KEY
        assert request.headers["Content-Type"] == "application/json"
        body = json.loads(request.body)
        session = VerificationSession.objects.get()
        assert body == {
            "workflow_id": "wf-0001",
            "vendor_data": str(session.pk),
            "callback": f"https://www.example.com/verify/s/{session.pk}/return/",
            "metadata": {"verification_session_id": str(session.pk)},
        }
        assert session.token == "tok_abc"

    def mock_status(self, rsps, session, outcome):
        url = f"{BASE}/v3/session/{session.external_id}/decision/"
        rsps.add("GET", url, json=outcome_decision(outcome))

    def webhook(self, session, outcome, *, secret=None, timestamp=None, delivery="evt_1"):
        stamp = int(time.time()) if timestamp is None else timestamp
        status = RAW_STATUS[outcome]
        payload = {
            "event_id": delivery,
            "webhook_type": "status.updated",
            "timestamp": stamp,
            "created_at": stamp,
            "session_id": session.external_id,
            "status": status,
            "vendor_data": str(session.pk),
            "metadata": session.metadata,
        }
        if outcome != "open":
            payload["decision"] = outcome_decision(outcome)
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return body, sdk_signed(payload, secret or self.SECRET)

    # -- provider-specific, on top of the contract ------------------------------------------------

    def test_webhook_keeps_no_identity_data(self, client, rsps, started, commit):
        assert self.deliver(client, rsps, started, APPROVED, commit).status_code == 200
        event = VerificationEvent.objects.filter(kind=VerificationEvent.Kind.WEBHOOK).latest("id")
        assert event.processed and event.delivery_id == "evt_1"
        for value in ("Carmen", "CAA000000", "1990-05-01", "media.didit.test", "ann@example.com", HOSTED):
            assert value not in event.body
        assert '"liveness_checks"' in event.body
        started.refresh_from_db()
        assert started.provider_status == "Approved"
        assert started.result["id_verifications"][0]["document_number"] == "CAA000000"  # for permitted staff
        assert "session_url" not in started.result

    def test_simple_signature_is_refused_by_default(self, client, started):
        body, _headers = self.webhook(started, APPROVED)
        payload = json.loads(body)
        verifier = get_provider(self.ALIAS).webhook_verifier()
        headers = {k: v for k, v in verifier.sign(body).items() if k in ("X-Timestamp", "X-Signature-Simple")}
        assert "X-Signature-Simple" in headers and payload["timestamp"]
        assert self.post_webhook(client, body, headers).status_code == 401
        started.refresh_from_db()
        assert not started.is_final

    def test_simple_signature_when_allowed_pulls_the_decision(self, client, rsps, started, settings, commit):
        config = dict(settings.VERIFICATION_LINK)
        alias = {**self.alias_config(), "WEBHOOK_ALLOW_SIMPLE": True}
        settings.VERIFICATION_LINK = {**config, "PROVIDERS": {**config["PROVIDERS"], self.ALIAS: alias}}
        body, _headers = self.webhook(started, APPROVED)
        verifier = get_provider(self.ALIAS).webhook_verifier()
        headers = {k: v for k, v in verifier.sign(body).items() if k in ("X-Timestamp", "X-Signature-Simple")}
        # The body claims Approved; the decision endpoint says Declined: only the answer counts.
        self.mock_status(rsps, started, DECLINED)
        with commit():
            assert self.post_webhook(client, body, headers).status_code == 200
        started.refresh_from_db()
        assert started.status == Status.FAILED
        assert rsps.calls[-1].request.method == "GET"


# -- the webhook scheme against the SDK ----------------------------------------------------------

SECRET = "wh_secret_for_tests"


def verifier(**config: Any) -> DiditWebhookVerifier:
    return DiditWebhookVerifier("d", {"WEBHOOK_SECRETS": [SECRET, "old"], **config}, DiditProvider.webhook_defaults)


def envelope(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "event_id": str(uuid.uuid4()),
        "webhook_type": "status.updated",
        "timestamp": now,
        "created_at": now,
        "session_id": EXTERNAL,
        "status": "Approved",
        **extra,
    }


def fresh(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` stamped now: the list below is built at collection, maybe minutes before its test
    runs (past the ±300 s the SDK and we allow)."""
    now = int(time.time())
    return {**payload, "timestamp": now, "created_at": now}


PAYLOADS = [
    envelope(),
    envelope(vendor_data="Español ✓ 日本", metadata={"z": 1, "a": {"y": [3, 1], "b": "/path/"}}),
    envelope(decision={"liveness_checks": [{"score": 100.0, "threshold": 0.75}], "warnings": []}, metadata={}),
    envelope(metadata={"10": "x", "2": "y", "nested": {"empty": {}, "list": []}}),
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_sdk_signatures_verify(payload, ensure_ascii):
    """The SDK's X-Signature-V2 (over the parsed payload) and X-Signature (over the raw bytes) pass
    our check, whatever the body's own encoding of non-ASCII text and floats."""
    payload = fresh(payload)
    raw = json.dumps(payload, ensure_ascii=ensure_ascii).encode()
    stamp = str(payload["timestamp"])
    v = verifier()
    v.verify({"X-Timestamp": stamp, "X-Signature-V2": compute_signature(SECRET, payload, version="v2")}, raw)
    v.verify({"X-Timestamp": stamp, "X-Signature": compute_signature(SECRET, raw, version="v1")}, raw)
    v.verify({"X-Timestamp": stamp, "X-Signature-V2": compute_signature("old", payload, version="v2")}, raw)
    with pytest.raises(WebhookRefused, match="does not match"):
        v.verify({"X-Timestamp": stamp, "X-Signature-V2": compute_signature("wrong", payload)}, raw)
    tampered = json.dumps({**payload, "status": "Declined"}).encode()
    with pytest.raises(WebhookRefused, match="does not match"):
        v.verify({"X-Timestamp": stamp, "X-Signature-V2": compute_signature(SECRET, payload)}, tampered)
    with pytest.raises(WebhookRefused, match="does not match"):
        v.verify({"X-Timestamp": stamp, "X-Signature": compute_signature(SECRET, raw, version="v1")}, raw + b" ")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_our_signatures_pass_the_sdk(payload):
    payload = fresh(payload)
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    headers = verifier().sign(raw)
    assert verify_webhook_signature(raw, headers, SECRET)
    assert verify_webhook_signature(raw, {"X-Signature-V2": headers["X-Signature-V2"]}, SECRET)
    assert verify_webhook_signature(raw, {"X-Signature": headers["X-Signature"]}, SECRET)
    assert not verify_webhook_signature(raw, headers, "wrong")
    assert canonical_json(payload) == canonical_json(json.loads(raw))


@pytest.mark.parametrize("outcome", ["pass", "fail", "review", "resubmit", "abandon", "expire"])
def test_the_sdk_verifies_what_the_emulator_sends(db, outcome):
    session = EMULATOR.create(request_data={"workflow_id": "wf", "vendor_data": "v", "metadata": {"k": "ü"}})
    session.outcome, session.status = outcome, EMULATOR.statuses[outcome]
    session.reason = EMULATOR.reasons.get(outcome, "")
    body, headers = EMULATOR.webhook(session, event="outcome")
    assert verify_webhook_signature(body, headers, emulator_secret())
    assert not verify_webhook_signature(body, headers, "wrong")
    verifier_for_sandbox().verify(headers, body)
    # Each of the three signatures on its own (the metadata is non-ASCII: V2 differs from the body).
    for name in ("X-Signature-V2", "X-Signature"):
        alone = {"X-Timestamp": headers["X-Timestamp"], name: headers[name]}
        assert verify_webhook_signature(body, alone, emulator_secret()), name
        verifier_for_sandbox().verify(alone, body)
    simple = {"X-Timestamp": headers["X-Timestamp"], "X-Signature-Simple": headers["X-Signature-Simple"]}
    verifier_for_sandbox(WEBHOOK_ALLOW_SIMPLE=True).verify(simple, body)
    payload = json.loads(body)
    assert payload["status"] == EMULATOR.statuses[outcome] and headers["X-Timestamp"] == str(payload["timestamp"])
    assert ("decision" in payload) == (payload["status"] in ("Approved", "Declined", "In Review", "Abandoned"))
    assert isinstance(SandboxHostedSession.objects.get(pk=session.pk), SandboxHostedSession)


def emulator_secret() -> str:
    from verification_link.sandbox.conf import sandbox_setting

    return sandbox_setting("DIDIT_WEBHOOK_SECRET")


def verifier_for_sandbox(**config: Any) -> DiditWebhookVerifier:
    config = {"WEBHOOK_SECRETS": [emulator_secret()], **config}
    return DiditWebhookVerifier("s", config, DiditProvider.webhook_defaults)


def test_simple_signature_only_when_allowed():
    payload = envelope()
    raw = json.dumps(payload).encode()
    headers = {k: v for k, v in verifier().sign(raw).items() if k in ("X-Timestamp", "X-Signature-Simple")}
    with pytest.raises(WebhookRefused, match="missing"):
        verifier().verify(headers, raw)
    verifier(WEBHOOK_ALLOW_SIMPLE=True).verify(headers, raw)
    with pytest.raises(WebhookRefused, match="does not match"):  # it covers its four fields
        verifier(WEBHOOK_ALLOW_SIMPLE=True).verify(headers, json.dumps({**payload, "status": "Declined"}).encode())


def test_timestamps():
    payload = envelope()
    raw = json.dumps(payload).encode()
    good = verifier().sign(raw)
    verifier().verify(good, raw)
    with pytest.raises(WebhookRefused, match="missing X-Timestamp"):
        verifier().verify({k: v for k, v in good.items() if k != "X-Timestamp"}, raw)
    # The header is not signed: one that differs from the body's signed copy is refused.
    with pytest.raises(WebhookRefused, match="differs"):
        verifier().verify({**good, "X-Timestamp": str(payload["timestamp"] - 5)}, raw)
    for offset in (-330, 330):  # clear of the boundary: whole-second stamps, a float clock later
        stale = envelope(timestamp=payload["timestamp"] + offset)
        stale_raw = json.dumps(stale).encode()
        with pytest.raises(WebhookRefused, match="tolerance"):
            verifier().verify(verifier().sign(stale_raw), stale_raw)
    verifier(WEBHOOK_TOLERANCE=600).verify(verifier().sign(stale_raw), stale_raw)
    # A body without a signed timestamp proves no freshness.
    bare = {k: v for k, v in payload.items() if k not in ("timestamp", "created_at")}
    bare_raw = json.dumps(bare).encode()
    headers = {"X-Timestamp": good["X-Timestamp"], "X-Signature": compute_signature(SECRET, bare_raw, version="v1")}
    with pytest.raises(WebhookRefused, match="differs"):
        verifier().verify(headers, bare_raw)
    # Older bodies: created_at is the signed copy.
    old = {k: v for k, v in payload.items() if k != "timestamp"}
    old_raw = json.dumps(old).encode()
    verifier().verify({"X-Timestamp": good["X-Timestamp"], "X-Signature-V2": compute_signature(SECRET, old)}, old_raw)


def test_header_names_are_settings():
    payload = envelope()
    raw = json.dumps(payload).encode()
    v = verifier(WEBHOOK_SIGNATURE_HEADER="X-Didit-Signature", WEBHOOK_SIGNATURE_V2_HEADER=None)
    sig = compute_signature(SECRET, raw, version="v1")
    v.verify({"X-Timestamp": str(payload["timestamp"]), "X-Didit-Signature": sig}, raw)
    with pytest.raises(WebhookRefused, match="missing"):
        v.verify({"X-Timestamp": str(payload["timestamp"]), "X-Signature-V2": compute_signature(SECRET, payload)}, raw)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"WEBHOOK_ALLOW_SIMPLE": "yes"}, "WEBHOOK_ALLOW_SIMPLE"),
        ({"WEBHOOK_TIMESTAMP_HEADER": None}, "WEBHOOK_TIMESTAMP_HEADER"),
        ({"WEBHOOK_SIGNATURE_V2_HEADER": ""}, "WEBHOOK_SIGNATURE_V2_HEADER"),
        ({"WEBHOOK_SECRETS": "one-string"}, "WEBHOOK_SECRETS"),
    ],
)
def test_bad_webhook_settings_refuse_everything(config, key):
    v = verifier(**config)
    assert key in v.config_error
    raw = json.dumps(envelope()).encode()
    with pytest.raises(WebhookRefused):
        v.verify(verifier().sign(raw), raw)
    messages = DiditProvider.check_config("d", {"API_KEY": "k", "WORKFLOW_ID": "w", "WEBHOOK_SECRETS": ["s"], **config})
    assert any(m.id == "verification_link.E009" and key in m.msg for m in messages)


def test_hostile_signature_headers_are_refused_not_errors():
    raw = json.dumps(envelope()).encode()
    stamp = str(json.loads(raw)["timestamp"])
    for bad in ("é" * 64, "z" * 64, "a" * 10000, "", " "):
        with pytest.raises(WebhookRefused):
            verifier().verify({"X-Timestamp": stamp, "X-Signature-V2": bad, "X-Signature": bad}, raw)
    for body in (b"not json", b"[1,2]", b'{"timestamp": "x"}', b'{"a": "\\ud800"}'):
        with pytest.raises(WebhookRefused):
            verifier().verify({"X-Timestamp": stamp, "X-Signature-V2": "0" * 64}, body)


# -- statuses, verdicts, reasons, rows ---------------------------------------------------------------


def provider(**config: Any) -> DiditProvider:
    return DiditProvider("d", {"API_KEY": API_KEY, "WORKFLOW_ID": "w", "BASE_URL": BASE, **config})


@pytest.mark.parametrize(
    ("raw", "status", "verdict"),
    [
        ("Not Started", Status.CREATED, ""),
        ("In Progress", Status.IN_PROGRESS, ""),
        ("Awaiting User", Status.IN_PROGRESS, ""),
        ("In Review", Status.IN_PROGRESS, "review"),
        ("Resubmitted", Status.IN_PROGRESS, "resubmission"),
        ("Approved", Status.DONE, "approved"),
        ("Declined", Status.FAILED, "declined"),
        ("Abandoned", Status.EXPIRED, ""),
        ("Expired", Status.EXPIRED, ""),
        ("Kyc Expired", Status.EXPIRED, ""),
        ("KYC Expired", Status.EXPIRED, ""),
        ("kyc  expired", Status.EXPIRED, ""),
        ("APPROVED", Status.DONE, "approved"),
    ],
)
def test_status_mapping(raw, status, verdict):
    report = provider().report(raw, None, "test")
    assert (report.status, report.verdict, report.provider_status) == (status, verdict, raw)


def test_unknown_status_and_the_status_map_setting():
    assert provider().report("Frozen", None, "t") is None
    report = provider(STATUS_MAP={"frozen": "CANCELED", "Approved": "IN_PROGRESS"}).report("Frozen", None, "t")
    assert report.status == Status.CANCELED
    assert provider(STATUS_MAP={"Approved": "IN_PROGRESS"}).report("Approved", None, "t").status == "IN_PROGRESS"
    assert provider(STATUS_MAP={"frozen": "NOT_A_STATUS"}).report("Frozen", None, "t") is None


def test_reasons():
    p = provider()
    declined = p.report("Declined", outcome_decision(DECLINED), "t")
    assert declined.reasons == ("LOW_FACE_MATCH_SIMILARITY", "face_match_declined")
    bare = p.report("Declined", decision("Declined", face="Declined"), "t")
    assert bare.reasons == ("face_match_declined",)
    assert p.report("Declined", None, "t").reasons == ("declined",)
    review = p.report("In Review", decision("In Review", face="In Review", warnings=["POSSIBLE_DUPLICATED_USER"]), "t")
    assert review.reasons == ("POSSIBLE_DUPLICATED_USER",)
    approved = decision("Approved", warnings=[{"risk": "LOW_RISK_INFO"}])
    assert p.report("Approved", approved, "t").reasons == ()


def test_check_rows_and_scope_outcomes():
    p = provider()
    result = p.result_of(outcome_decision(DECLINED), "t")
    rows = {row.scope: row for row in p.check_rows(["document", "liveness", "face_match", "aml"], result)}
    assert list(rows) == ["document", "liveness", "face_match", "aml"]
    assert (rows["document"].passed, rows["liveness"].passed, rows["face_match"].passed) == (True, True, False)
    assert rows["liveness"].score == 97.5 and rows["face_match"].detail == "LOW_FACE_MATCH_SIMILARITY"
    assert rows["aml"].passed is None
    outcomes = p.scope_outcomes(["document", "liveness", "face_match", "aml"], result)
    assert outcomes == {"document": True, "liveness": True, "face_match": False, "aml": None}
    two = {"liveness_checks": [{"node_id": "a", "status": "Approved"}, {"node_id": "b", "status": "In Review"}]}
    assert [(r.scope, r.passed, r.detail) for r in p.check_rows([], two)] == [
        ("liveness (a)", True, ""),
        ("liveness (b)", None, "In Review"),
    ]
    assert p.scope_outcomes(["liveness"], two) == {"liveness": None}


def test_sensitive_parts_removed():
    p = provider(SENSITIVE_FIELDS=["document_type"])
    result = p.result_of(outcome_decision(APPROVED), "t")
    hidden = json.dumps(p.sensitive_parts_removed(result))
    for value in ("Carmen", "CAA000000", "1990-05-01", "media.didit.test", "Identity Card"):
        assert value not in hidden
    assert "97.5" in hidden
    assert "contact_details" not in result and "session_url" not in result


def test_webhook_parsing():
    p = provider()
    body = envelope(vendor_data="0b5c3c53-3a9d-4a4b-9f0e-1b1e5f1c9a11", decision=outcome_decision(APPROVED))
    parsed = p.parse_webhook(body)
    assert (parsed.external_id, parsed.session_id, parsed.delivery_id) == (
        EXTERNAL,
        "0b5c3c53-3a9d-4a4b-9f0e-1b1e5f1c9a11",
        body["event_id"],
    )
    assert parsed.report.status == Status.DONE and not parsed.pull and not parsed.ignored
    no_id = p.parse_webhook({k: v for k, v in body.items() if k != "event_id"})
    assert no_id.delivery_id == f"{EXTERNAL}:status.updated:Approved" and no_id.pull
    assert p.parse_webhook({**body, "webhook_type": "user.status.updated"}).ignored
    assert p.parse_webhook({**body, "webhook_type": "data.updated"}).report.status == Status.DONE
    hostile = p.parse_webhook({**body, "decision": {"id_verifications": "x"}})
    assert hostile.pull and hostile.report is None
    unknown = p.parse_webhook({**body, "status": "Frozen"})
    assert unknown.report is None and unknown.raw_status == "Frozen"
    by_metadata = p.parse_webhook({"session_id": EXTERNAL, "metadata": {"verification_session_id": "abc"}})
    assert by_metadata.session_id == "abc"


# -- hostile answers, redaction, settings ------------------------------------------------------------

DECISION_URL = f"{BASE}/v3/session/{EXTERNAL}/decision/"


@pytest.mark.parametrize(
    "answer",
    [
        [],
        "Approved",
        {},
        {"status": 5},
        {"status": "Frozen"},
        {"status": "Approved", "id_verifications": "x"},
        {"status": "Approved", "liveness_checks": [1, 2]},
        {"status": "Approved", "face_matches": {"status": "Approved"}},
        {"status": "Approved", "warnings": "none"},
    ],
)
def test_hostile_decisions_are_unavailable(answer):
    session = VerificationSession(external_id=EXTERNAL, provider="d")
    with responses.RequestsMock() as mock:
        mock.get(DECISION_URL, json=answer)
        with pytest.raises(ProviderUnavailable):
            provider().get_status(session)


@pytest.mark.parametrize(
    "answer",
    [
        [],
        {},
        {"session_id": 5, "url": HOSTED},
        {"session_id": "", "url": HOSTED},
        {"session_id": EXTERNAL},
        {"session_id": EXTERNAL, "session_token": 7, "url": HOSTED},
        {"session_id": EXTERNAL, "url": "javascript:alert(1)"},
    ],
)
def test_hostile_create_answers_are_unavailable(db, user, answer):
    p = provider()
    request = services_request()
    with responses.RequestsMock() as mock:
        mock.post(f"{BASE}/v3/session/", json=answer, status=201)
        with pytest.raises(ProviderUnavailable):
            p.create_session(request)


def services_request():
    from verification_link.providers.types import CreateRequest

    return CreateRequest(
        session_id=uuid.uuid4(),
        scopes=["document"],
        metadata={},
        callback_url="https://x/cb",
        return_url="https://x/r",
        ttl=60,
        language="es",
    )


def test_create_falls_back_to_the_token_url_and_sends_language():
    with responses.RequestsMock() as mock:
        mock.post(f"{BASE}/v3/session/", json={"session_id": EXTERNAL, "session_token": "t/1"}, status=201)
        created = provider(CALLBACK_METHOD="both").create_session(services_request())
        body = json.loads(mock.calls[0].request.body)
    assert created.url == "https://verify.didit.me/session/t%2F1"
    assert (body["language"], body["callback_method"]) == ("es", "both")


@pytest.mark.parametrize(("status", "outcome"), [(204, None), (200, None), (404, None), (409, ProviderRejected)])
def test_redaction_wire_format(status, outcome):
    session = VerificationSession(external_id=EXTERNAL, provider="d")
    url = f"{BASE}/v3/session/{EXTERNAL}/delete/"
    with responses.RequestsMock() as mock:
        body = json.dumps({"code": "in_filed_report"}) if status == 409 else ""
        mock.delete(url, body=body, status=status)
        if outcome is None:
            provider().redact_session(session)
        else:
            with pytest.raises(outcome) as info:
                provider().redact_session(session)
            assert info.value.code == "in_filed_report"
        request = mock.calls[0].request
    assert request.method == "DELETE" and request.url == url
    assert request.headers["x-api-key"] == API_KEY and not request.body
    assert DiditProvider.supports_redaction and not DiditProvider.supports_cancel


def test_redaction_server_error_is_unavailable():
    with responses.RequestsMock() as mock:
        mock.delete(f"{BASE}/v3/session/{EXTERNAL}/delete/", status=502)
        with pytest.raises(ProviderUnavailable):
            provider().redact_session(VerificationSession(external_id=EXTERNAL, provider="d"))


def test_no_key_mode_warnings_and_no_secret_in_reprs(settings):
    settings.DEBUG = True
    assert DiditProvider.key_prefixes == {}  # Didit documents no live/test key prefixes
    assert DiditProvider.key_mode_warnings("d", {"API_KEY": "sk_live_x"}) == []
    p = provider(WEBHOOK_SECRETS=["whsec-SECRET"])
    # The alias's own checks (no database: run after the browser tests, run_checks() would query).
    checks = DiditProvider.check_config("d", {"API_KEY": API_KEY, "WEBHOOK_SECRETS": ["whsec-SECRET", 5]})
    assert checks, "a wrong secret is reported"
    for text in (repr(p), repr(p.webhook_verifier()), str(checks)):
        assert API_KEY not in text and "whsec-SECRET" not in text


def test_poll_starts_with_the_session(db, user, settings):
    config = dict(settings.VERIFICATION_LINK)
    alias = {"BACKEND": "verification_link.providers.didit.DiditProvider", "API_KEY": API_KEY, "WORKFLOW_ID": "w"}
    settings.VERIFICATION_LINK = {**config, "PROVIDERS": {**config["PROVIDERS"], "d": {**alias, "BASE_URL": BASE}}}
    with responses.RequestsMock() as mock:
        mock.post(f"{BASE}/v3/session/", json={"session_id": EXTERNAL, "url": HOSTED}, status=201)
        session = services.start_verification(user=user, provider="d")
    assert session.next_poll_at is not None and session.scopes == ["document", "liveness", "face_match"]
    assert session.expires_at is not None
