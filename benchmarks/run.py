"""One run, one table: each figure our users pay for against its floor, measured side by side.

    VL_TEST_DATABASE=postgres python benchmarks/run.py [--rounds 5] [--n 200] [--quick]

- callback: ``callback_view`` (record, judge, confirm by one provider GET, apply) against a bare view
  doing the essential work (parse JSON, find the row, insert one row, one GET) — target <= 1.2x;
- create: ``start_verification`` against a bare ``requests.post`` to the same fake provider plus one
  INSERT — target <= 1.2x;
- QR: SVG render time per code, and what a cache would save;
- poll sweep, expiry sweep and the admin list: ``benchmarks/sweeps.py`` and ``benchmarks/admin.py``,
  run from here (``--quick``: fewer sessions) and their result lines reprinted.

Both sides of a ratio run in the same process against the same fake provider (its own process) and
database, interleaved call by call, several rounds; the figure is the median of the rounds. Views are called with a
``RequestFactory`` request (no middleware on either side).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

from _harness import clear, django_database, fake_provider, make_sessions, use_provider

HERE = Path(__file__).resolve().parent


def per_call(work, items) -> float:
    start = time.perf_counter()
    for item in items:
        work(item)
    return (time.perf_counter() - start) / len(items) * 1000


def side_by_side(ours, bare, items) -> tuple[float, float]:
    """Mean ms per call of each, the two interleaved call by call (alternating which goes first) so
    that the machine's drift — another process, the database's background work — lands on both."""
    spent = {ours: 0.0, bare: 0.0}
    for index, item in enumerate(items):
        for work in (ours, bare) if index % 2 else (bare, ours):
            start = time.perf_counter()
            work(item)
            spent[work] += time.perf_counter() - start
    return spent[ours] / len(items) * 1000, spent[bare] / len(items) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=200, help="requests per side and round")
    parser.add_argument("--quick", action="store_true", help="smaller sweeps and admin runs")
    parser.add_argument("--no-sweeps", action="store_true", help="callback, create and QR only")
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []

    with fake_provider(0.0) as base_url, django_database() as vendor:
        import requests
        from django.http import JsonResponse
        from django.test import RequestFactory

        from verification_link import services
        from verification_link.models import VerificationEvent, VerificationSession
        from verification_link.qr import qr_svg
        from verification_link.views import callback_view

        use_provider(base_url, TASKS="inline")
        factory = RequestFactory()
        http = requests.Session()
        auth = {"APP-ID": "test-app-id", "APP-KEY": "test-app-key-SECRET"}
        body = json.dumps({"status": "IN_PROGRESS", "nextStep": "LIVENESS", "result": {}}).encode()

        def bare_callback(secret: str) -> JsonResponse:
            request = factory.post("/cb/", data=body, content_type="application/json")
            json.loads(request.body)
            session = VerificationSession.objects.only("pk", "token").get(callback_secret=secret)
            VerificationEvent.objects.create(session=session, kind="callback", body=request.body.decode())
            http.get(f"{base_url}/api/v1.0/flow/sessions/{session.token}", headers=auth, timeout=10).json()
            return JsonResponse({"status": "accepted"}, status=202)

        def our_callback(secret: str) -> None:
            request = factory.post("/cb/", data=body, content_type="application/json")
            assert callback_view(request, "ooto", secret).status_code == 202

        def bare_create(_: int) -> None:
            answer = http.post(
                f"{base_url}/api/v1.0/flow/sessions",
                headers=auth,
                timeout=10,
                json={"scopes": ["liveness"], "ttlSec": 3600},
            ).json()
            VerificationSession.objects.create(provider="ooto", token=answer["token"], url=answer["url"])

        def our_create(_: int) -> None:
            services.start_verification(scopes=["liveness"])

        samples: dict[str, list[float]] = {
            "callback ours": [],
            "callback bare": [],
            "create ours": [],
            "create bare": [],
        }
        for _ in range(args.rounds):
            clear()
            make_sessions(args.n, status="IN_PROGRESS")
            secrets = list(VerificationSession.objects.values_list("callback_secret", flat=True))
            for what, ours, bare, items in (
                ("callback", our_callback, bare_callback, secrets),
                ("create", our_create, bare_create, range(args.n)),
            ):
                ours_ms, bare_ms = side_by_side(ours, bare, items)
                samples[f"{what} ours"].append(ours_ms)
                samples[f"{what} bare"].append(bare_ms)
        clear()
        med = {name: statistics.median(values) for name, values in samples.items()}
        for what in ("callback", "create"):
            ratio = med[f"{what} ours"] / med[f"{what} bare"]
            rows.append(
                (
                    what,
                    f"{med[f'{what} ours']:.2f} ms",
                    f"{med[f'{what} bare']:.2f} ms (floor)",
                    f"{ratio:.2f}x (target <= 1.2x{'' if ratio <= 1.2 else ': MISSED'})",
                )
            )

        links = [f"https://cloud.ooto-ai.com/flow/{i:064x}" for i in range(200)]
        render = statistics.median(per_call(qr_svg, links) for _ in range(args.rounds))
        cached = lru_cache(maxsize=1024)(qr_svg)
        for link in links:
            cached(link)
        hit = statistics.median(per_call(cached, links) for _ in range(args.rounds))
        rows.append(
            (
                "QR SVG",
                f"{render:.2f} ms/code",
                f"{hit * 1000:.1f} µs from a cache",
                "each link is shown a few times at most: no cache kept",
            )
        )

    print(
        f"database {vendor}; fake provider without latency in its own process; median of {args.rounds} rounds "
        f"of {args.n} calls a side"
    )
    width = max(len(r[0]) for r in rows)
    for name, ours, floor, verdict in rows:
        print(f"{name:<{width}}  {ours:>14}  {floor:>28}  {verdict}")

    sweeps = [sys.executable, str(HERE / "sweeps.py"), "--rounds", "1" if args.quick else "3"]
    admin = [sys.executable, str(HERE / "admin.py")]
    if args.quick:
        sweeps += ["--sessions", "1000"]
        admin += ["--sessions", "20000", "--rounds", "5"]
    for command in () if args.no_sweeps else (sweeps, admin):
        print(f"\n$ {' '.join(Path(part).name if part.endswith('.py') else part for part in command[1:])}")
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        print(result.stdout.strip() or result.stderr.strip()[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
