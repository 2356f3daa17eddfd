"""The Persona emulator: the Inquiries API in Persona's wire format, under ``<origin>/sandbox/persona``
(the base URL to give ``PersonaProvider``; paths as after ``https://api.withpersona.com/api/v1``).

- ``POST inquiries`` (201), ``GET|DELETE inquiries/<id>`` (retrieve; redact), ``POST
  inquiries/<id>/generate-one-time-link`` and ``POST inquiries/<id>/expire``: JSON:API, kebab-case
  answers, request keys in any casing; ``Authorization: Bearer <PERSONA_API_KEY>`` (401 otherwise);
  errors ``{"errors": [{"title", "details"}]}``.
- ``GET verify?inquiry-id=inq_…`` stands for ``https://inquiry.withpersona.com/verify`` (the link
  without a second call): it redirects to the shared hosted page.
- Outcomes: pass → ``completed``, fail → ``failed`` (check ``selfie_id_comparison`` fails,
  reason ``face_mismatch``), review → ``needs_review``, resubmit → ``pending`` with a government-id
  verification in ``requires_retry`` (webhook ``verification.requires-retry``), expire → ``expired``.
  Persona has no "abandoned" status (an abandoned inquiry expires), so abandon is not offered.
- Webhooks: an event ``{"data": {"type": "event", "id": "evt_…", "attributes": {"name", "payload":
  {"data", "included"}, "created-at"}}}`` signed ``Persona-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
  f"{t}.{body}">`` under ``PERSONA_WEBHOOK_SECRET`` (its UTF-8 bytes, as Persona's docs sample).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any, cast

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.csrf import csrf_exempt

from ...jsonbody import parse_json
from ..common import HttpResponseSeeOther
from ..conf import sandbox_setting
from ..hosted import ABANDON, EXPIRE, FAIL, PASS, REGISTRY, RESUBMIT, REVIEW, Emulator
from ..models import SandboxHostedSession

NAME = "persona"
TEMPLATE_KEYS = ("inquiry-template-id", "inquiry-template-version-id", "template-id")
MAX_BODY = 65536
EVENTS = {
    "created": "inquiry.created",
    "pending": "inquiry.transitioned",
    "completed": "inquiry.completed",
    "failed": "inquiry.failed",
    "needs_review": "inquiry.marked-for-review",
    "approved": "inquiry.approved",
    "declined": "inquiry.declined",
    "expired": "inquiry.expired",
}


def _kebab(value: Any) -> Any:
    """Request keys as Persona reads them: kebab, snake and camel all accepted."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            text = "".join(f"-{c.lower()}" if c.isupper() else c for c in str(key)).replace("_", "-")
            out[text] = _kebab(item)
        return out
    return value


def iso(value: Any) -> str | None:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


class PersonaEmulator(Emulator):
    name = NAME
    title = "Persona"
    id_prefix = "inq_"
    initial_status = "created"
    # As a Persona workflow that decides: a passed inquiry is approved, a failed one declined.
    statuses = {PASS: "approved", FAIL: "declined", REVIEW: "needs_review", RESUBMIT: "pending", EXPIRE: "expired"}
    reasons = {FAIL: "face_mismatch", RESUBMIT: "blurry"}

    def new_id(self) -> str:
        return self.id_prefix + secrets.token_hex(14)  # 32 characters, as Persona's ids since 2024

    def status_of(self, session: SandboxHostedSession) -> str:
        if session.status in ("created", "pending") and session.expires_at and timezone.now() >= session.expires_at:
            return "expired"
        return session.status

    def verifications(self, session: SandboxHostedSession) -> list[dict[str, Any]]:
        """The government-id and selfie verifications of a session whose user picked an outcome."""
        outcome = session.outcome if session.outcome != EXPIRE else ""
        if not outcome or outcome == ABANDON:
            return []
        redacted = session.redacted_at is not None

        def check(name: str, failed: bool = False, retry: bool = False) -> dict[str, Any]:
            status = "failed" if failed or retry else "passed"
            reasons = [self.reasons[RESUBMIT if retry else FAIL]] if failed or retry else []
            requirement = "requires_retry" if retry else "required"
            return {"name": name, "status": status, "reasons": reasons, "requirement": requirement, "metadata": {}}

        def verification(kind: str, status: str, checks: list[dict[str, Any]], identity: dict[str, Any]) -> dict:
            digest = hashlib.sha256(f"{session.external_id}:{kind}".encode()).hexdigest()[:28]
            attributes = {"status": status, "created-at": iso(session.created_at), "checks": checks}
            attributes.update({key: None if redacted else value for key, value in identity.items()})
            relation = {"inquiry": {"data": {"type": "inquiry", "id": session.external_id}}}
            return {
                "type": f"verification/{kind}",
                "id": f"ver_{digest}",
                "attributes": attributes,
                "relationships": relation,
            }

        retry, failed = outcome == RESUBMIT, outcome == FAIL
        photo = f"https://files.withpersona.example/{session.external_id}/front.jpg"
        government = verification(
            "government-id",
            "requires_retry" if retry else "passed",
            [check("id_tamper_detection"), check("id_blur_detection", retry=retry), check("id_selfie_comparison")],
            {"name-first": "JANE", "name-last": "DOE", "identification-number": "Y123ABC", "front-photo-url": photo},
        )
        government["attributes"]["entity-confidence-score"] = 96.18
        if retry:
            return [government]
        selfie = verification(
            "selfie",
            "failed" if failed else "passed",
            [check("selfie_liveness_detection"), check("selfie_id_comparison", failed=failed)],
            {"selfie-photo-url": f"https://files.withpersona.example/{session.external_id}/selfie.jpg"},
        )
        return [government, selfie]

    def inquiry(self, session: SandboxHostedSession) -> dict[str, Any]:
        request = session.request or {}
        attributes: dict[str, Any] = {
            "status": self.status_of(session),
            "reference-id": request.get("reference-id"),
            "note": request.get("note"),
            "tags": [],
            "created-at": iso(session.created_at),
            "completed-at": iso(session.completed_at) if session.status == "completed" else None,
            "failed-at": iso(session.completed_at) if session.status == "failed" else None,
            "redacted-at": iso(session.redacted_at),
            "name-first": None if session.redacted_at or not session.outcome else "Jane",
            "birthdate": None if session.redacted_at or not session.outcome else "1995-09-08",
        }
        ids = [{"type": item["type"], "id": item["id"]} for item in self.verifications(session)]
        return {
            "type": "inquiry",
            "id": session.external_id,
            "attributes": attributes,
            "relationships": {"verifications": {"data": ids}},
        }

    def document(self, session: SandboxHostedSession) -> dict[str, Any]:
        return {"data": self.inquiry(session), "included": self.verifications(session)}

    def webhook(self, session: SandboxHostedSession, *, event: str) -> tuple[bytes, dict[str, str]] | None:
        secret = sandbox_setting("PERSONA_WEBHOOK_SECRET")
        if not secret:
            return None
        if session.outcome == RESUBMIT and event == "outcome":
            verification = self.verifications(session)[0]
            name, inner = "verification.requires-retry", {"data": verification}
        else:
            name, inner = EVENTS.get(self.status_of(session), "inquiry.transitioned"), self.document(session)
        envelope = {"name": name, "payload": inner, "created-at": iso(timezone.now())}
        body = json.dumps({"data": {"type": "event", "id": f"evt_{secrets.token_hex(14)}", "attributes": envelope}})
        raw = body.encode()
        stamp = str(int(time.time()))
        digest = hmac.new(secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        return raw, {"Content-Type": "application/json", "Persona-Signature": f"t={stamp},v1={digest}"}


EMULATOR = cast(PersonaEmulator, REGISTRY[NAME])  # the instance registered by the subclass above


def error(status: int, title: str, details: str = "") -> JsonResponse:
    return JsonResponse({"errors": [{"title": title, "details": details or title}]}, status=status)


def authorized(request: HttpRequest) -> bool:
    key = sandbox_setting("PERSONA_API_KEY")
    given = request.headers.get("Authorization", "")
    return bool(key) and hmac.compare_digest(given.encode(), f"Bearer {key}".encode())


def api(handler: Any) -> Any:
    """A Persona API view: bearer key first (401), then a JSON object body where one is sent (400)."""

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if not authorized(request):
            return error(401, "Unauthorized", "Must be authenticated with a valid API key")
        body: dict[str, Any] = {}
        if request.method == "POST" and request.body:
            if len(request.body) > MAX_BODY:
                return error(413, "Payload Too Large")
            try:
                parsed = parse_json(request.body)
            except ValueError:
                return error(400, "Bad Request", "The body is not JSON")
            if not isinstance(parsed, dict):
                return error(400, "Bad Request", "The body must be a JSON object")
            body = _kebab(parsed)
        return handler(request, body, **kwargs)

    return view


def _allowed(request: HttpRequest, *methods: str) -> HttpResponse | None:
    return None if request.method in methods else error(405, "Method Not Allowed")


@api
def inquiries(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    if refused := _allowed(request, "POST"):
        return refused
    data, meta = body.get("data"), body.get("meta") or {}
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(attributes, dict) or not isinstance(meta, dict):
        return error(400, "Bad Request", "data.attributes must be an object")
    templates = [key for key in TEMPLATE_KEYS if isinstance(attributes.get(key), str) and attributes[key]]
    if len(templates) != 1:
        return error(400, "Bad Request", "Pass exactly one of inquiry-template-id, inquiry-template-version-id")
    ttl = meta.get("expiration-after-create-interval-seconds")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        return error(422, "Unprocessable Entity", "expiration-after-create-interval-seconds must be positive")
    redirect = attributes.get("redirect-uri")
    kept = {key: attributes.get(key) for key in ("reference-id", "note", templates[0]) if attributes.get(key)}
    session = EMULATOR.create(
        request_data=kept, return_url=redirect if isinstance(redirect, str) else "", ttl=ttl or 86400
    )
    return JsonResponse({"data": EMULATOR.inquiry(session)}, status=201)


def _session(inquiry_id: str, *, lock: bool = False) -> SandboxHostedSession | None:
    return EMULATOR.find(inquiry_id, lock=lock)


@api
def inquiry(request: HttpRequest, body: dict[str, Any], inquiry_id: str) -> HttpResponse:
    if refused := _allowed(request, "GET", "DELETE"):
        return refused
    with transaction.atomic():
        session = _session(inquiry_id, lock=request.method == "DELETE")
        if session is None:
            return error(404, "Record not found")
        if request.method == "DELETE":
            session.redacted_at = timezone.now()
            session.request = {key: value for key, value in session.request.items() if key != "reference-id"}
            session.save(update_fields=["redacted_at", "request"])
    return JsonResponse(EMULATOR.document(session))


@api
def one_time_link(request: HttpRequest, body: dict[str, Any], inquiry_id: str) -> HttpResponse:
    if refused := _allowed(request, "POST"):
        return refused
    session = _session(inquiry_id)
    if session is None:
        return error(404, "Record not found")
    seconds = (body.get("meta") or {}).get("expires-in-seconds") if isinstance(body.get("meta"), dict) else None
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0):
        return error(400, "Bad Request", "expires-in-seconds must be greater than 0")
    if EMULATOR.status_of(session) not in ("created", "pending"):
        return error(422, "Unprocessable Entity", "The inquiry can no longer be accessed")
    link = EMULATOR.hosted_url(request, session)
    return JsonResponse(
        {"data": EMULATOR.inquiry(session), "meta": {"one-time-link": link, "one-time-link-short": link}}
    )


@api
def expire(request: HttpRequest, body: dict[str, Any], inquiry_id: str) -> HttpResponse:
    if refused := _allowed(request, "POST"):
        return refused
    with transaction.atomic():
        session = _session(inquiry_id, lock=True)
        if session is None:
            return error(404, "Record not found")
        if EMULATOR.status_of(session) in ("created", "pending") and not EMULATOR.is_final(session):
            session.status, session.outcome, session.completed_at = "expired", EXPIRE, timezone.now()
            session.deliveries += 1
            session.save(update_fields=["status", "outcome", "completed_at", "deliveries"])
            EMULATOR.schedule_webhook(request, session, event="expired")
    return JsonResponse(EMULATOR.document(session))


def hosted_redirect(request: HttpRequest) -> HttpResponse:
    """``https://inquiry.withpersona.com/verify?inquiry-id=inq_…``: to the shared hosted page."""
    session = _session(request.GET.get("inquiry-id", ""))
    if session is None or EMULATOR.status_of(session) not in ("created", "pending"):
        return HttpResponse(gettext("This inquiry can no longer be accessed."), status=404, content_type="text/plain")
    return HttpResponseSeeOther(EMULATOR.hosted_url(request, session))


urlpatterns = [
    path("inquiries", inquiries, name="persona_inquiries"),
    path("inquiries/<str:inquiry_id>", inquiry, name="persona_inquiry"),
    path("inquiries/<str:inquiry_id>/generate-one-time-link", one_time_link, name="persona_one_time_link"),
    path("inquiries/<str:inquiry_id>/expire", expire, name="persona_expire"),
    path("verify", hosted_redirect, name="persona_verify"),
]
