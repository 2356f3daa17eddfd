"""The Stripe Identity emulator: VerificationSessions in Stripe's wire format, under
``<origin>/sandbox/stripe_identity`` (the provider's ``BASE_URL``).

- ``POST /v1/identity/verification_sessions`` (form-encoded: ``type``, ``verification_flow``,
  ``client_reference_id``, ``metadata[…]``, ``return_url``, ``options[document][…]``, ``expand[]``)
  → the VerificationSession, ``url`` = the shared hosted page.
- ``GET /v1/identity/verification_sessions/<vs_…>`` (``expand[]=last_verification_report``),
  ``POST …/<vs_…>/cancel`` (only ``requires_input``), ``POST …/<vs_…>/redact`` (``requires_input``,
  which it also cancels, or ``verified``).
- ``Authorization: Bearer <STRIPE_IDENTITY_API_KEY>`` (or Basic with the key as user name), else
  401; errors as Stripe's ``{"error": {"type", "code"?, "param"?, "message"}}``; unknown
  parameters 400 ``parameter_unknown``; unknown ids 404 ``resource_missing``.

Hosted outcomes: ``pass`` → ``verified``; ``fail`` / ``resubmit`` / ``abandon`` → back to
``requires_input`` with ``last_error`` (a failed check, or ``abandoned``): the session stays open
and the same page takes another attempt, as at Stripe. Stripe has no review, decline or expiry
state, so those outcomes are not offered. Each submission posts ``….processing`` then the
outcome's event, signed ``Stripe-Signature: t=…,v1=…`` with ``STRIPE_IDENTITY_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from typing import Any, cast

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from ..common import is_http_url
from ..conf import sandbox_setting
from ..hosted import ABANDON, FAIL, PASS, REGISTRY, RESUBMIT, Emulator
from ..models import SandboxHostedSession

NAME = "stripe_identity"
API_VERSION = "2026-10-28.endive"
REASON_TEXT = {
    "selfie_face_mismatch": "The captured face image does not match with the document's face.",
    "document_expired": "The provided identity document has expired.",
    "document_unverified_other": "The provided identity document could not be verified.",
    "id_number_mismatch": "The information provided could not be verified.",
    "id_number_insufficient_document_data": "The provided document does not contain enough data.",
    "abandoned": "The user did not complete the verification.",
}
DOCUMENT_TYPES = ("driving_license", "id_card", "passport")
DOCUMENT_FLAGS = ("require_id_number", "require_live_capture", "require_matching_selfie")
TOP_LEVEL = ("type", "verification_flow", "client_reference_id", "return_url", "related_customer")
METADATA_KEY = re.compile(r"metadata\[([^\[\]]{1,40})\]")
ADDRESS = {"city": "San Francisco", "country": "US", "line1": "1234 Main Street", "line2": None}
ADDRESS |= {"postal_code": "94111", "state": "CA"}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class BadRequest(Exception):
    def __init__(self, message: str, *, code: str = "parameter_invalid", param: str = "") -> None:
        super().__init__(message)
        self.code, self.param = code, param


def stripe_error(status: int, message: str, *, code: str = "", param: str = "") -> JsonResponse:
    error = {"type": "invalid_request_error", "message": message}
    error |= {"code": code} if code else {}
    error |= {"param": param} if param else {}
    return JsonResponse({"error": error}, status=status)


class StripeIdentityEmulator(Emulator):
    name = NAME
    title = "Stripe Identity"
    id_prefix = "vs_"
    initial_status = "requires_input"
    statuses = {PASS: "verified", FAIL: "requires_input", RESUBMIT: "requires_input", ABANDON: "requires_input"}
    reasons = {FAIL: "selfie_face_mismatch", RESUBMIT: "document_unverified_other", ABANDON: "abandoned"}

    def is_final(self, session: SandboxHostedSession) -> bool:
        """Only ``verified`` and ``canceled`` end a session: after a failed check the user retries."""
        return session.status in ("verified", "canceled")

    def reason_for(self, session: SandboxHostedSession, outcome: str) -> str:
        """The failed check's code, from a check the session runs."""
        by_id_number = session.request.get("type") == "id_number"
        if outcome == FAIL:
            if by_id_number:
                return "id_number_mismatch"
            selfie = self._document_options(session).get("require_matching_selfie")
            return "selfie_face_mismatch" if selfie else "document_expired"
        if outcome == RESUBMIT and by_id_number:
            return "id_number_insufficient_document_data"
        return self.reasons.get(outcome, "")

    def finish(self, request: HttpRequest, session: SandboxHostedSession, outcome: str) -> None:
        session.outcome = outcome
        session.status = self.statuses[outcome]
        session.reason = self.reason_for(session, outcome)
        session.completed_at = timezone.now()
        session.deliveries += 1
        session.save(update_fields=["outcome", "status", "reason", "completed_at", "deliveries"])
        if outcome != ABANDON:  # a submission: Stripe processes it first
            self.schedule_webhook(request, session, event="processing")
        self.schedule_webhook(request, session, event="outcome")

    # -- the wire objects -----------------------------------------------------------------------

    @staticmethod
    def _document_options(session: SandboxHostedSession) -> dict[str, Any]:
        return dict((session.request.get("options") or {}).get("document") or {})

    def report_id(self, session: SandboxHostedSession) -> str | None:
        submitted = session.outcome in (PASS, FAIL, RESUBMIT)
        return f"vr_{session.external_id[3:]}{session.deliveries:02d}" if submitted else None

    def session_object(
        self, session: SandboxHostedSession, request: HttpRequest | None = None, *, expand: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        data, status = session.request, session.status
        redacted = session.redacted_at is not None
        open_link = status == "requires_input" and not redacted and request is not None
        url = self.hosted_url(request, session) if open_link and request is not None else None
        name = "[redacted]" if redacted else None
        outputs: dict[str, Any] = {
            "first_name": name or "Jenny",
            "last_name": name or "Rosen",
            "address": name or ADDRESS,
        }
        outputs |= {"dob": None, "email": None, "id_number": None, "id_number_type": None, "phone": None, "sex": None}
        report = self.report_id(session)
        return {
            "id": session.external_id,
            "object": "identity.verification_session",
            "client_reference_id": data.get("client_reference_id"),
            "client_secret": f"{session.external_id}_secret_{_digest(session.page_secret)}" if url else None,
            "created": int(session.created_at.timestamp()),
            "last_error": {"code": session.reason, "reason": REASON_TEXT.get(session.reason, "")}
            if status == "requires_input" and session.reason
            else None,
            "last_verification_report": self.report(session)
            if report and "last_verification_report" in expand
            else report,
            "livemode": False,
            "metadata": {} if redacted else dict(data.get("metadata") or {}),
            "options": dict(data.get("options") or {}),
            "provided_details": None,
            "redaction": {"status": "redacted"} if redacted else None,
            "related_customer": data.get("related_customer"),
            "return_url": data.get("return_url"),
            "status": status,
            "type": data.get("type", "document"),
            "url": url,
            "verification_flow": data.get("verification_flow"),
            "verified_outputs": outputs if status == "verified" else None,
        }

    def report(self, session: SandboxHostedSession) -> dict[str, Any]:
        failed, options = session.reason if session.outcome in (FAIL, RESUBMIT) else "", self._document_options(session)
        name = "[redacted]" if session.redacted_at else None
        person = {"first_name": name or "Jenny", "last_name": name or "Rosen", "dob": None}

        def check(prefix: str) -> dict[str, Any]:
            if failed.startswith(prefix):
                return {"status": "unverified", "error": {"code": failed, "reason": REASON_TEXT.get(failed, "")}}
            return {"status": "verified", "error": None}

        report: dict[str, Any] = {
            "id": self.report_id(session),
            "object": "identity.verification_report",
            "client_reference_id": session.request.get("client_reference_id"),
            "created": int((session.completed_at or session.created_at).timestamp()),
            "livemode": False,
            "options": dict(session.request.get("options") or {}),
            "type": session.request.get("type", "document"),
            "verification_session": session.external_id,
        }
        files = f"file_{session.external_id[3:15]}"
        if report["type"] == "document":
            report["document"] = check("document_") | person | {"type": "driving_license", "issuing_country": "US"}
            report["document"] |= {"number": None, "expiration_date": None, "address": ADDRESS, "files": [files + "a"]}
            if options.get("require_matching_selfie"):
                report["selfie"] = check("selfie_") | {"document": files + "a", "selfie": files + "s"}
        if report["type"] == "id_number" or options.get("require_id_number"):
            report["id_number"] = check("id_number_") | person | {"id_number_type": "us_ssn"}
        return report

    def webhook(self, session: SandboxHostedSession, *, event: str) -> tuple[bytes, dict[str, str]] | None:
        secret = sandbox_setting("STRIPE_IDENTITY_WEBHOOK_SECRET")
        if not isinstance(secret, str) or not secret:
            return None
        obj = self.session_object(session)
        if event == "processing":
            obj |= {"status": "processing", "last_error": None}
        kind = obj["status"] if event == "outcome" else event
        body = json.dumps(
            {
                "id": "evt_" + secrets.token_hex(12),
                "object": "event",
                "api_version": API_VERSION,
                "created": int(time.time()),
                "data": {"object": obj},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": f"identity.verification_session.{kind}",
            }
        ).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return body, {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": f"t={stamp},v1={signature}",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }


EMULATOR = cast(StripeIdentityEmulator, REGISTRY[NAME])  # the instance registered by the subclass above


# -- the API ------------------------------------------------------------------------------------


def _refusal(request: HttpRequest) -> JsonResponse | None:
    """401 unless the request carries the emulator's key, as Bearer or as Basic user name."""
    expected = sandbox_setting("STRIPE_IDENTITY_API_KEY")
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    given = value.strip() if scheme.lower() == "bearer" else ""
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, ValueError):
            given = ""
    if not given:
        return stripe_error(401, "You did not provide an API key.")
    if not (isinstance(expected, str) and expected and hmac.compare_digest(given.encode(), expected.encode())):
        return stripe_error(401, "Invalid API Key provided.")
    return None


def _unrecognized(request: HttpRequest) -> JsonResponse:
    return stripe_error(404, f"Unrecognized request URL ({request.method}).")


def _form(request: HttpRequest) -> Any:
    if request.body and request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise BadRequest("Stripe takes form-encoded parameters (application/x-www-form-urlencoded).")
    return request.POST


def _create_data(form: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"metadata": {}, "options": {}}
    document: dict[str, Any] = {}
    for key in form:
        value = form.get(key)
        if match := METADATA_KEY.fullmatch(key):
            if len(value) > 500:
                raise BadRequest("Metadata values can have up to 500 characters.", param=key)
            data["metadata"][match.group(1)] = value
        elif key in TOP_LEVEL:
            data[key] = value
        elif key == "options[document][allowed_types][]":
            document["allowed_types"] = form.getlist(key)
            if not set(document["allowed_types"]) <= set(DOCUMENT_TYPES):
                raise BadRequest("Invalid options[document][allowed_types][].", param=key)
        elif key in {f"options[document][{flag}]" for flag in DOCUMENT_FLAGS}:
            if value not in ("true", "false"):
                raise BadRequest(f"Invalid boolean: {value[:20]}", param=key)
            document[key[len("options[document][") : -1]] = value == "true"
        elif key != "expand[]":
            raise BadRequest(f"Received unknown parameter: {key[:100]}", code="parameter_unknown", param=key[:100])
    if len(data["metadata"]) > 50:
        raise BadRequest("Metadata can have up to 50 keys.", param="metadata")
    if data.get("verification_flow"):
        data.setdefault("type", "document")
    elif data.get("type") not in ("document", "id_number"):
        raise BadRequest("Missing or invalid type: document or id_number.", code="parameter_missing", param="type")
    if data.get("return_url") and not is_http_url(data["return_url"]):
        raise BadRequest("Not a valid URL", code="url_invalid", param="return_url")
    if document:
        data["options"]["document"] = document
    return data


def _expand(request: HttpRequest) -> tuple[str, ...]:
    expand = tuple(request.GET.getlist("expand[]") + request.POST.getlist("expand[]"))
    for item in expand:
        if item != "last_verification_report":
            raise BadRequest(f"This property cannot be expanded ({item[:100]}).", param="expand")
    return expand


@csrf_exempt
def sessions_view(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":  # the list endpoint is not emulated
        return _unrecognized(request)
    if refusal := _refusal(request):
        return refusal
    try:
        data, expand = _create_data(_form(request)), _expand(request)
    except BadRequest as exc:
        return stripe_error(400, str(exc), code=exc.code, param=exc.param)
    with transaction.atomic():
        session = EMULATOR.create(request_data=data, return_url=data.get("return_url") or "")
        EMULATOR.schedule_webhook(request, session, event="created")
    return JsonResponse(EMULATOR.session_object(session, request, expand=expand))


@csrf_exempt
def session_view(request: HttpRequest, external_id: str, action: str = "") -> JsonResponse:
    if (request.method, action) not in (("GET", ""), ("POST", "cancel"), ("POST", "redact")):
        return _unrecognized(request)
    if refusal := _refusal(request):
        return refusal
    try:
        form = _form(request)
        if set(form) - {"expand[]"}:
            raise BadRequest(f"Received unknown parameter: {sorted(form)[0][:100]}", code="parameter_unknown")
        expand = _expand(request)
    except BadRequest as exc:
        return stripe_error(400, str(exc), code=exc.code, param=exc.param)
    with transaction.atomic():
        session = EMULATOR.find(external_id, lock=bool(action))
        if session is None:
            return stripe_error(404, f"No such verification_session: '{external_id[:64]}'", code="resource_missing")
        allowed = {"": (session.status,), "cancel": ("requires_input",), "redact": ("requires_input", "verified")}
        if session.status not in allowed[action]:
            return stripe_error(400, f"You cannot {action} a VerificationSession that is {session.status}.")
        if action == "redact" and session.redacted_at is None:
            session.redacted_at = timezone.now()
            session.save(update_fields=["redacted_at"])
        if action == "cancel" or (action == "redact" and session.status == "requires_input"):
            session.status = "canceled"
            session.save(update_fields=["status"])
            EMULATOR.schedule_webhook(request, session, event="canceled")
        if action == "redact":
            EMULATOR.schedule_webhook(request, session, event="redacted")
    return JsonResponse(EMULATOR.session_object(session, request, expand=expand))


urlpatterns = [
    path("v1/identity/verification_sessions", sessions_view, name="stripe_identity_sessions"),
    path("v1/identity/verification_sessions/<str:external_id>", session_view, name="stripe_identity_session"),
    path(
        "v1/identity/verification_sessions/<str:external_id>/<str:action>",
        session_view,
        name="stripe_identity_session_action",
    ),
]
