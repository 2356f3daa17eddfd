"""The sweeps against their floors: 5,000 sessions, a fake OOTO provider with 20 ms latency.

- poll sweep: throughput as a fraction of its bound, concurrency ÷ latency (target ≥ 0.8). Printed
  beside it: the same ratio for a bare ``requests`` loop doing nothing but the provider calls, at the
  same concurrency, from the same process: the ceiling this machine allows any Python client.
- expiry sweep without the last-check call: sessions/s (target ≥ 1,000/s on PostgreSQL) and the
  queries each further batch of 500 adds (constant); with the last check it is bounded like polling.
- expiry at scale: the cost per session of an expiry sweep (no last check) over 1,000 and over
  100,000 overdue sessions, each with its own expiry time, tables analysed as autovacuum keeps them;
  the ratio of the two (target ≤ 1.3: flat, whatever the backlog). ``--scale SMALL,LARGE`` changes
  the pair; with fewer ``--sessions`` than the default (CI's small run, ``run.py --quick``) it is
  ``N,10N``.
- expiry counting: a provider answering EXPIRED to every last check, and what ``expire_sessions()``
  says about it (target: all of them).

    python benchmarks/sweeps.py [--sessions 5000] [--latency 0.02] [--concurrency 4] [--rounds 3] [--scan]
                                [--scale 1000,100000] [--scale-rounds 1]

``--scan`` adds the poll ratio at concurrency 1, 2, 4 and 8 (fewer sessions each). Medians of
``--rounds`` rounds (these machines are noisy). ``--check``: exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta

from _harness import clear, django_database, fake_provider, make_sessions, median_of, timed, use_provider


def bare_client_rate(base_url: str, calls: int, concurrency: int) -> float:
    """Provider calls/s of plain ``requests`` threads doing nothing else: the floor's own ceiling."""
    import requests

    remaining = [calls]
    lock = threading.Lock()

    def worker() -> None:
        http = requests.Session()
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            http.get(f"{base_url}/api/v1.0/flow/sessions/bench", timeout=10)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return calls / (time.perf_counter() - start)


def make_overdue(n: int, since: datetime) -> None:
    """Insert ``n`` open sessions past their expiry, a microsecond apart from ``since`` on (as
    sessions started one by one expire), then analyse the table: a site's tables have planner
    statistics (autovacuum), a table filled a moment ago has none and plans from guesses."""
    from django.db import connection

    from verification_link.models import VerificationSession

    now = since + timedelta(days=1)
    VerificationSession.objects.bulk_create(
        [
            VerificationSession(
                provider="ooto",
                status="IN_PROGRESS",
                scopes=["liveness"],
                token=uuid.uuid4().hex,
                url="https://example/flow",
                created_at=now,
                expires_at=since + timedelta(microseconds=i),
                next_poll_at=None,
            )
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

    with (
        fake_provider(args.latency) as base_url,
        fake_provider(args.latency, default_status="EXPIRED") as expired_url,
        django_database() as vendor,
    ):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext
        from django.utils import timezone

        from verification_link import services

        use_provider(base_url, EXPIRY_BATCH_SIZE=500, POLL_BATCH_SIZE=500)
        past = timezone.now() - timedelta(hours=1)
        n = args.sessions

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
            assert result.processed == sessions, result
            return sessions / elapsed

        def expiry_cost(sessions: int) -> float:
            """Microseconds per session of an expiry sweep without the last check."""
            clear()
            make_overdue(sessions, past - timedelta(days=1))
            elapsed, result = timed(lambda: services.run_expiry_sweep(last_check=False))
            assert result.processed == sessions and result.failed == 0, result
            return elapsed / sessions * 1e6

        def counted_when_the_provider_expired_them(sessions: int) -> int:
            """What ``expire_sessions()`` returns when every last check answers EXPIRED."""
            clear()
            use_provider(expired_url, EXPIRY_BATCH_SIZE=500, POLL_BATCH_SIZE=500, POLL_CONCURRENCY=args.concurrency)
            try:
                make_sessions(sessions, expires_at=past - timedelta(days=1), next_poll_at=None)
                return services.expire_sessions()
            finally:
                use_provider(base_url, EXPIRY_BATCH_SIZE=500, POLL_BATCH_SIZE=500)

        def expiry_queries(batches: int) -> int:
            clear()
            make_sessions(500 * batches, expires_at=past - timedelta(days=1), next_poll_at=None)
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
        checked, _ = median_of(1, lambda: expiry_rate(True, min(n, 2000)))
        totals = [expiry_queries(b) for b in (1, 2, 3)]
        expiry_cost(small)  # warm-up: imports, caches, the first connection's statements
        small_cost, small_rounds = median_of(args.rounds, lambda: expiry_cost(small))
        large_cost, large_rounds = median_of(args.scale_rounds, lambda: expiry_cost(large))
        answered_expired = min(n, 1490)
        counted = counted_when_the_provider_expired_them(answered_expired)
        clear()

    per_batch = [totals[1] - totals[0], totals[2] - totals[1]]
    ratio = poll / bound
    print(
        f"database {vendor}; {n} sessions; provider latency {args.latency * 1000:.0f} ms; "
        f"concurrency {args.concurrency}; median of {args.rounds} rounds"
    )
    print(
        f"poll sweep     {poll:7.1f} sessions/s   bound {bound:.0f}/s   ratio {ratio:.2f}   (target >= 0.80)   "
        f"rounds {', '.join(f'{r:.0f}' for r in poll_rounds)}"
    )
    print(
        f"  bare client  {bare:7.1f} calls/s      bound {bound:.0f}/s   ratio {bare / bound:.2f}   "
        f"(requests alone, no database: this machine's ceiling)"
    )
    for concurrency, rate, ceiling in scan:
        b = concurrency / args.latency
        print(f"  concurrency {concurrency}: sweep ratio {rate / b:.2f}, bare client ratio {ceiling / b:.2f}")
    print(
        f"expiry sweep   {expiry:7.1f} sessions/s   without the last check   (target >= 1000/s on postgresql)   "
        f"rounds {', '.join(f'{r:.0f}' for r in expiry_rounds)}"
    )
    print(f"expiry sweep   {checked:7.1f} sessions/s   with the last check (one provider call each)")
    print(
        f"expiry queries: {totals[0]} for 1 batch of 500; each further batch adds "
        f"{', '.join(map(str, per_batch))} ({'constant' if len(set(per_batch)) == 1 else 'NOT constant'})"
    )
    scale = large_cost / small_cost
    print(
        f"expiry at scale {small_cost:6.1f} us/session at {small:,}, {large_cost:.1f} at {large:,}: "
        f"ratio {scale:.2f}   (target <= 1.30)   rounds {', '.join(f'{r:.0f}' for r in small_rounds)} / "
        f"{', '.join(f'{r:.0f}' for r in large_rounds)}"
    )
    print(
        f"expiry counted  {counted:,} of {answered_expired:,} sessions whose last check answered EXPIRED   "
        f"(target: all)"
    )
    missed = (
        ratio < 0.8
        or (vendor == "postgresql" and expiry < 1000)
        or len(set(per_batch)) != 1
        or scale > 1.3
        or counted != answered_expired
    )
    print("TARGET MISSED" if missed else "targets met")
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
