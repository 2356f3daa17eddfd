"""Helpers for testing code that uses django-verification-link (needs the ``test`` extra).

``FakeOoto`` fakes OOTO-AI at the HTTP layer with ``responses``: the real ``OotoProvider`` runs
unchanged against it, so your tests exercise the same code as production::

    from verification_link.testing import FakeOoto

    def test_user_marked_verified(settings, django_user_model):
        user = django_user_model.objects.create(username="ann")
        with FakeOoto() as ooto:
            session = start_verification(user=user, scopes=["liveness"])
            ooto.complete(session)                 # DONE, every scope fine
            refresh_session(session)               # the app asks, the fake answers
        user.refresh_from_db()
        assert user.profile.verified

Factories (factory-boy): ``UserFactory``, ``VerificationSessionFactory``, ``VerificationEventFactory``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import factory
import responses
from django.contrib.auth import get_user_model
from django.utils import timezone

from .models import VerificationEvent, VerificationSession

__all__ = [
    "FakeOoto",
    "UserFactory",
    "VerificationEventFactory",
    "VerificationSessionFactory",
    "ooto_result",
]

Status = VerificationSession.Status


def ooto_result(scopes: Iterable[str], *, fine: bool | Mapping[str, bool] = True, sensitive: bool = True) -> dict:
    """A result shaped like OOTO's documented example for ``scopes``.

    ``fine`` is True/False for every scope, or a dict per scope (``{"liveness": False}``).
    """

    def is_fine(scope: str) -> bool:
        return fine.get(scope, True) if isinstance(fine, Mapping) else bool(fine)

    result: dict[str, Any] = {}
    for scope in scopes:
        if scope in ("liveness", "deepfake"):
            result[scope] = {"fine": is_fine(scope), "score": 0.96 if is_fine(scope) else 0.21}
        elif scope == "search":
            result[scope] = {"similarity": 0.8926, "templateId": str(uuid.uuid4())}
        elif scope == "enroll":
            result[scope] = {"templateId": str(uuid.uuid4())}
    result["quality"] = {"yaw": 2.15, "pitch": -1.2, "roll": 0.4, "blur": {"fine": True, "score": 0.00024}}
    if sensitive:
        result["box"] = {"h": 451, "w": 351, "x": 182, "y": 420}
        result["landmarks"] = [[288, 604], [435, 604]]
        result["demography"] = {"age": 31, "race": "white", "gender": "male"}
    return result


def _iso(value: datetime) -> str:
    return value.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class FakeOoto:
    """A fake OOTO-AI Verification Link API at the HTTP layer.

    Use as a context manager (it starts its own ``responses`` mock) or pass ``mock=`` to share one.
    It checks the ``APP-ID``/``APP-KEY`` headers like the real service (401 when they differ from
    ``app_id``/``app_key``; ``None`` accepts any), validates the create body, and keeps per-token
    state that ``advance()`` moves. ``fail_next(status, body)`` queues error answers;
    ``requests`` lists every call received as ``(method, path, headers, json)``; ``latency`` (seconds)
    delays every answer, to make races and timeouts realistic.
    """

    create_path = "/api/v1.0/flow/sessions"

    def __init__(
        self,
        base_url: str = "https://cloud.ooto-ai.com",
        *,
        app_id: str | None = None,
        app_key: str | None = None,
        mock: responses.RequestsMock | None = None,
        latency: float = 0.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.app_key = app_key
        self._own_mock = mock is None
        self.mock = mock or responses.RequestsMock(assert_all_requests_are_fired=False)
        self.sessions: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self._failures: list[tuple[int | Exception, Any]] = []
        self._lock = threading.Lock()
        self.latency = latency
        self.mock.add_callback(responses.POST, self.base_url + self.create_path, callback=self._create)
        self.mock.add_callback(
            responses.GET, re.compile(re.escape(self.base_url + self.create_path) + r"/[^/?#]+$"), callback=self._status
        )

    def __enter__(self) -> FakeOoto:
        if self._own_mock:
            self.mock.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._own_mock:
            self.mock.stop()
            self.mock.reset()

    # -- driving the fake ---------------------------------------------------------------------

    def _token(self, session: VerificationSession | str) -> str:
        return session.token if isinstance(session, VerificationSession) else session

    def advance(
        self,
        session: VerificationSession | str,
        status: str,
        *,
        next_step: str | None = None,
        result: Mapping[str, Any] | None = None,
        expires_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Set what Get Status answers for this session (by instance or token)."""
        with self._lock:
            state = self.sessions[self._token(session)]
            state["status"] = str(status)
            state["nextStep"] = next_step
            if result is not None:
                state["result"] = dict(result)
            if expires_at is not None:
                state["expiresAt"] = _iso(expires_at)
            return dict(state)

    def complete(self, session: VerificationSession | str, *, fine: bool | Mapping[str, bool] = True) -> dict:
        """DONE with a result for every requested scope (``fine`` as in ``ooto_result``)."""
        scopes = self.sessions[self._token(session)]["scopes"]
        return self.advance(session, Status.DONE, result=ooto_result(scopes, fine=fine))

    def fail(self, session: VerificationSession | str) -> dict:
        scopes = self.sessions[self._token(session)]["scopes"]
        return self.advance(session, Status.FAILED, result=ooto_result(scopes, fine=False))

    def fail_next(self, status: int | Exception = 500, body: Any = None) -> None:
        """Answer the next call with this HTTP status and body (or raise this exception)."""
        with self._lock:
            self._failures.append((status, body))

    def status_body(self, session: VerificationSession | str) -> dict[str, Any]:
        """The JSON Get Status would answer now (also the body of OOTO's callback)."""
        return dict(self.sessions[self._token(session)])

    def calls(self, method: str | None = None) -> list[tuple[str, str, dict[str, str], Any]]:
        return [call for call in self.requests if method is None or call[0] == method]

    # -- the fake endpoints ---------------------------------------------------------------------

    def _record(self, request: Any) -> Any:
        if self.latency:
            time.sleep(self.latency)
        body = None
        if request.body:
            raw = request.body.decode() if isinstance(request.body, bytes) else request.body
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        path = request.url[len(self.base_url) :]
        with self._lock:
            self.requests.append((request.method, path, dict(request.headers), body))
        return body

    def _pending_failure(self) -> tuple[int, dict, str] | None:
        with self._lock:
            if not self._failures:
                return None
            status, body = self._failures.pop(0)
        if isinstance(status, Exception):
            raise status
        text = (
            body
            if isinstance(body, str)
            else json.dumps(body if body is not None else self._error(status, "fake failure"))
        )
        return status, {"Content-Type": "application/json"}, text

    def _error(self, code: int, info: str) -> dict:
        return {"transactionId": str(uuid.uuid4()), "result": {"status": "error", "code": code, "info": info}}

    def _unauthorized(self, request: Any) -> tuple[int, dict, str] | None:
        headers = request.headers
        if (self.app_id is not None and headers.get("APP-ID") != self.app_id) or (
            self.app_key is not None and headers.get("APP-KEY") != self.app_key
        ):
            return 401, {"Content-Type": "application/json"}, json.dumps(self._error(401, "unauthorized"))
        return None

    def _create(self, request: Any) -> tuple[int, dict, str]:
        body = self._record(request)
        failure = self._pending_failure() or self._unauthorized(request)
        if failure:
            return failure
        scopes = body.get("scopes") if isinstance(body, dict) else None
        allowed = {"liveness", "deepfake", "search", "enroll"}
        if not isinstance(scopes, list) or not scopes or not set(scopes) <= allowed:
            return 400, {"Content-Type": "application/json"}, json.dumps(self._error(400, "invalid scopes"))
        token = uuid.uuid4().hex + uuid.uuid4().hex
        ttl = body.get("ttlSec") or 86400
        with self._lock:
            self.sessions[token] = {
                "sessionId": str(uuid.uuid4()),
                "status": Status.CREATED.value,
                "scopes": scopes,
                "nextStep": "LIVENESS" if "liveness" in scopes else scopes[0].upper(),
                "expiresAt": _iso(timezone.now() + timedelta(seconds=int(ttl))),
                "uiHints": {"needCaptcha": True},
                "returnUrl": body.get("returnUrl"),
                "callbackUrl": body.get("callbackUrl"),
                "metadata": body.get("metadata") or {},
                "result": {},
            }
            session_id = self.sessions[token]["sessionId"]
        answer = {"sessionId": session_id, "token": token, "url": f"{self.base_url}/flow/{token}"}
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)

    def _status(self, request: Any) -> tuple[int, dict, str]:
        self._record(request)
        failure = self._pending_failure() or self._unauthorized(request)
        if failure:
            return failure
        token = request.url.rsplit("/", 1)[-1]
        with self._lock:
            state = self.sessions.get(token)
            answer = (
                None
                if state is None
                else {
                    key: state[key]
                    for key in ("status", "scopes", "nextStep", "expiresAt", "uiHints", "returnUrl", "result")
                }
            )
        if answer is None:
            return 404, {"Content-Type": "application/json"}, json.dumps(self._error(404, "session not found"))
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)


# -- factories --------------------------------------------------------------------------------------


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")


class VerificationSessionFactory(factory.django.DjangoModelFactory):
    """An open OOTO-style session as ``start_verification`` leaves it (no provider call).

    Traits: ``done=True`` (DONE, passing result, approved), ``failed=True``, ``overdue=True``.
    """

    class Meta:
        model = VerificationSession

    user = factory.SubFactory(UserFactory)
    provider = "ooto"
    external_id = factory.Faker("uuid4")
    token = factory.LazyFunction(lambda: uuid.uuid4().hex)
    url = factory.LazyAttribute(lambda s: f"https://cloud.ooto-ai.com/flow/{s.token}")
    scopes = factory.LazyFunction(lambda: ["liveness", "deepfake"])
    status = Status.CREATED
    next_step = "LIVENESS"
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=1))
    next_poll_at = factory.LazyFunction(timezone.now)

    class Params:
        done = factory.Trait(
            status=Status.DONE,
            next_step="",
            url="",
            next_poll_at=None,
            result=factory.LazyAttribute(lambda s: ooto_result(s.scopes)),
            finished_at=factory.LazyFunction(timezone.now),
            decision=VerificationSession.Decision.APPROVED,
        )
        failed = factory.Trait(
            status=Status.FAILED,
            next_step="",
            url="",
            next_poll_at=None,
            result=factory.LazyAttribute(lambda s: ooto_result(s.scopes, fine=False)),
            finished_at=factory.LazyFunction(timezone.now),
            decision=VerificationSession.Decision.REJECTED,
        )
        overdue = factory.Trait(expires_at=factory.LazyFunction(lambda: timezone.now() - timedelta(days=1)))


class VerificationEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VerificationEvent

    session = factory.SubFactory(VerificationSessionFactory)
    provider = factory.SelfAttribute("session.provider")
    kind = VerificationEvent.Kind.POLL
    source = VerificationEvent.Source.POLL
