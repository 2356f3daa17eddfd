"""The all-valid figure's table: ours against the floor, pooled and as the median of the round pairs'
ratios, judged against the targets; with ``--profile``, SQL statements and CPU per request by package."""

from __future__ import annotations

import collections
import json
import statistics
from pathlib import Path
from typing import Any

from .clients import Request, percentile
from .valid import Side
from .verdicts import Verdicts

# The targets against the floor: throughput at least, p99 at most, this ratio.
TARGET_THROUGHPUT, TARGET_P99 = 0.85, 1.3


def latency_figures(requests_: list[Request]) -> dict[str, float]:
    """Client-side p50/p95/p99/max of the answered requests, ms."""
    ms = [r.elapsed * 1000 for r in requests_ if r.code is not None]
    return {
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": max(ms, default=float("nan")),
    }


def valid_figures(side: Side) -> dict[str, Any]:
    """Pooled over the rounds: throughput (answered requests over the rounds' wall time), client-side
    latency percentiles, CPU ms per request; and per round (``"rounds"``) the same throughput and
    latency figures."""
    measured = side.measured()
    n = len(measured)
    cpu = {k: None if v is None else v / n for k, v in side.cpu.items()}
    if all(cpu.get(k) is not None for k in ("machine", "server", "db", "clients", "provider")):
        cpu["rest"] = cpu["machine"] - cpu["server"] - cpu["db"] - cpu["clients"] - cpu["provider"]
    rounds = [
        {"rps": sum(r.code is not None for r in chunk) / wall, **latency_figures(chunk)}
        for chunk, wall in zip(side.rounds, side.walls, strict=True)
    ]
    return {
        "rps": sum(r.code is not None for r in measured) / sum(side.walls),
        **latency_figures(measured),
        "rounds": rounds,
        **{f"cpu_{k}": v for k, v in cpu.items()},
    }


def report_valid(sides: dict[str, Side], verdicts: Verdicts, header: str, judged: bool) -> list[str]:
    """Print the all-valid table; returns the targets missed (when ``judged``). The targets are judged
    on the median over the round pairs (ours and the floor's round r ran back to back) of each pair's
    ratio: a burst of another process's work lands on one round of one side and moves a pooled p99
    (the 20th slowest of 2,000) by itself; the pooled figures are printed beside."""
    ours, floor = (valid_figures(sides[name]) for name in ("ours", "floor"))

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    def ratio(key: str) -> str:
        a, b = ours.get(key), floor.get(key)
        return "n/a" if a is None or b is None or not b else f"{a / b:.2f}x"

    keys = ("rps", "p50", "p95", "p99", "max")
    paired = {
        k: statistics.median(a[k] / b[k] for a, b in zip(ours["rounds"], floor["rounds"], strict=True)) for k in keys
    }
    print()
    print("== all-valid callbacks: ours (example project) against the bare floor (benchmarks/floor_app.py)")
    print(header)
    print()
    columns = ("req/s", 8), ("p50 ms", 9), ("p95 ms", 9), ("p99 ms", 9), ("max ms", 9)
    print(
        f"{'':<24}"
        + "".join(f"{name:>{width}}" for name, width in columns)
        + f"{'server CPU ms/req':>19}{'DB CPU ms/req':>15}"
    )
    for name, f in (("ours", ours), ("floor", floor)):
        print(
            f"{name:<24}{f['rps']:>8.1f}{f['p50']:>9.1f}{f['p95']:>9.1f}{f['p99']:>9.1f}{f['max']:>9.1f}"
            f"{ms(f.get('cpu_server')):>19}{ms(f.get('cpu_db')):>15}"
        )
    print(
        f"{'ours / floor, pooled':<24}{ours['rps'] / floor['rps']:>7.2f}x"
        + "".join(f"{ours[k] / floor[k]:>8.2f}x" for k in keys[1:])
        + f"{ratio('cpu_server'):>19}{ratio('cpu_db'):>15}"
    )
    n_pairs = len(ours["rounds"])
    print(
        f"{f'median of {n_pairs} round pairs':<24}{paired['rps']:>7.2f}x"
        + "".join(f"{paired[k]:>8.2f}x" for k in keys[1:])
    )
    print()
    print("per round pair (ours | floor): " + "; ".join(
        f"{a['rps']:.0f} | {b['rps']:.0f} req/s, p99 {a['p99']:.0f} | {b['p99']:.0f} ms"
        for a, b in zip(ours["rounds"], floor["rounds"], strict=True)
    ))  # fmt: skip
    for name, f in (("ours", ours), ("floor", floor)):
        if f.get("cpu_machine") is not None:
            print(
                f"machine CPU ms/req in the rounds of {name}: {f['cpu_machine']:.2f} in all — server "
                f"{ms(f.get('cpu_server'))}, database {ms(f.get('cpu_db'))}, clients {ms(f.get('cpu_clients'))}, "
                f"fake provider {ms(f.get('cpu_provider'))}, rest of the machine {ms(f.get('cpu_rest'))}"
            )
    missed = []
    verdict = []
    for name, value, pooled, target, ok in (
        ("throughput", paired["rps"], ours["rps"] / floor["rps"], f">= {TARGET_THROUGHPUT}x",
         paired["rps"] >= TARGET_THROUGHPUT),
        ("p99", paired["p99"], ours["p99"] / floor["p99"], f"<= {TARGET_P99}x", paired["p99"] <= TARGET_P99),
    ):  # fmt: skip
        verdict.append(f"{name} {value:.2f}x (pooled {pooled:.2f}x; target {target}: {'met' if ok else 'MISSED'})")
        if not ok and judged:
            missed.append(name)
    print("targets, on the median of the round pairs: " + "; ".join(verdict) + ("" if judged else " — not judged here"))
    print()
    verdicts.print_results()
    print()
    print("ALL-VALID LOAD FAILED" if verdicts.failed else "ALL-VALID LOAD PASSED")
    return missed


# Where a profiled function's file lies -> the package its CPU time is counted to (first match).
PROFILE_GROUPS = (
    ("verification_link", "/verification_link/"),
    ("the floor view", "/benchmarks/floor_app.py"),
    ("django", "/django/"),
    ("psycopg", "/psycopg"),
    ("requests, urllib3", "/requests/"),
    ("requests, urllib3", "/urllib3/"),
    ("gunicorn", "/gunicorn/"),
    ("json", "/json/"),
)


def profile_group(filename: str) -> str:
    """The package a profiled function's CPU time is counted to (``~``: a C function's)."""
    for name, part in PROFILE_GROUPS:
        if part in filename:
            return name
    return "C functions" if filename == "~" else "other Python (stdlib, site-packages)"


def report_profile(directory: Path, sides: dict[str, Side]) -> None:
    """Each side's SQL statements per request (counted in its workers) and its CPU per request by
    package (the profile's own time, on the threads' CPU clock); then our hottest functions."""
    import pstats

    print(f"\n== profile ({directory}): per measured request; CPU clock, so waits are not counted")
    stats = {}
    for side in sides.values():
        counts: collections.Counter = collections.Counter()
        for path in directory.glob(f"{side.server.settings}-*.json"):
            counts.update(json.loads(path.read_text()))
        served = counts.pop("requests", 0) or 1
        print(
            f"{side.name}: {sum(counts.values()) / served:.2f} SQL statements ("
            + ", ".join(f"{verb} {n / served:.2f}" for verb, n in counts.most_common())
            + f") over {served} requests"
        )
        files = [str(path) for path in directory.glob(f"{side.server.settings}-*.prof")]
        if files:
            stats[side.name] = (pstats.Stats(*files), served)
    groups: dict[str, collections.Counter] = {}
    for name, (stat, served) in stats.items():
        groups[name] = collections.Counter()
        for (filename, _, _), (_, _, own, _, _) in stat.stats.items():  # type: ignore[attr-defined]
            groups[name][profile_group(filename)] += own * 1000 / served
    if groups:
        names = list(groups)
        print("\nCPU ms per request by package (own time): " + " / ".join(names))
        for group in sorted({g for c in groups.values() for g in c}, key=lambda g: -groups[names[0]][g]):
            print(f"  {group:<40}" + "".join(f"{groups[n][group]:>9.3f}" for n in names))
        print(f"  {'all':<40}" + "".join(f"{sum(groups[n].values()):>9.3f}" for n in names))
    if "ours" in stats:
        print("\nours: the top functions by own CPU time, all workers")
        stats["ours"][0].strip_dirs().sort_stats("tottime").print_stats(25)
