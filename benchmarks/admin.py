"""The admin changelist of verification sessions at 100,000 sessions against the same page at 10.

What is measured: the whole request a staff member makes (middleware, session, auth, the changelist
view, its template), through Django's test ``Client`` logged in as a superuser, for three pages:

- the first page of ``/admin/verification_link/verificationsession/``;
- a filtered page, ``?status__exact=DONE&decision__exact=review``;
- a search, ``?q=<username>`` (one of 200 users; about 500 of the 100,000 sessions are theirs).

Each page is requested twice to warm up, then ``--rounds`` times; the figure is the median. The target:
a page at 100,000 sessions costs at most twice the same page at 10 (ratio <= 2) on PostgreSQL: nothing
on the page may grow with the table (no full count, no scan, no N+1). The SQL queries of each page are
counted in a separate, untimed request; their number must be the same at both sizes.

Why: support staff open this page all day; it must stay usable when the table is large. The script
knows nothing of how the admin is written, only its URLs, so it judges any version of it.

The large table looks like production: 200 users, sessions created over 60 days and stored in that
order, every status (open ones only in the last hour, the TTL), decisions and results on DONE and
FAILED sessions, providers ``ooto`` and ``ooto_eu``. The small-size sessions are all DONE, awaiting
review, of the searched user: every page shows all of them, so the pages differ by the table behind
them and by the rows they show (10 against a full page), not by what they match. Rendering a row costs
about 1 ms here, so the admin is measured with ``list_per_page`` equal to ``--small`` (``--per-page``
changes it): both sizes show as many rows, and what is left of the ratio is the table's size alone.
The summary above the list is counted on every request (``summary_cache_seconds = 0``), so its cost
is in the figure; ``--cached-summary`` measures the page as shipped (counted once per 30 s).

After each change of size the table is analysed (and vacuumed on PostgreSQL), as autovacuum would
have done. Against drift on a busy machine, the small size is measured before and after the large one
(the extra rows deleted again) and its figure pools both. PostgreSQL takes the rows through ``COPY``
(about 20 s for 100,000), SQLite through ``bulk_create``.

    VL_TEST_DATABASE=postgres python benchmarks/admin.py [--sessions 100000] [--small 10] [--rounds 11]
        [--explain [--slow 2]] [--check]

``--explain`` times every query of each page at the large size again (median of 3), slowest first,
and prints ``EXPLAIN (ANALYZE, BUFFERS)`` (SQLite: ``EXPLAIN QUERY PLAN``) of those slower than
``--slow`` ms. ``--check``: exit 1 when a target is missed (the ratio only on PostgreSQL; constant
query counts everywhere).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from _harness import django_database, median_of, timed

TARGET = 2.0
USERS = 200
DAYS = 60
BATCH = 5000
WARM_UP = 2
CHANGELIST = "/admin/verification_link/verificationsession/"

# Sessions created within the TTL (the last hour) may still be open: this share of them is.
OPEN_SHARE = 0.6
OPEN_WEIGHTS = {"CREATED": 3, "CAPTCHA_OK": 2, "IN_PROGRESS": 5}
FINAL_WEIGHTS = {"DONE": 52, "FAILED": 13, "EXPIRED": 28, "CANCELED": 7}
# Decisions are taken on DONE and FAILED sessions only.
DECISION_WEIGHTS = {"approved": 55, "rejected": 10, "review": 15, "": 20}


@dataclass
class Size:
    """One page at one table size."""

    ms: list[float] = field(default_factory=list)  # every timed request, all phases
    phases: list[float] = field(default_factory=list)  # the median of each phase
    queries: list[int] = field(default_factory=list)  # per phase
    shown: int | None = None  # rows in the list on the page
    matching: int = 0  # rows the page is about, counted directly

    @property
    def median(self) -> float:
        return statistics.median(self.ms)


@dataclass
class Page:
    name: str
    query: str
    small: Size = field(default_factory=Size)
    large: Size = field(default_factory=Size)
    captured: list[dict[str, Any]] = field(default_factory=list)  # the queries at the large size

    @property
    def url(self) -> str:
        return CHANGELIST + self.query

    @property
    def ratio(self) -> float:
        return self.large.median / self.small.median

    @property
    def constant(self) -> bool:
        return len(set(self.small.queries + self.large.queries)) == 1


class Rows:
    """Deterministic, realistic sessions; and the small-size ones, which every page shows."""

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

    @property
    def searched_user(self) -> Any:
        return self.users[0]

    def make(self, ages: list[float], shown_by_all: bool = False) -> list[Any]:
        """Sessions created ``ages`` seconds ago. ``shown_by_all``: each a DONE session awaiting review,
        of the searched user, so the filtered page and the search show them all, as the first page does."""
        from verification_link.models import VerificationSession

        rng = self.rng
        rows = []
        for age in ages:
            self.made += 1
            open_ = age < 3600 and rng.random() < OPEN_SHARE
            weights = OPEN_WEIGHTS if open_ else FINAL_WEIGHTS
            status = rng.choices(list(weights), list(weights.values()))[0]
            decision = ""
            if status in self.results:
                decision = rng.choices(list(DECISION_WEIGHTS), list(DECISION_WEIGHTS.values()))[0]
            if shown_by_all:
                open_, status, decision = False, "DONE", "review"
            created = self.now - timedelta(seconds=age)
            token = uuid.uuid4().hex
            rows.append(
                VerificationSession(
                    user=self.searched_user if shown_by_all else rng.choice(self.users),
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
                    finished_at=None if open_ else created + timedelta(seconds=min(age, rng.uniform(30, 3600))),
                    decision=decision,
                    reviewed_by=self.reviewer if decision else None,
                    reviewed_at=created + timedelta(seconds=min(age, 7200)) if decision else None,
                    next_poll_at=created + timedelta(seconds=30) if open_ else None,
                    poll_attempts=rng.randint(0, 5),
                    created_at=created,
                )
            )
        return rows

    def insert(self, n: int, shown_by_all: bool = False) -> None:
        """``COPY`` on PostgreSQL (bulk_create's UNNEST spends most of its time quoting arrays on the
        client), ``bulk_create`` elsewhere; in batches of 5,000."""
        from django.db import connection

        from verification_link.models import VerificationSession

        fields = VerificationSession._meta.concrete_fields
        table = connection.ops.quote_name(VerificationSession._meta.db_table)
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        # Oldest first, as a live table grows: created_at follows the physical order of the rows.
        ages = sorted((self.rng.uniform(0, DAYS * 86400) for _ in range(n)), reverse=True)
        for start in range(0, n, BATCH):
            rows = self.make(ages[start : start + BATCH], shown_by_all)
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([f.get_db_prep_save(f.pre_save(row, True), connection) for f in fields])
            else:
                VerificationSession.objects.bulk_create(rows, batch_size=BATCH)


def make_users() -> tuple[list[Any], Any]:
    """200 users (fixed-width names: a search for one matches no other) and a superuser."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=f"person{i:04d}", email=f"person{i:04d}@example.com", password="!") for i in range(USERS)]
    )
    admin = user_model.objects.create_superuser("bench-admin", "admin@example.com", "unused")
    return list(user_model.objects.filter(username__startswith="person").order_by("username")), admin


def refresh_statistics(full: bool = False) -> None:
    """What autovacuum does after a large change: planner statistics and, on PostgreSQL, the
    visibility map (index-only scans). ``full`` rewrites the table and its indexes (after the delete)."""
    from django.db import connection

    from verification_link.models import VerificationSession

    table = connection.ops.quote_name(VerificationSession._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM {'FULL ' if full else ''}ANALYZE {table}")
        else:
            cursor.execute(f"ANALYZE {table}")


def get(client: Any, url: str) -> Any:
    response = client.get(url)
    assert response.status_code == 200, f"GET {url}: {response.status_code} {response.get('Location', '')}"
    return response


def rows_shown(content: bytes) -> int | None:
    """Rows of the result list in the page's HTML; None when the page has no ``result_list`` table."""
    table = re.search(rb'id="result_list".*?<tbody>(.*?)</tbody>', content, re.S)
    return None if table is None else len(re.findall(rb"<tr[\s>]", table.group(1)))


def measure(client: Any, pages: list[Page], rounds: int, large: bool) -> None:
    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for page in pages:
        size = page.large if large else page.small
        cache.clear()  # whatever the admin caches (the summary) is computed afresh at this size
        with CaptureQueriesContext(connection) as ctx:  # untimed: the debug cursor costs time
            response = get(client, page.url)
        captured = list(ctx.captured_queries)  # now: the next request empties the log
        size.queries.append(len(captured))
        size.shown = rows_shown(response.content)
        if large:
            page.captured = captured
        for _ in range(WARM_UP):
            get(client, page.url)
        assert not settings.DEBUG, "DEBUG must be False while timing"
        median, values = median_of(rounds, lambda p=page: timed(lambda: get(client, p.url))[0] * 1000)
        size.ms += values
        size.phases.append(median)


def configure_admin(*, per_page: int, cached_summary: bool) -> None:
    """The registered session admin as measured: ``per_page`` rows a page (equal rows shown at both
    sizes: the pages then differ by the table behind them alone), and the summary above the list
    counted on every request unless ``cached_summary`` (its cache would hide what it costs)."""
    from django.contrib import admin

    from verification_link.models import VerificationSession

    model_admin = admin.site._registry[VerificationSession]
    model_admin.list_per_page = per_page
    if not cached_summary and hasattr(model_admin, "summary_cache_seconds"):
        model_admin.summary_cache_seconds = 0


def summary_cost(rounds: int) -> tuple[float, int] | None:
    """The summary above the list counted without its cache (ms, median), and the sessions of the
    last 7 days it counts; None when the admin has no such summary."""
    from datetime import timedelta

    from django.contrib import admin
    from django.utils import timezone

    from verification_link.models import VerificationSession

    model_admin = admin.site._registry.get(VerificationSession)
    if not hasattr(model_admin, "_summary_counts"):
        return None
    week = VerificationSession.objects.filter(created_at__gte=timezone.now() - timedelta(days=7)).count()
    median, _values = median_of(rounds, lambda: timed(model_admin._summary_counts)[0] * 1000)
    return median, week


def count_matching(pages: list[Page], username: str, large: bool) -> None:
    """Rows each page is about, counted directly (not through the admin)."""
    from verification_link.models import VerificationSession

    sessions = VerificationSession.objects
    counts = [
        sessions.count(),
        sessions.filter(status="DONE", decision="review").count(),
        sessions.filter(user__username=username).count(),
    ]
    for page, count in zip(pages, counts, strict=True):
        (page.large if large else page.small).matching = count


def explain(pages: list[Page], slow_ms: float) -> None:
    """Every query of each page at the large size, timed again (median of 3), slowest first; the plan
    of each one slower than ``slow_ms``. Only SELECTs are run again."""
    from django.db import connection

    postgres = connection.vendor == "postgresql"
    for page in pages:
        print(f"\n=== {page.name}: {page.url} — {len(page.captured)} queries at the large size, slowest first")
        timings = []
        for query in page.captured:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                timings.append((0.0, sql))
                continue
            values = []
            with connection.cursor() as cursor:
                for _ in range(3):
                    start = time.perf_counter()
                    cursor.execute(sql)
                    cursor.fetchall()
                    values.append((time.perf_counter() - start) * 1000)
            timings.append((statistics.median(values), sql))
        timings.sort(key=lambda t: -t[0])
        for ms, sql in timings:
            print(f"  {ms:8.2f} ms  {sql if len(sql) <= 300 else sql[:300] + ' …'}")
        for ms, sql in timings:
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
    parser.add_argument("--small", type=int, default=10, help="the small size")
    parser.add_argument("--rounds", type=int, default=11, help="timed requests per page, size and phase")
    parser.add_argument("--per-page", type=int, help="list_per_page while measuring (default: --small)")
    parser.add_argument("--cached-summary", action="store_true", help="let the admin reuse its summary counts")
    parser.add_argument("--explain", action="store_true", help="time each query at the large size, plan slow ones")
    parser.add_argument("--slow", type=float, default=2.0, help="--explain plans queries slower than this, ms")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    started = time.perf_counter()

    with django_database() as vendor:
        from django.test import Client

        from verification_link.models import VerificationSession

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
        configure_admin(per_page=args.per_page or args.small, cached_summary=args.cached_summary)

        rows.insert(args.small, shown_by_all=True)
        small_ids = list(VerificationSession.objects.values_list("pk", flat=True))
        refresh_statistics()
        count_matching(pages, username, large=False)
        measure(client, pages, args.rounds, large=False)

        insert_s, _ = timed(lambda: rows.insert(args.sessions - args.small))
        refresh_statistics()
        count_matching(pages, username, large=True)
        measure(client, pages, args.rounds, large=True)
        summary = summary_cost(args.rounds)
        searchable = b'id="searchbar"' in get(client, pages[2].url).content
        if args.explain:
            explain(pages, args.slow)
            print()

        VerificationSession.objects.exclude(pk__in=small_ids).delete()
        refresh_statistics(full=True)
        measure(client, pages, args.rounds, large=False)

    postgres = vendor == "postgresql"
    print(
        f"database {vendor}; admin changelist of verification sessions at {args.small:,} and {args.sessions:,} "
        f"sessions ({USERS} users); median of {args.rounds} requests after {WARM_UP} of warm-up (small size: of "
        f"{2 * args.rounds}, before and after the large one); inserting {args.sessions - args.small:,} took "
        f"{insert_s:.1f} s; {args.per_page or args.small} rows a page; the summary counted "
        f"{'once per summary_cache_seconds' if args.cached_summary else 'on every request (uncached)'}"
    )
    missed = False
    for page in pages:
        over = page.ratio > TARGET
        missed = missed or not page.constant or (postgres and over)
        judged = ("TARGET MISSED" if over else "ok") if postgres else "the target applies to postgresql"
        small, large = page.small, page.large
        print(
            f"{page.name:<10}  {small.median:6.1f} ms at {args.small:,} (before {small.phases[0]:.1f}, after "
            f"{small.phases[1]:.1f})   {large.median:6.1f} ms at {args.sessions:,}   ratio {page.ratio:5.2f} "
            f"(target <= {TARGET:.1f}: {judged})   queries {small.queries[0]} / {large.queries[0]} "
            f"({'constant' if page.constant else 'NOT constant'})   rows shown {small.shown} / {large.shown} of "
            f"{small.matching:,} / {large.matching:,}   {page.url}"
        )
    if summary is not None:
        print(
            f"summary above the list, counted without its cache: {summary[0]:.1f} ms at {args.sessions:,} "
            f"({summary[1]:,} sessions in the last 7 days); reused for "
            "VerificationSessionAdmin.summary_cache_seconds"
        )
    if not searchable:
        print("note: the page has no search box (no search_fields): ?q= is ignored, the search is the first page")
    print(f"the script ran {time.perf_counter() - started:.0f} s")
    print("TARGET MISSED" if missed else "targets met")
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
