"""Sumsub — WebSDK external links (docs/providers/sumsub.rst has every source).

Wire contract:

- Every request is signed (https://docs.sumsub.com/reference/authentication): ``X-App-Token``,
  ``X-App-Access-Ts`` (Unix seconds) and ``X-App-Access-Sig``, the lowercase hex HMAC-SHA256 under
  ``SECRET_KEY`` of ``ts + METHOD + path_with_query + body`` — the path as it goes on the wire
  (URL-encoded), the body's exact bytes (Sumsub's ``AppTokenPythonExample.py::sign_request``).
- Create: ``POST /resources/sdkIntegrations/levels/-/websdkLink[?lang=…]`` with JSON
  ``{levelName, userId, ttlInSecs, redirect: {successUrl, rejectUrl}}`` → ``{"url": …}`` only
  (https://docs.sumsub.com/reference/generate-websdk-external-link). ``userId`` is our session id;
  it becomes the applicant's ``externalUserId`` and is also kept as ``external_id``: the applicant
  (and its id) exists only once the user opens the link.
- Status: ``GET /resources/applicants/-;externalUserId={id}/one`` (404 while no applicant exists)
  → ``{id, review: {reviewStatus, reviewResult: {reviewAnswer, rejectLabels, reviewRejectType, …}}}``;
  once ``completed``, ``GET /resources/applicants/{applicantId}/requiredIdDocsStatus`` → the steps
  (``IDENTITY``, ``SELFIE``, …) with their own ``reviewResult``
  (…/get-applicant-data-via-externaluserid, …/get-applicant-review-status,
  …/get-status-of-verification-steps). Nothing of the applicant's personal data is kept.
- Cancel: no link endpoint; the applicant, if any, is deactivated with
  ``PATCH /resources/applicants/{applicantId}/presence/deactivated`` (…/deactivate-applicant-profile).
  No deletion API: no redaction.
- Webhooks (https://docs.sumsub.com/docs/user-verification-webhooks): ``X-Payload-Digest`` = hex HMAC
  of the raw body under the webhook's secret, the algorithm in ``X-Payload-Digest-Alg``
  (``HMAC_SHA1_HEX`` / ``HMAC_SHA256_HEX`` / ``HMAC_SHA512_HEX``; when absent,
  ``WEBHOOK_DEFAULT_ALG``). The body names ``externalUserId`` (our session id), ``applicantId``,
  ``type``, ``reviewStatus``, ``reviewResult`` and ``correlationId`` (the delivery id; else
  ``applicantId:type:createdAtMs``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from django.core.checks import CheckMessage
from django.core.checks import Error as CheckError
from django.utils import timezone

from .. import conf
from ..exceptions import ProviderRejected, ProviderUnavailable
from ..jsonbody import InvalidJSON, storable, without_keys
from ..models import VerificationSession
from ..settings_table import FLAG, TEXT, choice, credential, language, optional, own, subset
from ..webhooks import SCHEMES, WebhookRefused, WebhookVerifier, _any_equal, _bytes
from .base import BaseProvider, CheckRow, CreatedSession, CreateRequest, StatusReport, Verdict, WebhookReport

Status = VerificationSession.Status

#: ``X-Payload-Digest-Alg`` values → hashlib constructors.
ALGORITHMS = {"HMAC_SHA1_HEX": hashlib.sha1, "HMAC_SHA256_HEX": hashlib.sha256, "HMAC_SHA512_HEX": hashlib.sha512}
DIGEST_HEADER, ALG_HEADER = "X-Payload-Digest", "X-Payload-Digest-Alg"

#: ``reviewStatus`` values that are not ``completed`` → our status ([status], [statuses]).
OPEN_REVIEW_STATUSES = {
    "init": Status.IN_PROGRESS,
    "pending": Status.IN_PROGRESS,
    "prechecked": Status.IN_PROGRESS,
    "queued": Status.IN_PROGRESS,
    "awaitingService": Status.IN_PROGRESS,
    "awaitingUser": Status.IN_PROGRESS,
    "onHold": Status.IN_PROGRESS,
}
#: Webhook types whose ``reviewStatus`` is a statement of the applicant's state.
STATE_TYPES = frozenset(
    {
        "applicantCreated",
        "applicantPending",
        "applicantPrechecked",
        "applicantOnHold",
        "applicantReviewed",
        "applicantAwaitingService",
        "applicantAwaitingUser",
        "applicantReset",
        "applicantWorkflowCompleted",
    }
)
#: Verification steps → check-row names; other steps are shown lower-cased.
STEP_ROWS = {"IDENTITY": "document", "SELFIE": "liveness", "PROOF_OF_RESIDENCE": "proof_of_address"}
SCOPE_STEPS = {row: step for step, row in STEP_ROWS.items()}
#: Free text of compliance officers: it may name the person. Hidden and stripped from bodies.
SENSITIVE_FIELDS = frozenset({"moderationComment", "clientComment"})


class SumsubWebhookVerifier(WebhookVerifier):
    """``X-Payload-Digest``: hex HMAC of the raw body, the algorithm named by ``X-Payload-Digest-Alg``.

    ``WEBHOOK_DEFAULT_ALG`` (default ``"HMAC_SHA256_HEX"``) is assumed when the header is missing;
    ``WEBHOOK_ALGORITHMS`` (default: all three) lists the ones accepted. Every secret of
    ``WEBHOOK_SECRETS`` is tried, in constant time. No timestamp is signed."""

    schemes = (*SCHEMES, "sumsub")

    def __init__(self, alias: str, config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> None:
        super().__init__(alias, config, defaults)
        merged = {**(defaults or {}), **config}
        self.default_alg = merged.get("WEBHOOK_DEFAULT_ALG", "HMAC_SHA256_HEX")
        algorithms = merged.get("WEBHOOK_ALGORITHMS") or tuple(ALGORITHMS)
        # Checked below, at use: anything but a list of names refuses every webhook (no TypeError).
        self.algorithms = algorithms if isinstance(algorithms, (list, tuple)) else ("(not a list)",)
        if not self.config_error:
            self.config_error = self._algorithm_error(alias)
            if self.config_error:
                self._secrets = []

    def _algorithm_error(self, alias: str) -> str:
        if isinstance(self.algorithms, str) or not all(name in ALGORITHMS for name in self.algorithms):
            return (
                f"{conf.key_path('PROVIDERS', alias, 'WEBHOOK_ALGORITHMS')} must list names of {', '.join(ALGORITHMS)}"
            )
        if self.default_alg not in self.algorithms:
            return f"{conf.key_path('PROVIDERS', alias, 'WEBHOOK_DEFAULT_ALG')} must be one of the accepted algorithms"
        return ""

    def authenticate(self, headers: Mapping[str, str], body: bytes, *, path_secret: str | None, now: float) -> str:
        if self.scheme != "sumsub":  # any alias may choose a shared scheme ("standard", …)
            return super().authenticate(headers, body, path_secret=path_secret, now=now)
        alg = headers.get(ALG_HEADER) or self.default_alg
        if alg not in self.algorithms:
            raise WebhookRefused(f"{ALG_HEADER} names an algorithm not accepted")
        given = headers.get(self.signature_header) or ""
        if not given:
            raise WebhookRefused(f"missing {self.signature_header} header")
        if len(given) > 256:
            raise WebhookRefused(f"{self.signature_header} too long")
        expected = [self.digest(secret, body, alg) for secret in self._secrets]
        if not _any_equal(given.strip().lower(), expected):
            raise WebhookRefused(f"signature in {self.signature_header} does not match the body")
        return ""

    @staticmethod
    def digest(secret: str, body: bytes, alg: str = "HMAC_SHA256_HEX") -> str:
        return hmac.new(_bytes(secret), body, ALGORITHMS[alg]).hexdigest()

    def sign(
        self, body: bytes, *, secret: str | None = None, timestamp: int | None = None, alg: str | None = None
    ) -> dict[str, str]:
        if self.scheme != "sumsub":
            return super().sign(body, secret=secret, timestamp=timestamp)
        alg = alg or self.default_alg
        secret = secret if secret is not None else self._secrets[0]
        return {self.signature_header: self.digest(secret, body, alg), ALG_HEADER: alg}


class SumsubProvider(BaseProvider):
    display_name = "Sumsub"
    pollable = True
    receives_webhooks = True
    supports_cancel = True
    user_needs = ("id_document", "camera")
    supports_redaction = False
    # The level (LEVEL_NAME) decides the checks; scopes say which steps' results are read as checks.
    supported_scopes = ("document", "liveness", "proof_of_address")
    default_scopes = ("document", "liveness")
    required_settings = ("APP_TOKEN", "SECRET_KEY", "LEVEL_NAME")
    secret_settings = ("APP_TOKEN", "SECRET_KEY", "WEBHOOK_SECRETS")
    config_keys = {
        "APP_TOKEN": credential("The app token (prd:... or sbx:...)."),
        "SECRET_KEY": credential("The secret key that signs requests."),
        "LEVEL_NAME": credential("The verification level to run.", secret=False),
        "LANG": language(None, optional(TEXT), "The hosted page's language."),
        "FETCH_STEPS": own(True, optional(FLAG), "Read the step statuses when a review completes."),
        "CANCEL_DEACTIVATES": own(True, optional(FLAG), "A cancel deactivates the applicant."),
        "WEBHOOK_PULL": own(False, optional(FLAG), "Confirm every webhook by a status call."),
        "WEBHOOK_ALGORITHMS": own(
            None,
            optional(subset(ALGORITHMS, "digest algorithms"), "all"),
            "Accepted digests.",
            "verification_link.E009",
        ),
        "WEBHOOK_DEFAULT_ALG": own(
            "HMAC_SHA256_HEX", choice(*ALGORITHMS), "Assumed when the header names none.", "verification_link.E009"
        ),
    }
    default_base_url = "https://api.sumsub.com"
    #: ``ttlInSecs`` has no documented maximum: a week (dashboard permalinks' lifetime).
    max_ttl = 7 * 86400
    default_ttl = 86400
    key_prefixes = {"APP_TOKEN": ("prd:", "sbx:")}
    webhook_verifier_class = SumsubWebhookVerifier
    webhook_defaults = {
        "WEBHOOK_AUTH": "sumsub",
        "WEBHOOK_SIGNATURE_HEADER": DIGEST_HEADER,
        "WEBHOOK_DEFAULT_ALG": "HMAC_SHA256_HEX",
    }

    link_path = "/resources/sdkIntegrations/levels/-/websdkLink"
    lookup_path = "/resources/applicants/-;externalUserId={ref}/one"
    steps_path = "/resources/applicants/{id}/requiredIdDocsStatus"
    deactivate_path = "/resources/applicants/{id}/presence/deactivated"

    @classmethod
    def check_config(cls, alias: str, config: Mapping[str, Any]) -> list[CheckMessage]:
        messages = super().check_config(alias, config)
        level = config.get("LEVEL_NAME")
        if level and not isinstance(level, str):
            messages.append(
                CheckError(
                    f"{conf.key_path('PROVIDERS', alias, 'LEVEL_NAME')} must be a string.", id="verification_link.E004"
                )
            )
        return messages

    # -- the wire ---------------------------------------------------------------------------------

    def request_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """Sumsub's request signature over the path as sent (``BASE_URL``'s own path included)."""
        return self.sign_request(method, urlsplit(self.base_url).path + path, body, int(time.time()))

    def sign_request(self, method: str, path_url: str, body: bytes, ts: int) -> dict[str, str]:
        message = str(ts).encode() + method.upper().encode() + path_url.encode() + body
        signature = hmac.new(str(self.setting("SECRET_KEY", "")).encode("utf-8"), message, hashlib.sha256)
        return {
            "X-App-Token": str(self.setting("APP_TOKEN", "")),
            "X-App-Access-Ts": str(ts),
            "X-App-Access-Sig": signature.hexdigest(),
            "Accept": "application/json",
        }

    def error_code(self, body: Any) -> str | int | None:
        if isinstance(body, Mapping) and isinstance(body.get("errorCode"), (int, str)):
            return body["errorCode"]
        return None

    # -- create -------------------------------------------------------------------------------------

    def create_session(self, request: CreateRequest) -> CreatedSession:
        operation = "create link"
        lang = request.language or self.setting("LANG") or ""
        answer = self.call(
            "POST",
            self.link_path,
            operation=operation,
            json={
                "levelName": str(self.setting("LEVEL_NAME", "")),
                "userId": str(request.session_id),
                "ttlInSecs": request.ttl,
                "redirect": {"successUrl": request.return_url, "rejectUrl": request.return_url},
            },
            params={"lang": str(lang)} if lang else None,
        )
        if not isinstance(answer, Mapping):
            raise self.malformed(operation, "not an object")
        url = answer.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise self.malformed(operation, "no url")
        return CreatedSession(
            url=url,
            token="",
            external_id=str(request.session_id),
            expires_at=timezone.now() + timedelta(seconds=request.ttl),
        )

    # -- status -------------------------------------------------------------------------------------

    def applicant(self, session: VerificationSession, operation: str, timeout: float | None = None) -> Any:
        """The applicant whose ``externalUserId`` is the session's, or None while there is none (404)."""
        ref = quote(session.external_id or str(session.pk), safe="")
        try:
            return self.call("GET", self.lookup_path.format(ref=ref), operation=operation, timeout=timeout)
        except ProviderRejected as exc:
            if exc.status_code == 404:
                return None
            raise

    def get_status(self, session: VerificationSession, *, timeout: float | None = None) -> StatusReport:
        operation = "get status"
        body = self.applicant(session, operation, timeout)
        if body is None:
            return StatusReport(status=Status.CREATED)
        if not isinstance(body, Mapping):
            raise self.malformed(operation, "not an object")
        applicant_id = body.get("id")
        if not isinstance(applicant_id, str) or not applicant_id:
            raise self.malformed(operation, "no applicant id")
        review = body.get("review")
        if not isinstance(review, Mapping):
            raise self.malformed(operation, "no review")
        report = self.review_report(review.get("reviewStatus"), review.get("reviewResult"), operation)
        result = dict(report.result, applicantId=applicant_id)
        if isinstance(review.get("levelName"), str):
            result["levelName"] = review["levelName"]
        if review.get("reviewStatus") == "completed" and self.setting("FETCH_STEPS", True) is not False:
            steps = self.call(
                "GET", self.steps_path.format(id=quote(applicant_id, safe="")), operation="get steps", timeout=timeout
            )
            result["steps"] = self.parse_steps(steps, "get steps")
        return StatusReport(
            status=report.status,
            result=self.storable_result(result, operation),
            provider_status=report.provider_status,
            verdict=report.verdict,
            reasons=report.reasons,
        )

    def review_report(self, review_status: Any, review_result: Any, operation: str) -> StatusReport:
        """A ``reviewStatus`` and ``reviewResult`` (of a status answer or a webhook) as a report."""
        if review_result is None:
            review_result = {}
        if not isinstance(review_result, Mapping):
            raise self.malformed(operation, "reviewResult is not an object")
        kept = self.clean_review_result(review_result, operation)
        result = {"reviewStatus": review_status, "reviewResult": kept}
        labels = tuple(kept.get("rejectLabels", ()))
        if review_status == "completed":
            answer, reject_type = kept.get("reviewAnswer"), kept.get("reviewRejectType")
            if answer == "GREEN":
                return StatusReport(
                    Status.DONE, result=result, provider_status="completed/GREEN", verdict=Verdict.APPROVED
                )
            if answer != "RED":
                raise self.malformed(operation, "completed without a GREEN or RED reviewAnswer")
            raw = f"completed/RED/{reject_type}" if isinstance(reject_type, str) else "completed/RED"
            if reject_type == "RETRY":
                return StatusReport(
                    Status.IN_PROGRESS, result=result, provider_status=raw, verdict=Verdict.RESUBMISSION, reasons=labels
                )
            return StatusReport(
                Status.FAILED, result=result, provider_status=raw[:64], verdict=Verdict.DECLINED, reasons=labels
            )
        status = OPEN_REVIEW_STATUSES.get(review_status) if isinstance(review_status, str) else None
        if status is None:
            raise self.malformed(operation, "unknown reviewStatus")
        verdict = Verdict.REVIEW if review_status == "onHold" else Verdict.NONE
        return StatusReport(status, result=result, provider_status=review_status, verdict=verdict)

    def clean_review_result(self, value: Mapping[str, Any], operation: str) -> dict[str, Any]:
        """The documented fields of a ``reviewResult``, type-checked; nothing else is kept."""
        kept: dict[str, Any] = {}
        for key in ("reviewAnswer", "reviewRejectType", "moderationComment", "clientComment"):
            item = value.get(key)
            if item is not None and not isinstance(item, str):
                raise self.malformed(operation, f"{key} is not a string")
            if item is not None:
                kept[key] = item
        for key in ("rejectLabels", "buttonIds"):
            items = value.get(key)
            if items is None:
                continue
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise self.malformed(operation, f"{key} is not a list of strings")
            kept[key] = [item[:64] for item in items]
        return kept

    def parse_steps(self, body: Any, operation: str) -> dict[str, Any]:
        """``requiredIdDocsStatus``: per step only its review (never its images or document data)."""
        if not isinstance(body, Mapping):
            raise self.malformed(operation, "not an object")
        steps: dict[str, Any] = {}
        for name, step in body.items():
            if step is None:  # a step the applicant has not reached
                steps[str(name)] = {}
                continue
            if not isinstance(step, Mapping):
                raise self.malformed(operation, f"step {str(name)[:32]!r} is not an object")
            review = step.get("reviewResult")
            if review is not None and not isinstance(review, Mapping):
                raise self.malformed(operation, "a step's reviewResult is not an object")
            steps[str(name)] = self.clean_review_result(review or {}, operation)
        return steps

    def storable_result(self, result: dict[str, Any], operation: str) -> dict[str, Any]:
        try:
            return storable(result)
        except InvalidJSON:
            raise self.malformed(operation, "result cannot be stored") from None

    # -- cancel -------------------------------------------------------------------------------------

    def cancel_session(self, session: VerificationSession) -> None:
        """Deactivate the applicant, if the user opened the link at all (there is no link cancel).
        Sumsub refuses while the applicant is ``pending``/``queued``/``prechecked``: the error is raised."""
        if self.setting("CANCEL_DEACTIVATES", True) is False:
            return
        operation = "deactivate applicant"
        body = self.applicant(session, operation)
        if body is None:
            return
        applicant_id = body.get("id") if isinstance(body, Mapping) else None
        if not isinstance(applicant_id, str) or not applicant_id:
            raise self.malformed(operation, "no applicant id")
        self.call("PATCH", self.deactivate_path.format(id=quote(applicant_id, safe="")), operation=operation)

    # -- webhooks -----------------------------------------------------------------------------------

    def parse_webhook(self, payload: Mapping[str, Any]) -> WebhookReport:
        kind = payload.get("type")
        kind = kind if isinstance(kind, str) else ""
        applicant_id = payload.get("applicantId")
        applicant_id = applicant_id if isinstance(applicant_id, str) else ""
        user_id = payload.get("externalUserId")
        user_id = user_id if isinstance(user_id, str) else ""
        correlation = payload.get("correlationId")
        if isinstance(correlation, str) and correlation:
            delivery_id = correlation
        else:
            delivery_id = f"{applicant_id}:{kind}:{payload.get('createdAtMs')}" if applicant_id or kind else ""
        handles = {"session_id": user_id, "external_id": user_id, "delivery_id": storable(delivery_id)}
        raw_status = payload.get("reviewStatus")
        raw = raw_status[:64] if isinstance(raw_status, str) else ""
        if kind == "applicantDeleted":
            report = StatusReport(Status.CANCELED, provider_status="deleted", result={"applicantId": applicant_id})
            return WebhookReport(report=report, raw_status="deleted", **handles)
        if kind not in STATE_TYPES:
            return WebhookReport(ignored=True, raw_status=kind[:64], **handles)
        if self.setting("WEBHOOK_PULL") is True:
            return WebhookReport(pull=True, raw_status=raw, **handles)
        try:
            report = self.review_report(raw_status, payload.get("reviewResult"), "webhook")
            result = self.storable_result(dict(report.result, applicantId=applicant_id), "webhook")
        except ProviderUnavailable:
            return WebhookReport(raw_status=storable(raw), **handles)
        report = StatusReport(
            report.status,
            result=result,
            provider_status=report.provider_status,
            verdict=report.verdict,
            reasons=report.reasons,
        )
        return WebhookReport(report=report, raw_status=raw, **handles)

    # -- results ------------------------------------------------------------------------------------

    def scope_outcomes(self, scopes: Iterable[str], result: Mapping[str, Any]) -> dict[str, bool | None]:
        """A scope's step: ``GREEN`` passed, ``RED`` failed, absent or unreviewed unknown."""
        steps = result.get("steps")
        steps = steps if isinstance(steps, Mapping) else {}
        outcomes: dict[str, bool | None] = {}
        for scope in scopes:
            step = steps.get(SCOPE_STEPS.get(scope, scope.upper()))
            answer = step.get("reviewAnswer") if isinstance(step, Mapping) else None
            outcomes[scope] = {"GREEN": True, "RED": False}.get(answer) if isinstance(answer, str) else None
        return outcomes

    def check_rows(self, scopes: Iterable[str], result: Mapping[str, Any]) -> list[CheckRow]:
        """One row per requested scope, then one per other step Sumsub reported; detail = reject labels."""
        steps = result.get("steps")
        steps = steps if isinstance(steps, Mapping) else {}
        names = dict.fromkeys([*scopes, *(STEP_ROWS.get(str(step), str(step).lower()) for step in steps)])
        rows = []
        for name in names:
            step = steps.get(SCOPE_STEPS.get(name, name.upper()))
            labels = step.get("rejectLabels") if isinstance(step, Mapping) else None
            detail = ", ".join(str(label) for label in labels) if isinstance(labels, list) else ""
            rows.append(CheckRow(name, self.scope_outcomes([name], result)[name], None, detail))
        return rows

    def sensitive_parts_removed(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Also the officers' comments (``moderationComment``, ``clientComment``), at any depth."""
        return without_keys(super().sensitive_parts_removed(result), SENSITIVE_FIELDS)

    def storable_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return super().storable_body(without_keys(dict(payload), SENSITIVE_FIELDS))
