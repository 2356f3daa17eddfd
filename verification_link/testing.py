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
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import factory
import responses
from django.contrib.auth import get_user_model
from django.utils import timezone

from .models import VerificationEvent, VerificationSession

if TYPE_CHECKING:
    from email.message import Message

__all__ = [
    "FakeOoto",
    "OotoEmulator",
    "OotoServer",
    "UserFactory",
    "VerificationEventFactory",
    "VerificationSessionFactory",
    "ooto_result",
    "site_over_requests",
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


class OotoEmulator:
    """OOTO-AI's Verification Link API as plain state and request handling, transport-agnostic.

    ``FakeOoto`` serves it through ``responses`` (in-process); ``OotoServer`` through a real HTTP
    server on loopback (for other processes: a Celery worker, a benchmark). It checks the
    ``APP-ID``/``APP-KEY`` headers like the real service (401 when they differ from
    ``app_id``/``app_key``; ``None`` accepts any), validates the create body, and keeps per-token
    state that ``advance()`` moves. ``fail_next(status, body)`` queues error answers;
    ``requests`` lists every call as ``(method, path, headers, json)``; ``latency`` (seconds) delays
    every answer, to make races, timeouts and throughput figures realistic.
    """

    create_path = "/api/v1.0/flow/sessions"

    def __init__(
        self,
        base_url: str = "https://cloud.ooto-ai.com",
        *,
        app_id: str | None = None,
        app_key: str | None = None,
        latency: float = 0.0,
        record: bool = True,
        default_status: str | None = None,
        default_result: Mapping[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.app_key = app_key
        self.latency = latency
        self.record = record
        # For load tests: Get Status of a token never created here answers this status (not 404).
        self.default_status = default_status
        self.default_result = dict(default_result or {})  # and this result (a benchmark's finishing answer)
        self.sessions: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self._failures: list[tuple[int | Exception, Any]] = []
        self._lock = threading.Lock()

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
        """FAILED with a result in which every requested scope failed."""
        scopes = self.sessions[self._token(session)]["scopes"]
        return self.advance(session, Status.FAILED, result=ooto_result(scopes, fine=False))

    def fail_next(self, status: int | Exception = 500, body: Any = None) -> None:
        """Answer the next call with this HTTP status and body (or raise this exception)."""
        with self._lock:
            self._failures.append((status, body))

    def status_body(self, session: VerificationSession | str) -> dict[str, Any]:
        """The JSON Get Status answers now (also the body of OOTO's callback)."""
        with self._lock:
            state = self.sessions[self._token(session)]
            return {key: state[key] for key in self.status_keys}

    def calls(self, method: str | None = None) -> list[tuple[str, str, dict[str, str], Any]]:
        """The calls received, ``(method, path, headers, json)`` each; only ``method``'s when given."""
        return [call for call in self.requests if method is None or call[0] == method]

    # -- the API --------------------------------------------------------------------------------

    status_keys = ("status", "scopes", "nextStep", "expiresAt", "uiHints", "returnUrl", "result")

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | Message[str, str],
        body: bytes | str | None,
    ) -> tuple[int, str]:
        """Answer one request: ``(HTTP status, JSON text)``. ``path`` is relative to ``base_url``.
        ``headers`` may be the HTTP server's own (case-insensitive) header message."""
        if self.latency:
            time.sleep(self.latency)
        payload: Any = None
        if body:
            raw = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
            try:
                payload = json.loads(raw)
            except (ValueError, RecursionError):
                payload = raw
        if self.record:
            with self._lock:
                self.requests.append((method, path, dict(headers), payload))
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            status, failure_body = failure
            if isinstance(status, Exception):
                raise status
            if isinstance(failure_body, str):
                return status, failure_body
            return status, json.dumps(failure_body if failure_body is not None else self._error(status, "failure"))
        if (self.app_id is not None and headers.get("APP-ID") != self.app_id) or (
            self.app_key is not None and headers.get("APP-KEY") != self.app_key
        ):
            return 401, json.dumps(self._error(401, "unauthorized"))
        if method == "POST" and path == self.create_path:
            return self._create(payload)
        prefix = self.create_path + "/"
        if method == "GET" and path.startswith(prefix) and "/" not in path[len(prefix) :]:
            return self._status(path[len(prefix) :])
        return 404, json.dumps(self._error(404, "not found"))

    def _error(self, code: int, info: str) -> dict:
        return {"transactionId": str(uuid.uuid4()), "result": {"status": "error", "code": code, "info": info}}

    def _create(self, body: Any) -> tuple[int, str]:
        scopes = body.get("scopes") if isinstance(body, dict) else None
        allowed = {"liveness", "deepfake", "search", "enroll"}
        if not isinstance(scopes, list) or not scopes or not set(scopes) <= allowed:
            return 400, json.dumps(self._error(400, "invalid scopes"))
        token = uuid.uuid4().hex + uuid.uuid4().hex
        ttl = body.get("ttlSec") or 86400
        state = {
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
        with self._lock:
            self.sessions[token] = state
        answer = {"sessionId": state["sessionId"], "token": token, "url": f"{self.base_url}/flow/{token}"}
        return 200, json.dumps(answer)

    def _status(self, token: str) -> tuple[int, str]:
        with self._lock:
            state = self.sessions.get(token)
            answer = None if state is None else {key: state[key] for key in self.status_keys}
        if answer is None and self.default_status:
            answer = {
                "status": self.default_status,
                "scopes": ["liveness"],
                "nextStep": None,
                "expiresAt": None,
                "uiHints": {},
                "returnUrl": None,
                "result": self.default_result,
            }
        if answer is None:
            return 404, json.dumps(self._error(404, "session not found"))
        return 200, json.dumps(answer)


class FakeOoto(OotoEmulator):
    """``OotoEmulator`` at the HTTP layer of ``requests``, through ``responses`` (no network).

    Use as a context manager (it starts its own ``responses`` mock) or pass ``mock=`` to share one.
    """

    def __init__(
        self,
        base_url: str = "https://cloud.ooto-ai.com",
        *,
        app_id: str | None = None,
        app_key: str | None = None,
        mock: responses.RequestsMock | None = None,
        latency: float = 0.0,
    ) -> None:
        super().__init__(base_url, app_id=app_id, app_key=app_key, latency=latency)
        self._own_mock = mock is None
        self.mock = mock or responses.RequestsMock(assert_all_requests_are_fired=False)
        api = re.compile(re.escape(self.base_url + self.create_path) + r"(/[^/?#]+)?$")
        for method in (responses.POST, responses.GET):
            self.mock.add_callback(method, api, callback=self._respond)

    def _respond(self, request: Any) -> tuple[int, dict, str]:
        status, text = self.handle(request.method, request.url[len(self.base_url) :], request.headers, request.body)
        return status, {"Content-Type": "application/json"}, text

    def __enter__(self) -> FakeOoto:
        if self._own_mock:
            self.mock.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._own_mock:
            self.mock.stop()
            self.mock.reset()


@contextmanager
def site_over_requests(origin: str = "http://testserver") -> Iterator[responses.RequestsMock]:
    """Every ``requests`` call to ``origin`` answered by this Django site, in-process, through its
    test client: a provider client pointed at the sandbox (``<origin>/sandbox/<name>``) and the
    emulator's webhooks back to the site, with no server thread (a live server and SQLite's
    in-memory test database do not mix). Yields the ``responses`` mock: ``.calls`` lists what
    crossed it; register other URLs on it as usual."""
    from django.test import Client

    site = Client()

    def answer(request: Any) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(request.url)
        body = request.body or b""
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "content-type")
        }
        response = site.generic(
            request.method,
            parts.path + (f"?{parts.query}" if parts.query else ""),
            body.encode() if isinstance(body, str) else body,
            content_type=request.headers.get("Content-Type", ""),
            headers=headers,
        )
        return response.status_code, dict(response.items()), response.content

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            mock.add_callback(method, re.compile(re.escape(origin) + r"/.*"), callback=answer)
        yield mock


class OotoServer(OotoEmulator):
    """``OotoEmulator`` served over real HTTP on ``127.0.0.1`` (a free port), in a background thread.

    For code in other processes (a Celery worker, a management command, a benchmark): point an OOTO
    alias's ``BASE_URL`` at ``server.base_url``. ``fail_next(exception)`` drops the connection.
    """

    def __init__(
        self,
        *,
        app_id: str | None = None,
        app_key: str | None = None,
        latency: float = 0.0,
        record: bool = True,
        default_status: str | None = None,
        default_result: Mapping[str, Any] | None = None,
        port: int = 0,
    ) -> None:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every answer on a kept-alive connection.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    status, text = emulator.handle(self.command, self.path, self.headers, body)
                except Exception:  # a queued exception: the connection just drops, like a network fault
                    self.close_connection = True
                    return
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet: no tokens in test output
                pass

        host = "127.0.0.1"
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        port = self.httpd.server_address[1]  # the one the OS chose when asked for 0
        super().__init__(
            f"http://{host}:{port}",
            app_id=app_id,
            app_key=app_key,
            latency=latency,
            record=record,
            default_status=default_status,
            default_result=default_result,
        )
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="ooto-server", daemon=True)

    def __enter__(self) -> OotoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- factories --------------------------------------------------------------------------------------


class UserFactory(factory.django.DjangoModelFactory):
    """A user of ``AUTH_USER_MODEL``, ``user<n>`` with an e-mail address (get-or-create by username)."""

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
    """An event of a session (a new ``VerificationSessionFactory`` one unless given): a poll by default."""

    class Meta:
        model = VerificationEvent

    session = factory.SubFactory(VerificationSessionFactory)
    provider = factory.SelfAttribute("session.provider")
    kind = VerificationEvent.Kind.POLL
    source = VerificationEvent.Source.POLL
