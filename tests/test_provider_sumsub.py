"""Sumsub: signed requests (cross-checked against Sumsub's own Python recipe), the websdkLink and
applicant wire format, the review-status mapping, check rows, hostile answers, and the
``X-Payload-Digest`` webhooks (signed here independently, as Sumsub's JS verifier checks them).

Sumsub publishes no Python SDK: ``official_sign_request`` below is the body of
``SumSubstance/AppTokenUsageExamples`` ``Python/AppTokenPythonExample.py::sign_request``, with the
clock and the credentials as parameters; ``js_verify`` is ``verifySumsubWebhook`` of
``SumSubstance/agent-skills`` ``webhook-verify.js`` in Python.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import responses
from django.core.checks import Warning as CheckWarning

from verification_link import services
from verification_link.exceptions import ProviderAuthError, ProviderUnavailable
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider, sumsub
from verification_link.providers.sumsub import SumsubProvider, SumsubWebhookVerifier

from .provider_contract import APPROVED, DECLINED, OPEN, ProviderContract

pytestmark = pytest.mark.django_db
Status = VerificationSession.Status

BASE = "https://api.sumsub.test"
LINK = f"{BASE}/resources/sdkIntegrations/levels/-/websdkLink"
APP_TOKEN = "sbx:uY0CgwELmgUAEyl4hNWxLngb.0WSeQeiYny4WEqmAALEAiK2qTC96fBad"
SECRET_KEY = "Hej2ch71kG2kTd1iIUDZFNsO5C1lh5Gq"
LEVEL = "basic-kyc-level"
APPLICANT_ID = "5cb56e8e0a975a35f333cb83"


def official_sign_request(request: requests.Request, *, now: int, secret: str, token: str) -> requests.PreparedRequest:
    """Sumsub's ``sign_request`` (AppTokenPythonExample.py), ``time.time()`` and the module's
    constants made parameters."""
    prepared_request = request.prepare()
    method = request.method.upper()
    path_url = prepared_request.path_url  # includes encoded query params
    body = b"" if prepared_request.body is None else prepared_request.body
    if type(body) is str:
        body = body.encode("utf-8")
    data_to_sign = str(now).encode("utf-8") + method.encode("utf-8") + path_url.encode("utf-8") + body
    signature = hmac.new(secret.encode("utf-8"), data_to_sign, digestmod=hashlib.sha256)
    prepared_request.headers["X-App-Token"] = token
    prepared_request.headers["X-App-Access-Ts"] = str(now)
    prepared_request.headers["X-App-Access-Sig"] = signature.hexdigest()
    return prepared_request


JS_ALG_MAP = {"HMAC_SHA1_HEX": "sha1", "HMAC_SHA256_HEX": "sha256", "HMAC_SHA512_HEX": "sha512"}


def js_verify(raw_body: bytes, headers: dict[str, str], secret: str) -> bool:
    """``verifySumsubWebhook`` of Sumsub's agent-skills, in Python."""
    lowered = {name.lower(): value for name, value in headers.items()}
    alg = JS_ALG_MAP.get(lowered.get("x-payload-digest-alg") or "HMAC_SHA256_HEX")
    expected_hex = lowered.get("x-payload-digest")
    if not alg or not expected_hex:
        return False
    actual = hmac.new(secret.encode(), raw_body, alg).digest()
    expected = bytes.fromhex(expected_hex)
    return len(actual) == len(expected) and hmac.compare_digest(actual, expected)


def assert_signed_as_sumsub_does(prepared: requests.PreparedRequest) -> None:
    """The request as it went out carries the signature Sumsub's own recipe computes for it."""
    now = int(prepared.headers["X-App-Access-Ts"])
    again = requests.Request(prepared.method, prepared.url, data=prepared.body)
    official = official_sign_request(again, now=now, secret=SECRET_KEY, token=APP_TOKEN)
    assert official.path_url == prepared.path_url
    assert prepared.headers["X-App-Token"] == APP_TOKEN
    assert re.fullmatch(r"[0-9a-f]{64}", prepared.headers["X-App-Access-Sig"])
    assert prepared.headers["X-App-Access-Sig"] == official.headers["X-App-Access-Sig"]


def lookup_url(session) -> str:
    return f"{BASE}/resources/applicants/-;externalUserId={session.external_id}/one"


def applicant_body(review_status: str, review_result: dict | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": APPLICANT_ID,
        "externalUserId": "whatever",
        "info": {"firstName": "Jane", "lastName": "Example", "dob": "1990-01-01"},
        "email": "jane@example.com",
        "review": {"reviewStatus": review_status, "reviewResult": review_result or {}, "levelName": LEVEL},
        **extra,
    }


def steps_body(identity: str = "GREEN", selfie: str = "GREEN", labels: tuple[str, ...] = ()) -> dict[str, Any]:
    red = {"rejectLabels": list(labels), "reviewRejectType": "FINAL"} if identity == "RED" else {}
    return {
        "IDENTITY": {"reviewResult": {"reviewAnswer": identity, **red}, "idDocType": "PASSPORT", "imageIds": [1]},
        "SELFIE": {"reviewResult": {"reviewAnswer": selfie}, "imageIds": [2]},
    }


OUTCOME_REVIEWS = {
    OPEN: ("pending", {}),
    APPROVED: ("completed", {"reviewAnswer": "GREEN"}),
    DECLINED: ("completed", {"reviewAnswer": "RED", "rejectLabels": ["FORGERY"], "reviewRejectType": "FINAL"}),
}


class TestSumsubContract(ProviderContract):
    ALIAS = "sumsub_test"
    BASE_URL = BASE
    CREATE_ENDPOINT = ("POST", LINK)
    SIGNATURE_HEADER = "X-Payload-Digest"
    _user_id = ""

    def alias_config(self) -> dict[str, Any]:
        return {
            "BACKEND": "verification_link.providers.sumsub.SumsubProvider",
            "APP_TOKEN": APP_TOKEN,
            "SECRET_KEY": SECRET_KEY,
            "LEVEL_NAME": LEVEL,
            "BASE_URL": self.BASE_URL,
            "WEBHOOK_SECRETS": [self.SECRET, self.OLD_SECRET],
        }

    def mock_create(self, rsps):
        def create(request):
            self._user_id = json.loads(request.body)["userId"]
            return 200, {}, json.dumps({"url": self.hosted_url()})

        rsps.add_callback(responses.POST, LINK, callback=create)

    def external_id(self) -> str:
        return self._user_id  # our session id: the applicant does not exist yet

    def hosted_url(self) -> str:
        return "https://api.sumsub.com/websdk/p/7JwtC0pb9mcqQsLb"

    def assert_create_request(self, calls):
        assert len(calls) == 1
        request = calls[0].request
        assert (request.method, request.url) == ("POST", LINK)
        assert request.headers["Content-Type"] == "application/json"
        assert_signed_as_sumsub_does(request)
        body = json.loads(request.body)
        session = VerificationSession.objects.get()
        assert body["levelName"] == LEVEL
        assert body["userId"] == str(session.pk) == session.external_id
        assert body["ttlInSecs"] == 86400
        assert body["redirect"]["successUrl"] == body["redirect"]["rejectUrl"]
        assert body["redirect"]["successUrl"].endswith(f"/verify/s/{session.pk}/return/")
        assert session.token == ""

    def mock_status(self, rsps, session, outcome):
        review_status, review_result = OUTCOME_REVIEWS[outcome]
        rsps.add(responses.GET, lookup_url(session), json=applicant_body(review_status, review_result))
        identity = "RED" if outcome == DECLINED else "GREEN"
        rsps.add(
            responses.GET,
            f"{BASE}/resources/applicants/{APPLICANT_ID}/requiredIdDocsStatus",
            json=steps_body(identity, labels=("FORGERY",)),
        )

    def mock_cancel(self, rsps, session):
        rsps.add(responses.GET, lookup_url(session), json=applicant_body("init"))
        rsps.add(
            responses.PATCH,
            f"{BASE}/resources/applicants/{APPLICANT_ID}/presence/deactivated",
            json={**applicant_body("init"), "deleted": True},
        )

    def webhook(self, session, outcome, *, secret=None, timestamp=None, delivery="evt_1"):
        review_status, review_result = OUTCOME_REVIEWS[outcome]
        payload = {
            "applicantId": APPLICANT_ID,
            "inspectionId": "5cb56e8e0a975a35f333cb84",
            "correlationId": delivery,
            "externalUserId": str(session.pk),
            "levelName": LEVEL,
            "type": "applicantPending" if outcome == OPEN else "applicantReviewed",
            "sandboxMode": True,
            "reviewStatus": review_status,
            "reviewResult": review_result,
            "createdAtMs": "2020-02-21 13:23:19.321",
        }
        body = json.dumps(payload).encode()
        digest = hmac.new((secret or self.SECRET).encode(), body, hashlib.sha256).hexdigest()
        return body, {"X-Payload-Digest": digest, "X-Payload-Digest-Alg": "HMAC_SHA256_HEX"}

    def test_cancel(self, rsps, started, backend):
        self.mock_cancel(rsps, started)
        super().test_cancel(rsps, started, backend)
        patch = rsps.calls[-1].request
        assert patch.method == "PATCH" and patch.body is None
        assert_signed_as_sumsub_does(patch)

    # Paths the contract does not take: resubmission, on hold, no alg header, SHA512, ignored types.

    def post(self, client, session, payload, *, alg="HMAC_SHA256_HEX", commit):
        body = json.dumps({"externalUserId": str(session.pk), "applicantId": APPLICANT_ID, **payload}).encode()
        headers = {"X-Payload-Digest": hmac.new(self.SECRET.encode(), body, JS_ALG_MAP[alg]).hexdigest()}
        if alg != "HMAC_SHA256_HEX":
            headers["X-Payload-Digest-Alg"] = alg
        with commit():
            return self.post_webhook(client, body, headers)

    def test_resubmission_then_approval(self, client, started, signal_log, commit):
        retry = {"type": "applicantReviewed", "reviewStatus": "completed", "reviewResult": RED_RETRY}
        assert (
            self.post(client, started, {**retry, "correlationId": "r1"}, commit=commit).json()["status"] == "processed"
        )
        started.refresh_from_db()
        assert (started.status, started.provider_verdict) == (Status.IN_PROGRESS, "resubmission")
        assert started.provider_reasons == ["UNSATISFACTORY_PHOTOS"]
        assert signal_log.of("verification_finished") == []
        green = {"type": "applicantReviewed", "reviewStatus": "completed", "reviewResult": {"reviewAnswer": "GREEN"}}
        self.post(client, started, {**green, "correlationId": "r2"}, alg="HMAC_SHA512_HEX", commit=commit)
        started.refresh_from_db()
        assert (started.status, started.provider_verdict) == (Status.DONE, "approved")
        assert len(signal_log.of("verification_finished")) == 1

    def test_on_hold_stays_open_for_review(self, client, started, commit):
        self.post(
            client, started, {"type": "applicantOnHold", "reviewStatus": "onHold", "correlationId": "h"}, commit=commit
        )
        started.refresh_from_db()
        assert (started.status, started.provider_status, started.provider_verdict) == (
            Status.IN_PROGRESS,
            "onHold",
            "review",
        )

    def test_ignored_and_unknown_sessions_answer_200(self, client, started, commit):
        ignored = self.post(client, started, {"type": "applicantTagsChanged", "correlationId": "t"}, commit=commit)
        assert ignored.json()["status"] == "ignored"
        stranger = {"type": "applicantPending", "reviewStatus": "pending", "correlationId": "s"}
        body = json.dumps({**stranger, "externalUserId": "someone-else"}).encode()
        headers = {"X-Payload-Digest": hmac.new(self.SECRET.encode(), body, "sha256").hexdigest()}
        assert self.post_webhook(client, body, headers).json()["status"] == "unknown session"

    def test_kept_event_body_has_no_comments(self, client, started, commit):
        review = {**RED_FINAL, "clientComment": "Jane Example forged it"}
        self.post(
            client,
            started,
            {"type": "applicantReviewed", "reviewStatus": "completed", "reviewResult": review, "correlationId": "c"},
            commit=commit,
        )
        event = VerificationEvent.objects.filter(kind=VerificationEvent.Kind.WEBHOOK).latest("id")
        assert event.valid is True and "Jane" not in event.body and "FORGERY" in event.body
        started.refresh_from_db()
        assert started.status == Status.FAILED and started.provider_reasons == ["FORGERY", "SELFIE_MISMATCH"]


# --- request signing ------------------------------------------------------------------------------


@pytest.fixture
def configured(settings):
    def apply(**changes):
        config = dict(settings.VERIFICATION_LINK)
        alias = {
            "BACKEND": "verification_link.providers.sumsub.SumsubProvider",
            "APP_TOKEN": APP_TOKEN,
            "SECRET_KEY": SECRET_KEY,
            "LEVEL_NAME": LEVEL,
            "BASE_URL": BASE,
            "WEBHOOK_SECRETS": ["wh-SECRET"],
            **changes,
        }
        config["PROVIDERS"] = {**config["PROVIDERS"], "sumsub": alias}
        settings.VERIFICATION_LINK = config
        return get_provider("sumsub")

    return apply


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def test_signature_matches_the_documented_string_to_sign(configured):
    backend = configured()
    path = "/resources/accessTokens?userId=johnDoe&levelName=basic-kyc-level&ttlInSecs=600"
    headers = backend.sign_request("POST", path, b"", 1607551635)
    message = b"1607551635POST/resources/accessTokens?userId=johnDoe&levelName=basic-kyc-level&ttlInSecs=600"
    assert headers["X-App-Access-Sig"] == hmac.new(SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
    assert headers["X-App-Access-Ts"] == "1607551635"
    assert headers["X-App-Token"] == APP_TOKEN


def test_every_call_is_signed_as_sumsubs_recipe_signs_it(configured, api, user, monkeypatch):
    backend = configured(LANG="de")
    monkeypatch.setattr(sumsub, "time", SimpleNamespace(time=lambda: 1607551635.9))
    api.add(responses.POST, re.compile(re.escape(LINK) + r"\?lang=de$"), json={"url": "https://x.test/websdk/p/1"})
    session = services.start_verification(user=user, provider="sumsub")
    api.add(responses.GET, lookup_url(session), json=applicant_body("completed", {"reviewAnswer": "GREEN"}))
    api.add(responses.GET, f"{BASE}/resources/applicants/{APPLICANT_ID}/requiredIdDocsStatus", json=steps_body())
    backend.get_status(session)
    assert [call.request.path_url for call in api.calls] == [
        "/resources/sdkIntegrations/levels/-/websdkLink?lang=de",
        f"/resources/applicants/-;externalUserId={session.pk}/one",
        f"/resources/applicants/{APPLICANT_ID}/requiredIdDocsStatus",
    ]
    for call in api.calls:
        assert call.request.headers["X-App-Access-Ts"] == "1607551635"
        assert_signed_as_sumsub_does(call.request)


def test_a_base_url_path_is_part_of_what_is_signed(configured, api, user):
    configured(BASE_URL=f"{BASE}/proxy/sumsub")
    api.add(
        responses.POST, f"{BASE}/proxy/sumsub/resources/sdkIntegrations/levels/-/websdkLink", json={"url": "https://x"}
    )
    services.start_verification(user=user, provider="sumsub")
    request = api.calls[0].request
    assert request.path_url.startswith("/proxy/sumsub/resources/")
    assert_signed_as_sumsub_does(request)


def test_a_wrong_secret_key_gives_another_signature(configured):
    good = configured().sign_request("GET", "/resources/x", b"", 1)
    other = configured(SECRET_KEY="another-key").sign_request("GET", "/resources/x", b"", 1)
    assert good["X-App-Access-Sig"] != other["X-App-Access-Sig"]


def test_create_sends_the_language_of_the_request(configured, api):
    from uuid import uuid4

    from verification_link.providers.types import CreateRequest

    backend = configured()
    api.add(responses.POST, re.compile(re.escape(LINK) + r"\?lang=fr$"), json={"url": "https://x.test/l"})
    created = backend.create_session(CreateRequest(uuid4(), [], {}, "", "https://r.test/", 60, language="fr"))
    assert created.url == "https://x.test/l"
    assert json.loads(api.calls[0].request.body)["ttlInSecs"] == 60


def test_signature_mismatch_is_an_auth_error_with_sumsubs_code(configured, api, user):
    configured()
    body = {"description": "Request signature mismatch", "code": 401, "correlationId": "c", "errorCode": 4003}
    api.add(responses.POST, LINK, json={**body, "errorName": "app-token-signature mismatch"}, status=401)
    with pytest.raises(ProviderAuthError) as caught:
        services.start_verification(user=user, provider="sumsub")
    assert caught.value.code == 4003


@pytest.mark.parametrize("answer", [[], {"url": None}, {"url": 5}, {"url": "javascript:alert(1)"}, {}])
def test_create_answers_without_a_url_are_malformed(configured, api, user, answer):
    configured()
    api.add(responses.POST, LINK, json=answer)
    with pytest.raises(ProviderUnavailable):
        services.start_verification(user=user, provider="sumsub")


# --- status mapping --------------------------------------------------------------------------------

RED_FINAL = {"reviewAnswer": "RED", "rejectLabels": ["FORGERY", "SELFIE_MISMATCH"], "reviewRejectType": "FINAL"}
RED_RETRY = {"reviewAnswer": "RED", "rejectLabels": ["UNSATISFACTORY_PHOTOS"], "reviewRejectType": "RETRY"}


@pytest.mark.parametrize(
    ("review_status", "review_result", "status", "verdict", "provider_status", "reasons"),
    [
        ("init", {}, Status.IN_PROGRESS, "", "init", ()),
        ("pending", {}, Status.IN_PROGRESS, "", "pending", ()),
        ("prechecked", {}, Status.IN_PROGRESS, "", "prechecked", ()),
        ("queued", {}, Status.IN_PROGRESS, "", "queued", ()),
        ("awaitingService", {"reviewAnswer": "GREEN"}, Status.IN_PROGRESS, "", "awaitingService", ()),
        ("awaitingUser", {}, Status.IN_PROGRESS, "", "awaitingUser", ()),
        ("onHold", {}, Status.IN_PROGRESS, "review", "onHold", ()),
        ("completed", {"reviewAnswer": "GREEN"}, Status.DONE, "approved", "completed/GREEN", ()),
        ("completed", RED_FINAL, Status.FAILED, "declined", "completed/RED/FINAL", ("FORGERY", "SELFIE_MISMATCH")),
        ("completed", RED_RETRY, Status.IN_PROGRESS, "resubmission", "completed/RED/RETRY", ("UNSATISFACTORY_PHOTOS",)),
        ("completed", {"reviewAnswer": "RED"}, Status.FAILED, "declined", "completed/RED", ()),
    ],
)
def test_every_review_status_maps(configured, review_status, review_result, status, verdict, provider_status, reasons):
    report = configured().review_report(review_status, review_result, "test")
    assert (report.status, report.verdict, report.provider_status, report.reasons) == (
        status,
        verdict,
        provider_status,
        reasons,
    )


def test_no_applicant_yet_is_created(configured, api, user):
    backend = configured()
    api.add(responses.POST, LINK, json={"url": "https://x.test/l"})
    session = services.start_verification(user=user, provider="sumsub")
    api.add(responses.GET, lookup_url(session), json={"description": "not found", "code": 404}, status=404)
    report = backend.get_status(session)
    assert (report.status, report.provider_status, report.verdict) == (Status.CREATED, "", "")


def make_session(user):
    session = VerificationSession.objects.create(user=user, provider="sumsub", scopes=["document", "liveness"])
    session.external_id = str(session.pk)
    session.save()
    return session


def test_poll_keeps_the_review_and_steps_but_no_personal_data(configured, api, user):
    backend = configured()
    session = make_session(user)
    review = {**RED_FINAL, "moderationComment": "Jane, try again", "clientComment": "Jane Example forged it"}
    api.add(responses.GET, lookup_url(session), json=applicant_body("completed", review, fixedInfo={"dob": "1990"}))
    api.add(
        responses.GET,
        f"{BASE}/resources/applicants/{APPLICANT_ID}/requiredIdDocsStatus",
        json={**steps_body("RED", labels=("FORGERY",)), "APPLICANT_DATA": None},
    )
    report = backend.get_status(session)
    text = json.dumps(report.result)
    for personal in ('Jane", "lastName', "1990-01-01", "jane@example.com", "PASSPORT", "imageIds", "fixedInfo"):
        assert personal not in text
    assert report.result["applicantId"] == APPLICANT_ID
    assert report.result["steps"]["IDENTITY"] == {
        "reviewAnswer": "RED",
        "rejectLabels": ["FORGERY"],
        "reviewRejectType": "FINAL",
    }
    hidden = json.dumps(backend.sensitive_parts_removed(report.result))
    assert "Jane" not in hidden and "moderationComment" not in hidden and "FORGERY" in hidden


def test_steps_are_not_fetched_before_completion(configured, api, user):
    backend = configured()
    session = make_session(user)
    api.add(responses.GET, lookup_url(session), json=applicant_body("pending"))
    assert backend.get_status(session).status == Status.IN_PROGRESS
    assert len(api.calls) == 1


HOSTILE_APPLICANTS = [
    [],
    "text",
    {"review": {"reviewStatus": "pending"}},
    {"id": 5, "review": {"reviewStatus": "pending"}},
    {"id": APPLICANT_ID},
    {"id": APPLICANT_ID, "review": "pending"},
    {"id": APPLICANT_ID, "review": {"reviewStatus": "strange"}},
    {"id": APPLICANT_ID, "review": {"reviewStatus": None}},
    {"id": APPLICANT_ID, "review": {"reviewStatus": ["completed"]}},
    {"id": APPLICANT_ID, "review": {"reviewStatus": "completed"}},
    {"id": APPLICANT_ID, "review": {"reviewStatus": "completed", "reviewResult": {"reviewAnswer": "YELLOW"}}},
    {"id": APPLICANT_ID, "review": {"reviewStatus": "completed", "reviewResult": "GREEN"}},
    {"id": APPLICANT_ID, "review": {"reviewStatus": "onHold", "reviewResult": {"rejectLabels": "FORGERY"}}},
    {"id": APPLICANT_ID, "review": {"reviewStatus": "onHold", "reviewResult": {"rejectLabels": [1]}}},
    {"id": APPLICANT_ID, "review": {"reviewStatus": "onHold", "reviewResult": {"clientComment": {"a": 1}}}},
]


@pytest.mark.parametrize("answer", HOSTILE_APPLICANTS)
def test_hostile_applicant_answers_are_unavailable(configured, api, user, answer):
    backend = configured()
    session = make_session(user)
    api.add(responses.GET, lookup_url(session), json=answer)
    with pytest.raises(ProviderUnavailable):
        backend.get_status(session)


@pytest.mark.parametrize(
    "steps",
    [
        [],
        "x",
        {"IDENTITY": "GREEN"},
        {"IDENTITY": {"reviewResult": []}},
        {"SELFIE": {"reviewResult": {"reviewAnswer": 1}}},
    ],
)
def test_hostile_step_answers_are_unavailable(configured, api, user, steps):
    backend = configured()
    session = make_session(user)
    api.add(responses.GET, lookup_url(session), json=applicant_body("completed", {"reviewAnswer": "GREEN"}))
    api.add(responses.GET, f"{BASE}/resources/applicants/{APPLICANT_ID}/requiredIdDocsStatus", json=steps)
    with pytest.raises(ProviderUnavailable):
        backend.get_status(session)


def test_non_json_answer_is_unavailable(configured, api, user):
    backend = configured()
    session = make_session(user)
    api.add(responses.GET, lookup_url(session), body=b"<html>", status=200)
    with pytest.raises(ProviderUnavailable):
        backend.get_status(session)


# --- check rows, decision ----------------------------------------------------------------------------


def test_check_rows_name_the_steps():
    backend = SumsubProvider("s", {})
    result = {
        "steps": {
            "IDENTITY": {"reviewAnswer": "RED", "rejectLabels": ["FORGERY", "DOCUMENT_TEMPLATE"]},
            "SELFIE": {"reviewAnswer": "GREEN"},
            "APPLICANT_DATA": {},
        }
    }
    rows = backend.check_rows(["document", "liveness", "proof_of_address"], result)
    assert [(r.scope, r.passed, r.score, r.detail) for r in rows] == [
        ("document", False, None, "FORGERY, DOCUMENT_TEMPLATE"),
        ("liveness", True, None, ""),
        ("proof_of_address", None, None, ""),
        ("applicant_data", None, None, ""),
    ]
    assert backend.scope_outcomes(["document", "liveness"], result) == {"document": False, "liveness": True}
    assert backend.scope_outcomes(["document"], {}) == {"document": None}
    assert backend.check_rows(["liveness"], {"steps": "junk"})[0].passed is None


def test_green_with_a_red_step_goes_to_review(configured, api, user, commit):
    configured()
    session = make_session(user)
    session.status = Status.IN_PROGRESS
    session.save()
    api.add(responses.GET, lookup_url(session), json=applicant_body("completed", {"reviewAnswer": "GREEN"}))
    api.add(
        responses.GET,
        f"{BASE}/resources/applicants/{APPLICANT_ID}/requiredIdDocsStatus",
        json=steps_body("GREEN", selfie="RED"),
    )
    with commit():
        services.refresh_session(session)
    session.refresh_from_db()
    assert (session.status, session.provider_verdict) == (Status.DONE, "approved")
    assert session.decision == VerificationSession.Decision.REVIEW


# --- cancel, redaction, key mode -----------------------------------------------------------------------


def test_cancel_without_an_applicant_is_local(configured, api, user):
    configured()
    session = make_session(user)
    api.add(responses.GET, lookup_url(session), json={"code": 404}, status=404)
    services.cancel_session(session)
    session.refresh_from_db()
    assert session.status == Status.CANCELED
    assert [call.request.method for call in api.calls] == ["GET"]


def test_cancel_can_be_local_only(configured, api, user):
    configured(CANCEL_DEACTIVATES=False)
    session = make_session(user)
    services.cancel_session(session)
    assert len(api.calls) == 0


def test_no_redaction_api(configured, user):
    backend = configured()
    assert backend.supports_redaction is False
    with pytest.raises(NotImplementedError):
        backend.redact_session(make_session(user))


@pytest.mark.parametrize(("debug", "token", "warning"), [(True, "prd:abc", "W005"), (False, "sbx:abc", "W006")])
def test_key_mode_warnings(settings, debug, token, warning):
    settings.DEBUG = debug
    messages = SumsubProvider.check_config("s", {"APP_TOKEN": token, "SECRET_KEY": "k", "LEVEL_NAME": "l"})
    found = [m for m in messages if isinstance(m, CheckWarning) and m.id == f"verification_link.{warning}"]
    assert found and "APP_TOKEN" in found[0].msg and token not in found[0].msg


def test_no_key_mode_warning_for_the_right_mode(settings):
    settings.DEBUG = False
    messages = SumsubProvider.check_config("s", {"APP_TOKEN": "prd:abc", "SECRET_KEY": "k", "LEVEL_NAME": "l"})
    assert not [m for m in messages if m.id in ("verification_link.W005", "verification_link.W006")]


# --- webhooks -----------------------------------------------------------------------------------------


def verifier(**config) -> SumsubWebhookVerifier:
    return SumsubWebhookVerifier("s", {"WEBHOOK_SECRETS": ["wh-SECRET"], **config}, SumsubProvider.webhook_defaults)


BODY = b'{"type":"applicantReviewed","reviewStatus":"completed"}'


@pytest.mark.parametrize("alg", ["HMAC_SHA1_HEX", "HMAC_SHA256_HEX", "HMAC_SHA512_HEX"])
def test_every_documented_algorithm_verifies(alg):
    digest = hmac.new(b"wh-SECRET", BODY, JS_ALG_MAP[alg]).hexdigest()
    headers = {"X-Payload-Digest": digest, "X-Payload-Digest-Alg": alg}
    assert js_verify(BODY, headers, "wh-SECRET")
    assert verifier().verify(headers, BODY) == ""
    assert verifier().sign(BODY, alg=alg) == headers
    with pytest.raises(sumsub.WebhookRefused):
        verifier().verify({**headers, "X-Payload-Digest": digest[:-1] + "0" if digest[-1] != "0" else "1"}, BODY)


def test_missing_alg_header_means_the_default_algorithm():
    sha256 = hmac.new(b"wh-SECRET", BODY, "sha256").hexdigest()
    sha1 = hmac.new(b"wh-SECRET", BODY, "sha1").hexdigest()
    assert verifier().verify({"X-Payload-Digest": sha256}, BODY) == ""
    with pytest.raises(sumsub.WebhookRefused):
        verifier().verify({"X-Payload-Digest": sha1}, BODY)
    assert verifier(WEBHOOK_DEFAULT_ALG="HMAC_SHA1_HEX").verify({"X-Payload-Digest": sha1}, BODY) == ""


def test_our_signature_is_what_sumsubs_verifier_accepts():
    headers = verifier().sign(BODY)
    assert js_verify(BODY, headers, "wh-SECRET")
    assert not js_verify(BODY + b" ", headers, "wh-SECRET")


@pytest.mark.parametrize(
    ("headers", "check"),
    [
        ({"X-Payload-Digest-Alg": "HMAC_MD5_HEX", "X-Payload-Digest": "00"}, "algorithm"),
        ({"X-Payload-Digest-Alg": "HMAC_SHA256_HEX"}, "missing"),
        ({"X-Payload-Digest": "a" * 300}, "too long"),
    ],
)
def test_bad_digest_headers_are_refused(headers, check):
    with pytest.raises(sumsub.WebhookRefused) as caught:
        verifier().verify(headers, BODY)
    assert check in caught.value.check


def test_accepted_algorithms_can_be_narrowed():
    sha1 = hmac.new(b"wh-SECRET", BODY, "sha1").hexdigest()
    narrow = verifier(WEBHOOK_ALGORITHMS=["HMAC_SHA256_HEX", "HMAC_SHA512_HEX"])
    with pytest.raises(sumsub.WebhookRefused):
        narrow.verify({"X-Payload-Digest": sha1, "X-Payload-Digest-Alg": "HMAC_SHA1_HEX"}, BODY)


def test_uppercase_hex_and_the_rotated_secret_are_accepted():
    old = hmac.new(b"old-SECRET", BODY, "sha256").hexdigest().upper()
    assert verifier(WEBHOOK_SECRETS=["new-SECRET", "old-SECRET"]).verify({"X-Payload-Digest": old}, BODY) == ""


@pytest.mark.parametrize(
    "config",
    [
        {"WEBHOOK_DEFAULT_ALG": "SHA256"},
        {"WEBHOOK_ALGORITHMS": "HMAC_SHA256_HEX"},
        {"WEBHOOK_ALGORITHMS": ["HMAC_SHA512_HEX"]},
        {"WEBHOOK_ALGORITHMS": ["HMAC_SHA256_HEX", "MD5"]},
        {"WEBHOOK_SECRETS": "wh-SECRET"},
    ],
)
def test_bad_webhook_settings_refuse_everything_and_are_reported(config):
    broken = verifier(**config)
    assert broken.config_error
    with pytest.raises(sumsub.WebhookRefused) as caught:
        broken.verify(verifier().sign(BODY), BODY)
    assert caught.value.status_code == 403
    messages = SumsubProvider.check_config("s", {"APP_TOKEN": "a", "SECRET_KEY": "k", "LEVEL_NAME": "l", **config})
    assert any(m.id == "verification_link.E009" for m in messages)


def test_no_secret_refuses_and_warns():
    with pytest.raises(sumsub.WebhookRefused):
        verifier(WEBHOOK_SECRETS=[]).verify({"X-Payload-Digest": "00"}, BODY)
    messages = SumsubProvider.check_config("s", {"APP_TOKEN": "a", "SECRET_KEY": "k", "LEVEL_NAME": "l"})
    assert any(m.id == "verification_link.W003" for m in messages)
    assert "wh-SECRET" not in repr(verifier())


def parse(payload):
    return SumsubProvider("s", {}).parse_webhook(payload)


def test_delivery_id_is_the_correlation_id_else_built_from_the_event():
    event = {"applicantId": "a1", "type": "applicantPending", "reviewStatus": "pending", "createdAtMs": "2020-01-01"}
    assert parse({**event, "correlationId": "req-1"}).delivery_id == "req-1"
    assert parse(event).delivery_id == "a1:applicantPending:2020-01-01"
    assert parse({**event, "correlationId": 7}).delivery_id == "a1:applicantPending:2020-01-01"


@pytest.mark.parametrize(
    "kind",
    ["applicantPersonalInfoChanged", "applicantTagsChanged", "applicantLevelChanged", "applicantActivated", "", None],
)
def test_event_types_without_a_state_are_ignored(kind):
    report = parse(
        {"type": kind, "externalUserId": "u", "reviewStatus": "completed", "reviewResult": {"reviewAnswer": "GREEN"}}
    )
    assert report.ignored and report.report is None


def test_deleted_applicant_cancels():
    report = parse({"type": "applicantDeleted", "externalUserId": "u", "applicantId": "a1"})
    assert (report.report.status, report.report.provider_status, report.session_id) == (Status.CANCELED, "deleted", "u")


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "applicantReviewed", "reviewStatus": "completed", "reviewResult": "GREEN"},
        {"type": "applicantReviewed", "reviewStatus": "completed", "reviewResult": {"reviewAnswer": 3}},
        {"type": "applicantReviewed", "reviewStatus": "weird"},
        {"type": "applicantReviewed", "reviewStatus": {"x": 1}, "externalUserId": ["u"], "applicantId": 5},
    ],
)
def test_webhooks_with_unreadable_states_are_unknown_statuses(payload):
    report = parse(payload)
    assert report.report is None and not report.ignored and not report.pull


def test_webhook_pull_setting_makes_webhooks_hints():
    report = SumsubProvider("s", {"WEBHOOK_PULL": True}).parse_webhook(
        {"type": "applicantReviewed", "externalUserId": "u", "reviewStatus": "completed"}
    )
    assert report.pull and report.report is None


def test_kept_webhook_body_has_no_comments():
    payload = {"type": "applicantReviewed", "reviewResult": {"reviewAnswer": "RED", "clientComment": "Jane Example"}}
    kept = SumsubProvider("s", {}).storable_body(payload)
    assert kept == {"type": "applicantReviewed", "reviewResult": {"reviewAnswer": "RED"}}
    assert payload["reviewResult"]["clientComment"] == "Jane Example"


@pytest.mark.parametrize("algorithms", [5, "HMAC_SHA256_HEX", ["MD5"], {"a": 1}])
def test_a_wrong_algorithm_list_refuses_every_webhook_never_a_crash(algorithms):
    broken = verifier(WEBHOOK_ALGORITHMS=algorithms)
    assert "WEBHOOK_ALGORITHMS" in broken.config_error
    with pytest.raises(Exception) as refused:
        broken.verify({"X-Payload-Digest": "00"}, b"{}")
    assert getattr(refused.value, "status_code", None) == 403
    config = {"APP_TOKEN": "sbx:x", "SECRET_KEY": "k", "LEVEL_NAME": "l", "WEBHOOK_SECRETS": ["w"]}
    ids = [m.id for m in SumsubProvider.check_config("s", {**config, "WEBHOOK_ALGORITHMS": algorithms})]
    assert "verification_link.E009" in ids


def test_a_sumsub_alias_may_choose_standard_webhooks():
    import base64

    secret = "whsec_" + base64.b64encode(b"sumsub-standard-key-32-bytes-SEC").decode()
    standard = SumsubWebhookVerifier("s", {"WEBHOOK_AUTH": "standard", "WEBHOOK_SECRETS": [secret]})
    assert not standard.config_error
    assert standard.verify(standard.sign(b"{}"), b"{}").startswith("msg_")
