"""The Onfido emulator: applicants, Studio workflow runs, the hosted link, signed webhooks.

Base URL ``<origin>/sandbox/onfido`` (in place of ``https://api.eu.onfido.com/v3.6``), every call
with ``Authorization: Token token=<ONFIDO_API_TOKEN>`` (401 otherwise), JSON in and out, errors as
Onfido answers them: ``{"error": {"type", "message", "fields"?}}``.

- ``POST applicants`` ``{first_name, last_name}`` → 201 ``{id, first_name, last_name, created_at,
  href, sandbox}``; ``DELETE applicants/<id>`` → 204 (the applicant's runs lose their output).
- ``POST workflow_runs`` ``{workflow_id, applicant_id, customer_user_id?, tags?, link?}`` → 201 the
  WorkflowRun, ``link.url`` the shared hosted page; ``GET workflow_runs/<id>`` → the WorkflowRun.

Outcomes of the hosted page: ``pass`` → ``approved``, ``fail`` → ``declined`` (reason
``document_rejected``), ``review`` → ``review`` (reason ``face_match_inconclusive``), ``abandon`` →
``abandoned``. Onfido has no "resubmission" or "expired" run status: those are not offered. Each
outcome posts ``workflow_run.completed`` signed with ``X-SHA2-Signature`` (hex HMAC-SHA256 of the
body under ``ONFIDO_WEBHOOK_SECRET``; empty: no webhook).

Applicants are kept as ``SandboxHostedSession`` rows of the kind ``APPLICANT`` (never a hosted
page: no emulator has that name), so the emulator needs no table of its own.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable
from typing import Any, cast

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt

from ..common import is_http_url
from ..conf import sandbox_setting
from ..hosted import ABANDON, FAIL, PASS, REGISTRY, REVIEW, Emulator
from ..models import SandboxHostedSession

NAME = "onfido"
APPLICANT = "onfido_applicant"
SIGNATURE_HEADER = "X-SHA2-Signature"
LANGUAGES = ("en_US", "de_DE", "es_ES", "fr_FR", "it_IT", "pt_PT", "nl_NL")
NAME_RE = re.compile(r'[^!#$%*=<>;{}"]{1,100}')
MAX_BODY = 64 * 1024


def sign(secret: str, body: bytes) -> str:
    """Onfido's ``X-SHA2-Signature``: hex HMAC-SHA256 of the raw body under the webhook token."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _iso(value: datetime.datetime | None) -> str | None:
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


class OnfidoEmulator(Emulator):
    name = NAME
    title = "Onfido"
    initial_status = "awaiting_input"
    statuses = {PASS: "approved", FAIL: "declined", REVIEW: "review", ABANDON: "abandoned"}
    reasons = {FAIL: "document_rejected", REVIEW: "face_match_inconclusive"}

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def output(self, run: SandboxHostedSession) -> dict[str, Any]:
        """The workflow's output (the keys of ``OnfidoProvider``'s default ``OUTPUT_CHECKS``)."""
        if run.redacted_at is not None or run.outcome in ("", ABANDON):
            return {}
        document = {"result": "consider", "sub_result": "rejected"} if run.outcome == FAIL else {"result": "clear"}
        face = {"result": "consider", "score": 0.41} if run.outcome == REVIEW else {"result": "clear", "score": 0.93}
        applicant = run.request.get("applicant") or {}
        return {
            "document": {**document, "document_number": "SBX0000000", "dob": "1990-01-01"},
            "liveness": {"result": "clear"},
            "face_match": face,
            "first_name": applicant.get("first_name", ""),
            "last_name": applicant.get("last_name", ""),
        }

    def run_json(self, run: SandboxHostedSession, request: HttpRequest | None) -> dict[str, Any]:
        sent = run.request
        link = dict(sent.get("link") or {})
        link["expires_at"] = _iso(run.expires_at)
        link.setdefault("language", None)
        if request is not None:
            link["url"] = self.hosted_url(request, run)
        return {
            "id": run.external_id,
            "applicant_id": sent.get("applicant_id"),
            "workflow_id": sent.get("workflow_id"),
            "workflow_version_id": 1,
            "status": run.status,
            "output": self.output(run),
            "reasons": [run.reason] if run.reason else [],
            "error": None,
            "customer_user_id": sent.get("customer_user_id"),
            "tags": sent.get("tags") or [],
            "dashboard_url": f"https://dashboard.onfido.com/results/{run.external_id}",
            "created_at": _iso(run.created_at),
            "updated_at": _iso(run.completed_at or run.created_at),
            "link": link,
        }

    def webhook(self, session: SandboxHostedSession, *, event: str) -> tuple[bytes, dict[str, str]] | None:
        secret = sandbox_setting("ONFIDO_WEBHOOK_SECRET")
        if not secret:
            return None
        payload = {
            "payload": {
                "resource_type": "workflow_run",
                "action": "workflow_run.completed",
                "object": {
                    "id": session.external_id,
                    "status": session.status,
                    "started_at_iso8601": _iso(session.created_at),
                    "completed_at_iso8601": _iso(session.completed_at),
                    "href": f"https://api.eu.onfido.com/v3.6/workflow_runs/{session.external_id}",
                },
                "resource": self.run_json(session, None),
            }
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)}


EMULATOR = cast(OnfidoEmulator, REGISTRY[NAME])  # the instance registered by the subclass above


# -- the API ----------------------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, status: int, kind: str, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.fields = status, kind, message, fields


def error(status: int, kind: str, message: str, fields: dict[str, Any] | None = None) -> JsonResponse:
    body: dict[str, Any] = {"type": kind, "message": message}
    if fields:
        body["fields"] = fields
    return JsonResponse({"error": body}, status=status)


def _authorized(request: HttpRequest) -> bool:
    token = sandbox_setting("ONFIDO_API_TOKEN")
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Token token={token}".encode())


def api(*methods: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A server-to-server endpoint: no CSRF, the token first, then the method, JSON errors."""

    def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        def endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not _authorized(request):
                return error(401, "authorization_error", "Authorization error: please re-check your credentials")
            if request.method not in methods:
                response = error(405, "method_not_allowed", f"{request.method} is not allowed here")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except Refused as exc:
                return error(exc.status, exc.kind, exc.message, exc.fields)

        return endpoint

    return wrap


def _json_body(request: HttpRequest) -> dict[str, Any]:
    if len(request.body) > MAX_BODY:
        raise Refused(413, "payload_too_large", "The request body is too large")
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "bad_request", "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Refused(422, "validation_error", "The request body must be a JSON object")
    return body


def _invalid(field: str, message: str) -> Refused:
    return Refused(422, "validation_error", "There was a validation error on this request", {field: [message]})


def _uuid(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise _invalid(field, "is required")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise _invalid(field, "is not a valid uuid") from None


@api("POST")
def applicants(request: HttpRequest) -> HttpResponse:
    body = _json_body(request)
    names = {}
    for field in ("first_name", "last_name"):
        value = body.get(field)
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            raise _invalid(field, 'is required and may not contain !#$%*=<>;{}"')
        names[field] = value
    applicant = SandboxHostedSession.objects.create(
        emulator=APPLICANT, external_id=str(uuid.uuid4()), status="active", request=names
    )
    answer = {
        "id": applicant.external_id,
        "created_at": _iso(applicant.created_at),
        "delete_at": None,
        "href": f"/v3.6/applicants/{applicant.external_id}",
        "sandbox": True,
        **names,
    }
    return JsonResponse(answer, status=201)


@api("DELETE")
def applicant(request: HttpRequest, applicant_id: str) -> HttpResponse:
    with transaction.atomic():
        row = SandboxHostedSession.objects.select_for_update().filter(emulator=APPLICANT, external_id=applicant_id)
        found = row.filter(redacted_at__isnull=True).first()
        if found is None:
            raise Refused(404, "resource_not_found", "The resource could not be found")
        now = timezone.now()
        found.redacted_at = now
        found.request = {}
        found.save(update_fields=["redacted_at", "request"])
        for run in SandboxHostedSession.objects.filter(emulator=NAME, request__applicant_id=applicant_id):
            run.redacted_at, run.request = now, {**run.request, "applicant": {}}
            run.save(update_fields=["redacted_at", "request"])
    return HttpResponse(status=204)


def _link(body: dict[str, Any]) -> tuple[dict[str, Any], datetime.datetime | None]:
    link = body.get("link")
    if link is None:
        return {}, None
    if not isinstance(link, dict):
        raise _invalid("link", "must be an object")
    kept: dict[str, Any] = {}
    for field in ("completed_redirect_url", "expired_redirect_url"):
        if link.get(field) is not None:
            if not is_http_url(link[field]):
                raise _invalid(f"link.{field}", "must be an http(s) URL")
            kept[field] = link[field]
    language = link.get("language")
    if language is not None and language not in LANGUAGES:
        raise _invalid("link.language", "is not a supported language")
    kept["language"] = language
    expires_at = None
    if link.get("expires_at") is not None:
        try:
            expires_at = parse_datetime(link["expires_at"]) if isinstance(link["expires_at"], str) else None
        except ValueError:
            expires_at = None
        if expires_at is None or expires_at.tzinfo is None or expires_at <= timezone.now():
            raise _invalid("link.expires_at", "must be a date-time with a zone in the future")
    return kept, expires_at


@api("POST")
def workflow_runs(request: HttpRequest) -> HttpResponse:
    body = _json_body(request)
    workflow_id, applicant_id = _uuid(body, "workflow_id"), _uuid(body, "applicant_id")
    owner = SandboxHostedSession.objects.filter(
        emulator=APPLICANT, external_id=applicant_id, redacted_at__isnull=True
    ).first()
    if owner is None:
        raise _invalid("applicant_id", "does not exist")
    customer = body.get("customer_user_id")
    if customer is not None and not (isinstance(customer, str) and len(customer) <= 256):
        raise _invalid("customer_user_id", "must be a string of at most 256 characters")
    tags = body.get("tags") or []
    if not (
        isinstance(tags, list) and len(tags) <= 30 and all(isinstance(t, str) and 1 <= len(t) <= 128 for t in tags)
    ):
        raise _invalid("tags", "must be at most 30 strings of 1 to 128 characters")
    link, expires_at = _link(body)
    sent = {
        "workflow_id": workflow_id,
        "applicant_id": applicant_id,
        "customer_user_id": customer,
        "tags": tags,
        "link": link,
        "applicant": owner.request,
    }
    ttl = int((expires_at - timezone.now()).total_seconds()) if expires_at else 7 * 86400
    run = EMULATOR.create(request_data=sent, return_url=link.get("completed_redirect_url", ""), ttl=max(ttl, 1))
    if expires_at:
        run.expires_at = expires_at
        run.save(update_fields=["expires_at"])
    return JsonResponse(EMULATOR.run_json(run, request), status=201)


@api("GET")
def workflow_run(request: HttpRequest, run_id: str) -> HttpResponse:
    run = EMULATOR.find(run_id)
    if run is None:
        raise Refused(404, "resource_not_found", "The resource could not be found")
    return JsonResponse(EMULATOR.run_json(run, request))


urlpatterns = [
    path("applicants", applicants, name="onfido_applicants"),
    path("applicants/<str:applicant_id>", applicant, name="onfido_applicant"),
    path("workflow_runs", workflow_runs, name="onfido_workflow_runs"),
    path("workflow_runs/<str:run_id>", workflow_run, name="onfido_workflow_run"),
]
