"""Onfido — API v3.6, Studio workflow runs and their hosted link (docs/providers/onfido.rst).

Wire contract (spec: github onfido/onfido-openapi-spec; SDK: onfido-python 6.2.0):

- Base URL ``https://api.{eu|us|ca}.onfido.com/v3.6`` (spec ``servers``); the token alone chooses
  sandbox or live. Every call: ``Authorization: Token token=<API_TOKEN>`` (spec
  ``securitySchemes.Token``; SDK ``configuration.py``). Errors: ``{"error": {"type", "message",
  "fields"}}`` (spec ``responses/default_error.yaml``): ``type`` is the error code kept.
- Create, two calls (spec ``paths/applicants.yaml``, ``paths/workflow_runs.yaml``):
  ``POST /applicants`` ``{first_name, last_name}`` (both required by Onfido: from the session's
  metadata ``first_name``/``last_name``, else the ``APPLICANT_FIRST_NAME``/``APPLICANT_LAST_NAME``
  placeholders) → ``{id}``; then ``POST /workflow_runs`` ``{workflow_id, applicant_id,
  customer_user_id: <our session id>, link: {completed_redirect_url, expired_redirect_url,
  expires_at, language?}, tags?}`` → WorkflowRun ``{id, status, link: {url, expires_at}}``.
  Stored: ``external_id`` = the workflow run id, ``token`` = the applicant id (needed to redact).
  If the second call fails, the applicant just created is deleted (best effort).
- Status: ``GET /workflow_runs/{id}`` → ``{status, reasons, output, error, link}``; status one of
  ``processing, awaiting_input, awaiting_client_input, approved, declined, review, abandoned,
  error`` (spec ``workflow_run_status``). ``output`` is workflow-defined: which of its keys are
  which check is the ``OUTPUT_CHECKS`` setting.
- No cancel endpoint (a cancel is local). Redaction: ``DELETE /applicants/{applicant_id}`` → 204
  (spec; Onfido data-deletion guide); a 404 (already deleted) counts as done.
- Webhooks: ``X-SHA2-Signature`` = hex HMAC-SHA256 of the raw body under the webhook's token (the
  shared ``hmac`` scheme; Onfido's signature guide, SDK ``webhook_event_verifier.py``). The body
  ``{"payload": {resource_type, action, object: {id, status, …}, resource?}}`` has no event id and
  no timestamp, so it is only a hint: ``pull`` (the services ask Get Status), delivery id
  ``f"{object.id}:{action}:{object.status}"``. Events other than ``workflow_run.*`` and
  ``workflow_task.*`` (with a ``workflow_run_id``) are ignored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from datetime import timezone as dt_timezone
from typing import Any
from urllib.parse import quote

import requests
from django.core.checks import CheckMessage, Error
from django.utils import timezone

from .. import conf
from ..exceptions import ConfigurationError, InvalidRequest, ProviderError, ProviderRejected
from ..jsonbody import InvalidJSON, storable, without_keys
from ..models import VerificationSession
from ..settings_table import NAMES, NAMES_OR_ONE, TEXT, TEXT_MAP, credential, language, optional, own
from .base import BaseProvider, CheckRow, CreatedSession, CreateRequest, StatusReport, Verdict, WebhookReport

Status = VerificationSession.Status
logger = logging.getLogger("verification_link.providers")

#: ``link.language`` values Onfido accepts (spec ``workflow_run_link``; the SDK refuses others).
LANGUAGES = ("en_US", "de_DE", "es_ES", "fr_FR", "it_IT", "pt_PT", "nl_NL")
#: What Onfido accepts in applicant names (spec ``schemas/applicants/definitions.yaml``).
NAME_PATTERN = re.compile(r'[^!#$%*=<>;{}"]+')
MAX_NAME = 100
#: Identity data, at any depth: hidden from staff without the permission, stripped from kept
#: webhook bodies. ``link``/``sdk_token``/URLs are bearer secrets of the hosted flow or its files.
SENSITIVE_FIELDS = frozenset(
    {
        *("first_name", "last_name", "middle_name", "full_name", "name", "email", "phone_number"),
        *("dob", "date_of_birth", "address", "addresses", "location", "nationality", "gender"),
        *("document_number", "document_numbers", "id_number", "id_numbers", "personal_number"),
        *("images", "image", "photo", "photos", "video", "videos", "selfie", "document_front", "document_back"),
        *("link", "sdk_token", "href", "download_href", "timeline_file_download_url"),
    }
)
#: Output values read as a check: passed, failed; anything else is unknown.
PASSED_WORDS = frozenset({"clear", "approved", "pass", "passed", "verified", "true"})
FAILED_WORDS = frozenset({"consider", "declined", "rejected", "suspected", "caution", "fail", "failed", "false"})


class OnfidoProvider(BaseProvider):
    display_name = "Onfido"
    hosted_languages = LANGUAGES
    pollable = True
    receives_webhooks = True
    supports_cancel = False
    user_needs = ("id_document", "camera")
    supports_redaction = True
    supported_scopes = ("document", "liveness", "face_match")
    default_scopes = ("document", "face_match")
    required_settings = ("API_TOKEN", "WORKFLOW_ID")
    secret_settings = ("API_TOKEN", "WEBHOOK_SECRETS")
    config_keys = {
        "API_TOKEN": credential("The API token (api_live... or api_sandbox...)."),
        "WORKFLOW_ID": credential("The Onfido Studio workflow to run.", secret=False),
        "OUTPUT_CHECKS": own(None, optional(TEXT_MAP), "Check row -> key of the workflow's output."),
        "LANGUAGE": language(None, optional(TEXT), "The hosted page's language (de, de_DE, ...)."),
        "TAGS": own(None, optional(NAMES), "Tags of each workflow run."),
        "SENSITIVE_FIELDS": own(None, optional(NAMES_OR_ONE), "More identity fields never kept."),
        "APPLICANT_FIRST_NAME": own("Verification", TEXT, "The applicant's first name when metadata has none."),
        "APPLICANT_LAST_NAME": own("Applicant", TEXT, "The applicant's last name when metadata has none."),
    }
    default_base_url = "https://api.eu.onfido.com/v3.6"
    #: Our bound on ``link.expires_at`` (Onfido documents none); the default TTL is a day.
    max_ttl = 30 * 86400
    default_ttl = 86400
    key_prefixes = {"API_TOKEN": ("api_live", "api_sandbox")}
    webhook_defaults = {
        "WEBHOOK_AUTH": "hmac",
        "WEBHOOK_SIGNATURE_HEADER": "X-SHA2-Signature",
        "WEBHOOK_SIGNATURE_ENCODING": "hex",
    }
    status_map = {
        "awaiting_input": Status.IN_PROGRESS,
        "processing": Status.IN_PROGRESS,
        "awaiting_client_input": Status.IN_PROGRESS,
        "review": Status.IN_PROGRESS,  # Onfido has not decided: open, verdict "review"
        "approved": Status.DONE,
        "declined": Status.FAILED,
        "error": Status.FAILED,  # the run failed technically: verdict "review" (no judgement), reason = error type
        "abandoned": Status.EXPIRED,
    }
    # "error" is Onfido's failure, not the person's: the policy sends it to review, never rejects.
    verdicts = {
        "approved": Verdict.APPROVED,
        "declined": Verdict.DECLINED,
        "review": Verdict.REVIEW,
        "error": Verdict.REVIEW,
    }
    #: Default ``OUTPUT_CHECKS``: check row → key (dotted path) of the workflow's ``output``.
    default_output_checks = {"document": "document", "liveness": "liveness", "face_match": "face_match"}

    # -- configuration ----------------------------------------------------------------------------

    @property
    def output_checks(self) -> dict[str, str]:
        checks = self.setting("OUTPUT_CHECKS")
        if isinstance(checks, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in checks.items()):
            return dict(checks)
        if checks is not None:
            logger.error(
                "%s must map check names to output keys", conf.key_path("PROVIDERS", self.alias, "OUTPUT_CHECKS")
            )
        return dict(self.default_output_checks)

    @classmethod
    def language_code(cls, value: Any) -> str:
        """Onfido's code for a language (``"de"``, ``"de-DE"``, ``"de_DE"`` → ``"de_DE"``), or ""."""
        if not isinstance(value, str) or not value:
            return ""
        wanted = value.replace("-", "_").lower()
        for code in LANGUAGES:
            if wanted in (code.lower(), code[:2].lower()):
                return code
        return ""

    @classmethod
    def check_config(cls, alias: str, config: Mapping[str, Any]) -> list[CheckMessage]:
        messages = super().check_config(alias, config)
        if config.get("LANGUAGE") and not cls.language_code(config["LANGUAGE"]):
            messages.append(
                Error(
                    f"{conf.key_path('PROVIDERS', alias, 'LANGUAGE')} must be one of {', '.join(LANGUAGES)}.",
                    id="verification_link.E010",
                )
            )
        return messages

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token token={self.setting('API_TOKEN', '')}", "Accept": "application/json"}

    def error_code(self, body: Any) -> str | int | None:
        error = body.get("error") if isinstance(body, Mapping) else None
        if isinstance(error, Mapping) and isinstance(error.get("type"), str):
            return error["type"][:64]
        return None

    def decode(self, response: requests.Response, operation: str) -> Any:
        if response.status_code == 204:  # DELETE /applicants/{id}: no body
            return None
        return super().decode(response, operation)

    # -- create -----------------------------------------------------------------------------------

    def applicant_name(self, request: CreateRequest, part: str, default: str) -> str:
        """``first_name``/``last_name`` from the session's metadata, else the alias's placeholder."""
        given = request.metadata.get(part)
        if given is not None:
            if not (isinstance(given, str) and NAME_PATTERN.fullmatch(given) and len(given) <= MAX_NAME):
                raise InvalidRequest(f"metadata {part} is not a name Onfido accepts")
            return given
        setting = f"APPLICANT_{part.upper()}"
        value = self.setting(setting, default)
        if not (isinstance(value, str) and NAME_PATTERN.fullmatch(value) and len(value) <= MAX_NAME):
            raise ConfigurationError(f"{conf.key_path('PROVIDERS', self.alias, setting)} is not a name Onfido accepts")
        return value

    def create_session(self, request: CreateRequest) -> CreatedSession:
        names = {
            "first_name": self.applicant_name(request, "first_name", "Verification"),
            "last_name": self.applicant_name(request, "last_name", "Applicant"),
        }
        operation = "create applicant"
        applicant = self.call("POST", "/applicants", operation=operation, json=names)
        if not isinstance(applicant, Mapping) or not isinstance(applicant.get("id"), str) or not applicant["id"]:
            raise self.malformed(operation, "no applicant id")
        applicant_id = applicant["id"]
        expires_at = (timezone.now() + timedelta(seconds=request.ttl)).replace(microsecond=0)
        link: dict[str, Any] = {
            "completed_redirect_url": request.return_url,
            "expired_redirect_url": request.return_url,
            "expires_at": expires_at.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        language = self.language_code(request.language) or self.language_code(self.setting("LANGUAGE"))
        if language:
            link["language"] = language
        body: dict[str, Any] = {
            "workflow_id": str(self.setting("WORKFLOW_ID", "")),
            "applicant_id": applicant_id,
            "customer_user_id": str(request.session_id),
            "link": link,
        }
        if self.setting("TAGS"):
            body["tags"] = [str(tag) for tag in self.setting("TAGS")]
        try:
            run = self.call("POST", "/workflow_runs", operation="create workflow run", json=body)
            created = self._created(run, applicant_id, expires_at)
        except ProviderError:
            self._delete_applicant_quietly(applicant_id)
            raise
        return created

    def _created(self, run: Any, applicant_id: str, expires_at: Any) -> CreatedSession:
        operation = "create workflow run"
        if not isinstance(run, Mapping):
            raise self.malformed(operation, "not an object")
        run_id, link = run.get("id"), run.get("link")
        if not isinstance(run_id, str) or not run_id:
            raise self.malformed(operation, "no id")
        if not isinstance(link, Mapping):
            raise self.malformed(operation, "no link.url")
        url = link.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise self.malformed(operation, "no link.url")
        answered = self.parse_timestamp(link.get("expires_at"), operation, "link.expires_at")
        return CreatedSession(url=url, token=applicant_id, external_id=run_id, expires_at=answered or expires_at)

    def _delete_applicant_quietly(self, applicant_id: str) -> None:
        try:
            self.delete_applicant(applicant_id)
        except ProviderError as exc:
            logger.warning("%s: the applicant of a failed create was not deleted: %s", self.alias, exc)

    # -- status -----------------------------------------------------------------------------------

    def get_status(self, session: VerificationSession, *, timeout: float | None = None) -> StatusReport:
        operation = "get workflow run"
        if not session.external_id:
            raise self.malformed(operation, "the session has no workflow run id")
        body = self.call(
            "GET", f"/workflow_runs/{quote(session.external_id, safe='')}", operation=operation, timeout=timeout
        )
        if isinstance(body, Mapping) and body.get("id") not in (None, session.external_id):
            raise self.malformed(operation, "another workflow run")
        return self.parse_run(body, operation=operation)

    def parse_run(self, body: Any, *, operation: str = "workflow run") -> StatusReport:
        """Map a WorkflowRun to a ``StatusReport``; anything of the wrong shape is ``malformed``."""
        if not isinstance(body, Mapping):
            raise self.malformed(operation, "not an object")
        raw = body.get("status")
        if not isinstance(raw, str) or not raw or len(raw) > 64:
            raise self.malformed(operation, "no status")
        # A status Onfido adds later keeps the session open (its raw value kept): polled, never
        # a 503 to every webhook of it.
        status = self.status_map.get(raw, Status.IN_PROGRESS)
        reasons, output, error, link = (body.get(key) for key in ("reasons", "output", "error", "link"))
        if reasons is None:
            reasons = []
        if not isinstance(reasons, list) or not all(isinstance(reason, str) for reason in reasons):
            raise self.malformed(operation, "reasons is not a list of strings")
        for name, value in (("output", output), ("error", error), ("link", link)):
            if value is not None and not isinstance(value, Mapping):
                raise self.malformed(operation, f"{name} is not an object")
        result: dict[str, Any] = {"status": raw, "reasons": reasons, "output": dict(output or {})}
        if error:
            result["error"] = dict(error)
        for key, kind in (("workflow_version_id", int), ("dashboard_url", str)):
            if isinstance(body.get(key), kind) and not isinstance(body.get(key), bool):
                result[key] = body[key]
        try:
            result = storable(result)
        except InvalidJSON:
            raise self.malformed(operation, "the run cannot be stored") from None
        codes = tuple(reason[:64] for reason in reasons[:30])
        error_type = (error or {}).get("type")
        if raw == "error" and not codes and isinstance(error_type, str):
            codes = (error_type[:64],)
        return StatusReport(
            status=status,
            expires_at=self.parse_timestamp((link or {}).get("expires_at"), operation, "link.expires_at"),
            result=result,
            provider_status=raw,
            verdict=self.verdicts.get(raw, Verdict.NONE),
            reasons=codes,
        )

    # -- redaction --------------------------------------------------------------------------------

    def delete_applicant(self, applicant_id: str) -> None:
        self.call("DELETE", f"/applicants/{quote(applicant_id, safe='')}", operation="delete applicant")

    def redact_session(self, session: VerificationSession) -> None:
        """``DELETE /applicants/{token}``: the applicant with its documents, media, checks and reports
        (queued for the account's deletion delay at Onfido). Already deleted (404) counts as done."""
        if not session.token:
            return
        try:
            self.delete_applicant(session.token)
        except ProviderRejected as exc:
            if exc.status_code != 404:
                raise

    # -- webhooks ---------------------------------------------------------------------------------

    def parse_webhook(self, payload: Mapping[str, Any]) -> WebhookReport:
        """Only a hint (no event id, no timestamp): the services call ``get_status``."""
        inner = payload.get("payload")
        inner = inner if isinstance(inner, Mapping) else {}
        resource_type, action = inner.get("resource_type"), inner.get("action")
        obj = inner.get("object")
        obj = obj if isinstance(obj, Mapping) else {}
        resource = inner.get("resource")
        resource = resource if isinstance(resource, Mapping) else {}
        object_id = obj.get("id")
        object_id = object_id if isinstance(object_id, str) else ""
        raw_status = obj.get("status")
        raw_status = raw_status if isinstance(raw_status, str) else ""
        if resource_type == "workflow_run":
            run_id = object_id
        elif resource_type == "workflow_task" and isinstance(resource.get("workflow_run_id"), str):
            run_id = resource["workflow_run_id"]
        else:
            return WebhookReport(raw_status=storable(raw_status[:64]), ignored=True)
        customer = resource.get("customer_user_id")
        applicant = resource.get("applicant_id")
        return WebhookReport(
            token=storable(applicant[:255]) if isinstance(applicant, str) else "",
            external_id=storable(run_id[:255]),
            session_id=storable(customer[:64]) if isinstance(customer, str) else "",
            raw_status=storable(raw_status[:64]),
            delivery_id=storable(f"{object_id}:{action}:{raw_status}"[:255]) if object_id else "",
            pull=True,
        )

    # -- results ----------------------------------------------------------------------------------

    def sensitive_fields(self) -> frozenset[str]:
        extra = self.setting("SENSITIVE_FIELDS") or ()
        if isinstance(extra, str):
            extra = (extra,)
        return SENSITIVE_FIELDS | frozenset(name for name in extra if isinstance(name, str))

    def sensitive_parts_removed(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Also names, dates of birth, document numbers, addresses, media and links, at any depth."""
        return without_keys(super().sensitive_parts_removed(result), self.sensitive_fields())

    def storable_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The webhook body without identity data and links at any depth (a ``resource`` may carry
        the run's output and its hosted link)."""
        return super().storable_body(without_keys(dict(payload), self.sensitive_fields()))

    def check_rows(self, scopes: Iterable[str], result: Mapping[str, Any]) -> list[CheckRow]:
        """One row per ``OUTPUT_CHECKS`` entry present in the output or requested, then the
        workflow's own verdict (``workflow``: passed for approved, failed for declined, the reasons)."""
        output = result.get("output")
        output = output if isinstance(output, Mapping) else {}
        wanted = list(scopes)
        rows = []
        for name, path in self.output_checks.items():
            value = _dig(output, path)
            if value is _MISSING and name not in wanted:
                continue
            rows.append(CheckRow(name, *_judge(value)))
        for name in wanted:
            if name not in self.output_checks:
                rows.append(CheckRow(name, None, None))
        raw = result.get("status")
        reasons = result.get("reasons")
        reasons = reasons if isinstance(reasons, list) else []
        passed = {"approved": True, "declined": False}.get(raw) if isinstance(raw, str) else None
        detail = ", ".join(str(reason) for reason in reasons)[:200] or (raw if isinstance(raw, str) else "")
        rows.append(CheckRow("workflow", passed, None, detail))
        return rows

    def scope_outcomes(self, scopes: Iterable[str], result: Mapping[str, Any]) -> dict[str, bool | None]:
        wanted = list(scopes)
        rows = {row.scope: row.passed for row in self.check_rows(wanted, result)}
        return {scope: rows.get(scope) for scope in wanted}


_MISSING: Any = object()


def _dig(output: Mapping[str, Any], path: str) -> Any:
    value: Any = output
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _word(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in PASSED_WORDS else False if word in FAILED_WORDS else None
    return None


def _judge(value: Any) -> tuple[bool | None, float | None, str]:
    """(passed, score, detail) of one output value: a boolean, a result word (``clear``,
    ``consider``…), or an object with ``result`` (and ``sub_result``, ``score``)."""
    if not isinstance(value, Mapping):
        return _word(value), None, value[:64] if isinstance(value, str) else ""
    result, sub = value.get("result"), value.get("sub_result")
    score = value.get("score")
    score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
    detail = sub if isinstance(sub, str) and sub else result if isinstance(result, str) else ""
    passed = _word(result)
    if passed is True and _word(sub) is False:
        passed = False
    return passed, score, detail[:64]
