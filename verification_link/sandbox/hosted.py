"""The shared part of the hosted-provider emulators: one base class, the hosted page with forced
outcomes, and the signed webhook delivery.

Each emulator (``verification_link/sandbox/emulators/<name>.py``) subclasses ``Emulator`` with the
provider's own vocabulary — its ids, its statuses, its webhook body and signature — and serves the
provider's API under ``<origin>/sandbox/<name>/`` (its module's ``urlpatterns``). This module serves
the hosted page every emulator hands out, ``<origin>/sandbox/hosted/<name>/<page secret>/``: the user
(or a browser test) picks an outcome —

- ``pass`` — every check passes; the provider approves;
- ``fail`` — a check fails with a reason; the provider declines;
- ``review`` — the provider asks a person to look;
- ``resubmit`` — the provider asks the user to try again (the session stays open);
- ``abandon`` — the user leaves; the provider marks the session abandoned (where it has that status);
- ``expire`` — the provider lets the session expire;

— and the emulator moves its session to the provider's status for it and posts the provider's
webhook, signed the way the provider signs it, to ``WEBHOOK_URLS[<name>]`` (default: this site's
``webhook/sandbox_<name>/``), once the change is committed, in a daemon thread (inline with
``CALLBACK_SYNC``).
"""

from __future__ import annotations

import datetime
import functools
import logging
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .callbacks import post_once, run_detached
from .common import HostedPageView as SecretPageView
from .common import HttpResponseSeeOther, is_http_url
from .conf import sandbox_setting
from .models import SandboxHostedSession

logger = logging.getLogger("verification_link.sandbox")

PASS, FAIL, REVIEW, RESUBMIT, ABANDON, EXPIRE = "pass", "fail", "review", "resubmit", "abandon", "expire"

#: (value, button label), in the order the page shows them.
OUTCOMES = (
    (PASS, _("Pass every check")),
    (FAIL, _("Fail a check (declined, with a reason)")),
    (REVIEW, _("Needs review")),
    (RESUBMIT, _("Resubmission requested")),
    (ABANDON, _("Abandon")),
    (EXPIRE, _("Let it expire")),
)

#: The emulators by name, filled as their modules are imported (``emulators/__init__.py``).
REGISTRY: dict[str, Emulator] = {}


class Emulator:
    """One emulated provider. Subclasses set the class attributes and implement ``webhook``.

    ``statuses``: outcome → the provider's status value for it (an outcome it lacks is not
    offered); ``reasons``: outcome → the provider's reason code; ``initial_status``: a new
    session's status; ``id_prefix``: of ``external_id`` (``vs_``, ``inq_``).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    id_prefix: ClassVar[str] = ""
    initial_status: ClassVar[str] = ""
    statuses: ClassVar[Mapping[str, str]] = {}
    reasons: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            REGISTRY[cls.name] = cls()

    # -- sessions -----------------------------------------------------------------------------

    def new_id(self) -> str:
        return self.id_prefix + secrets.token_hex(12)

    def create(
        self,
        *,
        request_data: Mapping[str, Any],
        return_url: str = "",
        ttl: int | None = None,
        external_id: str = "",
    ) -> SandboxHostedSession:
        """A new session in ``initial_status``; ``request_data`` is what the create call sent."""
        now = timezone.now()
        return SandboxHostedSession.objects.create(
            emulator=self.name,
            external_id=external_id or self.new_id(),
            status=self.initial_status,
            request=dict(request_data),
            return_url=return_url if is_http_url(return_url) else "",
            created_at=now,
            expires_at=now + datetime.timedelta(seconds=ttl) if ttl else None,
        )

    def find(self, external_id: str, *, lock: bool = False) -> SandboxHostedSession | None:
        rows = SandboxHostedSession.objects.filter(emulator=self.name, external_id=external_id)
        return (rows.select_for_update() if lock else rows).first()

    def hosted_url(self, request: HttpRequest, session: SandboxHostedSession) -> str:
        """The absolute URL of the session's hosted page (a bearer secret)."""
        path = reverse("verification_link_sandbox:hosted", args=[self.name, session.page_secret])
        return request.build_absolute_uri(path)

    def is_final(self, session: SandboxHostedSession) -> bool:
        """Whether the session can no longer change (an outcome other than ``resubmit`` was picked)."""
        return bool(session.outcome) and session.outcome != RESUBMIT

    def offered(self) -> list[tuple[str, Any]]:
        return [(value, label) for value, label in OUTCOMES if value in self.statuses]

    def finish(self, request: HttpRequest, session: SandboxHostedSession, outcome: str) -> None:
        """Move a *locked* session to ``outcome`` and post its webhook after the commit."""
        session.outcome = outcome
        session.status = self.statuses[outcome]
        session.reason = self.reasons.get(outcome, "")
        session.completed_at = timezone.now()
        session.deliveries += 1
        session.save(update_fields=["outcome", "status", "reason", "completed_at", "deliveries"])
        self.schedule_webhook(request, session, event="outcome")

    # -- webhooks -----------------------------------------------------------------------------

    def webhook(self, session: SandboxHostedSession, *, event: str) -> tuple[bytes, dict[str, str]] | None:
        """The provider's webhook for ``session`` now (``event``: ``"outcome"``, or an emulator's
        own, e.g. ``"canceled"``): the body and its signed headers, or ``None`` for no webhook."""
        raise NotImplementedError

    def webhook_url(self, request: HttpRequest | None) -> str:
        configured = (sandbox_setting("WEBHOOK_URLS") or {}).get(self.name)
        if configured is None:
            try:
                configured = reverse("verification_link:webhook", args=[f"sandbox_{self.name}"])
            except NoReverseMatch:
                return ""
        if configured.startswith("/") and request is not None:
            return request.build_absolute_uri(configured)
        return configured if is_http_url(configured) else ""

    def schedule_webhook(self, request: HttpRequest | None, session: SandboxHostedSession, *, event: str) -> None:
        """Post the webhook of ``session`` (as it is now) once the transaction commits."""
        url = self.webhook_url(request)
        if not url:
            logger.info("Sandbox %s session %s: no webhook URL, no webhook sent", self.name, session.external_id)
            return
        signed = self.webhook(session, event=event)
        if signed is None:
            return
        body, headers = signed
        what = f"{self.title} webhook"
        send = functools.partial(post_once, what=what)  # run_detached keeps its own ``what``
        transaction.on_commit(lambda: run_detached(send, url, body, headers, what=what, session_id=session.external_id))


def emulator_named(name: str) -> Emulator:
    emulator = REGISTRY.get(name)
    if emulator is None:
        raise Http404
    return emulator


class EmulatorPageView(SecretPageView):
    """The hosted page of every emulator: the outcome picker, then back to the site."""

    def get(self, request: HttpRequest, name: str, secret: str) -> HttpResponse:
        emulator = emulator_named(name)
        session = SandboxHostedSession.objects.filter(emulator=name, page_secret=secret).first()
        if session is None:
            return self._gone(request, emulator)
        return self._page(request, emulator, session)

    def post(self, request: HttpRequest, name: str, secret: str) -> HttpResponse:
        emulator = emulator_named(name)
        outcome = request.POST.get("outcome", "")
        with transaction.atomic():
            session = SandboxHostedSession.objects.select_for_update().filter(emulator=name, page_secret=secret).first()
            if session is None:
                return self._gone(request, emulator)
            if emulator.is_final(session) or session.redacted_at is not None:
                return self._page(request, emulator, session, status=409)
            if outcome not in dict(emulator.offered()):
                return self._page(request, emulator, session, error=_("Pick one of the outcomes."), status=400)
            emulator.finish(request, session, outcome)
        if session.return_url:
            return HttpResponseSeeOther(session.return_url)
        return self._page(request, emulator, session)

    def _page(
        self,
        request: HttpRequest,
        emulator: Emulator,
        session: SandboxHostedSession,
        *,
        error: Any = "",
        status: int = 200,
    ) -> HttpResponse:
        context = {
            "emulator": emulator,
            "session": session,
            "outcomes": emulator.offered(),
            "final": emulator.is_final(session),
            "error": error,
        }
        return render(request, "verification_link/sandbox/hosted.html", context, status=status)

    def _gone(self, request: HttpRequest, emulator: Emulator) -> HttpResponse:
        context: dict[str, Any] = {"emulator": emulator, "session": None, "outcomes": [], "final": True, "error": ""}
        return render(request, "verification_link/sandbox/hosted.html", context, status=404)
