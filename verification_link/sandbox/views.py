"""Views of the OOTO emulator: the Verification Link API and the hosted flow page.

Mounted under ``<sandbox>/ooto/``, so with ``path("sandbox/", include(...))`` the base URL a
client uses is ``<origin>/sandbox/ooto``.

API (JSON, CSRF-exempt, headers ``APP-ID`` / ``APP-KEY`` on every call):

``POST <base>/api/v1.0/flow/sessions``
    Body ``{"scopes": [...], "metadata"?: {}, "callbackUrl"?: str, "returnUrl"?: str,
    "ttlSec"?: int}``. 200 ``{"sessionId", "token", "url"}``.
``GET <base>/api/v1.0/flow/sessions/<token>``
    200 ``{"status", "scopes", "nextStep", "expiresAt", "uiHints", "returnUrl", "result"}``.

Errors use the shape of OOTO's other Face APIs, ``{"transactionId": "<uuid>", "result":
{"status": "error", "code": <HTTP status>, "info": "<text>"}}``, with HTTP 400 (bad input),
401 (missing or wrong credentials), 404 (unknown token) or 405 (wrong method).

Hosted page ``GET/POST <base>/flow/<token>``: captcha, one page per scope, then an outcome
picker (``outcomes.OUTCOMES``, each with a hint of what the site's default decision policy will
decide). A final or expired session answers 410.
"""

from __future__ import annotations

import datetime
import hmac
import json
import logging
import uuid
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.decorators import method_decorator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from ..dblock import take_write_lock
from ..jsonbody import parse_json
from . import outcomes
from .callbacks import schedule_callback
from .common import HostedPageView, HttpResponseSeeOther, custom_decision_policy, is_http_url
from .conf import sandbox_setting
from .models import MAX_TTL_SECONDS, OOTO_SCOPES, SandboxSession

logger = logging.getLogger(__name__)

Status = SandboxSession.Status

SCOPE_LABELS = {
    "liveness": _("Liveness check"),
    "deepfake": _("Deepfake check"),
    "search": _("Face search"),
    "enroll": _("Face enrollment"),
}

SCOPE_DESCRIPTIONS = {
    "liveness": _("A real flow would now use the camera to check that a live person is present."),
    "deepfake": _("A real flow would now check that the face is not a deepfake or a replay."),
    "search": _("A real flow would now search the face among the enrolled faces."),
    "enroll": _("A real flow would now enroll the face for later searches."),
}

TEMPLATE_DIR = "verification_link/sandbox/ooto"


class InvalidCreateBody(Exception):
    """Invalid create input; the message is the ``info`` of the 400 answer."""


def error_response(status: int, info: str) -> JsonResponse:
    """An error in the shape OOTO's Face APIs use, with ``code`` equal to the HTTP status."""
    body = {
        "transactionId": str(uuid.uuid4()),
        "result": {"status": "error", "code": status, "info": info},
    }
    return JsonResponse(body, status=status)


def _authorized(request: HttpRequest) -> bool:
    expected_id = str(sandbox_setting("OOTO_APP_ID") or "")
    expected_key = str(sandbox_setting("OOTO_APP_KEY") or "")
    if not expected_id or not expected_key:
        # An emptied setting must not let requests without headers in.
        return False
    app_id = request.headers.get("APP-ID", "")
    app_key = request.headers.get("APP-KEY", "")
    # Both compared in full (no short-circuit) and in constant time.
    id_ok = hmac.compare_digest(app_id.encode(), expected_id.encode())
    key_ok = hmac.compare_digest(app_key.encode(), expected_key.encode())
    return id_ok and key_ok


@method_decorator(csrf_exempt, name="dispatch")
class OotoApiView(View):
    """Common ground of the API views: JSON 405, credentials, no caching."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response: HttpResponseBase
        if request.method is None or request.method.lower() not in self.http_method_names:
            response = self.http_method_not_allowed(request, *args, **kwargs)
        elif not _authorized(request):
            response = error_response(401, "unauthorized")
        else:
            response = super().dispatch(request, *args, **kwargs)
        # Answers carry bearer tokens and personal data.
        patch_cache_control(response, no_store=True)
        return response

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = error_response(405, "method not allowed")
        response["Allow"] = ", ".join(method.upper() for method in self.http_method_names)
        return response


def _optional_url(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None or value == "":
        return ""
    if not is_http_url(value):
        raise InvalidCreateBody(f"{key} must be an absolute http(s) URL")
    return value


def parse_create_body(raw: bytes) -> dict[str, Any]:
    """Validate a Create body; return the session fields or raise ``InvalidCreateBody``."""
    try:
        body = parse_json(raw)
    except ValueError:
        raise InvalidCreateBody("body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidCreateBody("body must be a JSON object")

    scopes = body.get("scopes")
    if not isinstance(scopes, list) or not scopes:
        raise InvalidCreateBody("scopes must be a non-empty list")
    for scope in scopes:
        if not isinstance(scope, str) or scope not in OOTO_SCOPES:
            raise InvalidCreateBody(f"scopes may only contain {', '.join(OOTO_SCOPES)}")

    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise InvalidCreateBody("metadata must be an object")
    elif "\\u0000" in json.dumps(metadata):
        # PostgreSQL's jsonb cannot store NUL characters.
        raise InvalidCreateBody("metadata must not contain NUL characters")

    ttl = body.get("ttlSec")
    if ttl is None:
        ttl = MAX_TTL_SECONDS
    # bool is an int subclass in Python; true is no lifetime.
    elif isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_SECONDS:
        raise InvalidCreateBody(f"ttlSec must be an integer from 1 to {MAX_TTL_SECONDS}")

    return {
        # Duplicates collapse: each scope is one step.
        "scopes": list(dict.fromkeys(scopes)),
        "metadata": metadata,
        "callback_url": _optional_url(body, "callbackUrl"),
        "return_url": _optional_url(body, "returnUrl"),
        "ttl": ttl,
    }


class OotoCreateSessionView(OotoApiView):
    """``POST <base>/api/v1.0/flow/sessions`` — create a flow session."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            fields = parse_create_body(request.body)
        except RequestDataTooBig:
            return error_response(400, "body too large")
        except InvalidCreateBody as exc:
            return error_response(400, str(exc))
        ttl = fields.pop("ttl")
        session = SandboxSession.objects.create(expires_at=timezone.now() + datetime.timedelta(seconds=ttl), **fields)
        # The full namespace of this match, so the sandbox may be included under another one.
        namespace = request.resolver_match.namespace if request.resolver_match else ""
        path = reverse(f"{namespace or 'verification_link_sandbox'}:ooto_flow", args=[session.token])
        logger.info("Sandbox OOTO session %s created (scopes %s)", session.session_id, session.scopes)
        return JsonResponse(
            {"sessionId": str(session.session_id), "token": session.token, "url": request.build_absolute_uri(path)}
        )


class OotoSessionStatusView(OotoApiView):
    """``GET <base>/api/v1.0/flow/sessions/<token>`` — the session's status and result."""

    http_method_names = ["get"]

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        session = SandboxSession.objects.filter(token=token).first()
        if session is None:
            return error_response(404, "session not found")
        return JsonResponse(session.status_payload())


def _stage(session: SandboxSession) -> str:
    """Which page of the hosted flow an open session is on."""
    if session.status == Status.CREATED:
        return "captcha"
    if session.status == Status.CAPTCHA_OK:
        return "start"
    if session.step_index < len(session.scopes):
        return f"scope-{session.step_index}"
    return "outcome"


@method_decorator(csrf_protect, name="dispatch")
class OotoFlowView(HostedPageView):
    """``GET/POST <base>/flow/<token>`` — the hosted flow, one page per stage.

    Each form posts the stage it was rendered for (``step``); a POST for another stage (back
    button, double submit) changes nothing and sends the browser to the current page. Final
    outcomes post the callback once the change is committed, then redirect (303) to the
    session's ``returnUrl``, or show a closing page when there is none. Unknown tokens answer
    404, final or expired sessions 410.
    """

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        session = SandboxSession.objects.filter(token=token).first()
        if session is None or not session.is_open():
            return self._invalid(request, found=session is not None)
        return self._render_stage(request, session)

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        with transaction.atomic():
            take_write_lock(SandboxSession)  # SQLite: the lock first, or a racing write fails
            # The row lock makes concurrent submits of one page yield one transition.
            session = SandboxSession.objects.select_for_update().filter(token=token).first()
            if session is None or not session.is_open():
                return self._invalid(request, found=session is not None)
            stage = _stage(session)
            if request.POST.get("step") != stage:
                return HttpResponseSeeOther(request.path)
            if stage == "captcha":
                return self._post_captcha(request, session)
            if stage == "start":
                session.status = Status.IN_PROGRESS
                session.step_index = 0
                session.save(update_fields=["status", "step_index"])
                return HttpResponseSeeOther(request.path)
            if stage.startswith("scope-"):
                session.step_index += 1
                session.save(update_fields=["step_index"])
                return HttpResponseSeeOther(request.path)
            return self._post_outcome(request, session)

    def _post_captcha(self, request: HttpRequest, session: SandboxSession) -> HttpResponse:
        if not request.POST.get("not_a_robot"):
            error = gettext("Tick the box to confirm you are not a robot.")
            return self._render_stage(request, session, error=error)
        session.status = Status.CAPTCHA_OK
        session.save(update_fields=["status"])
        return HttpResponseSeeOther(request.path)

    def _post_outcome(self, request: HttpRequest, session: SandboxSession) -> HttpResponse:
        choice = request.POST.get("outcome", "")
        if choice not in dict(outcomes.available_outcomes(session.scopes)):
            return self._render_stage(request, session, error=gettext("Choose one of the outcomes."))
        if choice == outcomes.ABANDON:
            # Nothing final: the session stays as it is until it expires, and no callback.
            logger.info("Sandbox OOTO session %s abandoned", session.session_id)
            return self._leave(request, session)
        now = timezone.now()
        if choice == outcomes.CANCEL:
            session.status = Status.CANCELED
            session.result = {}
        elif choice == outcomes.EXPIRE_NOW:
            # As if the link's time ran out now: reported EXPIRED, stored so, and the callback says so.
            session.status = Status.EXPIRED
            session.result = {}
            session.expires_at = min(session.expires_at, now)
        else:
            failed = choice in (outcomes.LIVENESS_FAILS, outcomes.DEEPFAKE_DETECTED)
            session.status = Status.FAILED if failed else Status.DONE
            session.result = outcomes.build_result(choice, session.scopes, seed=session.session_id.int)
        session.finished_at = now
        session.save(update_fields=["status", "result", "expires_at", "finished_at"])
        logger.info("Sandbox OOTO session %s finished: %s", session.session_id, session.status)
        if session.callback_url:
            schedule_callback(session.callback_url, session.status_payload(), session_id=str(session.session_id))
        return self._leave(request, session)

    def _leave(self, request: HttpRequest, session: SandboxSession) -> HttpResponse:
        if session.return_url:
            return HttpResponseSeeOther(session.return_url)
        return render(request, "verification_link/sandbox/closed.html", {"session": session})

    def _invalid(self, request: HttpRequest, *, found: bool) -> HttpResponse:
        # 410 for a spent one-time link, 404 for one that never existed.
        return render(request, "verification_link/sandbox/invalid.html", status=410 if found else 404)

    def _render_stage(self, request: HttpRequest, session: SandboxSession, *, error: str = "") -> HttpResponse:
        stage = _stage(session)
        steps = [{"scope": scope, "label": SCOPE_LABELS[scope]} for scope in session.scopes]
        context: dict[str, Any] = {"session": session, "stage": stage, "steps": steps, "error": error}
        if stage.startswith("scope-"):
            scope = session.scopes[session.step_index]
            context.update(
                step_number=session.step_index + 1,
                step_count=len(steps),
                step_label=SCOPE_LABELS[scope],
                step_description=SCOPE_DESCRIPTIONS[scope],
            )
            template = "step.html"
        else:
            if stage == "outcome":
                context["outcomes"] = outcomes.outcome_choices(session.scopes)
                context["custom_policy"] = custom_decision_policy()
            template = f"{stage}.html"
        return render(request, f"{TEMPLATE_DIR}/{template}", context)
