"""Views of the Valify emulator: the Create link API and the hosted web verification flow.

Mounted under ``<sandbox>/valify/``, so with ``path("sandbox/", include(...))`` the base URL a
client uses is ``<origin>/sandbox/valify``.

``POST <base>/api/link/v1/request/?lang=<en|ar>``
    Headers ``Content-Type: application/json`` and ``X-Valify-Api-Key``; JSON body
    ``{"return_url": str, "reference_id": str, "expires_at": "<ISO date-time with zone>",
    "flow"?: "<uuid>"}``. 200 ``{"session_token": "<uuid>", "redirect_url":
    "<origin>/sandbox/valify/?token=<session_token>"}`` (the key's spelling, or its absence,
    follows the ``VALIFY_REDIRECT_KEY`` setting). Errors ``{"message": str}`` with HTTP 400
    (invalid input or ``lang``), 401 (missing or wrong key), 405 (not POST), 415 (not JSON), and
    422 ``{"message", "error_code"}``: 1001 ``expires_at`` not in the future, 1002
    ``reference_id`` already used by an open session. Checked in the order 405, 401, 415, 400.

Hosted page ``GET/POST <base>/?token=<session_token>``: ID scan, face match, phone, then an
outcome picker. A final outcome posts the account-level webhook (``VALIFY_WEBHOOK_URL``, signed,
see :mod:`.signing`) once, then redirects (303) to ``return_url``. Unknown tokens answer 404,
final or expired sessions 410.

Webhook body (Valify does not document one; this is the sandbox's)::

    {"event": "verification.completed", "session_token": str, "reference_id": str,
     "status": "success" | "failed" | "canceled", "reason": null | "id_unreadable" | "face_mismatch",
     "completed_at": "<ISO-8601 UTC, ms, Z>", "result": {...}}
"""

from __future__ import annotations

import datetime
import hmac
import logging
import uuid
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.cache import patch_cache_control
from django.utils.dateparse import parse_datetime
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from ..dblock import take_write_lock
from ..jsonbody import parse_json
from . import valify_outcomes as outcomes
from .callbacks import schedule_valify_webhook
from .common import HostedPageView, HttpResponseSeeOther, custom_decision_policy, is_http_url
from .conf import sandbox_setting
from .models import MAX_REFERENCE_LENGTH, VALIFY_LANGUAGES, SandboxValifySession

logger = logging.getLogger(__name__)

Status = SandboxValifySession.Status

TEMPLATE_DIR = "verification_link/sandbox/valify"

API_KEY_HEADER = "X-Valify-Api-Key"

#: Valify-style ``error_code`` values of the 422 answers (Valify's own list is not public).
ERROR_EXPIRES_IN_PAST = 1001
ERROR_REFERENCE_IN_USE = 1002

#: The pages of the hosted flow before the outcome picker: (stage, title, description).
STEPS = (
    (
        "scan_id",
        _("Scan your national ID"),
        _("A real flow would now photograph both sides of the national ID card and read it."),
    ),
    (
        "face_match",
        _("Face match"),
        _("A real flow would now take a selfie, check that a live person is present and compare the face with the ID."),
    ),
    (
        "phone",
        _("Verify your phone"),
        _("A real flow would now send a one-time code by SMS and ask for it."),
    ),
)

OUTCOME_STAGE = "outcome"


class InvalidLinkRequest(Exception):
    """Invalid Create link input: the ``message`` of a 400 answer."""


def message_response(status: int, message: str, *, error_code: int | None = None) -> JsonResponse:
    """An error as Valify documents them: ``{"message"}``, plus ``error_code`` on a 422."""
    body: dict[str, Any] = {"message": message}
    if error_code is not None:
        body["error_code"] = error_code
    return JsonResponse(body, status=status)


def _authorized(request: HttpRequest) -> bool:
    expected = sandbox_setting("VALIFY_API_KEY")
    if not isinstance(expected, str) or not expected:
        # An emptied setting must not let requests without the header in.
        return False
    given = request.headers.get(API_KEY_HEADER, "")
    return hmac.compare_digest(given.encode(), expected.encode())


def _required_string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None or value == "":
        raise InvalidLinkRequest(f"{key} is required")
    if not isinstance(value, str):
        raise InvalidLinkRequest(f"{key} must be a string")
    return value


def _parse_expires_at(value: str) -> datetime.datetime:
    message = "expires_at must be an ISO 8601 date-time with a time zone, e.g. 2026-01-14T07:57:54.972Z"
    try:
        parsed = parse_datetime(value)
        if parsed is None or parsed.tzinfo is None or parsed.utcoffset() is None:
            raise InvalidLinkRequest(message)
        # Out-of-range values (year 1 ahead of UTC, year 9999 behind it) fail here, not in the database.
        return parsed.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError):
        raise InvalidLinkRequest(message) from None


def parse_link_body(raw: bytes) -> dict[str, Any]:
    """Validate a Create link body; return the session fields or raise ``InvalidLinkRequest``."""
    try:
        body = parse_json(raw)
    except ValueError:
        raise InvalidLinkRequest("body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidLinkRequest("body must be a JSON object")

    return_url = _required_string(body, "return_url")
    if not is_http_url(return_url):
        raise InvalidLinkRequest("return_url must be an absolute http(s) URL")

    reference_id = _required_string(body, "reference_id")
    if not reference_id.strip():
        raise InvalidLinkRequest("reference_id must not be blank")
    if len(reference_id) > MAX_REFERENCE_LENGTH:
        raise InvalidLinkRequest(f"reference_id must be at most {MAX_REFERENCE_LENGTH} characters")
    # NUL: PostgreSQL cannot store it; lone surrogates: not encodable as UTF-8.
    if "\x00" in reference_id or not _encodable(reference_id):
        raise InvalidLinkRequest("reference_id contains invalid characters")

    expires_at = _parse_expires_at(_required_string(body, "expires_at"))

    flow = body.get("flow")
    if flow is not None:
        if not isinstance(flow, str):
            raise InvalidLinkRequest("flow must be a UUID string")
        try:
            flow = uuid.UUID(flow)
        except ValueError:
            raise InvalidLinkRequest("flow must be a UUID string") from None

    return {"return_url": return_url, "reference_id": reference_id, "expires_at": expires_at, "flow": flow}


def _encodable(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


@method_decorator(csrf_exempt, name="dispatch")
class ValifyCreateLinkView(View):
    """``POST <base>/api/link/v1/request/?lang=<en|ar>`` — create a verification link."""

    http_method_names = ["post"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response: HttpResponseBase
        if request.method is None or request.method.lower() not in self.http_method_names:
            response = self.http_method_not_allowed(request, *args, **kwargs)
        elif not _authorized(request):
            response = message_response(401, "invalid API key")
        elif request.content_type != "application/json":
            response = message_response(415, "Content-Type must be application/json")
        else:
            response = super().dispatch(request, *args, **kwargs)
        # Answers carry bearer tokens.
        patch_cache_control(response, no_store=True)
        return response

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = message_response(405, "method not allowed")
        response["Allow"] = ", ".join(method.upper() for method in self.http_method_names)
        return response

    def post(self, request: HttpRequest) -> HttpResponse:
        lang = request.GET.get("lang", "en")
        if lang not in VALIFY_LANGUAGES:
            return message_response(400, f"lang must be one of {', '.join(VALIFY_LANGUAGES)}")
        try:
            fields = parse_link_body(request.body)
        except RequestDataTooBig:
            return message_response(400, "body too large")
        except InvalidLinkRequest as exc:
            return message_response(400, str(exc))

        now = timezone.now()
        if fields["expires_at"] <= now:
            return message_response(422, "expires_at must be in the future", error_code=ERROR_EXPIRES_IN_PAST)
        open_sessions = SandboxValifySession.objects.filter(
            reference_id=fields["reference_id"], status=Status.PENDING, expires_at__gt=now
        )
        if open_sessions.exists():
            return message_response(
                422, "reference_id is already used by an open session", error_code=ERROR_REFERENCE_IN_USE
            )
        session = SandboxValifySession.objects.create(lang=lang, **fields)
        logger.info("Sandbox Valify session #%s created", session.pk)

        # The full namespace of this match, so the sandbox may be included under another one.
        namespace = request.resolver_match.namespace if request.resolver_match else ""
        path = reverse(f"{namespace or 'verification_link_sandbox'}:valify_flow")
        body: dict[str, Any] = {"session_token": str(session.token)}
        redirect_key = sandbox_setting("VALIFY_REDIRECT_KEY")
        if redirect_key:
            url = request.build_absolute_uri(path) + "?" + urlencode({"token": str(session.token)})
            body[str(redirect_key)] = url
        return JsonResponse(body)


def _stage(session: SandboxValifySession) -> str:
    """Which page of the hosted flow an open session is on."""
    if session.step < len(STEPS):
        return STEPS[session.step][0]
    return OUTCOME_STAGE


def _session_for(request: HttpRequest, *, lock: bool = False) -> SandboxValifySession | None:
    try:
        token = uuid.UUID(request.GET.get("token", ""))
    except ValueError:
        return None
    sessions = SandboxValifySession.objects.all()
    if lock:
        sessions = sessions.select_for_update()
    return sessions.filter(token=token).first()


@method_decorator(csrf_protect, name="dispatch")
class ValifyFlowView(HostedPageView):
    """``GET/POST <base>/?token=<session_token>`` — the hosted flow, one page per stage.

    Each form posts the stage it was rendered for (``step``); a POST for another stage (back
    button, double submit) changes nothing and sends the browser to the current page. A final
    outcome posts the webhook once the change is committed, then redirects (303) to the
    session's ``return_url``. Unknown tokens answer 404, final or expired sessions 410.
    """

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        session = _session_for(request)
        if session is None or not session.is_open():
            return self._invalid(request, found=session is not None)
        return self._render_stage(request, session)

    def post(self, request: HttpRequest) -> HttpResponse:
        with transaction.atomic():
            take_write_lock(SandboxValifySession)  # SQLite: the lock first, or a racing write fails
            # The row lock makes concurrent submits of one page yield one transition.
            session = _session_for(request, lock=True)
            if session is None or not session.is_open():
                return self._invalid(request, found=session is not None)
            stage = _stage(session)
            if request.POST.get("step") != stage:
                return HttpResponseSeeOther(self._flow_url(request, session))
            if stage != OUTCOME_STAGE:
                session.step += 1
                session.save(update_fields=["step"])
                return HttpResponseSeeOther(self._flow_url(request, session))
            return self._post_outcome(request, session)

    def _post_outcome(self, request: HttpRequest, session: SandboxValifySession) -> HttpResponse:
        choice = request.POST.get("outcome", "")
        if choice == outcomes.ABANDON:
            # Nothing final: the session stays open until it expires, and no webhook.
            logger.info("Sandbox Valify session #%s abandoned", session.pk)
            return self._leave(request, session)
        if choice not in outcomes.FINAL_OUTCOMES:
            return self._render_stage(request, session, error=_("Choose one of the outcomes."))
        status, reason = outcomes.FINAL_OUTCOMES[choice]
        now = timezone.now()
        session.status = status
        session.reason = reason or ""
        session.completed_at = now
        webhook_url = self._webhook_url(request, session)
        session.webhook_sent_at = now if webhook_url else None
        session.save(update_fields=["status", "reason", "completed_at", "webhook_sent_at"])
        logger.info("Sandbox Valify session #%s finished: %s", session.pk, session.status)
        if webhook_url:
            schedule_valify_webhook(webhook_url, session.webhook_payload(), session_id=f"#{session.pk}")
        return self._leave(request, session)

    def _webhook_url(self, request: HttpRequest, session: SandboxValifySession) -> str | None:
        """``VALIFY_WEBHOOK_URL``, a path resolved against this request's origin; ``None`` for none.

        Never logs the setting itself: its path may hold a secret.
        """
        configured = sandbox_setting("VALIFY_WEBHOOK_URL")
        if not configured:
            logger.info("Sandbox Valify session #%s: no VALIFY_WEBHOOK_URL, no webhook sent", session.pk)
            return None
        url = configured
        if isinstance(configured, str) and configured.startswith("/") and not configured.startswith("//"):
            url = request.build_absolute_uri(configured)
        if not is_http_url(url):
            logger.warning(
                "Sandbox Valify session #%s: VALIFY_WEBHOOK_URL is neither an absolute http(s) URL nor a path "
                "starting with '/', no webhook sent",
                session.pk,
            )
            return None
        return url

    @staticmethod
    def _flow_url(request: HttpRequest, session: SandboxValifySession) -> str:
        return f"{request.path}?{urlencode({'token': str(session.token)})}"

    def _leave(self, request: HttpRequest, session: SandboxValifySession) -> HttpResponse:
        if session.return_url:
            return HttpResponseSeeOther(session.return_url)
        with translation.override(session.lang or "en"):
            return render(request, "verification_link/sandbox/closed.html", {"session": session})

    def _invalid(self, request: HttpRequest, *, found: bool) -> HttpResponse:
        # 410 for a spent or expired link, 404 for one that never existed.
        return render(request, "verification_link/sandbox/invalid.html", status=410 if found else 404)

    def _render_stage(self, request: HttpRequest, session: SandboxValifySession, *, error: Any = "") -> HttpResponse:
        """The page of the session's stage, in the language its link was made for (``lang``), as
        Valify's hosted flow speaks the ``lang`` of the create whatever the browser says."""
        stage = _stage(session)
        context: dict[str, Any] = {
            "session": session,
            "stage": stage,
            "form_action": self._flow_url(request, session),
            "steps": [{"stage": name, "label": label} for name, label, _description in STEPS],
            "error": error,
        }
        if stage == OUTCOME_STAGE:
            context["outcomes"] = outcomes.outcome_choices()
            context["custom_policy"] = custom_decision_policy()
            template = "outcome.html"
        else:
            _name, label, description = STEPS[session.step]
            context.update(
                step_number=session.step + 1,
                step_count=len(STEPS),
                step_label=label,
                step_description=description,
            )
            template = "step.html"
        with translation.override(session.lang or "en"):
            return render(request, f"{TEMPLATE_DIR}/{template}", context)
