"""Load: the example project under gunicorn on PostgreSQL, hammered with OOTO callbacks.

    python benchmarks/load.py [--load both|valid|mixed] [--requests 2000] [--rounds 6] [--check]
                              [--callbacks 2000] [--sessions 200] [--clients 50] [--workers 4]
    python benchmarks/load.py --small    # CI: both figures, 20 clients, 2 workers (300 requests a side,
                                         # 2 rounds; the mixed load: 300 callbacks, 40 sessions)

Two figures, in this order (``--load valid`` or ``--load mixed`` runs one):

1. **All-valid callbacks against a bare floor** — what a site pays per callback for the app,
   under the same load on the same stack. Every request is the provider's own callback body for a
   session of its own (``--requests`` sessions a side), so coalescing (``CALLBACK_COALESCE_SECONDS``:
   a callback about a session we asked about recently makes no call) never applies: every one asks
   the provider. 10 % of the sessions are DONE at the provider with every check passed (they
   finish, approved by the default policy); the rest are IN_PROGRESS, the status and step we hold
   (the confirmation changes nothing). Targets: throughput >= 0.85x the floor's, p99 <= 1.3x.
2. **The mixed load** (duplicates, forged and malformed bodies, unknown secrets, wrong methods)
   with its invariants — below.

The floor (``benchmarks/floor_app.py``) is a bare view doing the essential work of a callback: find
the session by ``(provider, callback_secret)``, record the request (one ``callback`` event with the
body), one Get Status with a ``requests.Session`` whose ``trust_env`` is False (ours reads proxies
once too); then on DONE, in one transaction, lock the row, write status, result, ``finished_at`` and
insert one ``status_changed`` row; otherwise mark the recorded request confirmed (one UPDATE). It
is served by the same gunicorn command line, with the example project's own settings
(``benchmarks/floor_settings.py`` imports them and changes only ``ROOT_URLCONF``: same middleware,
``DATABASES`` with ``CONN_MAX_AGE`` and health checks, ``DEBUG`` off, logging), on the same tables
and against the same fake provider. Its sessions are separate from ours (``2 x --requests`` are
made through ``services.start_verification``, half for each, user-less — a site's
``verification_finished`` receiver is the site's work, which the mixed load checks) with the same
truth distribution, and all start IN_PROGRESS at the provider's step and expiry (set in the
database at setup: the state a first callback would have left).

Interleaved in the same run: both servers start once; each side warms up (``--warmup`` sessions of
its own: lazy imports, URL resolvers, the first connections), then the measured requests run in
``--rounds`` rounds a side, ordered ABBA (ours, floor, floor, ours, ours, floor …), each round
``--clients`` threads and the same number of finishing sessions on both sides. Drift of a shared
machine (another benchmark, autovacuum, a checkpoint) so lands on both. Throughput: requests over
the wall time; p50/p95/p99: client-side timings. Printed pooled (all rounds of a side) and as the
median over the round pairs (round r of ours and of the floor ran back to back) of each pair's
ratio — the figure the targets are judged on: a burst of another process's work lands on one round
of one side, and would move a pooled p99 (the 20th slowest of 2,000) by itself.

CPU milliseconds per request, of the window of each round (``/proc``; Linux):

- server: the gunicorn process tree — the master and its workers, alive (``utime + stime``) or
  reaped (the master's ``cutime + cstime``);
- database: the PostgreSQL cluster's process tree the same way — the postmaster (found as the parent
  of our own connection's ``pg_backend_pid()``), its live children (backends, the WAL writer,
  checkpointer, autovacuum workers) and, through its ``cutime + cstime``, every child that exited in
  the window (a connection closed at ``CONN_MAX_AGE``). Only one side sends requests at a time, so
  the cluster's CPU in a round is that side's; this counts the whole cluster, so give ``PG*`` of a
  server no other work uses (a throwaway one when ``PGHOST`` is unset);
- also printed: this process (the clients), the fake provider, and the rest of the machine
  (``/proc/stat`` busy time minus all of these) — the others' share of a shared machine.

``--check`` exits 1 when a target is missed (the full-size figure only; at ``--small`` the ratios are
printed, not judged: a few hundred requests on two shared cores are too noisy to gate CI on).
``--profile DIR``: from the end of the warm-up, each gunicorn worker of both sides runs under
``cProfile`` on its thread's CPU clock (waits are not counted) and counts its SQL statements; printed:
statements and CPU ms per request by package for each side, and our hottest functions (the figure's
timings are then distorted, and its targets not judged).

The all-valid invariants (exit 1 if any fails): every request answered 202, no transport error, none
unsent; every request of ours recorded as exactly one ``callback`` event on its session, valid and
processed, with the body sent and the provider's answer (``data["answer"]``), none coalesced; one
provider Get Status per request of each side, and for each session exactly one; the DONE sessions
DONE with ``finished_at``, the hand-off link cleared, approved, by exactly one ``status_changed``
(IN_PROGRESS -> DONE, source ``callback``, ``data["decision"]``); the rest IN_PROGRESS, undecided,
with none; the floor's sessions likewise in their true state; no other events; no traceback in
either server's log, no worker restarted.

The mixed load (the second figure)
==================================

What runs where:

- PostgreSQL: the server of the ``PG*`` variables (``eval "$(.ci/postgres.sh start /tmp/vl-pg)"``); when
  ``PGHOST`` is unset, a throwaway cluster is started with ``.ci/postgres.sh`` in a temp dir and stopped
  at the end. Each run creates its own database ``vl_load_<random>`` and drops it afterwards
  (``--keep`` keeps it, the temp dir and the server log, for a look after a failure).
- A fake OOTO provider (``verification_link.testing.OotoServer``, ``--latency`` per answer) in a child
  process of its own, driven from here over a pipe (create, then ``complete``/``fail``/``advance``).
- The example project (``VL_PROVIDER=ooto`` pointed at the fake, ``DJANGO_DEBUG=0``, no ``REDIS_URL`` so
  a callback's confirmation runs inline in the request) under ``gunicorn`` with ``--workers`` sync
  workers. gunicorn must be importable by this interpreter (``pip install gunicorn``).
- This process: migrations, one user per session, the sessions through the real
  ``services.start_verification`` against the fake, the load (``--clients`` threads, ``requests``),
  and the checks, through the ORM on the same database.

Before the load every session gets its true state at the provider: 60 % DONE with every check passed,
10 % DONE with a failed deepfake check, 15 % FAILED, 15 % still IN_PROGRESS. Then exactly
``--callbacks`` requests, shuffled, from ``--clients`` threads (each request has a timeout, the whole
load a deadline ``--timeout``):

=============  ==================================================================  ==========
kind           what                                                                expected
=============  ==================================================================  ==========
valid          the provider's own callback body (Get Status) — many per session    202 / 200
stale          a JSON object claiming another status (older, or a forged outcome)  202 / 200
bad            not JSON, invalid UTF-8, a JSON array or scalar, an empty body      400
oversized      a JSON object of ~70 KiB (> MAX_EVENT_BODY_BYTES = 64 KiB)           413
unknown        a random secret, a real secret under another alias, a NUL in path   404
method         GET / PUT / DELETE on a real callback URL                            405
=============  ==================================================================  ==========

(202 while the session is open, 200 "already final" after; only 202 for the sessions that stay open.)
Every session gets at least one valid callback when ``--callbacks`` >= ``--sessions``.

Which requests leave a ``callback`` event (``callback_view``): every POST that reaches the view — the
view records the request before judging it, so the 400s, the 404s (session-less events) and the 413s
(the body then not even read: stored empty, error "body too large") are recorded too; the 405s are
answered by ``require_POST`` before the view and leave none. Each request carries ``X-Request-Id``
(a recorded header), so every POST is matched to exactly one event.

The invariants checked (exit 1 if any fails):

- no 5xx, no transport error, every request sent before the deadline, each answered as its kind expects;
- every POST recorded as exactly one ``callback`` event, on the right session (none for unknown
  secrets), with the right verdict (``valid``/``processed``/``error``), the valid ones with the body sent;
- each 202 confirmed by one provider pull, or coalesced into one: a valid callback within
  ``CALLBACK_COALESCE_SECONDS`` (default 5 s) of our last call about its session makes no call of its
  own (its event's ``data`` says ``coalesced``). Provider Get Status calls = answers recorded for
  callbacks (``data["answer"]`` on the callback's event) <= 202s, no ``poll_failed``; for sessions that
  stay open, pulls + coalesced = 202s, with at least one pull each (a session is never coalesced into
  a call that was not made);
- every session's final status is its true provider state (forged bodies never applied; sessions
  that stay open are IN_PROGRESS), with ``finished_at`` and the hand-off link cleared when final;
- signals: ``verification_finished`` is sent on commit exactly for a transition to a final status, and
  each such transition writes one ``status_changed`` event with that ``new_status`` in the same
  transaction — so those events are its durable count: exactly one per finished session, none for open
  ones (and exactly one ``status_changed`` per session, CREATED → truth, source ``callback``);
- decisions (default policy): DONE passing → approved, DONE with a failed check → review, FAILED →
  rejected, open → undecided; one decision recorded per decided session (``data["decision"]`` on its
  ``status_changed`` event);
- the demo app's ``verification_finished`` receiver marked exactly the users of approved sessions verified
  (``demo.Profile``);
- the server log has no traceback, and no worker was restarted.

Printed: phase times, requests/s, server and database CPU ms per request (measured as above), latency
p50/p95/p99 per kind, the status-code histogram, and PASS/FAIL per invariant. Any 5xx is shown with the
server log's tracebacks.

The code: this file is the command line and the course of each figure; the parts it runs are the
modules of ``benchmarks/loadtest/`` (processes, CPU accounting, clients, and each figure's plan,
checks and table: its ``__init__`` lists them).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest import ROOT, log, use_example_project
from loadtest.clients import run_load
from loadtest.cpu import CpuProbe, postmaster_pid
from loadtest.mixed import mixed_requests, mixed_targets, report_mixed
from loadtest.mixed_checks import check_mixed
from loadtest.processes import APP_ID, APP_KEY, Provider, free_port, gunicorn, postgres, server_errors
from loadtest.valid import FLOOR_SETTINGS, VALID_DONE_SHARE, Side, run_valid_rounds, valid_requests, valid_targets
from loadtest.valid_checks import check_valid
from loadtest.valid_report import report_profile, report_valid

PRESETS = {
    "default": {"callbacks": 2000, "clients": 50, "sessions": 200, "workers": 4, "requests": 2000, "rounds": 6},
    "small": {"callbacks": 300, "clients": 20, "sessions": 40, "workers": 2, "requests": 300, "rounds": 2},
}
LOADS = {"both": "all-valid and mixed loads", "valid": "all-valid load", "mixed": "mixed load"}


def run_valid(args: Any, provider: Provider, ports: tuple[int, int], env: dict, workdir: Path, rng: random.Random,
              probe: CpuProbe, header: str) -> tuple[bool, list[str]]:  # fmt: skip
    """The all-valid figure: sessions, both servers, the interleaved rounds, the checks, the table.
    Returns (invariants failed, targets missed)."""
    from django.db import connections

    t = time.perf_counter()
    groups = valid_targets(args.requests, args.warmup, provider, rng)
    log(
        f"{2 * (args.requests + args.warmup)} sessions through start_verification in {time.perf_counter() - t:.1f} s: "
        f"{args.requests} measured + {args.warmup} warm-up a side, {VALID_DONE_SHARE:.0%} DONE at the provider"
    )
    connections.close_all()
    provider("reset")  # the creations' calls: the checks count Get Status calls of the load
    if args.profile:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
        (args.profile / "measure").unlink(missing_ok=True)
        os.environ["VL_LOAD_PROFILE"] = str(args.profile)
    profile_env = {"VL_LOAD_PROFILE": str(args.profile)} if args.profile else {}
    with contextlib.ExitStack() as stack:
        sides = {}
        for (name, settings), port in zip((("ours", ""), ("floor", FLOOR_SETTINGS)), ports, strict=True):
            server = stack.enter_context(gunicorn(port, args.workers, {**env, **profile_env}, workdir, name, settings))
            measured, warm = groups[name]
            warmup, rounds = valid_requests(name, measured, warm, args.rounds, rng)
            targets = {t.id: t for t in [*measured, *warm]}
            sides[name] = Side(name, server, f"http://127.0.0.1:{port}", targets, warmup, rounds)
        log(
            f"gunicorn: ours and the floor, {args.workers} workers each; {args.rounds} rounds a side of "
            f"~{args.requests // args.rounds} requests from {args.clients} clients, ABBA"
        )
        run_valid_rounds(list(sides.values()), args.clients, args.timeout, probe)
    verdicts = check_valid(sides, provider, args.workers)
    connections.close_all()
    header += (
        f"; {args.rounds} rounds a side of ~{args.requests // args.rounds} requests, ABBA; {args.warmup} warm-up a side"
    )
    if args.profile:
        header += "; PROFILED (timings distorted)"
    missed = report_valid(sides, verdicts, header, judged=not args.small and not args.profile)
    if args.profile:
        report_profile(args.profile, sides)
    if verdicts.failed:
        for side in sides.values():
            excerpt = server_errors(side.server.log_path)
            if excerpt:
                print(f"\nserver log of {side.name} (errors):\n" + excerpt)
    return verdicts.failed, missed


def run_mixed(args: Any, provider: Provider, port: int, env: dict, workdir: Path, rng: random.Random,
              probe: CpuProbe, header: str) -> bool:  # fmt: skip
    """The mixed load: sessions, the server, the load, the invariants, the figure. Returns whether
    an invariant failed."""
    from django.db import connections

    from verification_link.testing import ooto_result

    phases: dict[str, float] = {}
    t = time.perf_counter()
    targets, order, truth = mixed_targets(args.sessions, provider, rng)
    phases["sessions"] = time.perf_counter() - t
    log(f"{args.sessions} sessions through start_verification; truth: {truth}")
    planned = mixed_requests(order, args.callbacks, rng, ooto_result)
    connections.close_all()

    t = time.perf_counter()
    with gunicorn(port, args.workers, env, workdir) as server:
        phases["gunicorn start"] = time.perf_counter() - t
        log(f"gunicorn: {args.workers} workers at :{port}; {len(planned)} requests from {args.clients} clients")
        before = probe.read(server.pid)
        wall = run_load(f"http://127.0.0.1:{port}", planned, args.clients, args.timeout)
        spent = probe.since(before, server.pid)
        phases["load"] = wall
    t = time.perf_counter()
    verdicts = check_mixed(planned, targets, provider, server.log_path, args.workers)
    phases["checks"] = time.perf_counter() - t
    connections.close_all()
    header = f"{header}; {args.sessions} sessions; {args.callbacks} requests from {args.clients} clients"
    report_mixed(planned, wall, phases, verdicts, header, spent)
    if verdicts.failed:
        excerpt = server_errors(server.log_path)
        if excerpt:
            print("\nserver log (errors):\n" + excerpt)
        print(f"\nserver log: {server.log_path}" + ("" if args.keep else " (removed; --keep keeps it)"))
    return verdicts.failed


def clear_database() -> None:
    """What the all-valid figure left, before the mixed load (whose checks read whole tables)."""
    from demo.models import Profile
    from django.contrib.auth import get_user_model

    from verification_link.models import VerificationEvent, VerificationSession

    VerificationEvent.objects.all().delete()
    VerificationSession.objects.all().delete()
    Profile.objects.all().delete()
    get_user_model().objects.all().delete()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--small",
        action="store_true",
        help="the CI preset: 20 clients, 2 workers; all-valid 300 requests a side in 2 rounds (ratios not judged); "
        "mixed 300 callbacks, 40 sessions",
    )
    parser.add_argument(
        "--load", choices=["both", "valid", "mixed"], default="both", help="which figure (default: both, valid first)"
    )
    parser.add_argument("--requests", type=int, help="all-valid: measured requests (= sessions) a side (default 2000)")
    parser.add_argument("--rounds", type=int, help="all-valid: rounds a side, interleaved ABBA (default 6)")
    parser.add_argument("--warmup", type=int, help="all-valid: warm-up requests a side, not measured (default 40)")
    parser.add_argument("--callbacks", type=int, help="mixed: requests sent in all (default 2000)")
    parser.add_argument("--sessions", type=int, help="mixed: verification sessions (default 200)")
    parser.add_argument("--clients", type=int, help="concurrent client threads (default 50)")
    parser.add_argument("--workers", type=int, help="gunicorn sync workers of each server (default 4)")
    parser.add_argument("--latency", type=float, default=0.005, help="fake provider latency, seconds (default 0.005)")
    parser.add_argument("--timeout", type=float, default=300, help="deadline of each load, seconds (default 300)")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the plan (default: random, printed)")
    parser.add_argument("--check", action="store_true", help="exit 1 when an all-valid target is missed (full size)")
    parser.add_argument(
        "--profile", type=Path, default=None, help="all-valid: cProfile the workers and count SQL, into this directory"
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="CONN_MAX_AGE of the gunicorn workers (default: the example project's, 60 s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database, temp dir and server logs")
    args = parser.parse_args()
    preset = {**PRESETS["small" if args.small else "default"], "warmup": 10 if args.small else 40}
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.rounds < 1 or args.requests < args.rounds:
        parser.error("--rounds must be at least 1 and at most --requests")
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)

    if importlib.util.find_spec("gunicorn") is None:
        print(
            f"gunicorn is not installed for {sys.executable}: {sys.executable} -m pip install gunicorn", file=sys.stderr
        )
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="vl-load."))
    t0 = time.perf_counter()
    provider: Provider | None = None
    try:
        provider = Provider(args.latency)
        with postgres(workdir, args.keep) as dbname:
            port = free_port()
            floor_port = free_port()
            while floor_port == port:
                floor_port = free_port()
            settings_env = {
                "DATABASE_URL": f"postgres:///{dbname}",
                "VL_PROVIDER": "ooto",
                "OOTO_BASE_URL": provider.base_url,
                "OOTO_APP_ID": APP_ID,
                "OOTO_APP_KEY": APP_KEY,
                "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                "DJANGO_DEBUG": "0",
                "VL_LOG_LEVEL": "INFO",
            }
            if args.conn_max_age is not None:
                settings_env["VL_LOAD_CONN_MAX_AGE"] = str(args.conn_max_age)
            os.environ.update(settings_env)
            os.environ.pop("REDIS_URL", None)  # tasks inline, in the request
            use_example_project()
            import django

            django.setup()
            import logging

            logging.getLogger("verification_link").setLevel(logging.WARNING)  # INFO goes to the server log only
            from django.core.management import call_command
            from django.db import connections

            log(f"database {dbname}; fake OOTO at {provider.base_url} ({args.latency * 1000:.0f} ms); seed {seed}")
            call_command("migrate", verbosity=0)
            log(f"migrated in {time.perf_counter() - t0:.1f} s")
            probe = CpuProbe(postmaster_pid(), provider.process.pid)
            connections.close_all()
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
            header = (
                f"database postgresql ({dbname}); gunicorn {args.workers} sync workers; "
                f"provider latency {args.latency * 1000:.0f} ms; seed {seed}; {os.cpu_count()} CPUs"
                + ("" if args.conn_max_age is None else f"; CONN_MAX_AGE {args.conn_max_age}")
            )
            failed, missed = False, []
            if args.load in ("both", "valid"):
                valid_header = f"{header}; {args.requests} requests a side from {args.clients} clients"
                failed, missed = run_valid(args, provider, (port, floor_port), env, workdir, rng, probe, valid_header)
            if args.load == "both":
                clear_database()
                connections.close_all()
                provider("reset")
            if args.load in ("both", "mixed"):
                failed = run_mixed(args, provider, port, env, workdir, rng, probe, header) or failed
            print()
            print(
                f"{'FAILED' if failed else 'PASSED'}: the invariants of the {LOADS[args.load]}; "
                f"{time.perf_counter() - t0:.0f} s in all"
                + (f"; targets missed: {', '.join(missed)}" if missed else "")
                + ("" if args.check or not missed else " (not gating without --check)")
            )
            return 1 if failed or (args.check and missed) else 0
    finally:
        if provider is not None:
            provider.close()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
