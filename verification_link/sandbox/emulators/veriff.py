"""The Veriff emulator: API v1 under ``<origin>/sandbox/veriff`` (the provider's ``BASE_URL``).

- ``POST v1/sessions`` ``{"verification": {"callback"?, "vendorData"?, "lang"?}}`` → 201
  ``{"status": "success", "verification": {"id", "url", "vendorData", "host", "status",
  "sessionToken"}}``; the url is the shared hosted page.
- ``GET v1/sessions/<id>/decision`` → ``{"status": "success", "verification": {…} | null,
  "technicalData": {"ip": null}}``.
- ``DELETE v1/sessions/<id>`` → ``{"status": "success"}``; a session without a decision is
  expired first (an ``expired`` decision webhook), a resubmission abandoned, as Veriff does.

Every call needs ``X-AUTH-CLIENT`` = ``VERIFF_API_KEY`` and ``X-HMAC-SIGNATURE`` = hex
HMAC-SHA256 under ``VERIFF_SHARED_SECRET`` of the body (POST; optional there, checked when sent) or
of the session id (GET, DELETE); errors are ``{"status": "fail", "code", "message"}`` with
Veriff's codes (1801/1803 key, 1812/1818/1819 signature, 1102/1104 input). Webhooks: the decision
(``verification`` object) and, before it, the ``submitted`` event (``started`` before an
abandon), signed the same way, with ``X-AUTH-CLIENT``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from typing import Any, cast

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from ...jsonbody import parse_json
from ..common import is_http_url
from ..conf import sandbox_setting
from ..hosted import ABANDON, EXPIRE, FAIL, PASS, REGISTRY, RESUBMIT, REVIEW, Emulator
from ..models import SandboxHostedSession

NAME = "veriff"
TTL = 7 * 86400
MAX_BODY = 64 * 1024
CODES = {"approved": 9001, "declined": 9102, "resubmission_requested": 9103, "expired": 9104, "abandoned": 9104}
CODES["review"] = 9121
EVENT_CODES = {"started": 7001, "submitted": 7002}
REASON_TEXT = {"102": "Suspected document tampering", "204": "Poor image quality"}
HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def sign(secret: str, message: str | bytes) -> str:
    """Hex HMAC-SHA256 of ``message`` under ``secret`` (Veriff's ``X-HMAC-SIGNATURE``)."""
    data = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


class VeriffEmulator(Emulator):
    name = NAME
    title = "Veriff"
    initial_status = "created"
    statuses = {
        PASS: "approved",
        FAIL: "declined",
        REVIEW: "review",
        RESUBMIT: "resubmission_requested",
        ABANDON: "abandoned",
        EXPIRE: "expired",
    }
    reasons = {FAIL: "102", RESUBMIT: "204"}

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def finish(self, request: HttpRequest, session: SandboxHostedSession, outcome: str) -> None:
        # The event webhook first (the user submitted, or started and left), then the decision.
        if outcome != EXPIRE:
            self.schedule_webhook(request, session, event="started" if outcome == ABANDON else "submitted")
        super().finish(request, session, outcome)

    def decision(self, session: SandboxHostedSession) -> dict[str, Any] | None:
        """The session's decision object, or None before one exists."""
        status = session.status
        if not session.outcome and session.expires_at and session.expires_at <= timezone.now():
            status = "expired"
        if status not in CODES:
            return None
        reason = session.reason or None
        approved = status == "approved"
        decided = session.completed_at or timezone.now()
        return {
            "id": session.external_id,
            "attemptId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{session.external_id}/{session.deliveries}")),
            "vendorData": (session.request.get("verification") or {}).get("vendorData"),
            "endUserId": None,
            "status": status,
            "code": CODES[status],
            "reason": REASON_TEXT.get(reason) if reason else None,
            "reasonCode": int(reason) if reason else None,
            "decisionTime": decided.isoformat().replace("+00:00", "Z"),
            "acceptanceTime": session.created_at.isoformat().replace("+00:00", "Z"),
            "person": {"firstName": "SANDBOX", "lastName": "PERSON", "dateOfBirth": "1990-01-01", "idNumber": None}
            if approved
            else {},
            "document": {"type": "PASSPORT", "number": "SB0000000", "country": "EE", "validUntil": "2035-01-01"}
            if approved
            else {},
            "riskLabels": [],
            "additionalVerifiedData": {},
            "comments": [],
        }

    def webhook(self, session: SandboxHostedSession, *, event: str) -> tuple[bytes, dict[str, str]] | None:
        secret = sandbox_setting("VERIFF_SHARED_SECRET")
        if not isinstance(secret, str) or not secret:
            return None
        if event in EVENT_CODES:
            payload: dict[str, Any] = {
                "id": session.external_id,
                "attemptId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{session.external_id}/{session.deliveries + 1}")),
                "feature": "selfid",
                "code": EVENT_CODES[event],
                "action": event,
                "vendorData": (session.request.get("verification") or {}).get("vendorData"),
            }
        else:
            decision = self.decision(session)
            if decision is None:
                return None
            payload = {"status": "success", "verification": decision, "technicalData": {"ip": None}}
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-AUTH-CLIENT": str(sandbox_setting("VERIFF_API_KEY") or ""),
            "X-HMAC-SIGNATURE": sign(secret, body),
        }
        return body, headers


EMULATOR = cast(VeriffEmulator, REGISTRY[NAME])  # the instance registered by the subclass


# -- the API ------------------------------------------------------------------------------------------


def fail(status: int, code: int, message: str) -> JsonResponse:
    return JsonResponse({"status": "fail", "code": code, "message": message}, status=status)


def answer(payload: dict[str, Any], *, status: int = 200) -> JsonResponse:
    """A JSON answer signed as Veriff signs its answers (``X-HMAC-SIGNATURE`` of the body)."""
    response = JsonResponse(payload, status=status)
    secret = sandbox_setting("VERIFF_SHARED_SECRET") or ""
    response["X-AUTH-CLIENT"] = str(sandbox_setting("VERIFF_API_KEY") or "")
    response["X-HMAC-SIGNATURE"] = sign(str(secret), response.content)
    response["Cache-Control"] = "no-store"
    return response


def refused(request: HttpRequest, signed: str | bytes, *, optional: bool = False) -> JsonResponse | None:
    """401 unless the key and the signature of ``signed`` are right (constant-time compares)."""
    key, secret = sandbox_setting("VERIFF_API_KEY"), sandbox_setting("VERIFF_SHARED_SECRET")
    given = request.headers.get("X-AUTH-CLIENT", "")
    if not given:
        return fail(401, 1801, "Mandatory X-AUTH-CLIENT header containing the API key is missing from the request.")
    if not (isinstance(key, str) and key and hmac.compare_digest(given.encode(), key.encode())):
        return fail(401, 1803, "Integration with the API key was not found.")
    signature = request.headers.get("X-HMAC-SIGNATURE", "")
    if not signature and optional:
        return None
    if not HEX64.fullmatch(signature):
        return fail(401, 1812, "Signature is not a valid SHA256 hash.")
    if not (isinstance(secret, str) and secret and hmac.compare_digest(signature.lower(), sign(secret, signed))):
        if isinstance(signed, str):
            return fail(401, 1818, "Signature does not match the HMAC-SHA256 of query ID and integration API secret.")
        return fail(401, 1819, "Signature does not match the HMAC-SHA256 of request body and integration API secret.")
    return None


def method_not_allowed(allowed: str) -> JsonResponse:
    response = fail(405, 405, "Method not allowed.")
    response["Allow"] = allowed
    return response


@csrf_exempt
def create_view(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return method_not_allowed("POST")
    body = request.body
    denied = refused(request, body, optional=True)  # Veriff's FAQ: POST /sessions needs no signature
    if denied:
        return denied
    if len(body) > MAX_BODY:
        return fail(400, 1104, "Request includes invalid parameters.")
    try:
        data = parse_json(body)
    except ValueError:
        return fail(400, 1102, "Mandatory parameters are missing from the request.")
    verification = data.get("verification") if isinstance(data, dict) else None
    if not isinstance(verification, dict):
        return fail(400, 1102, "Mandatory parameters are missing from the request.")
    vendor = verification.get("vendorData")
    callback = verification.get("callback")
    if vendor is not None and not (isinstance(vendor, str) and len(vendor) <= 1000):
        return fail(400, 1104, "Request includes invalid parameters.")
    if callback is not None and not is_http_url(callback):
        return fail(400, 1104, "Request includes invalid parameters.")
    if verification.get("lang") is not None and not isinstance(verification["lang"], str):
        return fail(400, 1104, "Request includes invalid parameters.")
    session = EMULATOR.create(request_data={"verification": verification}, return_url=callback or "", ttl=TTL)
    url = EMULATOR.hosted_url(request, session)
    created = {
        "id": session.external_id,
        "url": url,
        "vendorData": vendor,
        "host": request.build_absolute_uri("/").rstrip("/"),
        "status": session.status,
        "sessionToken": session.page_secret,
    }
    return answer({"status": "success", "verification": created}, status=201)


@csrf_exempt
def decision_view(request: HttpRequest, session_id: str) -> HttpResponse:
    if request.method != "GET":
        return method_not_allowed("GET")
    denied = refused(request, session_id)
    if denied:
        return denied
    session = EMULATOR.find(session_id)
    if session is None:
        return fail(404, 404, "Session not found.")
    return answer({"status": "success", "verification": EMULATOR.decision(session), "technicalData": {"ip": None}})


@csrf_exempt
def session_view(request: HttpRequest, session_id: str) -> HttpResponse:
    if request.method != "DELETE":
        return method_not_allowed("DELETE")
    denied = refused(request, session_id)
    if denied:
        return denied
    with transaction.atomic():
        session = EMULATOR.find(session_id, lock=True)
        if session is None or session.redacted_at is not None:
            return fail(404, 404, "Session not found.")
        if not session.outcome:
            EMULATOR.finish(request, session, EXPIRE)  # Veriff sends an expired decision
        elif session.outcome == RESUBMIT:
            EMULATOR.finish(request, session, ABANDON)
        vendor = (session.request.get("verification") or {}).get("vendorData")
        session.request = {"verification": {"vendorData": vendor}}  # the rest may hold identity data
        session.redacted_at = timezone.now()
        session.save(update_fields=["request", "redacted_at"])
    return answer({"status": "success"})


urlpatterns = [
    path("v1/sessions", create_view, name="veriff_create"),
    path("v1/sessions/<str:session_id>/decision", decision_view, name="veriff_decision"),
    path("v1/sessions/<str:session_id>", session_view, name="veriff_session"),
]
