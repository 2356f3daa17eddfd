"""The admin changelist of verification sessions at 100,000 sessions against the same page at 10.

What is measured: the whole request a staff member makes (middleware, session, auth, the changelist
view, its template), through Django's test ``Client`` logged in as a superuser, for three pages:

- the first page of ``/admin/verification_link/verificationsession/``;
- a filtered page, ``?status__exact=DONE&decision__exact=review``;
- a search, ``?q=<username>`` (one of 200 users; about 500 of the 100,000 sessions are theirs).

Each page is requested after a warm-up, ``--rounds`` times; the figure is the median. The target: a
page at 100,000 sessions costs at most twice the same page at 10 (ratio <= 2) on PostgreSQL, which
means nothing on the page grows with the table: no full count, no scan, no N+1. The SQL queries of
each page are counted in a separate, untimed request; their number must be the same at both sizes.

Why: support staff open this page all day; it must stay usable when the table is large. The script
knows nothing of how the admin is written, only its URLs, so it judges any version of it.

The rows vary as a production table does: 200 users, every status, decisions on finished sessions,
providers ``ooto`` and ``ooto_eu``, ``created_at`` spread over 60 days, results on DONE and FAILED.
After the inserts the table is analysed (and vacuumed on PostgreSQL), as autovacuum would have done.

    VL_TEST_DATABASE=postgres python benchmarks/admin.py [--sessions 100000] [--rounds 9] [--explain] [--check]

``--explain`` times every query of each page at the large size again and prints ``EXPLAIN ANALYZE``
(SQLite: ``EXPLAIN QUERY PLAN``) of those slower than ``--slow`` ms. ``--check``: exit 1 when a
target is missed (the ratio only on PostgreSQL; constant query counts everywhere).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from _harness import django_database, median_of, timed

SMALL = 10
TARGET = 2.0
USERS = 200
BATCH = 5000
CHANGELIST = "/admin/verification_link/verificationsession/"

# Weights per status: mostly finished sessions, a few open ones (recent: older ones have expired).
STATUS_WEIGHTS = {
    "DONE": 45,
    "FAILED": 12,
    "EXPIRED": 25,
    "CANCELED": 5,
    "CREATED": 4,
    "CAPTCHA_OK": 3,
    "IN_PROGRESS": 6,
}
OPEN = ("CREATED", "CAPTCHA_OK", "IN_PROGRESS")
# Decisions are taken on DONE and FAILED sessions only.
DECISION_WEIGHTS = {"approved": 55, "rejected": 10, "review": 15, "": 20}


@dataclass
class Page:
    name: str
    query: str
    small_ms: float = 0.0
    large_ms: float = 0.0
    small_rounds: list[float] = field(default_factory=list)
    large_rounds: list[float] = field(default_factory=list)
    small_queries: int = 0
    large_queries: int = 0
    small_rows: int = 0
    large_rows: int = 0
    captured: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return CHANGELIST + self.query

    @property
    def ratio(self) -> float:
        return self.large_ms / self.small_ms


class Rows:
    """Deterministic, realistic sessions; the first one is always a DONE session awaiting review, so
    the filtered page and the search both have something to show at 10 sessions too."""

    def __init__(self, users: list[Any], reviewer: Any, seed: int = 20261122) -> None:
        from django.utils import timezone

        from verification_link.testing import ooto_result

        self.rng = random.Random(seed)
        self.users = users
        self.reviewer = reviewer
        self.now = timezone.now()
        self.made = 0
        self.results = {
            "DONE": ooto_result(["liveness", "deepfake"]),
            "FAILED": ooto_result(["liveness", "deepfake"], fine={"deepfake": False}),
        }
        self.statuses = list(STATUS_WEIGHTS)
        self.status_weights = list(STATUS_WEIGHTS.values())
        self.decisions = list(DECISION_WEIGHTS)
        self.decision_weights = list(DECISION_WEIGHTS.values())

    @property
    def searched_user(self) -> Any:
        return self.users[0]

    def make(self, n: int) -> list[Any]:
        from verification_link.models import VerificationSession

        rng = self.rng
        rows = []
        for _ in range(n):
            first = self.made == 0
            self.made += 1
            status = "DONE" if first else rng.choices(self.statuses, self.status_weights)[0]
            if status in OPEN:
                created = self.now - timedelta(seconds=rng.uniform(0, 3600))
            else:
                created = self.now - timedelta(seconds=rng.uniform(0, 60 * 86400))
            decision = ""
            if status in self.results:
                decision = "review" if first else rng.choices(self.decisions, self.decision_weights)[0]
            token = uuid.uuid4().hex
            rows.append(
                VerificationSession(
                    user=self.searched_user if first else rng.choice(self.users),
                    provider="ooto" if rng.random() < 0.8 else "ooto_eu",
                    external_id=token,
                    token=token,
                    reference=f"order-{self.made:07d}",
                    url="https://example/flow",
                    scopes=["liveness", "deepfake"],
                    status=status,
                    next_step="LIVENESS" if status == "IN_PROGRESS" else "",
                    result=self.results.get(status, {}),
                    expires_at=created + timedelta(hours=1),
                    finished_at=None if status in OPEN else created + timedelta(seconds=rng.uniform(30, 3600)),
                    decision=decision,
                    reviewed_by=self.reviewer if decision else None,
                    reviewed_at=created + timedelta(hours=2) if decision else None,
                    next_poll_at=created + timedelta(seconds=30) if status in OPEN else None,
                    poll_attempts=rng.randint(0, 5),
                    created_at=created,
                )
            )
        return rows

    def insert(self, n: int) -> None:
        from verification_link.models import VerificationSession

        while n > 0:
            size = min(n, BATCH)
            VerificationSession.objects.bulk_create(self.make(size), batch_size=BATCH)
            n -= size


def make_users() -> tuple[list[Any], Any]:
    """200 ordinary users (fixed-width names, so a search for one matches only that one) and a superuser."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=f"person{i:04d}", email=f"person{i:04d}@example.com", password="!") for i in range(USERS)]
    )
    admin = user_model.objects.create_superuser("bench-admin", "admin@example.com", "unused")
    return list(user_model.objects.filter(username__startswith="person").order_by("username")), admin


def refresh_statistics() -> None:
    """What autovacuum does after a large insert: planner statistics and, on PostgreSQL, the
    visibility map (index-only scans)."""
    from django.db import connection

    from verification_link.models import VerificationSession

    table = connection.ops.quote_name(VerificationSession._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}" if connection.vendor == "postgresql" else f"ANALYZE {table}")


def get(client: Any, url: str) -> Any:
    response = client.get(url)
    assert response.status_code == 200, f"GET {url}: {response.status_code} {response.get('Location', '')}"
    return response


def measure(client: Any, pages: list[Page], rounds: int, large: bool) -> None:
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for page in pages:
        with CaptureQueriesContext(connection) as ctx:  # untimed: the debug cursor costs time
            get(client, page.url)
        captured = list(ctx.captured_queries)  # now: the next request_started empties the log
        for _ in range(2):  # warm-up: templates, caches, plans
            get(client, page.url)
        assert not settings.DEBUG, "DEBUG must be False while timing"
        ms, values = median_of(rounds, lambda p=page: timed(lambda: get(client, p.url))[0] * 1000)
        if large:
            page.large_ms, page.large_rounds, page.large_queries = ms, values, len(captured)
            page.captured = captured
        else:
            page.small_ms, page.small_rounds, page.small_queries = ms, values, len(captured)


def matching_rows(pages: list[Page], username: str) -> list[int]:
    """Rows each page is about, counted directly (not through the admin)."""
    from verification_link.models import VerificationSession

    sessions = VerificationSession.objects
    return [
        sessions.count(),
        sessions.filter(status="DONE", decision="review").count(),
        sessions.filter(user__username=username).count(),
    ]


def explain(pages: list[Page], slow_ms: float) -> None:
    """Every query of each page at the large size, timed again (median of 3), slowest first; the plan
    of each one slower than ``slow_ms``."""
    from django.db import connection

    postgres = connection.vendor == "postgresql"
    for page in pages:
        print(f"\n=== {page.name}: {page.url} — {len(page.captured)} queries at the large size, slowest first")
        timings = []
        for query in page.captured:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                timings.append((0.0, sql))  # never re-run writes
                continue
            values = []
            with connection.cursor() as cursor:
                for _ in range(3):
                    start = time.perf_counter()
                    cursor.execute(sql)
                    cursor.fetchall()
                    values.append((time.perf_counter() - start) * 1000)
            timings.append((statistics.median(values), sql))
        for ms, sql in sorted(timings, key=lambda t: -t[0]):
            print(f"  {ms:8.2f} ms  {sql if len(sql) <= 300 else sql[:300] + ' …'}")
        for ms, sql in sorted(timings, key=lambda t: -t[0]):
            if ms < slow_ms:
                break
            print(f"\n  --- {ms:.2f} ms: {sql}")
            with connection.cursor() as cursor:
                cursor.execute(("EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN ") + sql)
                for row in cursor.fetchall():
                    print("      " + " ".join(str(column) for column in row))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000, help="the large size")
    parser.add_argument("--rounds", type=int, default=9, help="timed requests per page and size (median)")
    parser.add_argument("--explain", action="store_true", help="time each query at the large size, plan slow ones")
    parser.add_argument("--slow", type=float, default=2.0, help="--explain plans queries slower than this, ms")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    started = time.perf_counter()

    with django_database() as vendor:
        from django.test import Client

        users, admin = make_users()
        rows = Rows(users, reviewer=admin)
        username = rows.searched_user.username
        pages = [
            Page("first page", ""),
            Page("filtered", "?status__exact=DONE&decision__exact=review"),
            Page("search", f"?q={username}"),
        ]
        client = Client()
        client.force_login(admin)

        rows.insert(SMALL)
        refresh_statistics()
        for page, count in zip(pages, matching_rows(pages, username), strict=True):
            page.small_rows = count
        measure(client, pages, args.rounds, large=False)

        insert_s, _ = timed(lambda: rows.insert(args.sessions - SMALL))
        refresh_statistics()
        for page, count in zip(pages, matching_rows(pages, username), strict=True):
            page.large_rows = count
        measure(client, pages, args.rounds, large=True)
        searchable = b'id="searchbar"' in get(client, pages[2].url).content
        if args.explain:
            explain(pages, args.slow)
            print()

    total_s = time.perf_counter() - started
    postgres = vendor == "postgresql"
    print(
        f"database {vendor}; admin changelist of verification sessions, {SMALL} vs {args.sessions:,} sessions "
        f"({USERS} users); median of {args.rounds} requests after a warm-up; inserting {args.sessions - SMALL:,} "
        f"took {insert_s:.1f} s"
    )
    missed = False
    for page in pages:
        constant = page.small_queries == page.large_queries
        over = page.ratio > TARGET
        missed = missed or not constant or (postgres and over)
        judged = ("TARGET MISSED" if over else "ok") if postgres else "target applies to postgresql"
        print(
            f"{page.name:<11} {page.small_ms:7.1f} ms at {SMALL:<7,} {page.large_ms:7.1f} ms at {args.sessions:<7,} "
            f"ratio {page.ratio:5.2f} (target <= {TARGET:.1f}: {judged})   queries {page.small_queries} / "
            f"{page.large_queries} ({'constant' if constant else 'NOT constant'})   rows {page.small_rows:,} / "
            f"{page.large_rows:,}   {page.url}"
        )
    if not searchable:
        print("note: the page has no search box (no search_fields): ?q= is ignored, the search is the first page")
    print(f"script ran {total_s:.0f} s")
    print("TARGET MISSED" if missed else "targets met")
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
