"""OOTO-AI Verification Link.

Wire contract (see PROVIDERS.md):

- ``POST {BASE_URL}/api/v1.0/flow/sessions`` with headers ``APP-ID``/``APP-KEY`` and JSON
  ``{scopes, metadata, callbackUrl, returnUrl, ttlSec}`` → ``{sessionId, token, url}``.
- ``GET {BASE_URL}/api/v1.0/flow/sessions/<token>`` → ``{status, scopes, nextStep, expiresAt,
  uiHints, returnUrl, result}``. Looked up by *token*, so both handles are stored.
- The completion callback is unsigned and carries no id: it is only a hint to call Get Status.
- No cancel endpoint: a cancel is local.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from ..jsonbody import InvalidJSON, storable
from ..models import VerificationSession
from ..settings_table import credential
from .base import BaseProvider, CreatedSession, CreateRequest, StatusReport

Status = VerificationSession.Status
NextStep = VerificationSession.NextStep


class OotoProvider(BaseProvider):
    display_name = "OOTO-AI"
    pollable = True
    supported_scopes = ("liveness", "deepfake", "search", "enroll")
    default_scopes = ("liveness",)
    required_settings = ("APP_ID", "APP_KEY")
    secret_settings = ("APP_KEY",)
    config_keys = {
        "APP_ID": credential("The application id of the OOTO account (APP-ID header).", secret=False),
        "APP_KEY": credential("The application key of the OOTO account (APP-KEY header)."),
    }
    default_base_url = "https://cloud.ooto-ai.com"
    max_ttl = 86400
    # OOTO's status values are ours one to one: the map exists to refuse anything else.
    status_map = {value: value for value in Status.values}
    next_step_map = {value: value for value in NextStep.values}

    create_path = "/api/v1.0/flow/sessions"
    status_path = "/api/v1.0/flow/sessions/{token}"

    def auth_headers(self) -> dict[str, str]:
        return {"APP-ID": str(self.setting("APP_ID", "")), "APP-KEY": str(self.setting("APP_KEY", ""))}

    def error_code(self, body: Any) -> str | int | None:
        # OOTO's Face APIs answer {"transactionId": …, "result": {"status": "error", "code": N, "info": …}}.
        if isinstance(body, Mapping):
            result = body.get("result")
            if isinstance(result, Mapping) and isinstance(result.get("code"), (int, str)):
                return result["code"]
            if isinstance(body.get("code"), (int, str)):
                return body["code"]
        return None

    def create_session(self, request: CreateRequest) -> CreatedSession:
        operation = "create session"
        body = self.call(
            "POST",
            self.create_path,
            operation=operation,
            json={
                "scopes": list(request.scopes),
                "metadata": request.metadata,
                "callbackUrl": request.callback_url,
                "returnUrl": request.return_url,
                "ttlSec": request.ttl,
            },
        )
        if not isinstance(body, Mapping):
            raise self.malformed(operation, "not an object")
        token, url, session_id = body.get("token"), body.get("url"), body.get("sessionId")
        if not isinstance(token, str) or not token:
            raise self.malformed(operation, "no token")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise self.malformed(operation, "no url")
        if session_id is not None and not isinstance(session_id, str):
            raise self.malformed(operation, "sessionId is not a string")
        return CreatedSession(url=url, token=token, external_id=session_id or "")

    def get_status(self, session: VerificationSession, *, timeout: float | None = None) -> StatusReport:
        operation = "get status"
        body = self.call(
            "GET",
            self.status_path.format(token=quote(session.token, safe="")),
            operation=operation,
            timeout=timeout,
        )
        return self.parse_status(body, operation=operation)

    def parse_status(self, body: Any, *, operation: str = "status") -> StatusReport:
        """Map a Get Status answer (also the shape of the callback body) to a ``StatusReport``."""
        if not isinstance(body, Mapping):
            raise self.malformed(operation, "not an object")
        status = self.status_map.get(body.get("status"))  # type: ignore[arg-type]
        if status is None:
            raise self.malformed(operation, "unknown status")
        raw_step = body.get("nextStep")
        next_step = "" if raw_step in (None, "") else self.next_step_map.get(raw_step)
        if next_step is None:
            raise self.malformed(operation, "unknown nextStep")
        result = body.get("result")
        if result is None:
            result = {}
        if not isinstance(result, Mapping):
            raise self.malformed(operation, "result is not an object")
        try:
            result = storable(dict(result))
        except InvalidJSON:
            raise self.malformed(operation, "result cannot be stored") from None
        return StatusReport(
            status=status,
            next_step=next_step,
            expires_at=self.parse_timestamp(body.get("expiresAt"), operation, "expiresAt"),
            result=result,
        )

    def scope_outcomes(self, scopes: Iterable[str], result: Mapping[str, Any]) -> dict[str, bool | None]:
        """``fine`` decides liveness/deepfake (never the score: for some checks high is bad);
        search and enroll pass when the provider returned a template id."""
        outcomes: dict[str, bool | None] = {}
        for scope in scopes:
            part = result.get(scope)
            if not isinstance(part, Mapping):
                outcomes[scope] = None
            elif scope in ("search", "enroll"):
                outcomes[scope] = bool(part.get("templateId")) or None
            else:
                fine = part.get("fine")
                outcomes[scope] = fine if isinstance(fine, bool) else None
        return outcomes
