"""The Sumsub emulator: the signed API under ``<origin>/sandbox/sumsub`` and Sumsub's webhooks.

- ``POST resources/sdkIntegrations/levels/-/websdkLink`` ``{levelName, userId, ttlInSecs?,
  redirect?: {successUrl, rejectUrl}}`` → ``{"url"}`` (the shared hosted page).
- ``GET resources/applicants/-;externalUserId=<userId>/one`` (or ``<applicantId>/one``) → the
  applicant with its ``review``; 404 until the user picked an outcome (Sumsub creates the
  applicant when the WebSDK opens). Its ``info`` holds made-up personal data, as Sumsub's does.
- ``GET resources/applicants/<applicantId>/requiredIdDocsStatus`` → the steps ``IDENTITY`` and ``SELFIE``.
- ``PATCH resources/applicants/<applicantId>/presence/deactivated`` → the applicant, ``deleted: true``.

Every request must carry ``X-App-Token`` = ``SUMSUB_APP_TOKEN``, ``X-App-Access-Ts`` within 60 s
and ``X-App-Access-Sig`` = hex HMAC-SHA256 under ``SUMSUB_SECRET_KEY`` of ``ts + METHOD + path?query
+ body`` (401 ``{"description", "code", "correlationId", "errorCode", "errorName"}`` otherwise).
Outcomes post ``applicantReviewed`` (``applicantOnHold`` for review), signed with
``SUMSUB_WEBHOOK_SECRET`` in ``X-Payload-Digest`` (``HMAC_SHA256_HEX``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from typing import Any, cast
from urllib.parse import quote

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from ...jsonbody import InvalidJSON, parse_json
from ..conf import sandbox_setting
from ..hosted import FAIL, PASS, REGISTRY, RESUBMIT, REVIEW, Emulator
from ..models import SandboxHostedSession

NAME = "sumsub"
MAX_BODY = 64 * 1024
LOOKUP_PREFIX = "-;externalUserId="


class SumsubEmulator(Emulator):
    name = NAME
    title = "Sumsub"
    id_prefix = ""
    initial_status = ""  # no applicant until the user goes through the WebSDK
    statuses = {
        PASS: "completed/GREEN",
        FAIL: "completed/RED/FINAL",
        REVIEW: "onHold",
        RESUBMIT: "completed/RED/RETRY",
    }
    reasons = {FAIL: "FORGERY", RESUBMIT: "UNSATISFACTORY_PHOTOS"}

    def new_id(self) -> str:
        return secrets.token_hex(12)  # Sumsub's applicant ids: 24 lowercase hex digits

    def is_final(self, session: SandboxHostedSession) -> bool:
        return super().is_final(session) or bool(session.request.get("deactivated"))

    def review(self, session: SandboxHostedSession) -> tuple[str, dict[str, Any]]:
        """The applicant's ``reviewStatus`` and ``reviewResult``."""
        review_status, _, verdict = session.status.partition("/")
        if review_status != "completed":
            return review_status, {}
        answer, _, reject_type = verdict.partition("/")
        result: dict[str, Any] = {"reviewAnswer": answer}
        if answer == "RED":
            result.update(
                rejectLabels=[session.reason] if session.reason else [],
                reviewRejectType=reject_type,
                moderationComment="Sandbox: the document could not be accepted.",
                clientComment="Sandbox applicant Jane Example: rejected by the emulator.",
            )
        return review_status, result

    def webhook(self, session: SandboxHostedSession, *, event: str) -> tuple[bytes, dict[str, str]] | None:
        secret = sandbox_setting("SUMSUB_WEBHOOK_SECRET")
        if not isinstance(secret, str) or not secret:
            return None
        review_status, review_result = self.review(session)
        now = timezone.now()
        payload = {
            "applicantId": session.external_id,
            "inspectionId": session.external_id[::-1],
            "correlationId": f"req-{uuid.uuid4()}",
            "levelName": session.request.get("levelName", ""),
            "externalUserId": session.request.get("userId", ""),
            "type": "applicantOnHold" if review_status == "onHold" else "applicantReviewed",
            "sandboxMode": True,
            "reviewStatus": review_status,
            "createdAtMs": now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}",
            "applicantType": "individual",
            "reviewResult": review_result,
            "clientId": "sandbox",
        }
        body = json.dumps(payload).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {
            "Content-Type": "application/json",
            "X-Payload-Digest": digest,
            "X-Payload-Digest-Alg": "HMAC_SHA256_HEX",
        }

    def applicant(self, session: SandboxHostedSession) -> dict[str, Any]:
        review_status, review_result = self.review(session)
        return {
            "id": session.external_id,
            "createdAt": session.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "clientId": "sandbox",
            "inspectionId": session.external_id[::-1],
            "externalUserId": session.request.get("userId", ""),
            "info": {"firstName": "Jane", "lastName": "Example", "dob": "1990-01-01", "country": "GBR"},
            "email": "jane@example.com",
            "type": "individual",
            "review": {
                "reviewId": session.external_id[:8],
                "attemptId": session.external_id[-5:],
                "attemptCnt": session.deliveries,
                "levelName": session.request.get("levelName", ""),
                "createDate": session.created_at.strftime("%Y-%m-%d %H:%M:%S+0000"),
                "reviewResult": review_result,
                "reviewStatus": review_status,
            },
            "deleted": bool(session.request.get("deactivated")),
        }


emulator = cast(SumsubEmulator, REGISTRY[NAME])  # the instance registered by the subclass above


def error(status: int, description: str, **extra: Any) -> JsonResponse:
    return JsonResponse(
        {"description": description, "code": status, "correlationId": uuid.uuid4().hex, **extra}, status=status
    )


def signature_error(request: HttpRequest) -> JsonResponse | None:
    """401 unless the request carries the sandbox's token and a valid, fresh signature."""
    token, key = sandbox_setting("SUMSUB_APP_TOKEN"), sandbox_setting("SUMSUB_SECRET_KEY")
    given = request.headers.get("X-App-Token", "")
    if not (isinstance(token, str) and token and hmac.compare_digest(given.encode(), token.encode())):
        return error(401, "App token is invalid", errorName="app-token-invalid")
    ts = request.headers.get("X-App-Access-Ts", "")
    if not (ts.isascii() and ts.isdigit() and len(ts) <= 12 and abs(time.time() - int(ts)) <= 60):
        return error(401, "Request timestamp is missing or too far from now", errorName="app-token-ts-invalid")
    # The path as the client sent it: PATH_INFO is decoded, so re-encode what RFC 3986 allows raw.
    path_url = quote(request.path, safe="/:@!$&'()*+,;=-._~")
    if request.META.get("QUERY_STRING"):
        path_url += "?" + request.META["QUERY_STRING"]
    method = request.method or ""  # always set on a request Django serves
    message = ts.encode() + method.upper().encode() + path_url.encode() + request.body
    expected = hmac.new(str(key).encode(), message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(request.headers.get("X-App-Access-Sig", "").encode(), expected.encode()):
        return error(401, "Request signature mismatch", errorCode=4003, errorName="app-token-signature mismatch")
    return None


def api(*methods: str):
    def wrap(view):
        @csrf_exempt
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if request.method not in methods:
                return error(405, "Method not allowed")
            return signature_error(request) or view(request, *args, **kwargs)

        return checked

    return wrap


@api("POST")
def websdk_link(request: HttpRequest) -> JsonResponse:
    if len(request.body) > MAX_BODY:
        return error(400, "Request body too large")
    try:
        body = parse_json(request.body)
    except InvalidJSON:
        body = None
    if not isinstance(body, dict):
        return error(400, "Request body must be a JSON object")
    level, user_id, ttl = body.get("levelName"), body.get("userId"), body.get("ttlInSecs", 1800)
    if not isinstance(level, str) or not level.strip():
        return error(400, "levelName is required")
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 255:
        return error(400, "userId is required")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
        return error(400, "ttlInSecs must be a positive whole number")
    redirect = body.get("redirect")
    redirect = redirect if isinstance(redirect, dict) else {}
    return_url = redirect.get("successUrl")
    return_url = return_url if isinstance(return_url, str) else ""
    request_data = {"levelName": level, "userId": user_id, "ttlInSecs": ttl, "lang": request.GET.get("lang", "")}
    session = emulator.create(request_data=request_data, return_url=return_url, ttl=ttl)
    return JsonResponse({"url": emulator.hosted_url(request, session)})


def find_applicant(ref: str, *, lock: bool = False) -> SandboxHostedSession | None:
    rows = SandboxHostedSession.objects.filter(emulator=NAME).exclude(status="")
    if ref.startswith(LOOKUP_PREFIX):
        rows = rows.filter(request__userId=ref[len(LOOKUP_PREFIX) :])
    else:
        rows = rows.filter(external_id=ref)
    return (rows.select_for_update() if lock else rows).order_by("-created_at").first()


def not_found() -> JsonResponse:
    return error(404, "Applicant not found")


@api("GET")
def applicant_one(request: HttpRequest, ref: str) -> JsonResponse:
    session = find_applicant(ref)
    return JsonResponse(emulator.applicant(session)) if session else not_found()


@api("GET")
def required_id_docs_status(request: HttpRequest, applicant_id: str) -> JsonResponse:
    session = find_applicant(applicant_id)
    if session is None:
        return not_found()
    review_status, review_result = emulator.review(session)
    identity = dict(review_result) if review_status == "completed" else {}
    selfie = {"reviewAnswer": "GREEN"} if review_status == "completed" else {}
    return JsonResponse(
        {
            "IDENTITY": {"reviewResult": identity, "country": "GBR", "idDocType": "PASSPORT", "imageIds": [1, 2]},
            "SELFIE": {"reviewResult": selfie, "idDocType": "SELFIE", "imageIds": [3]},
        }
    )


@api("PATCH")
def deactivate(request: HttpRequest, applicant_id: str) -> JsonResponse:
    with transaction.atomic():
        session = find_applicant(applicant_id, lock=True)
        if session is None:
            return not_found()
        session.request = {**session.request, "deactivated": True}
        session.save(update_fields=["request"])
    return JsonResponse(emulator.applicant(session))


urlpatterns = [
    path("resources/sdkIntegrations/levels/-/websdkLink", websdk_link, name="sumsub_websdk_link"),
    path("resources/applicants/<str:ref>/one", applicant_one, name="sumsub_applicant_one"),
    path(
        "resources/applicants/<str:applicant_id>/requiredIdDocsStatus",
        required_id_docs_status,
        name="sumsub_required_id_docs_status",
    ),
    path("resources/applicants/<str:applicant_id>/presence/deactivated", deactivate, name="sumsub_deactivate"),
]
