"""Persona — Inquiries (hosted flow).

Wire contract (docs/providers/persona.rst; Persona's OpenAPI spec, "Persona API Reference", and
https://docs.withpersona.com):

- ``Authorization: Bearer <API_KEY>``, ``Persona-Version: <API_VERSION>``, ``Key-Inflection: kebab``;
  JSON:API bodies; errors ``{"errors": [{"title", "details"}]}`` (401/403 → ``ProviderAuthError``,
  other 4xx → ``ProviderRejected``, 5xx/timeouts/unreadable → ``ProviderUnavailable``).
- ``POST {BASE_URL}/inquiries`` (201) ``{"data": {"attributes": {"inquiry-template-id" | "inquiry-template-
  version-id" | "template-id", "redirect-uri", <REFERENCE_FIELD>: <our session id>}, "meta":
  {"expiration-after-create-interval-seconds": ttl}}}`` → ``{"data": {"id": "inq_…", …}}``: no URL, no
  expiry (docs.withpersona.com/api-reference/inquiries/create-an-inquiry).
- The link: ``POST /inquiries/{id}/generate-one-time-link`` ``{"meta": {"expires-in-seconds": ttl}}`` →
  ``meta.one-time-link`` (``LINK = "one_time"``, the default; docs "inquiry-one-time-links"), or
  ``{HOSTED_URL}?inquiry-id=inq_…`` with no second call (``LINK = "inquiry_id"``; docs
  "quickstart-hosted-flow").
- ``GET /inquiries/{id}?include=verifications`` → the inquiry and its verifications (``checks[]``).
- ``POST /inquiries/{id}/expire`` cancels (the inquiry expires); ``DELETE /inquiries/{id}`` redacts.
- Webhooks: ``Persona-Signature: t=…,v1=<hex HMAC-SHA256 of f"{t}.{body}">``, several space-separated
  groups while a secret rotates (docs "webhooks-best-practices"): the shared ``timestamped`` scheme.
  The body is an event ``{"data": {"type": "event", "id": "evt_…", "attributes": {"name", "payload":
  {"data": <inquiry or verification>, "included": [...]}}}}``; ``evt_…`` is the delivery id. Keys are
  kebab, snake or camel case as the webhook is set up: all three are read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, TypedDict
from urllib.parse import quote, urlencode

from django.core.checks import CheckMessage, Error
from django.utils import timezone

from .. import conf
from ..exceptions import ConfigurationError, ProviderUnavailable
from ..jsonbody import InvalidJSON, storable, without_keys
from ..models import VerificationSession
from ..settings_table import ANY_TEXT, FLAG, NAMES_MAP, TEXT, choice, credential, language, optional, own, url
from .base import BaseProvider, CheckRow, CreatedSession, CreateRequest, StatusReport, Verdict, WebhookReport

Status = VerificationSession.Status

#: The inquiry statuses of the spec ("do not assume this is a static enumeration").
STATUS_MAP = {
    "created": Status.CREATED,
    "pending": Status.IN_PROGRESS,
    "needs_review": Status.IN_PROGRESS,
    "completed": Status.DONE,
    "approved": Status.DONE,
    "failed": Status.FAILED,
    "declined": Status.FAILED,
    "expired": Status.EXPIRED,
}
# "completed" is no verdict: the user finished, Persona's workflow (or a person) decides next —
# by default the session waits for that decision (``AWAIT_DECISION``).
VERDICTS = {
    "approved": Verdict.APPROVED,
    "failed": Verdict.DECLINED,
    "declined": Verdict.DECLINED,
    "needs_review": Verdict.REVIEW,
}
#: Readable check rows → Persona check names, or ``verification/<type>`` (a trailing ``*`` matches
#: a prefix) for a verification's own status. The alias's ``CHECKS`` overrides any row.
DEFAULT_CHECKS: dict[str, tuple[str, ...]] = {
    "document": ("verification/government-id", "verification/document"),
    "liveness": ("selfie_liveness_detection",),
    "face_match": ("selfie_id_comparison", "id_selfie_comparison"),
    "id_number": ("verification/database*", "verification/aamva"),
}
#: What of an inquiry and of a verification is kept (everything else is identity data: names,
#: birthdate, addresses, numbers, photo URLs; kept under ``identity`` only with ``STORE_SENSITIVE``).
INQUIRY_KEPT = (
    *("status", "reference-id", "note", "tags", "previous-step-name", "next-step-name"),
    *("created-at", "started-at", "completed-at", "failed-at", "marked-for-review-at", "decisioned-at"),
    *("expired-at", "redacted-at"),
)
VERIFICATION_KEPT = (
    *("status", "created-at", "submitted-at", "completed-at", "country-code", "id-class", "capture-method"),
    *("entity-confidence-score", "entity-confidence-reasons"),
)
CHECK_KEPT = ("name", "status", "reasons", "requirement")
LINKS = ("one_time", "inquiry_id")
REFERENCE_FIELDS = ("note", "reference-id", "")
PASSED, FAILED_VALUES = ("passed", "confirmed"), ("failed",)


def variants(name: str) -> tuple[str, str, str]:
    """A kebab key and its snake and camel spellings (Persona's ``Key-Inflection``)."""
    parts = name.split("-")
    return name, "_".join(parts), parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])


def get(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` in any of the three key casings; ``default`` when absent or not a mapping."""
    if isinstance(obj, Mapping):
        for key in variants(name):
            if key in obj:
                return obj[key]
    return default


def kebab(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", key).replace("_", "-").lower()


def word(value: Any) -> str:
    """A status or type value as compared: lower case, ``-`` and ``_`` alike (``needs_review``)."""
    return value.strip().lower().replace("-", "_") if isinstance(value, str) else ""


class _InquiryHandles(TypedDict):
    """What every ``WebhookReport`` of an inquiry event carries, whatever the rest says."""

    external_id: str
    session_id: str
    raw_status: str


class PersonaProvider(BaseProvider):
    display_name = "Persona"
    pollable = True
    receives_webhooks = True
    supports_cancel = True
    user_needs = ("id_document", "camera")
    supports_redaction = True
    supported_scopes = tuple(DEFAULT_CHECKS)
    default_scopes = ("document", "liveness", "face_match")
    required_settings = ("API_KEY", "TEMPLATE_ID")
    secret_settings = ("API_KEY", "WEBHOOK_SECRETS")
    config_keys = {
        "API_KEY": credential("The Persona API key."),
        "TEMPLATE_ID": credential("The inquiry template (itmpl_...), or a version (itmplv_...).", secret=False),
        "API_VERSION": own("2023-01-05", optional(ANY_TEXT), "The Persona-Version header ('' sends none)."),
        "LINK": own("one_time", optional(choice(*LINKS)), "The hand-off link: a one-time link or by inquiry id."),
        "REFERENCE_FIELD": own("note", optional(choice(*REFERENCE_FIELDS)), "Inquiry field of our session id."),
        "STORE_SENSITIVE": own(False, optional(FLAG), "Keep identity data under 'identity' (only True)."),
        "AWAIT_DECISION": own(True, optional(FLAG), "A completed inquiry waits for Persona's decision."),
        "CHECKS": own(None, optional(NAMES_MAP), "Check row -> Persona check names, over the defaults."),
        "LANGUAGE": language(None, optional(TEXT), "The hosted page's language (inquiry_id links)."),
        "HOSTED_URL": own(None, optional(url(), "Persona's"), "The hosted flow's URL (inquiry_id links)."),
    }
    default_base_url = "https://api.withpersona.com/api/v1"
    max_ttl = 30 * 86400
    status_map = STATUS_MAP
    webhook_defaults = {"WEBHOOK_AUTH": "timestamped", "WEBHOOK_SIGNATURE_HEADER": "Persona-Signature"}
    webhook_secret_prefixes = ("wbhsec_",)
    default_hosted_url = "https://inquiry.withpersona.com/verify"
    default_api_version = "2023-01-05"

    # -- settings ---------------------------------------------------------------------------------

    def __init__(self, alias: str, config: Mapping[str, Any]) -> None:
        super().__init__(alias, config)
        # Validated at use too (servers run no checks): a typo in LINK or AWAIT_DECISION must not
        # silently change which link users get or who is approved.
        wrong = [m.msg for m in self.check_config(alias, config) if m.id == "verification_link.E020"]
        if wrong:
            raise ConfigurationError(wrong[0])

    def auth_headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.setting('API_KEY', '')}", "Key-Inflection": "kebab"}
        version = self.setting("API_VERSION", self.default_api_version)
        if version:
            headers["Persona-Version"] = str(version)
        return headers

    def error_code(self, body: Any) -> str | int | None:
        errors = get(body, "errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            title = errors[0].get("title")
            return title[:100] if isinstance(title, str) else None
        return None

    @property
    def link(self) -> str:
        return self.setting("LINK") or "one_time"

    @property
    def reference_field(self) -> str:
        value = self.setting("REFERENCE_FIELD", "note")
        return "" if value is None else value

    @property
    def store_sensitive(self) -> bool:
        return self.setting("STORE_SENSITIVE", False) is True

    @property
    def checks(self) -> dict[str, tuple[str, ...]]:
        extra = self.setting("CHECKS") or {}
        merged = dict(DEFAULT_CHECKS)
        if isinstance(extra, Mapping):
            merged.update({str(row): tuple(map(str, names)) for row, names in extra.items() if isinstance(names, list)})
        return merged

    @classmethod
    def check_config(cls, alias: str, config: Mapping[str, Any]) -> list[CheckMessage]:
        messages = super().check_config(alias, config)
        checks = config.get("CHECKS")
        valid = {
            "LINK": (config.get("LINK") in (None, *LINKS), f"one of {LINKS}"),
            "REFERENCE_FIELD": (
                config.get("REFERENCE_FIELD") in (None, *REFERENCE_FIELDS),
                f"one of {REFERENCE_FIELDS}",
            ),
            "STORE_SENSITIVE": (config.get("STORE_SENSITIVE") in (None, True, False), "True or False"),
            "AWAIT_DECISION": (config.get("AWAIT_DECISION") in (None, True, False), "True or False"),
            "CHECKS": (
                checks is None or (isinstance(checks, Mapping) and all(_names(names) for names in checks.values())),
                "a dict: row name -> list of check names",
            ),
        }
        for key, (ok, allowed) in valid.items():
            if not ok:
                path = conf.key_path("PROVIDERS", alias, key)
                messages.append(Error(f"{path} must be {allowed}.", id="verification_link.E020"))
        return messages

    # -- create -----------------------------------------------------------------------------------

    def create_session(self, request: CreateRequest) -> CreatedSession:
        operation = "create inquiry"
        template = str(self.setting("TEMPLATE_ID", ""))
        kinds = (("itmplv_", "inquiry-template-version-id"), ("tmpl_", "template-id"))
        template_key = next((key for prefix, key in kinds if template.startswith(prefix)), "inquiry-template-id")
        attributes: dict[str, Any] = {template_key: template, "redirect-uri": request.return_url}
        if self.reference_field:
            attributes[self.reference_field] = str(request.session_id)
        body = {"data": {"attributes": attributes}, "meta": {"expiration-after-create-interval-seconds": request.ttl}}
        expires_at = timezone.now() + timedelta(seconds=request.ttl)
        answer = self.call("POST", "/inquiries", operation=operation, json=body)
        data = get(answer, "data")
        inquiry_id = get(data, "id")
        if not isinstance(inquiry_id, str) or not inquiry_id.startswith("inq_") or not inquiry_id.isprintable():
            raise self.malformed(operation, "no inquiry id")
        if self.link == "inquiry_id":
            query = {"inquiry-id": inquiry_id}
            language = request.language or self.setting("LANGUAGE")
            if language:
                query["language"] = str(language)
            url = f"{self.setting('HOSTED_URL') or self.default_hosted_url}?{urlencode(query)}"
        else:
            operation = "generate one-time link"
            answer = self.call(
                "POST",
                f"/inquiries/{quote(inquiry_id, safe='')}/generate-one-time-link",
                operation=operation,
                json={"meta": {"expires-in-seconds": request.ttl}},
            )
            url = get(get(answer, "meta"), "one-time-link")
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                raise self.malformed(operation, "no meta.one-time-link")
        return CreatedSession(url=url, token="", external_id=inquiry_id, expires_at=expires_at)

    # -- status, cancel, redact -------------------------------------------------------------------

    def _path(self, session: VerificationSession) -> str:
        return f"/inquiries/{quote(session.external_id, safe='')}"

    def get_status(self, session: VerificationSession, *, timeout: float | None = None) -> StatusReport:
        operation = "retrieve inquiry"
        answer = self.call(
            "GET", self._path(session), operation=operation, params={"include": "verifications"}, timeout=timeout
        )
        if not isinstance(answer, Mapping):
            raise self.malformed(operation, "not an object")
        report = self.parse_inquiry(get(answer, "data"), get(answer, "included"), operation=operation)
        if report is None:  # a status Persona added since: not final, the session stays open
            raw = get(get(get(answer, "data"), "attributes"), "status")
            return StatusReport(status=Status.IN_PROGRESS, provider_status=str(raw)[:64])
        return report

    def cancel_session(self, session: VerificationSession) -> None:
        if session.external_id:
            self.call("POST", self._path(session) + "/expire", operation="expire inquiry", json={})

    def redact_session(self, session: VerificationSession) -> None:
        if session.external_id:
            self.call("DELETE", self._path(session), operation="redact inquiry")

    # -- reading an inquiry -----------------------------------------------------------------------

    def parse_inquiry(self, data: Any, included: Any, *, operation: str) -> StatusReport | None:
        """The report of an inquiry object (``data``) and its ``included`` objects; None for a status
        value this module does not know. Any other shape is ``malformed``."""
        attributes = get(data, "attributes")
        if not isinstance(attributes, Mapping) or not isinstance(get(data, "id"), str):
            raise self.malformed(operation, "no inquiry")
        raw = get(attributes, "status")
        if not isinstance(raw, str) or not raw.strip():
            raise self.malformed(operation, "no inquiry status")
        if included is not None and not isinstance(included, list):
            raise self.malformed(operation, "included is not a list")
        try:
            inquiry = storable({key: get(attributes, key) for key in INQUIRY_KEPT if get(attributes, key) is not None})
            verifications = [self._verification(item) for item in included or () if self._is_verification(item)]
            result: dict[str, Any] = {"inquiry": {"id": data_id(data), **inquiry}, "verifications": verifications}
            if self.store_sensitive:
                result["identity"] = storable(self._identity(attributes, included or ()))
        except InvalidJSON:
            raise self.malformed(operation, "the inquiry cannot be stored") from None
        status_value = word(raw)
        status = self.status_map.get(status_value)
        if status is None:
            return None
        verdict = VERDICTS.get(status_value, Verdict.NONE)
        if status_value == "completed" and self.setting("AWAIT_DECISION", True) is not False:
            status, verdict = Status.IN_PROGRESS, Verdict.NONE
        reasons: list[str] = []
        if verdict == Verdict.DECLINED:
            reasons = self._reasons(verifications, lambda check: check.get("status") in FAILED_VALUES)
        elif status in (Status.CREATED, Status.IN_PROGRESS) and verdict == Verdict.NONE:
            retry = self._reasons(verifications, lambda check: check.get("requirement") == "requires_retry")
            if retry or any(word(item.get("status")) == "requires_retry" for item in verifications):
                verdict, reasons = Verdict.RESUBMISSION, retry
        return StatusReport(
            status=status, result=result, provider_status=raw[:64], verdict=verdict, reasons=tuple(reasons[:50])
        )

    @staticmethod
    def _is_verification(item: Any) -> bool:
        return isinstance(item, Mapping) and word(get(item, "type")).startswith("verification/")

    def _verification(self, item: Mapping[str, Any]) -> dict[str, Any]:
        attributes = get(item, "attributes")
        attributes = attributes if isinstance(attributes, Mapping) else {}
        kept = {key: get(attributes, key) for key in VERIFICATION_KEPT if get(attributes, key) is not None}
        checks = get(attributes, "checks")
        kept["checks"] = [
            {key: get(check, key) for key in CHECK_KEPT if get(check, key) is not None}
            for check in (checks if isinstance(checks, list) else ())
            if isinstance(check, Mapping)
        ]
        kind = word(get(item, "type")).replace("_", "-").removeprefix("verification/")
        return storable({"id": data_id(item), "type": kind, **kept})

    def _identity(self, attributes: Mapping[str, Any], included: Iterable[Any]) -> dict[str, Any]:
        """Everything not kept in the result: the identity data of the inquiry and verifications."""
        identity: dict[str, Any] = {"inquiry": {k: v for k, v in attributes.items() if kebab(k) not in INQUIRY_KEPT}}
        identity["verifications"] = [
            {k: v for k, v in (get(item, "attributes") or {}).items() if kebab(k) not in (*VERIFICATION_KEPT, "checks")}
            for item in included
            if self._is_verification(item) and isinstance(get(item, "attributes"), Mapping)
        ]
        return identity

    @staticmethod
    def _reasons(verifications: list[dict[str, Any]], selected: Any) -> list[str]:
        reasons: list[str] = []
        for item in verifications:
            for check in item.get("checks", ()):
                if selected(check):
                    listed = check.get("reasons")
                    given = [r for r in listed if isinstance(r, str) and r] if isinstance(listed, list) else []
                    reasons.extend(given or [str(check.get("name") or item["type"])])
        return list(dict.fromkeys(reasons))

    # -- webhooks ---------------------------------------------------------------------------------

    def parse_webhook(self, payload: Mapping[str, Any]) -> WebhookReport:
        event = get(payload, "data")
        attributes = get(event, "attributes")
        name = get(attributes, "name")
        delivery = get(event, "id")
        delivery_id = delivery if isinstance(delivery, str) and delivery.isprintable() else ""
        body = get(get(attributes, "payload"), "data")
        kind = word(get(body, "type"))
        object_id = get(body, "id")
        object_id = object_id if isinstance(object_id, str) and object_id.isprintable() else ""
        if not isinstance(name, str) or not isinstance(body, Mapping):
            return WebhookReport(delivery_id=delivery_id, ignored=True)
        if kind.startswith("verification/") or name.startswith("verification."):
            # A verification's event: its inquiry's state decides, so ask (pull) for it.
            inquiry_id = get(get(get(get(body, "relationships"), "inquiry"), "data"), "id")
            if not isinstance(inquiry_id, str) or not inquiry_id:
                return WebhookReport(delivery_id=delivery_id, ignored=True)
            return WebhookReport(external_id=inquiry_id, delivery_id=delivery_id or f"{object_id}:{name}", pull=True)
        if kind != "inquiry" or not name.startswith("inquiry."):
            return WebhookReport(delivery_id=delivery_id, ignored=True)
        inquiry_attributes = get(body, "attributes")
        reference = get(inquiry_attributes, self.reference_field) if self.reference_field else None
        raw = get(inquiry_attributes, "status")
        handles: _InquiryHandles = {
            "external_id": object_id,
            "session_id": reference if isinstance(reference, str) else "",
            "raw_status": str(raw)[:64] if isinstance(raw, (str, int)) else "",
        }
        if not delivery_id:
            delivery_id = f"{object_id}:{name}:{handles['raw_status']}"
        try:
            report = self.parse_inquiry(body, get(get(attributes, "payload"), "included"), operation="webhook")
        except (
            ProviderUnavailable,
            ValueError,
            TypeError,
        ):  # an authenticated body of a shape we cannot read: ask Persona instead
            return WebhookReport(delivery_id=delivery_id, pull=bool(object_id), **handles)
        return WebhookReport(report=report, delivery_id=delivery_id, **handles)

    def storable_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The event without identity data: its envelope, and of its inquiry and verifications only
        the kept attributes (``INQUIRY_KEPT``, ``VERIFICATION_KEPT``, checks), unless ``STORE_SENSITIVE``."""
        if self.store_sensitive:
            return super().storable_body(payload)
        event = get(payload, "data")
        attributes = get(event, "attributes")
        inner = get(attributes, "payload")

        def skeleton(item: Any, kept: tuple[str, ...]) -> dict[str, Any]:
            attrs = get(item, "attributes")
            out: dict[str, Any] = {"type": str(get(item, "type", ""))[:100], "id": data_id(item)}
            out["attributes"] = {key: get(attrs, key) for key in kept if get(attrs, key) is not None}
            return out

        data = get(inner, "data")
        is_verification = self._is_verification(data)
        kept_inner: dict[str, Any] = {"data": skeleton(data, VERIFICATION_KEPT if is_verification else INQUIRY_KEPT)}
        if is_verification:
            kept_inner["data"]["attributes"] = self._verification(data) if isinstance(data, Mapping) else {}
        included = get(inner, "included")
        kept_inner["included"] = [
            {**skeleton(item, ()), "attributes": self._verification(item)}
            for item in (included if isinstance(included, list) else ())
            if self._is_verification(item)
        ]
        envelope = {
            key: get(attributes, key) for key in ("name", "created-at") if isinstance(get(attributes, key), str)
        }
        return {"data": {"type": "event", "id": data_id(event), "attributes": {**envelope, "payload": kept_inner}}}

    # -- results ----------------------------------------------------------------------------------

    def sensitive_parts_removed(self, result: Mapping[str, Any]) -> dict[str, Any]:
        return without_keys(super().sensitive_parts_removed(result), ("identity",))

    def _row(self, names: tuple[str, ...], result: Mapping[str, Any]) -> tuple[bool, bool | None, Any, str]:
        """(found, passed, score, detail) of one readable row."""
        verifications = result.get("verifications")
        found, outcomes, score, detail = False, [], None, ""
        for item in verifications if isinstance(verifications, list) else ():
            if not isinstance(item, Mapping):
                continue
            kind = f"verification/{item.get('type', '')}"
            if any(kind == n or (n.endswith("*") and kind.startswith(n[:-1])) for n in names):
                found, status = True, word(item.get("status"))
                outcomes.append(True if status in PASSED else False if status in FAILED_VALUES else None)
                if isinstance(item.get("entity-confidence-score"), (int, float)):
                    score = item["entity-confidence-score"]
                failed = self._reasons([dict(item)], lambda check: check.get("status") in FAILED_VALUES)
                detail = detail or (failed[0] if failed and status in FAILED_VALUES else "")
            for check in item.get("checks") or ():
                if isinstance(check, Mapping) and check.get("name") in names:
                    found, status = True, word(check.get("status"))
                    outcomes.append(True if status == "passed" else False if status == "failed" else None)
                    if status == "failed" and not detail:
                        listed = check.get("reasons")
                        given = [r for r in listed if isinstance(r, str)] if isinstance(listed, list) else []
                        detail = given[0] if given else str(check["name"])
        passed = False if False in outcomes else True if True in outcomes else None
        return found, passed, score, detail

    def check_rows(self, scopes: Iterable[str], result: Mapping[str, Any]) -> list[CheckRow]:
        rows, wanted = [], list(scopes)
        for row, names in self.checks.items():
            found, passed, score, detail = self._row(names, result)
            if found or row in wanted:
                rows.append(CheckRow(row, passed, float(score) if score is not None else None, detail))
        return rows

    def scope_outcomes(self, scopes: Iterable[str], result: Mapping[str, Any]) -> dict[str, bool | None]:
        checks = self.checks
        return {scope: self._row(checks.get(scope, ()), result)[1] for scope in scopes}


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


def data_id(item: Any) -> str:
    value = get(item, "id")
    return value[:100] if isinstance(value, str) else ""
