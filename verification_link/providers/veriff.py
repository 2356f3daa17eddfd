"""Veriff — public API v1 (see ``docs/providers/veriff.rst`` for every fact and its source).

Wire contract:

- Every call: ``X-AUTH-CLIENT: <API key>``, ``Content-Type: application/json`` and
  ``X-HMAC-SIGNATURE``: lower-case hex HMAC-SHA256 under the shared secret (its UTF-8 bytes) of the
  exact request body for POST/PATCH, of the session id for GET/DELETE
  (https://devdocs.veriff.com/docs/hmac-authentication-and-endpoint-security; Veriff's own sample
  ``generateSignature`` in https://github.com/Veriff/js-integration-demo/blob/main/src/api.ts).
- ``POST {BASE_URL}/v1/sessions`` ``{"verification": {"callback", "vendorData", "lang"?}}`` →
  ``{"status": "success", "verification": {"id", "url", "sessionToken", …}}``; our session id is the
  ``vendorData`` (echoed in every webhook), ``verification.id`` the external id
  (https://devdocs.veriff.com/apidocs/v1sessions).
- ``GET {BASE_URL}/v1/sessions/{id}/decision`` → ``{"status", "verification": {…} | null,
  "technicalData"}``; ``verification`` stays null until a decision exists
  (https://devdocs.veriff.com/apidocs/v1sessionsiddecision-1). The ``status`` **string** is mapped,
  never the code (the docs give 9121 two meanings).
- No cancel call (PATCH only accepts ``submitted``): a cancel is local. ``DELETE
  {BASE_URL}/v1/sessions/{id}`` deletes the session's data, but Veriff enables it per account:
  only with ``DELETE_ENABLED`` (https://devdocs.veriff.com/apidocs/v1sessionsid-3).
- Webhooks (decision and event URLs of the integration, both set to ``webhook/<alias>/``): hex
  HMAC-SHA256 of the raw body in ``X-HMAC-SIGNATURE`` under the shared secret; no timestamp, no
  delivery id. ``WEBHOOK_SECRETS`` defaults to ``[SHARED_SECRET]``. Decision webhooks have the
  decision's shape (top-level ``verification``); event webhooks are ``{"id", "action":
  "started"|"submitted", "code", "vendorData"}``. The body is signed, so it is applied as it is;
  its delivery id is ``f"{id}:{status}:{attemptId or decisionTime}"`` (an exact redelivery of the
  same decision is a duplicate).
- Errors: ``{"status": "fail", "code": <int>, "message"}`` (401 for credentials and signatures).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote, unquote

from django.utils import timezone

from ..jsonbody import InvalidJSON, storable, without_keys
from ..models import VerificationSession
from ..settings_table import FLAG, TEXT, credential, language, optional, own
from ..webhooks import WebhookVerifier
from .base import BaseProvider, CheckRow, CreatedSession, CreateRequest, StatusReport, Verdict, WebhookReport

Status = VerificationSession.Status

#: ``verification.status`` → (our status, verdict). Open statuses where Veriff has not decided.
STATUS_MAP: dict[str, tuple[str, str]] = {
    "created": (Status.CREATED, Verdict.NONE),
    "started": (Status.IN_PROGRESS, Verdict.NONE),
    "submitted": (Status.IN_PROGRESS, Verdict.NONE),
    "review": (Status.IN_PROGRESS, Verdict.REVIEW),
    "resubmission_requested": (Status.IN_PROGRESS, Verdict.RESUBMISSION),
    "approved": (Status.DONE, Verdict.APPROVED),
    "declined": (Status.FAILED, Verdict.DECLINED),
    "expired": (Status.EXPIRED, Verdict.NONE),
    "abandoned": (Status.EXPIRED, Verdict.NONE),
}
#: Event webhook actions (``started`` 7001, ``submitted`` 7002): the user is in the flow.
EVENT_ACTIONS = ("started", "submitted")
#: Identity data of a decision (names, birth date, addresses, document numbers, the IP address,
#: free-text comments, a biometric match with another person's session): never shown to staff
#: without the permission, never kept in a webhook body.
SENSITIVE_FIELDS = frozenset(
    {"person", "document", "additionalVerifiedData", "biometricAuthentication", "technicalData", "comments"}
)
#: Reason codes (``verification.reasonCode``) that say which check failed
#: (https://devdocs.veriff.com/docs/verification-session-decision-codes-table and the granular
#: table). Other codes (fraud, velocity, IP…) name no single check: that check stays unknown.
FAILED_CHECK_REASONS: dict[str, frozenset[str]] = {
    "document": frozenset({"101", "102", "203", "204", "205", "206", "207", "209", "506", "507"}),
    "face_match": frozenset({"103", "120"}),
    "liveness": frozenset(),
}
MAX_REASON = 200


def sign(secret: str, message: str | bytes) -> str:
    """Veriff's ``X-HMAC-SIGNATURE``: lower-case hex HMAC-SHA256 of ``message`` under ``secret``."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


class VeriffWebhookVerifier(WebhookVerifier):
    """The ``hmac`` scheme, with the hex signature compared case-insensitively (the docs do not
    say which case Veriff writes; its sample writes lower case)."""

    def authenticate(self, headers: Mapping[str, str], body: bytes, *, path_secret: str | None, now: float) -> str:
        given = headers.get(self.signature_header)
        if self.scheme == "hmac" and given and self.encoding == "hex":
            lowered = {self.signature_header: given.lower()}
            if self.timestamp_header and headers.get(self.timestamp_header):
                lowered[self.timestamp_header] = headers[self.timestamp_header]
            headers = lowered
        return super().authenticate(headers, body, path_secret=path_secret, now=now)


class VeriffProvider(BaseProvider):
    display_name = "Veriff"
    pollable = True
    receives_webhooks = True
    supports_cancel = False
    user_needs = ("id_document", "camera")
    supports_redaction = True
    # The flow's checks are configured on the integration; the scopes only say which to show.
    supported_scopes = ("document", "face_match", "liveness")
    default_scopes = ("document", "face_match")
    required_settings = ("API_KEY", "SHARED_SECRET")
    secret_settings = ("API_KEY", "SHARED_SECRET", "WEBHOOK_SECRETS")
    config_keys = {
        "API_KEY": credential("The API key (X-AUTH-CLIENT)."),
        "SHARED_SECRET": credential("The shared secret that signs requests and webhooks."),
        "LANGUAGE": language(None, optional(TEXT), "The hosted page's language."),
        "DELETE_ENABLED": own(False, optional(FLAG), "Erasure deletes Veriff's copy (only True)."),
    }
    default_base_url = "https://stationapi.veriff.com"
    max_ttl = 7 * 86400  # a Veriff session expires 7 days after creation
    webhook_defaults = {
        "WEBHOOK_AUTH": "hmac",
        "WEBHOOK_SIGNATURE_HEADER": "X-HMAC-SIGNATURE",
        "WEBHOOK_SIGNATURE_ENCODING": "hex",
    }
    webhook_verifier_class = VeriffWebhookVerifier
    sessions_path = "/v1/sessions"

    def __init__(self, alias: str, config: Mapping[str, Any]) -> None:
        super().__init__(alias, config)
        if self.base_url.endswith("/v1"):  # the portal's "API URL" already names the version
            self.base_url = self.base_url[: -len("/v1")]

    # -- configuration -----------------------------------------------------------------------------

    @property
    def shared_secret(self) -> str:
        secret = self.setting("SHARED_SECRET")
        return secret if isinstance(secret, str) else ""

    @classmethod
    def webhook_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The alias's settings, with ``WEBHOOK_SECRETS`` = ``[SHARED_SECRET]`` when it is unset
        (Veriff signs webhooks with the integration's shared secret)."""
        merged = dict(config)
        shared = merged.get("SHARED_SECRET")
        if not merged.get("WEBHOOK_SECRETS") and isinstance(shared, str) and shared:
            merged["WEBHOOK_SECRETS"] = [shared]
        return merged

    # -- the wire ----------------------------------------------------------------------------------

    def request_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        if method.upper() in ("GET", "DELETE"):
            # /v1/sessions/{id}[/decision]: GET and DELETE sign the session id.
            parts = path.split("?", 1)[0].split("/")
            signed: str | bytes = unquote(parts[3]) if len(parts) > 3 else ""
        else:
            signed = body
        return {
            "X-AUTH-CLIENT": str(self.setting("API_KEY", "")),
            "X-HMAC-SIGNATURE": sign(self.shared_secret, signed),
            "Content-Type": "application/json",
        }

    def error_code(self, body: Any) -> str | int | None:
        code = body.get("code") if isinstance(body, Mapping) else None
        return code if isinstance(code, (int, str)) and not isinstance(code, bool) else None

    def session_path(self, external_id: str, suffix: str = "") -> str:
        return f"{self.sessions_path}/{quote(external_id, safe='')}{suffix}"

    # -- operations --------------------------------------------------------------------------------

    def create_session(self, request: CreateRequest) -> CreatedSession:
        operation = "create session"
        verification: dict[str, Any] = {"callback": request.return_url, "vendorData": str(request.session_id)}
        language = request.language or self.setting("LANGUAGE")
        if language:
            verification["lang"] = str(language)
        answer = self.call("POST", self.sessions_path, operation=operation, json={"verification": verification})
        if not isinstance(answer, Mapping) or not isinstance(answer.get("verification"), Mapping):
            raise self.malformed(operation, "no verification object")
        created = answer["verification"]
        external_id, url = created.get("id"), created.get("url")
        if not isinstance(external_id, str) or not external_id.strip() or len(external_id) > 255:
            raise self.malformed(operation, "no verification.id")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise self.malformed(operation, "no verification.url")
        return CreatedSession(
            url=url, token="", external_id=external_id, expires_at=timezone.now() + timedelta(seconds=request.ttl)
        )

    def get_status(self, session: VerificationSession, *, timeout: float | None = None) -> StatusReport:
        operation = "get decision"
        if not session.external_id:
            raise self.malformed(operation, "the session has no Veriff id")
        answer = self.call(
            "GET", self.session_path(session.external_id, "/decision"), operation=operation, timeout=timeout
        )
        if not isinstance(answer, Mapping) or "verification" not in answer:
            raise self.malformed(operation, "no verification key")
        verification = answer["verification"]
        if verification is None:
            return StatusReport(status=Status.CREATED)  # no decision yet; never moves a session back
        if not isinstance(verification, Mapping):
            raise self.malformed(operation, "verification is not an object")
        if verification.get("id") not in (None, session.external_id):
            raise self.malformed(operation, "the decision names another session")
        report, problem = self.decision_report(verification)
        if report is None:
            raise self.malformed(operation, problem)
        return report

    def decision_report(self, verification: Mapping[str, Any]) -> tuple[StatusReport | None, str]:
        """A decision object (``verification`` of the decision answer or webhook) as a report, or
        ``(None, what is wrong)``."""
        raw = verification.get("status")
        if not isinstance(raw, str) or raw not in STATUS_MAP:
            return None, "unknown status"
        status, verdict = STATUS_MAP[raw]
        reasons: tuple[str, ...] = ()
        code, text = verification.get("reasonCode"), verification.get("reason")
        if isinstance(code, bool) or not isinstance(code, (int, str, type(None))):
            return None, "reasonCode is not a code"
        if text is not None and not isinstance(text, str):
            return None, "reason is not a string"
        if code not in (None, ""):
            reasons = (str(code)[:MAX_REASON],)
        elif text:
            reasons = (text[:MAX_REASON],)
        try:
            result = storable(dict(verification))
        except InvalidJSON:
            return None, "the decision cannot be stored"
        return StatusReport(status=status, result=result, provider_status=raw, verdict=verdict, reasons=reasons), ""

    def redact_session(self, session: VerificationSession) -> None:
        if self.setting("DELETE_ENABLED") is not True:
            raise NotImplementedError(
                "Veriff deletes sessions only where it enabled DELETE for the integration: set DELETE_ENABLED"
            )
        if not session.external_id:
            return
        self.call("DELETE", self.session_path(session.external_id), operation="delete session")

    # -- webhooks ----------------------------------------------------------------------------------

    def parse_webhook(self, payload: Mapping[str, Any]) -> WebhookReport:
        verification = payload.get("verification")
        if isinstance(verification, Mapping):
            return self._decision_webhook(verification)
        action = payload.get("action")
        if isinstance(action, str) and isinstance(payload.get("id"), str):
            return self._event_webhook(payload, action)
        return WebhookReport(ignored=True)  # another product's webhook (watchlist, Full Auto…)

    def _decision_webhook(self, verification: Mapping[str, Any]) -> WebhookReport:
        external_id = _text(verification.get("id"))
        raw = verification.get("status")
        report, _problem = self.decision_report(verification)
        attempt = _text(verification.get("attemptId")) or _text(verification.get("decisionTime"))
        return WebhookReport(
            external_id=external_id,
            session_id=_text(verification.get("vendorData")),
            report=report,
            raw_status=str(raw)[:64] if raw is not None else "",
            delivery_id=f"{external_id}:{raw}:{attempt}" if external_id else "",
        )

    def _event_webhook(self, payload: Mapping[str, Any], action: str) -> WebhookReport:
        external_id = _text(payload.get("id"))
        if action not in EVENT_ACTIONS:
            return WebhookReport(external_id=external_id, raw_status=action[:64], ignored=True)
        step = _text(payload.get("attemptId")) or _text(payload.get("code"))
        return WebhookReport(
            external_id=external_id,
            session_id=_text(payload.get("vendorData")),
            report=StatusReport(status=Status.IN_PROGRESS, provider_status=action),
            raw_status=action,
            delivery_id=f"{external_id}:{action}:{step}",
        )

    # -- results -----------------------------------------------------------------------------------

    @property
    def result_field(self) -> str:
        return "verification"

    def sensitive_parts_removed(self, result: Mapping[str, Any]) -> dict[str, Any]:
        return without_keys(super().sensitive_parts_removed(result), SENSITIVE_FIELDS)

    def storable_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return super().storable_body(without_keys(dict(payload), SENSITIVE_FIELDS))

    def scope_outcomes(self, scopes: Iterable[str], result: Mapping[str, Any]) -> dict[str, bool | None]:
        """Approved: every check passed. A reason code that names a check: that one failed. Anything
        else (no decision, a fraud or velocity reason): unknown."""
        status = result.get("status")
        code = _text(result.get("reasonCode"))
        outcomes: dict[str, bool | None] = {}
        for scope in scopes:
            if status == "approved":
                outcomes[scope] = True
            elif code and code in FAILED_CHECK_REASONS.get(scope, ()):
                outcomes[scope] = False
            else:
                outcomes[scope] = None
        return outcomes

    def check_rows(self, scopes: Iterable[str], result: Mapping[str, Any]) -> list[CheckRow]:
        """A ``decision`` row (Veriff's verdict, its reason code and text), one row per requested
        check, and the risk labels Veriff attached (no identity data in any of them)."""
        status = result.get("status")
        status = status if isinstance(status, str) else ""
        code = _text(result.get("reasonCode"))
        reason = result.get("reason")
        reason = reason if isinstance(reason, str) else ""
        passed = {"approved": True, "declined": False}.get(status)
        score = result.get("decisionScore")
        score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
        detail = " ".join(part for part in (status, code, reason[:MAX_REASON]) if part)
        rows = [CheckRow("decision", passed, score, detail)]
        for scope, outcome in self.scope_outcomes(scopes, result).items():
            rows.append(CheckRow(scope, outcome, None, code if outcome is False else ""))
        labels = result.get("riskLabels")
        if isinstance(labels, list):
            names = [_text(label.get("label")) for label in labels if isinstance(label, Mapping)]
            if any(names):
                rows.append(CheckRow("risk_labels", None, None, ", ".join(filter(None, names))[:MAX_REASON]))
        return rows


def _text(value: Any) -> str:
    """A string or number of a body as text ("" for anything else: the body comes from outside)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return ""
    return str(value)[:255]
