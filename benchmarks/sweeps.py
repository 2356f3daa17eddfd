"""The sweeps against their floors: a fake OOTO provider with 20 ms latency, concurrency 4.

Each line is printed beside its target; the bound of a sweep that calls the provider is
concurrency ÷ latency (200 calls/s by default).

- poll sweep over ``--sessions`` (5,000) due sessions: throughput as a fraction of its bound (target
  ≥ 0.8). Printed beside it: the same ratio for a bare ``requests`` loop doing nothing but the
  provider calls (configured like our provider client: ``trust_env = False``, the same headers), at
  the same concurrency, from the same process: the ceiling this machine allows any Python client.
- poll sweep from a backlog: the wall time of one ``run_poll_sweep(concurrency=4, max_batches=B)``
  call — the sweep ``poll_due_sessions()`` and ``manage.py verification_link poll`` run (the Celery
  beat task runs it too, handing each claimed id to a ``refresh_session`` task instead of polling
  it) — bounded to its first ``B`` batches of ``POLL_BATCH_SIZE`` 500: ``B`` claims, each followed
  by its 500 polls (a provider GET, then the answer's UPDATE and event) on the sweep's threads.
  ``B`` = 4, 2,000 polls (~10 s at the bound); with fewer ``--sessions``, as many batches as fit in
  them, at least one. At the start of every round the table holds at least as many due sessions
  as the large backlog of the expiry-at-scale pair (100,000), each due at its own time, analysed.
  The figure: those polls/s ÷ the bound (target ≥ 0.8), i.e. claiming from a large backlog costs
  nothing extra. Printed beside it: the beat task's own form (``dispatch=``, here a list's
  ``append``) over ``B`` batches of the same backlog: sessions claimed and handed over per second.
- expiry sweep without the last-check call over ``--sessions``: sessions/s (target ≥ 1,000/s) and
  the queries each further batch of 500 adds (constant).
- expiry sweep with the last check (one provider call per overdue session before it is expired),
  over 2,000 sessions (fewer with fewer ``--sessions``): throughput ÷ bound (target ≥ 0.8).
- expiry at scale: the cost per session of an expiry sweep (no last check) over 1,000 and over
  100,000 overdue sessions, each with its own expiry time, tables analysed as autovacuum keeps them;
  the ratio of the two (target ≤ 1.3: flat, whatever the backlog), and the large one as sessions/s
  (target ≥ 1,000/s). ``--scale SMALL,LARGE`` changes the pair; with fewer ``--sessions`` than the
  default (CI's small run, ``run.py --quick``) it is ``N,10N``.
- expiry counting: a provider answering EXPIRED to every last check, and what ``expire_sessions()``
  says about it (target: all of them).

    python benchmarks/sweeps.py [--sessions 5000] [--latency 0.02] [--concurrency 4] [--rounds 3] [--scan]
                                [--scale 1000,100000] [--scale-rounds 1]

``--scan`` adds the poll ratio at concurrency 1, 2, 4 and 8 (fewer sessions each). Medians of
``--rounds`` rounds (these machines are noisy). The figures' targets are PostgreSQL's: on another
database (SQLite, one writer at a time) they are printed, not checked; the two targets that are
not speeds (constant queries per batch, expiry counting) hold everywhere. ``--check``: exit 1 when
a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta

from _harness import clear, django_database, fake_provider, make_sessions, median_of, timed, use_provider

BATCH = 500  # EXPIRY_BATCH_SIZE and POLL_BATCH_SIZE of every sweep here


def bare_client_rate(base_url: str, calls: int, concurrency: int) -> float:
    """Provider calls/s of plain ``requests`` threads doing nothing else: the floor's own ceiling.
    Configured like our provider client (no proxy or netrc look-up per call, the same headers)."""
    import requests
    from django.conf import settings

    config = settings.VERIFICATION_LINK["PROVIDERS"]["ooto"]
    headers = {"APP-ID": config["APP_ID"], "APP-KEY": config["APP_KEY"]}
    remaining = [calls]
    lock = threading.Lock()

    def worker() -> None:
        http = requests.Session()
        http.trust_env = False
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            http.get(f"{base_url}/api/v1.0/flow/sessions/bench", headers=headers, timeout=10)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return calls / (time.perf_counter() - start)


def make_spread(n: int, since: datetime, field: str, **fields: object) -> None:
    """Insert ``n`` open sessions whose ``field`` (their expiry, their next poll) falls a microsecond
    apart from ``since`` on, as sessions started one by one do, then analyse the table: a site's
    tables have planner statistics (autovacuum), a table filled a moment ago has none and plans from
    guesses."""
    from django.db import connection

    from verification_link.models import VerificationSession

    values = {
        "provider": "ooto",
        "status": "IN_PROGRESS",
        "scopes": ["liveness"],
        "url": "https://example/flow",
        "created_at": since + timedelta(days=1),
        "expires_at": None,
        "next_poll_at": None,
        **fields,
    }
    VerificationSession.objects.bulk_create(
        [
            VerificationSession(token=uuid.uuid4().hex, **{**values, field: since + timedelta(microseconds=i)})
            for i in range(n)
        ],
        batch_size=1000,
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(VerificationSession._meta.db_table)}")


def scale_pair(text: str | None, sessions: int) -> tuple[int, int]:
    if text:
        small, large = (int(part) for part in text.split(","))
        return small, large
    return (1000, 100_000) if sessions >= 5000 else (sessions, 10 * sessions)


def rounds_text(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.02, help="provider latency, seconds")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scan", action="store_true", help="also the poll ratio at concurrency 1, 2, 4, 8")
    parser.add_argument("--scale", help="SMALL,LARGE: the two backlogs of the expiry-at-scale figure")
    parser.add_argument("--scale-rounds", type=int, default=1, help="rounds of the large backlog (slow)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    small, large = scale_pair(args.scale, args.sessions)
    n = args.sessions
    backlog_batches = max(1, min(n, 2000) // BATCH)
    backlog_polls = backlog_batches * BATCH
    checked_sessions = min(n, 2000)

    with (
        fake_provider(args.latency) as base_url,
        fake_provider(args.latency, default_status="EXPIRED") as expired_url,
        django_database() as vendor,
    ):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext
        from django.utils import timezone

        from verification_link import services
        from verification_link.models import VerificationSession

        use_provider(base_url, EXPIRY_BATCH_SIZE=BATCH, POLL_BATCH_SIZE=BATCH)
        past = timezone.now() - timedelta(hours=1)

        def poll_rate(sessions: int, concurrency: int) -> float:
            clear()
            make_sessions(sessions, next_poll_at=past, expires_at=timezone.now() + timedelta(days=1))
            elapsed, result = timed(lambda: services.run_poll_sweep(concurrency=concurrency))
            assert result.processed == sessions and result.failed == 0, result
            return sessions / elapsed

        def expiry_rate(last_check: bool, sessions: int) -> float:
            clear()
            make_sessions(sessions, expires_at=past - timedelta(days=1), next_poll_at=None)
            elapsed, result = timed(
                lambda: services.run_expiry_sweep(last_check=last_check, concurrency=args.concurrency)
            )
            assert result.processed == sessions and result.failed == 0, result
            return sessions / elapsed

        def expiry_cost(sessions: int) -> float:
            """Microseconds per session of an expiry sweep without the last check."""
            clear()
            make_spread(sessions, past - timedelta(days=1), "expires_at")
            elapsed, result = timed(lambda: services.run_expiry_sweep(last_check=False))
            assert result.processed == sessions and result.failed == 0, result
            return elapsed / sessions * 1e6

        def backlog_poll_rate() -> float:
            """Polls/s of the first ``backlog_batches`` batches of a poll sweep from a table that
            holds at least ``large`` due sessions never polled yet (each round polls
            ``backlog_polls`` of them; once polled, a session is due again after the back-off, and
            then after every session due before it)."""
            due = VerificationSession.objects.filter(next_poll_at__lte=timezone.now(), poll_attempts=0)
            assert due.count() >= large, due.count()
            elapsed, result = timed(
                lambda: services.run_poll_sweep(concurrency=args.concurrency, max_batches=backlog_batches)
            )
            assert result.processed == backlog_polls and result.failed == 0, result
            return backlog_polls / elapsed

        def backlog_claim_rate() -> float:
            """Sessions/s claimed and handed over by the beat task's form of the sweep."""
            handed: list[object] = []
            sweep = services.run_poll_sweep
            elapsed, result = timed(lambda: sweep(dispatch=handed.append, max_batches=backlog_batches))
            assert result.processed == len(handed) == backlog_polls, result
            return backlog_polls / elapsed

        def counted_when_the_provider_expired_them(sessions: int) -> int:
            """What ``expire_sessions()`` returns when every last check answers EXPIRED."""
            clear()
            use_provider(expired_url, EXPIRY_BATCH_SIZE=BATCH, POLL_BATCH_SIZE=BATCH, POLL_CONCURRENCY=args.concurrency)
            try:
                make_sessions(sessions, expires_at=past - timedelta(days=1), next_poll_at=None)
                return services.expire_sessions()
            finally:
                use_provider(base_url, EXPIRY_BATCH_SIZE=BATCH, POLL_BATCH_SIZE=BATCH)

        def expiry_queries(batches: int) -> int:
            clear()
            make_sessions(BATCH * batches, expires_at=past - timedelta(days=1), next_poll_at=None)
            with CaptureQueriesContext(connection) as ctx:
                services.run_expiry_sweep(last_check=False)
            return len(ctx.captured_queries)

        bound = args.concurrency / args.latency
        poll, poll_rounds = median_of(args.rounds, lambda: poll_rate(n, args.concurrency))
        bare, _ = median_of(args.rounds, lambda: bare_client_rate(base_url, min(n, 2000), args.concurrency))
        scan = []
        if args.scan:
            for concurrency in (1, 2, 4, 8):
                sessions = 250 * concurrency
                rate, _ = median_of(args.rounds, lambda c=concurrency, s=sessions: poll_rate(s, c))
                ceiling, _ = median_of(args.rounds, lambda c=concurrency, s=sessions: bare_client_rate(base_url, s, c))
                scan.append((concurrency, rate, ceiling))
        expiry, expiry_rounds = median_of(args.rounds, lambda: expiry_rate(False, n))
        checked, checked_rounds = median_of(args.rounds, lambda: expiry_rate(True, checked_sessions))
        totals = [expiry_queries(b) for b in (1, 2, 3)]
        expiry_cost(small)  # warm-up: imports, caches, the first connection's statements
        small_cost, small_rounds = median_of(args.rounds, lambda: expiry_cost(small))
        large_cost, large_rounds = median_of(args.scale_rounds, lambda: expiry_cost(large))

        clear()
        # Enough due sessions that every round, and the claims after them, start from ``large``.
        make_spread(
            large + (args.rounds + 1) * backlog_polls,
            past - timedelta(days=1),
            "next_poll_at",
            expires_at=timezone.now() + timedelta(days=1),
        )
        backlog, backlog_rounds = median_of(args.rounds, backlog_poll_rate)
        claimed = backlog_claim_rate()

        answered_expired = min(n, 1490)
        counted = counted_when_the_provider_expired_them(answered_expired)
        clear()

    per_batch = [totals[1] - totals[0], totals[2] - totals[1]]
    ratio, checked_ratio, backlog_ratio = poll / bound, checked / bound, backlog / bound
    large_rate = 1e6 / large_cost
    batches = f"{backlog_batches} batch{'es' if backlog_batches > 1 else ''}"
    scale = large_cost / small_cost
    postgres = vendor == "postgresql"
    print(
        f"database {vendor}; {n} sessions; provider latency {args.latency * 1000:.0f} ms; "
        f"concurrency {args.concurrency}; bound {bound:.0f} provider calls/s; median of {args.rounds} rounds"
    )
    print(
        f"poll sweep     {poll:7.1f} sessions/s   over {n:,} due   ratio {ratio:.3f}   (target >= 0.80)   "
        f"rounds {rounds_text(poll_rounds)}"
    )
    print(
        f"  bare client  {bare:7.1f} calls/s      ratio {bare / bound:.3f}   "
        f"(requests alone, trust_env off, no database: this machine's ceiling)"
    )
    for concurrency, rate, ceiling in scan:
        b = concurrency / args.latency
        print(f"  concurrency {concurrency}: sweep ratio {rate / b:.2f}, bare client ratio {ceiling / b:.2f}")
    print(
        f"poll backlog   {backlog:7.1f} sessions/s   first {backlog_polls:,} polls ({batches}) "
        f"of >= {large:,} due   ratio {backlog_ratio:.3f}   (target >= 0.80)   rounds {rounds_text(backlog_rounds)}"
    )
    print(
        f"  beat task    {claimed:7.0f} sessions/s   claimed and handed over (dispatch=), {batches} of the same backlog"
    )
    print(
        f"expiry sweep   {expiry:7.1f} sessions/s   without the last check, {n:,} overdue   "
        f"(target >= 1000/s)   rounds {rounds_text(expiry_rounds)}"
    )
    print(
        f"expiry sweep   {checked:7.1f} sessions/s   with the last check (one provider call each), "
        f"{checked_sessions:,} overdue   ratio {checked_ratio:.3f}   (target >= 0.80)   "
        f"rounds {rounds_text(checked_rounds)}"
    )
    print(
        f"expiry queries: {totals[0]} for 1 batch of {BATCH}; each further batch adds "
        f"{', '.join(map(str, per_batch))} ({'constant' if len(set(per_batch)) == 1 else 'NOT constant'})"
    )
    print(
        f"expiry at scale {small_cost:6.1f} us/session at {small:,}, {large_cost:.1f} at {large:,}: "
        f"ratio {scale:.3f}   (target <= 1.30)   rounds {rounds_text(small_rounds)} / {rounds_text(large_rounds)}"
    )
    print(
        f"expiry sweep   {large_rate:7.1f} sessions/s   without the last check, {large:,} overdue   (target >= 1000/s)"
    )
    print(
        f"expiry counted  {counted:,} of {answered_expired:,} sessions whose last check answered EXPIRED   "
        f"(target: all)"
    )
    speeds = (
        ("poll sweep", ratio < 0.8),
        ("poll backlog", backlog_ratio < 0.8),
        ("expiry sweep", expiry < 1000),
        ("expiry with the last check", checked_ratio < 0.8),
        ("expiry at scale", scale > 1.3),
        (f"expiry sweep at {large:,}", large_rate < 1000),
    )
    counts = (("expiry queries", len(set(per_batch)) != 1), ("expiry counted", counted != answered_expired))
    missed = [name for name, miss in (speeds if postgres else ()) + counts if miss]
    unchecked = "" if postgres else f" (speeds not checked on {vendor}: their targets are PostgreSQL's)"
    print(f"TARGET MISSED: {', '.join(missed)}{unchecked}" if missed else f"targets met{unchecked}")
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
