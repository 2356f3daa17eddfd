"""Valify — Web Verification Flow.

Wire contract (see PROVIDERS.md):

- ``POST {BASE_URL}/api/link/v1/request/?lang=<LANG>`` with ``X-Valify-Api-Key`` and JSON
  ``{return_url, reference_id, expires_at, flow?}`` → ``{session_token, redirect_url}`` (the
  documentation spells the key ``"redirect_url "``, with a space: both are accepted, and the URL is
  built from the token when neither is there).
- Errors: 400/404/415/422 ``{"message", "error_code"?}`` → ``ProviderRejected`` keeping
  ``error_code``; 401/403 → ``ProviderAuthError``; 5xx, timeouts, unreadable → ``ProviderUnavailable``.
- No status endpoint: not pollable; a session that gets no webhook expires locally at ``expires_at``.
- Results arrive by an account-level webhook whose shape and authentication Valify does not
  document: both are configurable here (``WEBHOOK_*`` settings of the alias). The defaults match the
  built-in sandbox: HMAC-SHA256 hex of ``f"{timestamp}.{body}"`` in ``X-Valify-Signature`` with Unix
  seconds in ``X-Valify-Timestamp``; ``session_token``/``token``/``reference_id`` name the session;
  ``status`` holds the outcome, mapped by ``WEBHOOK_STATUS_MAP``; ``result`` the details.
- National ID numbers and document/face images are not stored unless ``STORE_SENSITIVE`` is True.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.core.checks import CheckMessage
from django.utils import timezone

from .. import conf
from ..jsonbody import without_keys
from ..models import VerificationSession
from ..settings_table import FLAG, NAMES, NAMES_OR_ONE, TEXT, TEXT_MAP, choice, credential, language, optional, own
from .base import BaseProvider, CreatedSession, CreateRequest, StatusReport, WebhookReport, storable

Status = VerificationSession.Status
logger = logging.getLogger("verification_link.providers")

#: Result fields never stored unless STORE_SENSITIVE: identity numbers and images.
SENSITIVE_FIELDS = frozenset(
    {
        "national_id",
        "nationalId",
        "national_id_number",
        "id_number",
        "idNumber",
        "document_number",
        "images",
        "image",
        "front",
        "back",
        "selfie",
        "front_image",
        "back_image",
        "selfie_image",
        "face_image",
        "portrait",
        "document_image",
    }
)


class ValifyProvider(BaseProvider):
    display_name = "Valify"
    user_needs = ("national_id", "camera", "phone")
    pollable = False
    receives_webhooks = True
    uses_reference = True
    supported_scopes = ()  # the flow (OCR, face match, OTP…) is configured per account at Valify
    required_settings = ("API_KEY",)
    secret_settings = ("API_KEY", "WEBHOOK_SECRETS")
    config_keys = {
        "API_KEY": credential("The Valify API key (X-Valify-Api-Key)."),
        "FLOW": own(None, optional(TEXT, "the account's"), "The Valify flow to run."),
        "LANG": language(
            "en", optional(choice("en", "ar")), "The hosted page's language when the user's is not spoken."
        ),
        "WEBHOOK_TOKEN_FIELDS": own(
            None, optional(NAMES), "Webhook fields of the session token (session_token, token)."
        ),
        "WEBHOOK_REFERENCE_FIELD": own("reference_id", optional(TEXT), "Webhook field of our reference."),
        "WEBHOOK_STATUS_FIELD": own("status", optional(TEXT), "Webhook field of the outcome."),
        "WEBHOOK_STATUS_MAP": own({}, optional(TEXT_MAP), "Outcome -> status entries added to the built-in map."),
        "WEBHOOK_RESULT_FIELD": own("result", optional(TEXT), "Webhook field of the result."),
        "SENSITIVE_FIELDS": own(None, optional(NAMES_OR_ONE), "More identity fields never kept."),
        "STORE_SENSITIVE": own(False, optional(FLAG), "Keep identity numbers and images (only True)."),
    }
    default_base_url = "https://verify.valifysolutions.com"
    max_ttl = 30 * 86400
    languages = ("en", "ar")
    hosted_languages = languages
    create_path = "/api/link/v1/request/"
    webhook_defaults = {
        "WEBHOOK_AUTH": "hmac",
        "WEBHOOK_SIGNATURE_HEADER": "X-Valify-Signature",
        "WEBHOOK_SIGNATURE_ENCODING": "hex",
        "WEBHOOK_TIMESTAMP_HEADER": "X-Valify-Timestamp",
        "WEBHOOK_SECRET_HEADER": "X-Valify-Webhook-Secret",
    }
    #: Webhook outcome values → our statuses (lower-cased before the look-up); extend or override it
    #: with the alias's ``WEBHOOK_STATUS_MAP``. Anything else is recorded and not applied.
    status_map = {
        "success": Status.DONE,
        "succeeded": Status.DONE,
        "completed": Status.DONE,
        "approved": Status.DONE,
        "verified": Status.DONE,
        "passed": Status.DONE,
        "failed": Status.FAILED,
        "failure": Status.FAILED,
        "rejected": Status.FAILED,
        "declined": Status.FAILED,
        "canceled": Status.CANCELED,
        "cancelled": Status.CANCELED,
        "expired": Status.EXPIRED,
    }
    #: Parts of a result read as checks for the decision policy, and the boolean that says "passed".
    check_fields = {"face_match": "match", "liveness": "passed", "phone_otp": "verified", "email_otp": "verified"}

    def auth_headers(self) -> dict[str, str]:
        return {"X-Valify-Api-Key": str(self.setting("API_KEY", "")), "Content-Type": "application/json"}

    def error_code(self, body: Any) -> str | int | None:
        if isinstance(body, Mapping) and isinstance(body.get("error_code"), (int, str)):
            return body["error_code"]
        return None

    @property
    def lang(self) -> str:
        return str(self.setting("LANG") or "en")

    def lang_of(self, request: CreateRequest) -> str:
        """``lang`` of the create: the session's language when Valify speaks it, else ``LANG``."""
        return self.hosted_language(request.language) or self.lang

    @classmethod
    def check_config(cls, alias: str, config: Mapping[str, Any]) -> list[CheckMessage]:
        from django.core.checks import Error

        from .. import conf

        messages = super().check_config(alias, config)
        if config.get("LANG") not in (None, *cls.languages):
            messages.append(
                Error(
                    f"{conf.key_path('PROVIDERS', alias, 'LANG')} must be one of {cls.languages}.",
                    id="verification_link.E010",
                )
            )
        return messages

    # -- create ---------------------------------------------------------------------------------------

    def create_session(self, request: CreateRequest) -> CreatedSession:
        operation = "create link"
        expires_at = timezone.now() + timedelta(seconds=request.ttl)
        body: dict[str, Any] = {
            "return_url": request.return_url,
            "reference_id": request.reference,
            "expires_at": expires_at.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{expires_at.microsecond // 1000:03d}Z",
        }
        if self.setting("FLOW"):
            body["flow"] = str(self.setting("FLOW"))
        params = {"lang": self.lang_of(request)}
        answer = self.call("POST", self.create_path, operation=operation, json=body, params=params)
        if not isinstance(answer, Mapping):
            raise self.malformed(operation, "not an object")
        token = answer.get("session_token")
        if not isinstance(token, str) or not token.strip():
            raise self.malformed(operation, "no session_token")
        url = answer.get("redirect_url", answer.get("redirect_url "))  # the documentation's spelling has a space
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            url = f"{self.base_url}/?token={token}"
        return CreatedSession(
            url=url,
            token=token,
            external_id=token,
            expires_at=expires_at.replace(microsecond=expires_at.microsecond // 1000 * 1000),
        )

    # -- webhooks -------------------------------------------------------------------------------------

    def parse_webhook(self, payload: Mapping[str, Any]) -> WebhookReport:
        payload = storable(payload)
        token_fields = self.setting("WEBHOOK_TOKEN_FIELDS") or ("session_token", "token")
        token = next((str(payload[f]) for f in token_fields if isinstance(payload.get(f), (str, int))), "")
        reference_field = self.setting("WEBHOOK_REFERENCE_FIELD") or "reference_id"
        reference = payload.get(reference_field)
        raw_status = payload.get(self.setting("WEBHOOK_STATUS_FIELD") or "status")
        raw = str(raw_status).strip().lower() if isinstance(raw_status, (str, int)) else ""
        mapping = {
            **self.status_map,
            **{str(k).lower(): v for k, v in (self.setting("WEBHOOK_STATUS_MAP") or {}).items()},
        }
        status = mapping.get(raw)
        report = None
        if status is not None:
            result = payload.get(self.setting("WEBHOOK_RESULT_FIELD") or "result")
            result = dict(result) if isinstance(result, Mapping) else {}
            if not self.store_sensitive:
                result = without_keys(result, self.sensitive_fields)
            if isinstance(payload.get("reason"), str):
                result.setdefault("reason", payload["reason"])
            report = StatusReport(status=status, result=result, provider_status=raw[:64])
        return WebhookReport(
            token=token,
            reference=str(reference) if isinstance(reference, (str, int)) else "",
            report=report,
            raw_status=str(raw_status)[:64] if raw_status is not None else "",
        )

    @property
    def sensitive_fields(self) -> frozenset[str]:
        """Identity numbers and images: ``SENSITIVE_FIELDS`` plus the alias's own ``SENSITIVE_FIELDS``
        (a list of names; a lone string is the one name it spells, never its letters)."""
        extra = self.setting("SENSITIVE_FIELDS") or ()
        if isinstance(extra, str):
            extra = (extra,)
        if not (isinstance(extra, (list, tuple, set, frozenset)) and all(isinstance(name, str) for name in extra)):
            logger.error("%s must be a list of field names", conf.key_path("PROVIDERS", self.alias, "SENSITIVE_FIELDS"))
            extra = ()
        return SENSITIVE_FIELDS | frozenset(extra)

    @property
    def store_sensitive(self) -> bool:
        """Whether identity numbers and images are kept: only for ``STORE_SENSITIVE`` exactly ``True``
        (an environment string such as ``"False"`` is truthy, and must not keep them)."""
        value = self.setting("STORE_SENSITIVE", False)
        if not (value is True or value is False or value is None):  # 1 == True: compare identities
            logger.error(
                "%s must be True or False; identity data is not stored until it is fixed",
                conf.key_path("PROVIDERS", self.alias, "STORE_SENSITIVE"),
            )
        return value is True

    @property
    def result_field(self) -> str:
        return self.setting("WEBHOOK_RESULT_FIELD") or "result"

    def sensitive_parts_removed(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Also identity numbers and images, at any depth (kept only with ``STORE_SENSITIVE``)."""
        return without_keys(super().sensitive_parts_removed(result), self.sensitive_fields)

    def storable_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The webhook body as the stored result is: without identity numbers and images at any
        depth unless ``STORE_SENSITIVE``, and without the result parts of ``DISCARD_RESULT_KEYS``
        (which are never stored at all)."""
        kept: dict[str, Any] = dict(payload)
        if not self.store_sensitive:
            kept = without_keys(kept, self.sensitive_fields)
        return super().storable_body(kept)

    def scope_outcomes(self, scopes: Iterable[str], result: Mapping[str, Any]) -> dict[str, bool | None]:
        """Valify sessions have no scopes: the checks are the parts of the result the flow produced
        (face match, liveness, OTPs); none at all is "unknown", so a DONE goes to review."""
        outcomes: dict[str, bool | None] = {}
        for part, flag in self.check_fields.items():
            value = result.get(part)
            if isinstance(value, Mapping) and isinstance(value.get(flag), bool):
                outcomes[part] = value[flag]
        if isinstance(result.get("ocr"), Mapping):
            outcomes["ocr"] = bool(result["ocr"]) or None
        return outcomes or {"flow": None}
