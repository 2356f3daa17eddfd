"""Load: the example project under gunicorn on PostgreSQL, hammered with OOTO callbacks.

    python benchmarks/load.py [--callbacks 2000] [--clients 50] [--sessions 200] [--workers 4]
    python benchmarks/load.py --small          # CI: 300 callbacks, 20 clients, 40 sessions, 2 workers

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
  callbacks (``data["answer"]`` on the callback's event) <= 202s, no ``poll_failed``; for sessions that stay open, pulls + coalesced = 202s,
  with at least one pull each (a session is never coalesced into a call that was not made);
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

Printed: phase times, requests/s, latency p50/p95/p99 per kind, the status-code histogram, and PASS/FAIL
per invariant. Any 5xx is shown with the server log's tracebacks.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import multiprocessing
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
APP_ID, APP_KEY = "load-app", "load-key-" + secrets.token_hex(8)
MAX_BODY = 65536  # MAX_EVENT_BODY_BYTES, the default (the example project does not change it)

PRESETS = {
    "default": {"callbacks": 2000, "clients": 50, "sessions": 200, "workers": 4},
    "small": {"callbacks": 300, "clients": 20, "sessions": 40, "workers": 2},
}
# Share of each request kind once every session has had its first valid callback.
MIX = {"valid": 0.50, "stale": 0.17, "bad": 0.12, "oversized": 0.04, "unknown": 0.09, "method": 0.08}
# True provider state: (status, fine) -> share.
TRUTH = [("DONE", True, 0.60), ("DONE", False, 0.10), ("FAILED", None, 0.15), ("IN_PROGRESS", None, 0.15)]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_example_project() -> None:
    for path in (str(EXAMPLE), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"


# -- the fake provider, in a child process driven over a pipe ----------------------------------------


def _provider_main(conn: Any, latency: float, app_id: str, app_key: str) -> None:
    use_example_project()  # the models must import; no database is touched here
    import django

    django.setup()
    from verification_link.testing import OotoServer

    server = OotoServer(app_id=app_id, app_key=app_key, latency=latency, record=True)
    ops = {
        "complete": server.complete,
        "fail": server.fail,
        "advance": server.advance,
        "status_body": server.status_body,
        "count": lambda method, prefix: sum(1 for c in server.calls(method) if c[1].startswith(prefix)),
    }
    with server:
        conn.send(server.base_url)
        while True:
            try:
                name, args, kwargs = conn.recv()
            except EOFError:
                return
            if name == "stop":
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", ops[name](*args, **kwargs)))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}"))


class Provider:
    """The fake OOTO in its own process (its threads do not compete with the clients for the GIL)."""

    def __init__(self, latency: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._lock = threading.Lock()
        self.process = context.Process(target=_provider_main, args=(child, latency, APP_ID, APP_KEY), daemon=True)
        self.process.start()
        if not self._conn.poll(60):
            raise RuntimeError("the fake provider did not start within 60 s")
        self.base_url: str = self._conn.recv()

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._conn.send((name, args, kwargs))
            outcome, value = self._conn.recv()
        if outcome != "ok":
            raise RuntimeError(f"fake provider {name}: {value}")
        return value

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)


# -- PostgreSQL ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres(workdir: Path, keep: bool) -> Iterator[str]:
    """The ``PG*`` server (a throwaway one when ``PGHOST`` is unset) with a fresh database; yields its name.
    ``DATABASE_URL`` names only the database: host, port, user and password come from the ``PG*``
    variables, which libpq reads in every process (a unix-socket ``PGHOST`` fits no URL host)."""
    started = None
    if not os.environ.get("PGHOST"):
        started = workdir / "pg"
        log(f"PGHOST unset: starting a throwaway PostgreSQL cluster in {started}")
        out = subprocess.run(
            [str(ROOT / ".ci" / "postgres.sh"), "start", str(started)], check=True, capture_output=True, text=True
        )
        for line in out.stdout.splitlines():
            for word in shlex.split(line)[1:] if line.startswith("export ") else []:
                name, _, value = word.partition("=")
                os.environ[name] = value
    try:
        import psycopg

        name = f"vl_load_{secrets.token_hex(4)}"
        admin_db = os.environ.get("PGDATABASE") or "postgres"
        with psycopg.connect(dbname=admin_db, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            if keep:
                log(f"kept database {name}")
            else:
                with psycopg.connect(dbname=admin_db, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        if started is not None and not keep:
            subprocess.run([str(ROOT / ".ci" / "postgres.sh"), "stop", str(started)], capture_output=True)


# -- gunicorn -----------------------------------------------------------------------------------------

# Written next to the server log: with DEBUG off, Django sends a 500's traceback only to mail_admins;
# this hook also writes it to the worker's stderr (the server log) so a 5xx can be explained.
# ``VL_LOAD_CONN_MAX_AGE`` (``--conn-max-age``) makes the workers keep their database connection, for
# comparison with the example project as it is (a new connection per request).
GUNICORN_CONFIG = """\
import logging
import os


def post_worker_init(worker):
    handler = logging.StreamHandler()
    handler.setLevel(logging.ERROR)
    handler.setFormatter(logging.Formatter("[%(process)d] %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("django.request").addHandler(handler)
    if os.environ.get("VL_LOAD_CONN_MAX_AGE"):
        from django.db import connections

        connections.databases["default"]["CONN_MAX_AGE"] = int(os.environ["VL_LOAD_CONN_MAX_AGE"])
"""


@contextlib.contextmanager
def gunicorn(port: int, workers: int, env: dict[str, str], workdir: Path) -> Iterator[Path]:
    """The example project under gunicorn; yields the path of its log once it answers."""
    config = workdir / "gunicorn_conf.py"
    config.write_text(GUNICORN_CONFIG)
    log_path = workdir / "gunicorn.log"
    command = [
        sys.executable, "-m", "gunicorn", "example_project.wsgi:application",
        "--chdir", str(EXAMPLE), "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
        "--config", str(config), "--timeout", "60", "--graceful-timeout", "10",
    ]  # fmt: skip
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                # A GET on the callback URL: 405 from require_POST, no event recorded.
                if requests.get(f"http://127.0.0.1:{port}/verify/callback/ooto/ready/", timeout=2).status_code:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer within 60 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


# -- the plan -----------------------------------------------------------------------------------------


@dataclass
class Target:
    id: str
    secret: str
    token: str
    user_id: int
    status: str = ""  # the true provider state
    fine: bool | None = None
    body: dict = field(default_factory=dict)  # the provider's callback body


@dataclass
class Request:
    rid: str
    kind: str
    method: str
    path: str
    body: bytes | None
    session: str | None  # the session the path names (None: unknown)
    variant: str = ""
    code: int | None = None  # the answer, or None (transport error / not sent)
    error: str = ""
    started: float = 0.0
    elapsed: float = 0.0


def stale_body(target: Target, rng: random.Random, result_of: Any) -> tuple[str, dict]:
    """A JSON object claiming another status than the truth: older, or a forged outcome."""
    body = dict(target.body)
    if target.status == "IN_PROGRESS":
        variant, claim = rng.choice(
            [("forged DONE", "DONE"), ("stale CREATED", "CREATED"), ("forged FAILED", "FAILED")]
        )
    elif target.status == "FAILED":
        variant, claim = rng.choice([("forged DONE", "DONE"), ("stale IN_PROGRESS", "IN_PROGRESS")])
    else:
        variant, claim = rng.choice([("forged FAILED", "FAILED"), ("stale IN_PROGRESS", "IN_PROGRESS")])
    body["status"] = claim
    body["nextStep"] = "LIVENESS" if claim in ("CREATED", "IN_PROGRESS") else None
    body["result"] = result_of(body.get("scopes") or ["liveness"], fine=claim == "DONE") if claim != "CREATED" else {}
    return variant, body


def plan(targets: list[Target], total: int, rng: random.Random, result_of: Any) -> list[Request]:
    """Exactly ``total`` requests, shuffled; every session gets a valid callback first when there are enough."""
    plan_kinds: list[tuple[str, Target]] = [("valid", t) for t in targets[:total]]
    names, weights = zip(*MIX.items(), strict=True)
    while len(plan_kinds) < total:
        plan_kinds.append((rng.choices(names, weights)[0], rng.choice(targets)))
    rng.shuffle(plan_kinds)
    requests_: list[Request] = []
    for n, (kind, target) in enumerate(plan_kinds):
        rid = f"load-{n:06d}"
        path = f"/verify/callback/ooto/{target.secret}/"
        method, body, session, variant = "POST", None, target.id, ""
        if kind == "valid":
            body = json.dumps(target.body).encode()
        elif kind == "stale":
            variant, forged = stale_body(target, rng, result_of)
            body = json.dumps(forged).encode()
        elif kind == "bad":
            variant, body = rng.choice(
                [
                    ("not JSON", b"status=DONE&token=" + target.token.encode()),
                    ("truncated JSON", json.dumps(target.body).encode()[:40]),
                    ("invalid UTF-8", b'{"status": "\xff\xfe DONE"}'),
                    ("JSON array", json.dumps([target.body]).encode()),
                    ("JSON scalar", b'"DONE"'),
                    ("empty", b""),
                ]
            )
        elif kind == "oversized":
            body = json.dumps({**target.body, "padding": "x" * (MAX_BODY + 4096)}).encode()
        elif kind == "unknown":
            session = None
            variant, path = rng.choice(
                [
                    ("random secret", f"/verify/callback/ooto/{secrets.token_urlsafe(32)}/"),
                    ("secret of another alias", f"/verify/callback/sandbox/{target.secret}/"),
                    ("NUL in secret", f"/verify/callback/ooto/{target.secret[:8]}%00{target.secret[8:]}/"),
                ]
            )
            body = json.dumps(target.body).encode()
        elif kind == "method":
            method = rng.choice(["GET", "PUT", "DELETE"])
            variant = method
            body = json.dumps(target.body).encode() if method == "PUT" else None
        requests_.append(Request(rid, kind, method, path, body, session, variant))
    return requests_


# -- the load -----------------------------------------------------------------------------------------


def run_load(base: str, planned: list[Request], clients: int, timeout: float) -> float:
    """Send every planned request from ``clients`` threads; returns the wall time. Bounded: a request
    timeout each, and no request is started after the deadline."""
    import requests

    position = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def client() -> None:
        http = requests.Session()
        while True:
            with lock:
                if position[0] >= len(planned) or time.monotonic() > deadline:
                    return
                item = planned[position[0]]
                position[0] += 1
            headers = {"X-Request-Id": item.rid, "User-Agent": "vl-load"}
            if item.body is not None:
                headers["Content-Type"] = "application/json"
            item.started = time.perf_counter()
            try:
                answer = http.request(item.method, base + item.path, data=item.body, headers=headers, timeout=30)
                item.code = answer.status_code
            except requests.RequestException as exc:
                item.error = f"{type(exc).__name__}: {exc}"[:300]
            item.elapsed = time.perf_counter() - item.started

    threads = [threading.Thread(target=client, name=f"client-{n}", daemon=True) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 60)
    return time.perf_counter() - start


# -- the checks -----------------------------------------------------------------------------------------


class Verdicts:
    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.results.append((name, bool(ok), detail))

    @property
    def failed(self) -> bool:
        return not all(ok for _, ok, _ in self.results)


def expected_codes(item: Request, target: Target | None) -> set[int]:
    if item.kind == "method":
        return {405}
    if item.kind == "unknown":
        return {404}
    if item.kind == "oversized":
        return {413}
    if item.kind == "bad":
        return {400}
    assert target is not None
    return {202} if target.status == "IN_PROGRESS" else {200, 202}


def check_all(
    planned: list[Request], targets: dict[str, Target], provider: Provider, log_path: Path, workers: int
) -> Verdicts:
    from demo.models import Profile
    from django.db.models import Count, Q

    from verification_link.models import VerificationEvent, VerificationSession

    v = Verdicts()
    Kind = VerificationEvent.Kind
    sent = [r for r in planned if r.code is not None]
    posts = [r for r in planned if r.method == "POST"]

    # -- the answers
    five = [r for r in planned if r.code is not None and r.code >= 500]
    v.check("no 5xx", not five, f"{len(five)} answers >= 500" if five else "")
    broken = [r for r in planned if r.error]
    v.check("no transport errors", not broken, "; ".join(f"{r.rid} {r.kind}: {r.error}" for r in broken[:5]))
    unsent = [r for r in planned if r.code is None and not r.error]
    v.check("every request sent before the deadline", not unsent, f"{len(unsent)} not sent" if unsent else "")
    wrong = [r for r in sent if r.code not in expected_codes(r, targets.get(r.session) if r.session else None)]
    v.check(
        "every request answered as its kind expects",
        not wrong,
        "; ".join(f"{r.rid} {r.kind}/{r.variant} -> {r.code}" for r in wrong[:8]),
    )
    valid_to_known = [r for r in sent if r.kind in ("valid", "stale")]
    v.check(
        "every valid-body callback to a known secret got 202 or 200",
        all(r.code in (200, 202) for r in valid_to_known),
        f"{len(valid_to_known)} such requests",
    )

    # -- one callback event per POST
    events = list(
        VerificationEvent.objects.filter(kind=Kind.CALLBACK).values(
            "id", "session_id", "headers", "valid", "processed", "error", "body", "body_truncated"
        )
    )
    by_rid: dict[str, list[dict]] = collections.defaultdict(list)
    for event in events:
        by_rid[(event["headers"] or {}).get("X-Request-Id", "")].append(event)
    answered_posts = [r for r in posts if r.code is not None]
    missing = [r.rid for r in answered_posts if len(by_rid.get(r.rid, [])) != 1]
    strays = [rid for rid in by_rid if rid not in {r.rid for r in posts}]
    v.check(
        "callback events = POSTs that reached the view (one each, matched by X-Request-Id)",
        len(events) == len(answered_posts) and not missing and not strays,
        f"{len(events)} events for {len(answered_posts)} POSTs; {len(missing)} without exactly one event"
        + (f" (e.g. {missing[:3]})" if missing else "")
        + (f"; {len(strays)} unmatched events" if strays else ""),
    )
    bad_verdicts = []
    for r in answered_posts:
        matched = by_rid.get(r.rid, [])
        if len(matched) != 1:
            continue
        event = matched[0]
        session_ok = str(event["session_id"]) == r.session if r.session else event["session_id"] is None
        if r.code in (200, 202):
            ok = event["valid"] is True and event["processed"] is True and event["body"] == r.body.decode()
        elif r.code == 413:
            ok = event["valid"] is False and event["error"] == "body too large" and event["body"] == ""
        elif r.code == 404:
            ok = event["valid"] is False and event["error"] == "unknown provider or secret"
        elif r.code == 400:
            ok = event["valid"] is False and bool(event["error"]) and not event["processed"]
        else:
            ok = False
        if not (ok and session_ok):
            bad_verdicts.append(f"{r.rid} {r.kind}/{r.variant} {r.code}: {event}")
    v.check(
        "every callback event on the right session with the right verdict (valid ones with the body sent)",
        not bad_verdicts,
        "; ".join(bad_verdicts[:3])[:600],
    )

    # -- each 202 confirmed by one provider pull
    accepted = collections.Counter(r.session for r in sent if r.code == 202)
    # A confirmation's answer is written on the callback it confirmed (``data["answer"]``); on an
    # event of its own (a ``poll`` from source ``callback``) only when a run before it processed that one.
    answered = Q(kind=Kind.CALLBACK, data__has_key="answer") | Q(kind=Kind.POLL, source="callback")
    polls = collections.Counter(
        str(s) for s in VerificationEvent.objects.filter(answered).values_list("session_id", flat=True)
    )
    poll_failed = VerificationEvent.objects.filter(kind=Kind.POLL_FAILED).count()
    other_polls = VerificationEvent.objects.filter(kind=Kind.POLL).exclude(source="callback").count()
    get_calls = provider("count", "GET", "/api/v1.0/flow/sessions/")
    total_polls = sum(polls.values())
    v.check(
        "provider Get Status calls = answers recorded for callbacks <= 202s; no poll_failed, no other polls",
        get_calls == total_polls <= sum(accepted.values()) and poll_failed == 0 and other_polls == 0,
        f"{get_calls} calls, {total_polls} answers, {sum(accepted.values())} answers 202, "
        f"{poll_failed} poll_failed, {other_polls} other polls",
    )
    # A 202 within CALLBACK_COALESCE_SECONDS of the session's last provider call shares that call.
    coalesced = collections.Counter(
        str(s)
        for s in VerificationEvent.objects.filter(kind=Kind.CALLBACK, data__coalesced=True).values_list(
            "session_id", flat=True
        )
    )
    open_ids = [t.id for t in targets.values() if t.status == "IN_PROGRESS"]
    off = [s for s in open_ids if polls[s] + coalesced[s] != accepted[s] or (accepted[s] and not polls[s])]
    v.check(
        "sessions left open: one provider pull per 202, or the 202 coalesced into one (at least one pull)",
        not off,
        f"{len(off)} sessions off; {sum(coalesced.values())} callbacks coalesced in all",
    )

    # -- final states, signals, decisions
    touched = {r.session for r in sent if r.kind in ("valid", "stale") and r.session}
    sessions = {str(s.pk): s for s in VerificationSession.objects.all()}
    wrong_status = []
    for t in targets.values():
        s = sessions[t.id]
        want = t.status if t.id in touched else "CREATED"
        final = want in ("DONE", "FAILED")
        if s.status != want or bool(s.finished_at) != final or (final and s.url):
            wrong_status.append(f"{t.id}: {s.status} (want {want})")
    v.check(
        "every session's status is its true provider state (forged bodies never applied)",
        not wrong_status,
        "; ".join([f"{len(touched)}/{len(targets)} sessions called back", *wrong_status[:5]]),
    )
    changes = collections.defaultdict(list)
    for row in VerificationEvent.objects.filter(kind=Kind.STATUS_CHANGED).values(
        "session_id", "old_status", "new_status", "source"
    ):
        changes[str(row["session_id"])].append(row)
    finished = {t.id for t in targets.values() if t.id in touched and t.status in ("DONE", "FAILED")}
    final_counts = {t: sum(1 for c in changes[t] if c["new_status"] in ("DONE", "FAILED")) for t in targets}
    v.check(
        "verification_finished: exactly one final status_changed per finished session, none for open ones",
        all(final_counts[t] == (1 if t in finished else 0) for t in targets),
        f"{sum(final_counts.values())} for {len(finished)} finished sessions",
    )
    chains = {t: [(c["old_status"], c["new_status"], c["source"]) for c in changes[t]] for t in targets}
    bad_chains = [
        t.id
        for t in targets.values()
        if chains[t.id] != ([("CREATED", t.status, "callback")] if t.id in touched else [])
    ]
    v.check(
        "exactly one status_changed per called-back session (CREATED -> truth, source callback)",
        not bad_chains,
        f"{len(bad_chains)} sessions off",
    )
    want_decision = {
        t.id: ("" if t.id not in touched or t.status == "IN_PROGRESS" else
               "rejected" if t.status == "FAILED" else "approved" if t.fine else "review")
        for t in targets.values()
    }  # fmt: skip
    wrong_decisions = [
        f"{t}: {sessions[t].decision!r} (want {d!r})" for t, d in want_decision.items() if sessions[t].decision != d
    ]
    reviewed = dict(
        # The policy's decision is written on the move's own event (``data["decision"]``).
        VerificationEvent.objects.filter(Q(kind=Kind.REVIEWED) | Q(kind=Kind.STATUS_CHANGED, data__has_key="decision"))
        .values("session_id")
        .annotate(n=Count("id"))
        .values_list("session_id", "n")
    )
    reviewed = {str(k): n for k, n in reviewed.items()}
    wrong_reviewed = [t for t, d in want_decision.items() if reviewed.get(t, 0) != (1 if d else 0)]
    v.check(
        "decisions: DONE passing -> approved, DONE failing a check -> review, FAILED -> rejected, open -> none",
        not wrong_decisions and not wrong_reviewed,
        "; ".join(wrong_decisions[:5])
        + (f"; {len(wrong_reviewed)} sessions with a wrong count of recorded decisions" if wrong_reviewed else ""),
    )
    approved_users = {targets[t].user_id for t, d in want_decision.items() if d == "approved"}
    verified_users = set(Profile.objects.filter(identity_verified=True).values_list("user_id", flat=True))
    v.check(
        "demo receiver: exactly the users of approved sessions marked verified",
        approved_users == verified_users,
        f"{len(verified_users)} verified, {len(approved_users)} approved",
    )
    others = VerificationEvent.objects.filter(
        ~Q(kind__in=[Kind.CALLBACK, Kind.POLL, Kind.STATUS_CHANGED, Kind.REVIEWED, Kind.CREATED])
    ).count()
    v.check("no other events (expired, canceled, create_failed …)", others == 0, f"{others}" if others else "")

    # -- the server
    text = log_path.read_text(errors="replace")
    tracebacks = text.count("Traceback (most recent call last)")
    boots = text.count("Booting worker")
    v.check(
        "server log: no traceback, no worker restarted",
        tracebacks == 0 and boots == workers and "WORKER TIMEOUT" not in text,
        f"{tracebacks} tracebacks, {boots} worker boots for {workers} workers",
    )
    return v


def server_errors(log_path: Path, limit: int = 120) -> str:
    """The server log's ERROR/CRITICAL lines and each traceback (the last ``limit`` lines of them)."""
    keep: list[str] = []
    tail = 0
    for line in log_path.read_text(errors="replace").splitlines():
        if "Traceback (most recent call last)" in line:
            tail = 40
        if tail or "ERROR" in line or "CRITICAL" in line:
            keep.append(line)
            tail = max(0, tail - 1)
    return "\n".join(keep[-limit:])


# -- figures -------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def report(planned: list[Request], wall: float, phases: dict[str, float], verdicts: Verdicts, header: str) -> None:
    done = [r for r in planned if r.code is not None]
    print()
    print(header)
    print("phases: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()))
    print(f"load: {len(done)}/{len(planned)} requests answered in {wall:.2f} s = {len(done) / wall:.1f} requests/s")
    print()
    print(f"{'kind':<11}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}   answers")
    kinds = ["valid", "stale", "bad", "oversized", "unknown", "method"]
    for kind in [*kinds, "all"]:
        rows = [r for r in done if kind in ("all", r.kind)]
        if not rows:
            continue
        ms = [r.elapsed * 1000 for r in rows]
        codes = collections.Counter(r.code for r in rows)
        print(
            f"{kind:<11}{len(rows):>6}{percentile(ms, 50):>9.1f}{percentile(ms, 95):>9.1f}{percentile(ms, 99):>9.1f}"
            f"{max(ms):>9.1f}   " + ", ".join(f"{c}: {n}" for c, n in sorted(codes.items()))
        )
    histogram = collections.Counter(
        str(r.code) if r.code is not None else ("error" if r.error else "unsent") for r in planned
    )
    print()
    print("status codes: " + ", ".join(f"{code} x {n}" for code, n in sorted(histogram.items())))
    print()
    for name, ok, detail in verdicts.results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"   [{detail}]" if detail else ""))
    print()
    print("LOAD FAILED" if verdicts.failed else "LOAD PASSED")


# -- main -----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--small", action="store_true", help="the CI preset: 300 callbacks, 20 clients, 40 sessions, 2 workers"
    )
    parser.add_argument("--callbacks", type=int, help="requests sent in all (default 2000)")
    parser.add_argument("--clients", type=int, help="concurrent client threads (default 50)")
    parser.add_argument("--sessions", type=int, help="verification sessions (default 200)")
    parser.add_argument("--workers", type=int, help="gunicorn sync workers (default 4)")
    parser.add_argument("--latency", type=float, default=0.005, help="fake provider latency, seconds (default 0.005)")
    parser.add_argument("--timeout", type=float, default=300, help="deadline of the load, seconds (default 300)")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the plan (default: random, printed)")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="CONN_MAX_AGE of the gunicorn workers (default: the example project's, a connection per request)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database, temp dir and server log")
    args = parser.parse_args()
    preset = PRESETS["small" if args.small else "default"]
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)

    if importlib.util.find_spec("gunicorn") is None:
        print(
            f"gunicorn is not installed for {sys.executable}: {sys.executable} -m pip install gunicorn", file=sys.stderr
        )
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="vl-load."))
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    provider: Provider | None = None
    try:
        provider = Provider(args.latency)
        with postgres(workdir, args.keep) as dbname:
            port = free_port()
            public = f"http://127.0.0.1:{port}"
            settings_env = {
                "DATABASE_URL": f"postgres:///{dbname}",
                "VL_PROVIDER": "ooto",
                "OOTO_BASE_URL": provider.base_url,
                "OOTO_APP_ID": APP_ID,
                "OOTO_APP_KEY": APP_KEY,
                "PUBLIC_BASE_URL": public,
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
            from django.contrib.auth import get_user_model
            from django.core.management import call_command
            from django.db import connections

            from verification_link import services
            from verification_link.models import VerificationSession
            from verification_link.testing import ooto_result

            log(f"database {dbname}; fake OOTO at {provider.base_url} ({args.latency * 1000:.0f} ms); seed {seed}")
            call_command("migrate", verbosity=0)
            phases["migrate"] = time.perf_counter() - t0

            t = time.perf_counter()
            User = get_user_model()
            User.objects.bulk_create([User(username=f"load{n:05d}") for n in range(args.sessions)])
            for user in User.objects.filter(username__startswith="load").order_by("username"):
                services.start_verification(user=user, provider="ooto")
            targets = {
                str(pk): Target(str(pk), secret, token, user_id)
                for pk, secret, token, user_id in VerificationSession.objects.values_list(
                    "id", "callback_secret", "token", "user_id"
                )
            }
            assert len(targets) == args.sessions, len(targets)
            order = list(targets.values())
            rng.shuffle(order)
            cut, start = [], 0
            for status, fine, share in TRUTH:
                count = round(share * len(order)) if (status, fine) != TRUTH[-1][:2] else len(order) - start
                for target in order[start : start + count]:
                    target.status, target.fine = status, fine
                    if status == "DONE":
                        provider("complete", target.token, fine=True if fine else {"deepfake": False})
                    elif status == "FAILED":
                        provider("fail", target.token)
                    else:
                        provider("advance", target.token, status, next_step="DEEPFAKE")
                    target.body = provider("status_body", target.token)
                cut.append(f"{count} {status}{'' if fine is None else ' passing' if fine else ' failing a check'}")
                start += count
            phases["sessions"] = time.perf_counter() - t
            log(f"{args.sessions} sessions through start_verification; truth: {', '.join(cut)}")
            planned = plan(order, args.callbacks, rng, ooto_result)
            connections.close_all()

            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
            t = time.perf_counter()
            with gunicorn(port, args.workers, env, workdir) as log_path:
                phases["gunicorn start"] = time.perf_counter() - t
                log(
                    f"gunicorn: {args.workers} workers at {public}; {len(planned)} requests from {args.clients} clients"
                )
                wall = run_load(public, planned, args.clients, args.timeout)
                phases["load"] = wall
            t = time.perf_counter()
            verdicts = check_all(planned, targets, provider, log_path, args.workers)
            phases["checks"] = time.perf_counter() - t
            connections.close_all()
            header = (
                f"database postgresql ({dbname}); gunicorn {args.workers} sync workers; {args.sessions} sessions; "
                f"{args.callbacks} requests from {args.clients} clients; "
                f"provider latency {args.latency * 1000:.0f} ms; seed {seed}; {os.cpu_count()} CPUs"
                + ("" if args.conn_max_age is None else f"; CONN_MAX_AGE {args.conn_max_age}")
            )
            report(planned, wall, phases, verdicts, header)
            if verdicts.failed:
                excerpt = server_errors(log_path)
                if excerpt:
                    print("\nserver log (errors):\n" + excerpt)
                print(f"\nserver log: {log_path}" + ("" if args.keep else " (removed; --keep keeps it)"))
            return 1 if verdicts.failed else 0
    finally:
        if provider is not None:
            provider.close()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
