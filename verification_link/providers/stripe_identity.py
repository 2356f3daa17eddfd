"""Stripe Identity — VerificationSessions (docs/providers/stripe_identity.rst has the sources).

Wire contract:

- ``https://api.stripe.com``, ``Authorization: Bearer <secret key>`` (``sk_test_`` / ``sk_live_``),
  form-encoded bodies, JSON answers; ``Stripe-Version`` when ``API_VERSION`` is set.
  (docs.stripe.com/api/authentication; stripe-python ``_api_requestor.py``)
- Create: ``POST /v1/identity/verification_sessions`` with ``type`` (or ``verification_flow``),
  ``client_reference_id`` and ``metadata[verification_session_id]`` (our id, echoed back in every
  webhook), ``return_url``, ``options[document][…]`` → the VerificationSession (``id`` ``vs_…``,
  ``url``, ``status`` ``requires_input``). No lifetime and no locale field: the app's TTL applies.
  (docs.stripe.com/api/identity/verification_sessions/create)
- Retrieve: ``GET /v1/identity/verification_sessions/:id?expand[]=last_verification_report``;
  cancel and redact: ``POST …/:id/cancel`` and ``POST …/:id/redact``, no parameters.
- Statuses ``requires_input``, ``processing``, ``verified``, ``canceled``. A failed check sends the
  session back to ``requires_input`` with ``last_error{code, reason}``: the user may retry in the
  same session, so that is an open ``resubmission``, never a final decline (Stripe has none).
  (docs.stripe.com/identity/how-sessions-work)
- Webhooks: ``Stripe-Signature: t=…,v1=<hex HMAC-SHA256 of f"{t}.{body}">`` under the ``whsec_…``
  string's UTF-8 bytes (the shared ``"timestamped"`` scheme); the Event ``id`` (``evt_…``) is the
  delivery id; ``data.object`` is the whole VerificationSession. State events but ``canceled`` are
  confirmed by a retrieve with the report expanded (``PULL_OPEN_EVENTS``): Stripe does not
  guarantee their order, and ``verified`` names its report by id only.
  (docs.stripe.com/webhooks/signature; stripe-python ``_webhook.py``)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from .. import conf
from ..exceptions import ConfigurationError, InvalidRequest, ProviderUnavailable
from ..jsonbody import InvalidJSON, storable, without_keys
from ..models import VerificationSession
from ..settings_table import FLAG, NAMES_OR_ONE, TEXT, choice, credential, optional, own
from .base import BaseProvider, CheckRow, CreatedSession, CreateRequest, StatusReport, Verdict, WebhookReport

Status = VerificationSession.Status

SESSION_PATH = "/v1/identity/verification_sessions"
EVENT_PREFIX = "identity.verification_session."
#: Event types that report a session's state; ``.redacted`` (and any other) says nothing of it.
STATE_EVENTS = frozenset(
    EVENT_PREFIX + name for name in ("created", "processing", "requires_input", "verified", "canceled")
)
#: The checks of a VerificationReport, and the row each becomes (Stripe's selfie check is its
#: liveness and face match in one: it has no separate liveness result).
CHECKS = {"document": "document", "selfie": "face_match", "id_number": "id_number", "email": "email", "phone": "phone"}
ROW_PART = {row: part for part, row in CHECKS.items()}
#: ``last_error.code`` prefix → the row of the check that failed.
ERROR_ROWS: tuple[tuple[str, str], ...] = (
    ("document_", "document"),
    ("selfie_", "face_match"),
    ("id_number_", "id_number"),
)
ERROR_ROWS += (("email_", "email"), ("phone_", "phone"))
#: Identity data in a report's checks and in ``verified_outputs`` (names, dates of birth, numbers,
#: addresses, sex, places of birth, files: images): hidden without the permission.
IDENTITY_FIELDS = frozenset(
    {"first_name", "last_name", "dob", "number", "id_number", "address", "expiration_date", "issued_date", "files"}
    | {"sex", "unparsed_sex", "unparsed_place_of_birth", "email", "phone"}
)
#: Also the selfie check's file ids (the photos).
SELFIE_FILES = frozenset({"document", "selfie"})
#: Never kept from a webhook body: the hand-off link and client secret (bearer secrets), the
#: details the site provided, the verified data, and the identity fields wherever they appear.
BODY_DROPPED = IDENTITY_FIELDS | {"url", "client_secret", "provided_details", "verified_outputs"}
TYPES = ("document", "id_number")
DOCUMENT_TYPES = ("driving_license", "id_card", "passport")


class StripeIdentityProvider(BaseProvider):
    display_name = "Stripe Identity"
    pollable = True
    receives_webhooks = True
    supports_cancel = True
    user_needs = ("id_document", "camera")
    supports_redaction = True
    supported_scopes = ("document", "face_match", "id_number")
    default_scopes = ("document",)
    required_settings = ("API_KEY",)
    secret_settings = ("API_KEY", "WEBHOOK_SECRETS")
    config_keys = {
        "API_KEY": credential("The secret key (sk_live_... or sk_test_...)."),
        "API_VERSION": own(None, optional(TEXT, "the account's"), "The Stripe-Version header."),
        "TYPE": own("document", optional(choice(*TYPES)), "The check when SCOPES is unset."),
        "VERIFICATION_FLOW": own(None, optional(TEXT), "A verification flow of the dashboard, instead of scopes."),
        "ALLOWED_TYPES": own(None, optional(NAMES_OR_ONE, "all"), "Document types accepted (passport, id_card, ...)."),
        "REQUIRE_LIVE_CAPTURE": own(None, optional(FLAG, "Stripe's default"), "Refuse uploaded document photos."),
        "EXPAND": own(["last_verification_report"], optional(NAMES_OR_ONE), "Paths expanded on retrieve."),
        "PULL_OPEN_EVENTS": own(True, optional(FLAG), "Retrieve the session on webhooks of open sessions."),
    }
    default_base_url = "https://api.stripe.com"
    #: The hosted ``url`` "expires after 48 hours and can only be used once"; the session has none.
    max_ttl = 48 * 3600
    key_prefixes = {"API_KEY": ("sk_live_", "sk_test_")}
    webhook_defaults = {"WEBHOOK_AUTH": "timestamped", "WEBHOOK_SIGNATURE_HEADER": "Stripe-Signature"}
    webhook_secret_prefixes = ("whsec_",)
    #: Plain statuses; ``requires_input`` depends on ``last_error`` (see ``parse_session``).
    status_map = {"processing": Status.IN_PROGRESS, "verified": Status.DONE, "canceled": Status.CANCELED}

    # -- configuration ------------------------------------------------------------------------

    @property
    def configured_scopes(self) -> list[str]:
        """``SCOPES``, else the one check of ``TYPE`` (default ``document``)."""
        return list(self.setting("SCOPES") or [self.session_type])

    @property
    def session_type(self) -> str:
        value = self.setting("TYPE") or "document"
        if value not in TYPES:
            raise ConfigurationError(f"{conf.key_path('PROVIDERS', self.alias, 'TYPE')} must be one of {TYPES}.")
        return value

    def validate_scopes(self, scopes: Iterable[str] | None) -> list[str]:
        cleaned = super().validate_scopes(scopes)
        if "face_match" in cleaned and "document" not in cleaned:
            raise InvalidRequest("face_match (Stripe's selfie check) compares the face with a document: add document")
        return cleaned

    def auth_headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.setting('API_KEY', '')}"}
        if self.setting("API_VERSION"):
            headers["Stripe-Version"] = str(self.setting("API_VERSION"))
        return headers

    def error_code(self, body: Any) -> str | int | None:
        """``error.code`` of Stripe's ``{"error": {"type", "code", "message", "param"}}``, else its ``type``."""
        error = body.get("error") if isinstance(body, Mapping) else None
        if isinstance(error, Mapping):
            for key in ("code", "type"):
                if isinstance(error.get(key), str) and error[key]:
                    return error[key][:64]
        return None

    def session_path(self, external_id: str, action: str = "") -> str:
        if not external_id:
            raise InvalidRequest("the session has no Stripe VerificationSession id")
        return f"{SESSION_PATH}/{quote(external_id, safe='')}" + (f"/{action}" if action else "")

    # -- create ---------------------------------------------------------------------------------

    def create_session(self, request: CreateRequest) -> CreatedSession:
        operation = "create verification session"
        ours = str(request.session_id)
        form: list[tuple[str, str]] = []
        if self.setting("VERIFICATION_FLOW"):
            form.append(("verification_flow", str(self.setting("VERIFICATION_FLOW"))))
        else:
            scopes = set(request.scopes)
            document = "document" in scopes or not scopes & {"id_number"}
            form.append(("type", "document" if document else "id_number"))
            if document:
                if "face_match" in scopes:
                    form.append(("options[document][require_matching_selfie]", "true"))
                if "id_number" in scopes:
                    form.append(("options[document][require_id_number]", "true"))
                allowed = self.setting("ALLOWED_TYPES") or ()
                for kind in [allowed] if isinstance(allowed, str) else allowed:
                    form.append(("options[document][allowed_types][]", str(kind)))
                if isinstance(self.setting("REQUIRE_LIVE_CAPTURE"), bool):
                    form.append(
                        ("options[document][require_live_capture]", str(self.setting("REQUIRE_LIVE_CAPTURE")).lower())
                    )
        form += [("client_reference_id", ours), ("metadata[verification_session_id]", ours)]
        form.append(("return_url", request.return_url))
        body = self.call("POST", SESSION_PATH, operation=operation, form=form)
        if not isinstance(body, Mapping):
            raise self.malformed(operation, "not an object")
        external_id, url = body.get("id"), body.get("url")
        if not isinstance(external_id, str) or not external_id or len(external_id) > 255:
            raise self.malformed(operation, "no id")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")) or len(url) > 2048:
            raise self.malformed(operation, "no url")
        # No token: the retrieve is by id, and the client secret (Stripe.js only) is not kept.
        return CreatedSession(url=url, token="", external_id=external_id)

    # -- status ---------------------------------------------------------------------------------

    def get_status(self, session: VerificationSession, *, timeout: float | None = None) -> StatusReport:
        operation = "retrieve verification session"
        expand = self.setting("EXPAND", ["last_verification_report"]) or []
        expand = [expand] if isinstance(expand, str) else expand  # one path, never its letters
        query = urlencode([("expand[]", str(path)) for path in expand])
        path = self.session_path(session.external_id) + (f"?{query}" if query else "")
        body = self.call("GET", path, operation=operation, timeout=timeout)
        return self.parse_session(body, operation=operation)

    def parse_session(self, body: Any, *, operation: str = "verification session") -> StatusReport:
        """Map a VerificationSession (a retrieve answer, a webhook's ``data.object``) to a report.

        ``requires_input`` without ``last_error`` is a session nobody has submitted yet (CREATED);
        with one, a failed attempt the user may retry in the same session: IN_PROGRESS, verdict
        ``resubmission``, reasons ``[last_error.code]``. ``verified`` is DONE and approved."""
        if not isinstance(body, Mapping):
            raise self.malformed(operation, "not an object")
        raw = body.get("status")
        raw = raw if isinstance(raw, str) else ""
        last_error = body.get("last_error")
        if last_error is not None and not isinstance(last_error, Mapping):
            raise self.malformed(operation, "last_error is not an object")
        code = last_error.get("code") if last_error else None
        if code is not None and not isinstance(code, str):
            raise self.malformed(operation, "last_error.code is not a string")
        reasons = (code[:200],) if code else ()
        status: str
        if raw == "requires_input":
            status = Status.IN_PROGRESS if last_error else Status.CREATED
            verdict = Verdict.RESUBMISSION if last_error else Verdict.NONE
        elif raw in self.status_map:
            status = self.status_map[raw]
            verdict = Verdict.APPROVED if raw == "verified" else Verdict.NONE
        else:
            raise self.malformed(operation, "unknown status")
        return StatusReport(
            status=status,
            result=self._result(body, raw, operation),
            provider_status=raw,
            verdict=verdict,
            reasons=reasons,
        )

    def _result(self, body: Mapping[str, Any], raw: str, operation: str) -> dict[str, Any]:
        result: dict[str, Any] = {"status": raw}
        if isinstance(body.get("type"), str):
            result["type"] = body["type"]
        if body.get("last_error"):
            error = body["last_error"]
            result["last_error"] = {"code": error.get("code"), "reason": error.get("reason")}
        report = body.get("last_verification_report")
        if isinstance(report, Mapping):
            result["verification_report"] = report.get("id")
            for part in CHECKS:
                value = report.get(part)
                if value is not None and not isinstance(value, Mapping):
                    raise self.malformed(operation, f"last_verification_report.{part} is not an object")
                if value is not None:
                    result[part] = dict(value)
        elif isinstance(report, str):
            result["verification_report"] = report
        elif report is not None:
            raise self.malformed(operation, "last_verification_report is neither an id nor an object")
        for key in ("verified_outputs", "redaction"):
            value = body.get(key)
            if value is not None and not isinstance(value, Mapping):
                raise self.malformed(operation, f"{key} is not an object")
            if value is not None:
                result[key] = dict(value)
        try:
            return storable(result)
        except InvalidJSON:
            raise self.malformed(operation, "result cannot be stored") from None

    # -- cancel, redact -------------------------------------------------------------------------

    def cancel_session(self, session: VerificationSession) -> None:
        """Stripe cancels only a ``requires_input`` session (irreversible); a refusal (400: it is
        processing or verified) is raised, and the local cancel does not happen."""
        body = self.call("POST", self.session_path(session.external_id, "cancel"), operation="cancel", form=[])
        if not isinstance(body, Mapping) or body.get("status") != "canceled":
            raise self.malformed("cancel", "the session is not canceled")

    def redact_session(self, session: VerificationSession) -> None:
        """Asynchronous at Stripe (up to four days, ``redaction.status`` processing → redacted);
        a ``requires_input`` session is canceled by it."""
        body = self.call("POST", self.session_path(session.external_id, "redact"), operation="redact", form=[])
        redaction = body.get("redaction") if isinstance(body, Mapping) else None
        if not isinstance(redaction, Mapping) or not isinstance(redaction.get("status"), str):
            raise self.malformed("redact", "no redaction status")

    # -- webhooks -------------------------------------------------------------------------------

    @property
    def pull_open_events(self) -> bool:
        return self.setting("PULL_OPEN_EVENTS", True) is not False

    def parse_webhook(self, payload: Mapping[str, Any]) -> WebhookReport:
        """Never raises: an authenticated body of an unexpected shape is recorded, not applied."""
        kind = payload.get("type")
        kind = kind if isinstance(kind, str) else ""
        data = payload.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        event_id = payload.get("id")
        event_id = event_id[:255] if isinstance(event_id, str) and event_id else ""
        if kind not in STATE_EVENTS or not isinstance(obj, Mapping):
            return WebhookReport(delivery_id=event_id, ignored=True, raw_status=kind[:64])
        external_id = obj.get("id")
        external_id = external_id if isinstance(external_id, str) else ""
        ours = obj.get("client_reference_id")
        if not isinstance(ours, str) or not ours:
            metadata = obj.get("metadata")
            ours = metadata.get("verification_session_id") if isinstance(metadata, Mapping) else ""
        raw = obj.get("status")
        raw_status = raw[:64] if isinstance(raw, str) else ""
        try:
            report: StatusReport | None = self.parse_session(obj, operation="webhook")
        except ProviderUnavailable:
            report = None
        # Open states may arrive out of order: ask Stripe. "verified" is final but names its report
        # by id only: ask Stripe too, with the report expanded, so the checks are kept (a session
        # finished by its webhook is never polled again). "canceled" carries all there is.
        pull = report is not None and report.status != Status.CANCELED and self.pull_open_events
        if not event_id:  # Stripe always names its event; without one, key the delivery and confirm
            event_id, pull = f"{external_id}:{kind}:{raw_status}", report is not None
        return WebhookReport(
            external_id=external_id[:255],
            session_id=ours[:64] if isinstance(ours, str) else "",
            report=None if pull else report,
            raw_status=raw_status,
            delivery_id=event_id,
            pull=pull,
        )

    def storable_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Without the hand-off link, the client secret and identity data, at any depth (and an
        expanded report's photo file ids)."""
        kept = without_keys(dict(payload), BODY_DROPPED)
        data = kept.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        report = obj.get("last_verification_report") if isinstance(obj, dict) else None
        if isinstance(report, dict) and isinstance(report.get("selfie"), dict):
            report["selfie"] = {k: v for k, v in report["selfie"].items() if k not in SELFIE_FILES}
        return super().storable_body(kept)

    # -- reading results ------------------------------------------------------------------------

    def sensitive_parts_removed(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Without ``verified_outputs`` and the identity fields and photos of every check."""
        kept = super().sensitive_parts_removed(result)
        kept.pop("verified_outputs", None)
        for part in CHECKS:
            if isinstance(kept.get(part), Mapping):
                hidden = IDENTITY_FIELDS | (SELFIE_FILES if part == "selfie" else frozenset())
                kept[part] = {k: v for k, v in kept[part].items() if k not in hidden}
        return kept

    def _row(self, row: str, result: Mapping[str, Any]) -> CheckRow:
        part = result.get(ROW_PART[row])
        if isinstance(part, Mapping):
            status = part.get("status")
            error = part.get("error")
            code = error.get("code") if isinstance(error, Mapping) else None
            passed = {"verified": True, "unverified": False}.get(status) if isinstance(status, str) else None
            return CheckRow(row, passed, None, code if isinstance(code, str) else "")
        # No report expanded (a webhook body): "verified" means every check passed, and the error
        # code names the check that failed.
        if result.get("status") == "verified":
            return CheckRow(row, True, None, "")
        error = result.get("last_error")
        code = error.get("code") if isinstance(error, Mapping) else None
        if isinstance(code, str) and any(code.startswith(p) and r == row for p, r in ERROR_ROWS):
            return CheckRow(row, False, None, code)
        return CheckRow(row, None, None, "")

    def check_rows(self, scopes: Iterable[str], result: Mapping[str, Any]) -> list[CheckRow]:
        """One row per requested scope, then one per other check the report holds (email, phone)."""
        names = [scope for scope in scopes if scope in ROW_PART]
        names += [row for part, row in CHECKS.items() if row not in names and isinstance(result.get(part), Mapping)]
        return [self._row(name, result) for name in names]

    def scope_outcomes(self, scopes: Iterable[str], result: Mapping[str, Any]) -> dict[str, bool | None]:
        scopes = list(scopes)
        return {row.scope: row.passed for row in self.check_rows(scopes, result) if row.scope in scopes}
