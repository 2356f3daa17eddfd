"""Shared set-up of the benchmarks: Django on the test settings, a throwaway database, and a fake
OOTO provider serving real HTTP from its own process (so its threads do not compete with the code
measured for the GIL).

Databases: SQLite by default; ``VL_TEST_DATABASE=postgres`` with the ``PG*`` variables for
PostgreSQL (``eval "$(.ci/postgres.sh start /tmp/vl-pg)"`` starts a throwaway cluster).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")


def _serve(port_queue: multiprocessing.Queue, latency: float, default_status: str) -> None:
    import django

    django.setup()
    from verification_link.testing import OotoServer, ooto_result

    # DONE answers carry a whole result (every check passed), as a finished session's do.
    result = ooto_result(["liveness"]) if default_status == "DONE" else None
    server = OotoServer(latency=latency, record=False, default_status=default_status, default_result=result)
    port_queue.put(server.httpd.server_address[1])
    server.httpd.serve_forever()


@contextmanager
def fake_provider(latency: float, default_status: str = "IN_PROGRESS") -> Iterator[str]:
    """A fake OOTO in a child process; yields its base URL. Get Status of any token answers
    ``default_status`` after ``latency`` seconds (``DONE``: with a passing result)."""
    context = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue = context.Queue()
    process = context.Process(target=_serve, args=(ports, latency, default_status), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=60)}"
    finally:
        process.terminate()
        process.join(10)


@contextmanager
def django_database() -> Iterator[str]:
    """Django set up on a fresh, migrated database; yields the database vendor."""
    import django

    django.setup()
    from django.db import connection

    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield connection.vendor
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def use_provider(base_url: str, **settings: object) -> None:
    """Point the ``ooto`` alias at ``base_url`` and apply top-level VERIFICATION_LINK changes."""
    from django.conf import settings as django_settings

    from verification_link.providers import reset_providers

    config = dict(django_settings.VERIFICATION_LINK)
    providers = dict(config["PROVIDERS"])
    providers["ooto"] = {**providers["ooto"], "BASE_URL": base_url}
    django_settings.VERIFICATION_LINK = {**config, "PROVIDERS": providers, **settings}
    reset_providers()


def make_sessions(n: int, **fields: object) -> None:
    """Insert ``n`` open OOTO sessions directly (no provider call)."""
    from django.utils import timezone

    from verification_link.models import VerificationSession

    now = timezone.now()
    defaults = {"provider": "ooto", "status": "IN_PROGRESS", "scopes": ["liveness"], "created_at": now}
    defaults.update(fields)
    VerificationSession.objects.bulk_create(
        [VerificationSession(token=uuid.uuid4().hex, url="https://example/flow", **defaults) for _ in range(n)],
        batch_size=1000,
    )


def clear() -> None:
    from verification_link.models import VerificationEvent, VerificationSession

    VerificationEvent.objects.all().delete()
    VerificationSession.objects.all().delete()


def median_of(rounds: int, run: Callable[[], float]) -> tuple[float, list[float]]:
    values = [run() for _ in range(rounds)]
    return statistics.median(values), values


def timed(work: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    outcome = work()
    return time.perf_counter() - start, outcome
