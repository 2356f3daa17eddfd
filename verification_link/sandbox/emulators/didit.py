"""The Didit emulator: its Sessions API v3 under ``<origin>/sandbox/didit`` and its signed webhooks.

``POST <base>/v3/session/``
    ``x-api-key`` (``VERIFICATION_LINK_SANDBOX["DIDIT_API_KEY"]``); JSON ``{workflow_id (required),
    vendor_data?, callback?, metadata?, language?, callback_method?}`` → 201 ``{session_id,
    session_number, session_token, url, vendor_data, metadata, status: "Not Started", callback,
    workflow_id, workflow_version}``. As Didit: an unfinished session of the same ``vendor_data`` and
    workflow is returned again (201, ``callback``/``metadata`` updated).
``GET <base>/v3/session/<session_id>/decision/`` → the decision (status, per-check lists).
``DELETE <base>/v3/session/<session_id>/delete/`` → 204; the session then answers 404 everywhere.

Errors: 401 ``{"detail"}`` for a missing or wrong key (checked first), 400 ``{"detail", "code"}``
for bad input, 404 unknown session, 405 wrong method. The hosted page is the shared one
(``hosted.py``); each outcome posts a ``status.updated`` webhook, built and signed as Didit's server
does (its helpers as quoted in ``didit-protocol/plugin-wordpress`` ``tests/generate-fixtures.py``):
the body is ``json.dumps(payload, sort_keys=True, separators=(",", ":"))`` with whole floats as
integers; ``X-Signature`` is the hex HMAC-SHA256 of it, ``X-Signature-V2`` of the same JSON with
``ensure_ascii=False``, ``X-Signature-Simple`` of ``"{timestamp}:{session_id}:{status}:{webhook_type}"``,
under ``DIDIT_WEBHOOK_SECRET`` (empty: no webhook).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any, cast

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from ...jsonbody import InvalidJSON, parse_json
from ..common import is_http_url
from ..conf import sandbox_setting
from ..hosted import ABANDON, EXPIRE, FAIL, PASS, REGISTRY, RESUBMIT, REVIEW, Emulator
from ..models import SandboxHostedSession

NAME = "didit"
UNFINISHED = ("Not Started", "In Progress", "Resubmitted", "Awaiting User")
#: The statuses whose webhook carries the decision (Didit's webhooks reference).
WITH_DECISION = ("Approved", "Declined", "In Review", "Abandoned")
MAX_BODY = 64 * 1024


def shorten_floats(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [shorten_floats(item) for item in value]
    if isinstance(value, dict):
        return {key: shorten_floats(item) for key, item in value.items()}
    return value


def _hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_delivery(secret: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery of ``payload``, as Didit's server builds them."""
    data = shorten_floats(payload)
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":"))
    v2 = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    fields = ("timestamp", "session_id", "status", "webhook_type")
    simple = ":".join(str(data.get(name, "")) for name in fields)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "DiditWebhook/2.0 +https://didit.me",
        "X-Timestamp": str(data.get("timestamp", "")),
        "X-Signature": _hmac(secret, encoded),
        "X-Signature-V2": _hmac(secret, v2),
        "X-Signature-Simple": _hmac(secret, simple),
    }
    return encoded.encode("utf-8"), headers


class DiditEmulator(Emulator):
    name = NAME
    title = "Didit"
    initial_status = "Not Started"
    statuses = {
        PASS: "Approved",
        FAIL: "Declined",
        REVIEW: "In Review",
        RESUBMIT: "Resubmitted",
        ABANDON: "Abandoned",
        EXPIRE: "Expired",
    }
    reasons = {FAIL: "LOW_FACE_MATCH_SIMILARITY", REVIEW: "POSSIBLE_DUPLICATED_USER", RESUBMIT: "DOCUMENT_BLURRY"}

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def decision(self, request: HttpRequest | None, session: SandboxHostedSession) -> dict[str, Any]:
        """The decision endpoint's answer (also the webhook's ``decision``)."""
        sent = session.request
        outcome = session.outcome
        reason = session.reason
        checks: dict[str, list[dict[str, Any]]] = {"id_verifications": [], "liveness_checks": [], "face_matches": []}
        if outcome in (PASS, FAIL, REVIEW, RESUBMIT):
            face = "Declined" if outcome == FAIL else "In Review" if outcome == REVIEW else "Approved"
            document = "Declined" if outcome == RESUBMIT else "Approved"
            checks = {
                "id_verifications": [
                    {
                        "node_id": "node-id-1",
                        "status": document,
                        "document_type": "Identity Card",
                        "document_number": "SBX000000",
                        "first_name": "Sandbox",
                        "last_name": "User",
                        "date_of_birth": "1990-01-01",
                        "portrait_image": "https://sandbox.invalid/portrait.jpg",
                        "warnings": [_warning(reason)] if outcome == RESUBMIT else [],
                    }
                ],
                "liveness_checks": [
                    {"node_id": "node-live-1", "status": "Approved", "score": 97.0, "warnings": []},
                ],
                "face_matches": [
                    {
                        "node_id": "node-face-1",
                        "status": face,
                        "score": 21.5 if outcome == FAIL else 88.0,
                        "warnings": [_warning(reason)] if outcome in (FAIL, REVIEW) else [],
                    }
                ],
            }
        return {
            "session_id": session.external_id,
            "session_kind": "user",
            "session_number": session.pk,
            "session_url": self.hosted_url(request, session) if request is not None else "",
            "status": session.status,
            "environment": "sandbox",
            "workflow_id": sent.get("workflow_id"),
            "features": ["ID_VERIFICATION", "LIVENESS", "FACE_MATCH"],
            "vendor_data": sent.get("vendor_data"),
            "metadata": sent.get("metadata"),
            "callback": sent.get("callback"),
            **checks,
            "reviews": [],
            "warnings": [],
        }

    def webhook(self, session: SandboxHostedSession, *, event: str) -> tuple[bytes, dict[str, str]] | None:
        secret = sandbox_setting("DIDIT_WEBHOOK_SECRET")
        if not isinstance(secret, str) or not secret:
            return None
        now = int(time.time())
        sent = session.request
        payload: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "webhook_type": "status.updated",
            "timestamp": now,
            "created_at": now,
            "application_id": "00000000-0000-4000-8000-000000000000",
            "environment": "sandbox",
            "session_id": session.external_id,
            "status": session.status,
            "workflow_id": sent.get("workflow_id"),
            "workflow_version": 1,
        }
        for key in ("vendor_data", "metadata"):
            if sent.get(key) is not None:
                payload[key] = sent[key]
        if session.status in WITH_DECISION:
            payload["decision"] = self.decision(None, session)
        return signed_delivery(secret, payload)


def _warning(code: str) -> dict[str, Any]:
    return {"risk": code, "log_type": "warning", "short_description": code.replace("_", " ").capitalize()}


EMULATOR = cast(DiditEmulator, REGISTRY[NAME])  # the instance registered by the subclass above


def _error(status: int, detail: str, code: str = "") -> JsonResponse:
    return JsonResponse({"detail": detail, **({"code": code} if code else {})}, status=status)


def _authorized(request: HttpRequest) -> bool:
    expected = sandbox_setting("DIDIT_API_KEY")
    if not isinstance(expected, str) or not expected:
        return False
    given = request.headers.get("x-api-key", "")
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _api(*methods: str):
    """A server-to-server view: method first (405), then the key (401), never a CSRF check."""

    def wrap(view):
        @csrf_exempt
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = _error(405, "Method not allowed.")
                response["Allow"] = ", ".join(methods)
                return response
            if not _authorized(request):
                return _error(401, "Invalid or missing API key.", "authentication_failed")
            return view(request, *args, **kwargs)

        return guarded

    return wrap


def _create_body(request: HttpRequest) -> dict[str, Any]:
    if len(request.body) > MAX_BODY:
        raise ValueError("Request body too large.")
    try:
        body = parse_json(request.body)
    except InvalidJSON:
        raise ValueError("Body must be JSON.") from None
    if not isinstance(body, dict):
        raise ValueError("Body must be a JSON object.")
    if not isinstance(body.get("workflow_id"), str) or not body["workflow_id"].strip():
        raise ValueError("workflow_id is required.")
    for key in ("vendor_data", "language", "callback_method"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise ValueError(f"{key} must be a string.")
    if body.get("callback") not in (None, "") and not is_http_url(body["callback"]):
        raise ValueError("callback must be an http(s) URL.")
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        raise ValueError("metadata must be an object.")
    if body.get("callback_method") not in (None, "initiator", "completer", "both"):
        raise ValueError("callback_method must be initiator, completer or both.")
    return body


@_api("POST")
def create_session(request: HttpRequest) -> HttpResponse:
    try:
        body = _create_body(request)
    except ValueError as exc:
        return _error(400, str(exc), "invalid_request")
    with transaction.atomic():
        session = None
        if body.get("vendor_data"):
            candidates = SandboxHostedSession.objects.select_for_update().filter(
                emulator=NAME, status__in=UNFINISHED, redacted_at=None
            )
            for candidate in candidates.order_by("-pk"):
                sent = candidate.request
                if sent.get("vendor_data") == body["vendor_data"] and sent.get("workflow_id") == body["workflow_id"]:
                    session = candidate
                    break
        if session is None:
            session = EMULATOR.create(request_data=body, return_url=body.get("callback") or "")
        else:
            session.request = {**session.request, **{k: body[k] for k in ("callback", "metadata") if k in body}}
            session.return_url = body.get("callback") or session.return_url
            session.save(update_fields=["request", "return_url"])
    sent = session.request
    answer = {
        "session_id": session.external_id,
        "session_number": session.pk,
        "session_token": session.page_secret,
        "url": EMULATOR.hosted_url(request, session),
        "vendor_data": sent.get("vendor_data"),
        "metadata": sent.get("metadata"),
        "status": session.status,
        "callback": sent.get("callback"),
        "workflow_id": sent.get("workflow_id"),
        "workflow_version": 1,
    }
    return JsonResponse(answer, status=201)


def _live(session_id: str) -> SandboxHostedSession | None:
    session = EMULATOR.find(session_id)
    return session if session is not None and session.redacted_at is None else None


@_api("GET")
def decision(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _live(session_id)
    if session is None:
        return _error(404, "Session not found.", "not_found")
    return JsonResponse(EMULATOR.decision(request, session))


@_api("DELETE")
def delete_session(request: HttpRequest, session_id: str) -> HttpResponse:
    with transaction.atomic():
        session = EMULATOR.find(session_id, lock=True)
        if session is None or session.redacted_at is not None:
            return _error(404, "Session not found.", "not_found")
        session.redacted_at = timezone.now()
        session.request = {key: session.request.get(key) for key in ("workflow_id",)}
        session.save(update_fields=["redacted_at", "request"])
    return HttpResponse(status=204)


urlpatterns = [
    path("v3/session/", create_session, name="didit_create"),
    path("v3/session/<str:session_id>/decision/", decision, name="didit_decision"),
    path("v3/session/<str:session_id>/delete/", delete_session, name="didit_delete"),
]
