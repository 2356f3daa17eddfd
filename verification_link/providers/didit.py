"""Didit — hosted identity verification sessions, API v3 (``docs/providers/didit.rst``).

Wire contract (sources: https://docs.didit.me/sessions-api/create-session, …/retrieve-session,
…/delete-session, https://docs.didit.me/integration/webhooks, and Didit's own signing helpers as
quoted in ``didit-protocol/plugin-wordpress`` ``tests/generate-fixtures.py``):

- Every call carries ``x-api-key: <API_KEY>``; bodies are JSON; base ``https://verification.didit.me``.
- ``POST /v3/session/`` ``{workflow_id, vendor_data, callback, metadata, language?}`` → 201
  ``{session_id, session_token, url, status: "Not Started", …}``. ``vendor_data`` is our session
  id: unique per attempt (Didit returns the open session of a repeated ``vendor_data``).
- ``GET /v3/session/{session_id}/decision/`` → ``{status, features, id_verifications[],
  liveness_checks[], face_matches[], …, warnings[]}``; the session status is Didit's verdict.
- ``DELETE /v3/session/{session_id}/delete/`` → 204 (soft delete: gone from every read endpoint).
  No cancel endpoint: a cancel is local.
- Webhooks (``status.updated``, ``data.updated``): ``X-Timestamp`` plus three hex HMAC-SHA256
  signatures under the secret's UTF-8 bytes: ``X-Signature`` of the raw body, ``X-Signature-V2`` of
  the body re-serialised (sorted keys, compact, non-ASCII unescaped, whole floats as integers),
  ``X-Signature-Simple`` of ``"{timestamp}:{session_id}:{status}:{webhook_type}"`` (the envelope
  only: refused unless ``WEBHOOK_ALLOW_SIMPLE``). The body's ``timestamp`` is the signed copy of
  ``X-Timestamp``. ``event_id`` names the delivery.
- Silent in the docs, so settings: header names (the TM/KYB pages say ``X-Didit-Signature``), the
  tolerance (300 s, as Didit's plugin), key prefixes (none), ``Expired``/``Kyc Expired`` spelling
  (``STATUS_MAP``), session lifetime (``TTL``, local only).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import requests

from .. import conf
from ..exceptions import ProviderRejected, ProviderUnavailable
from ..jsonbody import InvalidJSON, parse_json, storable, without_keys
from ..models import VerificationSession
from ..settings_table import FLAG, NAMES_OR_ONE, TEXT, TEXT_MAP, credential, language, optional, own
from ..webhooks import DEFAULTS as WEBHOOK_DEFAULTS
from ..webhooks import MAX_SIGNATURE_HEADER, SCHEMES, WebhookRefused, WebhookVerifier
from .base import BaseProvider, CheckRow, CreatedSession, CreateRequest, StatusReport, Verdict, WebhookReport

Status = VerificationSession.Status

#: Didit's session statuses (compared case- and space-insensitively) → (our status, verdict).
STATUSES: dict[str, tuple[str, str]] = {
    "not started": (Status.CREATED, Verdict.NONE),
    "in progress": (Status.IN_PROGRESS, Verdict.NONE),
    "awaiting user": (Status.IN_PROGRESS, Verdict.NONE),
    "in review": (Status.IN_PROGRESS, Verdict.REVIEW),
    "resubmitted": (Status.IN_PROGRESS, Verdict.RESUBMISSION),
    "approved": (Status.DONE, Verdict.APPROVED),
    "declined": (Status.FAILED, Verdict.DECLINED),
    "abandoned": (Status.EXPIRED, Verdict.NONE),
    "expired": (Status.EXPIRED, Verdict.NONE),
    "kyc expired": (Status.EXPIRED, Verdict.NONE),
}
VERDICT_OF = {Status.DONE: Verdict.APPROVED, Status.FAILED: Verdict.DECLINED}

#: Decision lists (one entry per workflow node) → the check (scope) they are shown as.
FEATURES = {
    "id_verifications": "document",
    "liveness_checks": "liveness",
    "face_matches": "face_match",
    "aml_screenings": "aml",
    "nfc_verifications": "nfc",
    "poa_verifications": "proof_of_address",
    "phone_verifications": "phone",
    "email_verifications": "email",
    "database_validations": "id_number",
    "ip_analyses": "ip_analysis",
}
#: Top-level decision fields kept in the result besides the lists (never the hand-off link).
KEPT = ("status", "session_kind", "session_number", "environment", "workflow_id", "features", "warnings", "reviews")
#: Identity data, hidden from staff without the permission and left out of kept webhook bodies.
SENSITIVE_FIELDS = frozenset(
    {
        *("first_name", "last_name", "full_name", "date_of_birth", "place_of_birth", "gender", "nationality"),
        *("document_number", "personal_number", "address", "formatted_address", "parsed_address", "mrz"),
        *("marital_status", "extra_fields", "extra_files", "expected_details", "contact_details"),
        *("email", "phone", "phone_number", "full_number", "ip_address", "hits", "images", "image"),
        *("front_image", "back_image", "portrait_image", "full_front_image", "full_back_image"),
        *("front_video", "back_video", "reference_image", "video_url", "source_image", "target_image"),
    }
)
#: Bearer values of a body: the hosted link and its token.
BEARER_FIELDS = frozenset({"session_url", "url", "session_token"})
#: Webhook types that report a session's state; any other type is recorded and ignored.
STATE_EVENTS = ("status.updated", "data.updated")
DELETE = "delete session"


def canonical_json(payload: Any) -> bytes:
    """What ``X-Signature-V2`` signs: sorted keys, compact, non-ASCII unescaped, whole floats as ints."""
    return json.dumps(
        _shorten_floats(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _shorten_floats(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_shorten_floats(item) for item in value]
    if isinstance(value, dict):
        return {key: _shorten_floats(item) for key, item in value.items()}
    return value


def simple_message(payload: Mapping[str, Any]) -> bytes:
    """What ``X-Signature-Simple`` signs (Didit's ``str(data.get(field, ""))`` of four fields)."""
    fields = ("timestamp", "session_id", "status", "webhook_type")
    return ":".join(str(payload.get(name, "")) for name in fields).encode("utf-8")


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def _matches(given: str | None, expected: list[str]) -> bool:
    """Constant time against every candidate; hex compared case-insensitively."""
    if not given or len(given) > MAX_SIGNATURE_HEADER or not given.isascii():
        return False
    matched = False
    for candidate in expected:
        matched |= hmac.compare_digest(given.strip().lower().encode(), candidate.encode())
    return matched


class DiditWebhookVerifier(WebhookVerifier):
    """``WEBHOOK_AUTH = "didit"``: ``X-Timestamp`` within ``WEBHOOK_TOLERANCE``, then
    ``X-Signature-V2`` (preferred) or ``X-Signature`` (raw body) under any of ``WEBHOOK_SECRETS``,
    then the body's signed ``timestamp`` (older bodies: ``created_at``) equal to ``X-Timestamp``.
    ``X-Signature-Simple`` only with ``WEBHOOK_ALLOW_SIMPLE`` (weaker: the body beyond its four
    fields is unauthenticated, so the provider then confirms every webhook by a status call)."""

    schemes = (*SCHEMES, "didit")
    extra_defaults = {
        "WEBHOOK_SIGNATURE_V2_HEADER": "X-Signature-V2",
        "WEBHOOK_SIGNATURE_SIMPLE_HEADER": "X-Signature-Simple",
        "WEBHOOK_ALLOW_SIMPLE": False,
    }

    def __init__(self, alias: str, config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> None:
        super().__init__(alias, config, defaults)
        merged = {
            **WEBHOOK_DEFAULTS,
            **self.extra_defaults,
            **(defaults or {}),
            **{k: v for k, v in config.items() if k.startswith("WEBHOOK_")},
        }
        self.v2_header = merged["WEBHOOK_SIGNATURE_V2_HEADER"]
        self.simple_header = merged["WEBHOOK_SIGNATURE_SIMPLE_HEADER"]
        self.allow_simple = merged["WEBHOOK_ALLOW_SIMPLE"] is True
        if not self.config_error:
            self.config_error = self._didit_config_error(merged)
            if self.config_error:
                self._secrets, self.tolerance = [], 0

    def _didit_config_error(self, merged: Mapping[str, Any]) -> str:
        def key(name: str) -> str:
            return conf.key_path("PROVIDERS", self.alias, name)

        for name in ("WEBHOOK_SIGNATURE_V2_HEADER", "WEBHOOK_SIGNATURE_SIMPLE_HEADER"):
            if merged[name] is not None and not (isinstance(merged[name], str) and merged[name]):
                return f"{key(name)} must be a header name or None"
        if not isinstance(merged["WEBHOOK_ALLOW_SIMPLE"], bool):
            return f"{key('WEBHOOK_ALLOW_SIMPLE')} must be True or False"
        if self.scheme == "didit" and not self.timestamp_header:
            return f"{key('WEBHOOK_TIMESTAMP_HEADER')} must be a header name for the didit scheme"
        return ""

    def authenticate(self, headers: Mapping[str, str], body: bytes, *, path_secret: str | None, now: float) -> str:
        if self.scheme != "didit":
            return super().authenticate(headers, body, path_secret=path_secret, now=now)
        stamp = self._check_timestamp(headers, now)
        try:
            payload = parse_json(body)
        except InvalidJSON:
            payload = None
        if not isinstance(payload, dict):
            payload = None
        given = {
            name: headers.get(name)
            for name in (self.v2_header, self.signature_header, self.simple_header if self.allow_simple else None)
            if name and headers.get(name)
        }
        if not given:
            raise WebhookRefused(f"missing {self.v2_header or self.signature_header} header")
        if not self._signed(given, body, payload):
            raise WebhookRefused("Didit signature does not match the body")
        signed_stamp = payload.get("timestamp", payload.get("created_at")) if payload is not None else None
        if isinstance(signed_stamp, bool) or not isinstance(signed_stamp, int) or str(signed_stamp) != stamp:
            raise WebhookRefused(f"{self.timestamp_header} differs from the signed timestamp of the body")
        return ""

    def _signed(self, given: Mapping[str, str | None], body: bytes, payload: dict[str, Any] | None) -> bool:
        if self.v2_header in given and payload is not None:
            try:
                canonical = canonical_json(payload)
            except (ValueError, UnicodeEncodeError, RecursionError):
                canonical = None
            if canonical is not None and _matches(given[self.v2_header], self.expected(canonical)):
                return True
        if self.signature_header in given and _matches(given[self.signature_header], self.expected(body)):
            return True
        if self.simple_header in given and payload is not None:
            return _matches(given[self.simple_header], self.expected(simple_message(payload)))
        return False

    def expected(self, message: bytes) -> list[str]:
        return [_hex_hmac(secret, message) for secret in self._secrets]

    def sign(self, body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> dict[str, str]:
        """The headers Didit sends with ``body`` (for tests); ``X-Timestamp`` is the body's
        ``timestamp`` unless ``timestamp`` is given."""
        if self.scheme != "didit":
            return super().sign(body, secret=secret, timestamp=timestamp)
        secret = secret if secret is not None else self._secrets[0]
        payload = json.loads(body)
        stamp = payload.get("timestamp") if timestamp is None else timestamp
        headers = {self.timestamp_header: str(stamp), self.signature_header: _hex_hmac(secret, body)}
        if self.v2_header:
            headers[self.v2_header] = _hex_hmac(secret, canonical_json(payload))
        if self.simple_header:
            headers[self.simple_header] = _hex_hmac(secret, simple_message(payload))
        return headers


class DiditProvider(BaseProvider):
    display_name = "Didit"
    # The official plugin's list (docs/providers/didit.rst).
    hosted_languages = (
        *("ar", "bg", "bn", "ca", "cnr", "cs", "da", "de", "el", "en", "es", "et", "fa", "fi", "fr", "he", "hi"),
        *("hr", "hu", "hy", "id", "it", "ja", "ka", "ko", "lt", "lv", "mk", "ms", "nl", "no", "pl", "pt", "pt-BR"),
        *("ro", "ru", "sk", "sl", "so", "sr", "sv", "th", "tr", "uk", "uz", "vi", "zh", "zh-CN", "zh-TW"),
    )
    user_needs = ("id_document", "camera")
    pollable = True
    receives_webhooks = True
    default_ttl = 86400
    supports_redaction = True
    supported_scopes = tuple(dict.fromkeys(FEATURES.values()))
    default_scopes = ("document", "liveness", "face_match")
    required_settings = ("API_KEY", "WORKFLOW_ID")
    secret_settings = ("API_KEY", "WEBHOOK_SECRETS")
    config_keys = {
        "API_KEY": credential("The API key (x-api-key)."),
        "WORKFLOW_ID": credential("The Didit workflow to run.", secret=False),
        "LANGUAGE": language(None, optional(TEXT), "The hosted page's language."),
        "CALLBACK_METHOD": own(None, optional(TEXT, "Didit's default"), "Didit's callback_method of the create."),
        "STATUS_MAP": own(None, optional(TEXT_MAP), "Didit status -> our status, over the built-in map."),
        "SENSITIVE_FIELDS": own(None, optional(NAMES_OR_ONE), "More identity fields never kept."),
        **{
            name: own(default, optional(TEXT), "Header of that signature.", "verification_link.E009")
            for name, default in DiditWebhookVerifier.extra_defaults.items()
            if name != "WEBHOOK_ALLOW_SIMPLE"
        },
        "WEBHOOK_ALLOW_SIMPLE": own(
            False, FLAG, "Accept X-Signature-Simple (then confirm by a status call).", "verification_link.E009"
        ),
    }
    default_base_url = "https://verification.didit.me"
    max_ttl = 30 * 86400
    hosted_fallback = "https://verify.didit.me/session/"
    webhook_verifier_class = DiditWebhookVerifier
    webhook_defaults = {
        "WEBHOOK_AUTH": "didit",
        "WEBHOOK_SIGNATURE_HEADER": "X-Signature",
        "WEBHOOK_TIMESTAMP_HEADER": "X-Timestamp",
        **DiditWebhookVerifier.extra_defaults,
    }
    status_map = {name: status for name, (status, _verdict) in STATUSES.items()}
    create_path = "/v3/session/"
    decision_path = "/v3/session/{id}/decision/"
    delete_path = "/v3/session/{id}/delete/"

    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": str(self.setting("API_KEY", "")), "Accept": "application/json"}

    def error_code(self, body: Any) -> str | int | None:
        if isinstance(body, Mapping):
            for name in ("code", "error_code"):
                if isinstance(body.get(name), (str, int)) and not isinstance(body.get(name), bool):
                    return body[name]
        return None

    def decode(self, response: requests.Response, operation: str) -> Any:
        if operation == DELETE and 200 <= response.status_code < 300 and not response.content:
            return {}  # 204 No Content
        return super().decode(response, operation)

    # -- create, status, redaction -------------------------------------------------------------

    def create_session(self, request: CreateRequest) -> CreatedSession:
        operation = "create session"
        body: dict[str, Any] = {
            "workflow_id": str(self.setting("WORKFLOW_ID", "")),
            "vendor_data": str(request.session_id),
            "callback": request.return_url,
            "metadata": request.metadata,  # as every provider gets it (it names our session too)
        }
        language = request.language or self.setting("LANGUAGE")
        if language:
            body["language"] = str(language)
        if self.setting("CALLBACK_METHOD"):
            body["callback_method"] = str(self.setting("CALLBACK_METHOD"))
        answer = self.call("POST", self.create_path, operation=operation, json=body)
        if not isinstance(answer, Mapping):
            raise self.malformed(operation, "not an object")
        session_id, token, url = answer.get("session_id"), answer.get("session_token"), answer.get("url")
        if not isinstance(session_id, str) or not session_id.strip():
            raise self.malformed(operation, "no session_id")
        if token is not None and not isinstance(token, str):
            raise self.malformed(operation, "session_token is not a string")
        if not (isinstance(url, str) and url.startswith(("https://", "http://"))):
            if not token:
                raise self.malformed(operation, "no url and no session_token")
            url = self.hosted_fallback + quote(token, safe="")
        return CreatedSession(url=url, token=token or "", external_id=session_id)

    def get_status(self, session: VerificationSession, *, timeout: float | None = None) -> StatusReport:
        operation = "get decision"
        path = self.decision_path.format(id=quote(session.external_id, safe=""))
        answer = self.call("GET", path, operation=operation, timeout=timeout)
        if not isinstance(answer, Mapping):
            raise self.malformed(operation, "not an object")
        report = self.report(answer.get("status"), answer, operation)
        if report is None:
            raise self.malformed(operation, "unknown status")
        return report

    def redact_session(self, session: VerificationSession) -> None:
        """Didit's delete: the session, its decision and media leave every read endpoint. A 404
        (deleted before) counts as done."""
        if not session.external_id:
            return
        try:
            self.call("DELETE", self.delete_path.format(id=quote(session.external_id, safe="")), operation=DELETE)
        except ProviderRejected as exc:
            if exc.status_code != 404:
                raise

    # -- reading answers ------------------------------------------------------------------------

    def map_status(self, raw: Any) -> tuple[str, str] | None:
        """(our status, verdict) of a Didit status, case- and space-insensitively; the alias's
        ``STATUS_MAP`` (Didit status → our status) adds or overrides entries."""
        if not isinstance(raw, str):
            return None
        name = " ".join(raw.split()).lower()
        extra = self.setting("STATUS_MAP") or {}
        for key, value in extra.items() if isinstance(extra, Mapping) else ():
            if isinstance(key, str) and " ".join(key.split()).lower() == name and value in Status.values:
                return value, VERDICT_OF.get(value, Verdict.NONE)
        return STATUSES.get(name)

    def report(self, raw_status: Any, decision: Any, operation: str) -> StatusReport | None:
        mapped = self.map_status(raw_status)
        if mapped is None:
            return None
        status, verdict = mapped
        result = self.result_of(decision, operation)
        return StatusReport(
            status=status,
            result=result,
            provider_status=str(raw_status)[:64],
            verdict=verdict,
            reasons=self.reasons(result, verdict),
        )

    def result_of(self, decision: Any, operation: str) -> dict[str, Any]:
        """The kept part of a decision: its check lists and a few plain fields, storable."""
        if decision is None:
            return {}
        if not isinstance(decision, Mapping):
            raise self.malformed(operation, "decision is not an object")
        result = {key: decision[key] for key in KEPT if key in decision}
        for feature in FEATURES:
            entries = decision.get(feature)
            if entries is None:
                continue
            if not isinstance(entries, list) or not all(isinstance(entry, Mapping) for entry in entries):
                raise self.malformed(operation, f"{feature} is not a list of objects")
            result[feature] = entries
        warnings = result.get("warnings")
        if warnings is not None and not isinstance(warnings, list):
            raise self.malformed(operation, "warnings is not a list")
        try:
            return storable(result)
        except InvalidJSON:
            raise self.malformed(operation, "decision cannot be stored") from None

    def reasons(self, result: Mapping[str, Any], verdict: str) -> tuple[str, ...]:
        """Didit's warning codes (``risk``) of the session and of every check; for a decline
        without any, the declined checks (``face_match_declined``)."""
        if verdict not in (Verdict.DECLINED, Verdict.REVIEW, Verdict.RESUBMISSION):
            return ()
        codes = list(_warning_codes(result.get("warnings")))
        for feature, scope in FEATURES.items():
            for entry in _entries(result, feature):
                codes.extend(_warning_codes(entry.get("warnings")))
                if verdict == Verdict.DECLINED and _entry_passed(entry) is False:
                    codes.append(f"{scope}_declined")
        unique = tuple(dict.fromkeys(code[:64] for code in codes))[:20]
        return unique or (("declined",) if verdict == Verdict.DECLINED else ())

    # -- checks -----------------------------------------------------------------------------------

    def check_rows(self, scopes: Iterable[str], result: Mapping[str, Any]) -> list[CheckRow]:
        """One row per check entry of the decision (``liveness (node-2)`` where a workflow has
        several), then a row for each requested check that is not there."""
        rows: list[CheckRow] = []
        for feature, scope in FEATURES.items():
            entries = _entries(result, feature)
            for entry in entries:
                node = entry.get("node_id")
                name = f"{scope} ({node})" if len(entries) > 1 and isinstance(node, str) else scope
                score = entry.get("score")
                score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
                detail = ", ".join(_warning_codes(entry.get("warnings")))
                if not detail and _entry_passed(entry) is None and isinstance(entry.get("status"), str):
                    detail = entry["status"]
                rows.append(CheckRow(name, _entry_passed(entry), score, detail[:200]))
        shown = {row.scope.split(" (")[0] for row in rows}
        rows.extend(CheckRow(scope, None, None, "not in the decision") for scope in scopes if scope not in shown)
        return rows

    def scope_outcomes(self, scopes: Iterable[str], result: Mapping[str, Any]) -> dict[str, bool | None]:
        """Per requested check: False if any of its entries is declined, True if every one is
        approved, else None (in review, not finished, or not run)."""
        features = {scope: feature for feature, scope in FEATURES.items()}
        outcomes: dict[str, bool | None] = {}
        for scope in scopes:
            passed = [_entry_passed(entry) for entry in _entries(result, features.get(scope, ""))]
            outcomes[scope] = False if False in passed else (True if passed and all(passed) else None)
        return outcomes

    # -- webhooks -------------------------------------------------------------------------------

    @property
    def result_field(self) -> str:
        return "decision"

    def parse_webhook(self, payload: Mapping[str, Any]) -> WebhookReport:
        payload = storable(payload)
        raw_status = payload.get("status")
        external = payload.get("session_id")
        kind = payload.get("webhook_type")
        metadata = payload.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        ours = payload.get("vendor_data") or metadata.get("verification_session_id")
        event_id = payload.get("event_id")
        pull = self.setting("WEBHOOK_ALLOW_SIMPLE") is True  # then only the envelope was signed
        if isinstance(event_id, str) and event_id.strip():
            delivery = event_id.strip()
        else:
            delivery, pull = f"{external}:{kind}:{raw_status}", True
        report = None
        try:
            report = self.report(raw_status, payload.get("decision"), "webhook")
        except ProviderUnavailable:
            pull = True  # a signed body whose decision is unreadable: ask the decision endpoint
        return WebhookReport(
            report=report,
            raw_status=str(raw_status)[:64] if raw_status is not None else "",
            external_id=str(external) if isinstance(external, str) else "",
            session_id=str(ours) if isinstance(ours, str) else "",
            delivery_id=delivery[:255],
            pull=pull,
            ignored=isinstance(kind, str) and kind not in STATE_EVENTS,
        )

    @property
    def sensitive_fields(self) -> frozenset[str]:
        """``SENSITIVE_FIELDS`` plus the alias's own ``SENSITIVE_FIELDS`` (names; one string is one name)."""
        extra = self.setting("SENSITIVE_FIELDS") or ()
        extra = (extra,) if isinstance(extra, str) else extra if isinstance(extra, (list, tuple, set)) else ()
        return SENSITIVE_FIELDS | frozenset(name for name in extra if isinstance(name, str))

    def sensitive_parts_removed(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Also names, dates of birth, document numbers, addresses, contact data, images and their
        URLs, at any depth."""
        return without_keys(super().sensitive_parts_removed(result), self.sensitive_fields)

    def storable_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The webhook body without identity data and without the hosted link, at any depth."""
        return super().storable_body(without_keys(dict(payload), self.sensitive_fields | BEARER_FIELDS))


def _entries(result: Mapping[str, Any], feature: str) -> list[Mapping[str, Any]]:
    entries = result.get(feature) if isinstance(result, Mapping) else None
    if isinstance(entries, Mapping):
        entries = [entries]
    return [entry for entry in entries if isinstance(entry, Mapping)] if isinstance(entries, list) else []


def _entry_passed(entry: Mapping[str, Any]) -> bool | None:
    status = entry.get("status")
    name = " ".join(status.split()).lower() if isinstance(status, str) else ""
    return True if name == "approved" else False if name == "declined" else None


def _warning_codes(warnings: Any) -> Iterable[str]:
    for warning in warnings if isinstance(warnings, list) else ():
        if isinstance(warning, str) and warning:
            yield warning
        elif isinstance(warning, Mapping):
            code = next(
                (warning[k] for k in ("risk", "code", "short_description") if isinstance(warning.get(k), str)), ""
            )
            if code:
                yield code
