"""The floor of ``benchmarks/load.py``'s all-valid figure: a bare OOTO callback view, as a site
would write it by hand, at the same path as ours (``verify/callback/<provider>/<secret>/``).

It does the essential work of a callback and nothing else — the floor of ``benchmarks/run.py``'s
``measure_callbacks``, served over HTTP: find the session by ``(provider, callback_secret)``,
record the request (one ``callback`` event with the body), ask the provider once (Get Status);
then, when the answer is DONE, in one transaction lock the row, write status, result and
``finished_at`` and insert one ``status_changed`` row; otherwise mark the recorded request
confirmed (one UPDATE: a handler that keeps no verdict cannot tell a processed request from one
that failed half-way, so the verdict is essential work).

Configured like ours: one ``requests.Session`` per process with ``trust_env = False`` (ours reads
proxies once, not per call), the alias's own credentials, base URL and the library's default
timeouts; the same settings (``floor_settings``), so the same middleware and database connection.
"""

from __future__ import annotations

import json

import requests
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from verification_link.models import VerificationEvent, VerificationSession

http = requests.Session()
http.trust_env = False
TIMEOUT = (5.0, 15.0)  # the library's CONNECT_TIMEOUT and READ_TIMEOUT defaults


def provider_config(alias: str) -> tuple[str, dict[str, str]]:
    """The alias's base URL and auth headers, read from the same ``VERIFICATION_LINK`` as ours."""
    config = settings.VERIFICATION_LINK["PROVIDERS"][alias]
    return config["BASE_URL"].rstrip("/"), {"APP-ID": config["APP_ID"], "APP-KEY": config["APP_KEY"]}


@csrf_exempt
@require_POST
def callback(request: HttpRequest, provider: str, secret: str) -> JsonResponse:
    """The bare callback: record, confirm by one provider GET, apply a DONE; 202."""
    json.loads(request.body)  # a JSON body, as ours requires (its content is never applied)
    try:
        session = VerificationSession.objects.only("pk", "token").get(provider=provider, callback_secret=secret)
    except VerificationSession.DoesNotExist:
        return JsonResponse({"error": "not found"}, status=404)
    recorded = VerificationEvent.objects.create(session=session, kind="callback", body=request.body.decode())
    base_url, auth = provider_config(provider)
    status = http.get(f"{base_url}/api/v1.0/flow/sessions/{session.token}", headers=auth, timeout=TIMEOUT).json()
    if status["status"] == "DONE":
        with transaction.atomic():
            locked = VerificationSession.objects.select_for_update().get(pk=session.pk)
            locked.status, locked.result, locked.finished_at = status["status"], status["result"], timezone.now()
            locked.save(update_fields=["status", "result", "finished_at"])
            VerificationEvent.objects.create(session=locked, kind="status_changed", new_status=locked.status)
    else:  # the verdict: the record says the request was confirmed
        VerificationEvent.objects.filter(pk=recorded.pk).update(valid=True, processed=True)
    return JsonResponse({"status": "accepted"}, status=202)


urlpatterns = [path("verify/callback/<str:provider>/<str:secret>/", callback)]
