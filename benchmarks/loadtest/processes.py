"""The processes a load runs against: the fake OOTO provider in a child process of its own, driven over
a pipe; the PostgreSQL database (in a throwaway cluster when ``PGHOST`` is unset); gunicorn servers of
the example project or of the floor, and what their logs say."""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import EXAMPLE, ROOT, log, use_example_project

APP_ID, APP_KEY = "load-app", "load-key-" + secrets.token_hex(8)


# -- the fake provider, in a child process driven over a pipe ----------------------------------------


def _provider_main(conn: Any, latency: float, app_id: str, app_key: str) -> None:
    use_example_project()  # the models must import; no database is touched here
    import django

    django.setup()
    from verification_link.testing import OotoServer

    server = OotoServer(app_id=app_id, app_key=app_key, latency=latency, record=True)

    def set_truth(items: list[tuple[str, str, bool]]) -> list[dict]:
        """Many sessions' true state in one round trip: ``(token, status, fine)``; their callback bodies."""
        for token, status, fine in items:
            if status == "DONE":
                server.complete(token, fine=True if fine else {"deepfake": False})
            elif status == "FAILED":
                server.fail(token)
            else:
                server.advance(token, status, next_step="DEEPFAKE")
        return [server.status_body(token) for token, _, _ in items]

    def reset() -> None:
        with server._lock:
            server.requests.clear()

    ops = {
        "complete": server.complete,
        "fail": server.fail,
        "advance": server.advance,
        "status_body": server.status_body,
        "set_truth": set_truth,
        "reset": reset,
        "count": lambda method, prefix: sum(1 for c in server.calls(method) if c[1].startswith(prefix)),
        "paths": lambda method: dict(collections.Counter(c[1] for c in server.calls(method))),
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
# ``VL_LOAD_CONN_MAX_AGE`` (``--conn-max-age``) overrides the workers' CONN_MAX_AGE (the example
# project keeps connections 60 s). ``VL_LOAD_PROFILE`` (``--profile``): a directory where each worker
# leaves, at exit, its cProfile stats and its count of SQL statements and requests.
GUNICORN_CONFIG = """\
import collections
import json
import logging
import os
import time


def post_worker_init(worker):
    handler = logging.StreamHandler()
    handler.setLevel(logging.ERROR)
    handler.setFormatter(logging.Formatter("[%(process)d] %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("django.request").addHandler(handler)
    if os.environ.get("VL_LOAD_CONN_MAX_AGE"):
        from django.db import connections

        connections.databases["default"]["CONN_MAX_AGE"] = int(os.environ["VL_LOAD_CONN_MAX_AGE"])
    if os.environ.get("VL_LOAD_PROFILE"):
        import cProfile

        from django.db import connections

        counts = collections.Counter()

        def count(execute, sql, params, many, context):
            if worker.vl_on:
                counts[sql.lstrip().split(None, 1)[0].upper()] += 1
            return execute(sql, params, many, context)

        # A sync worker serves every request in this thread: its connection wrapper is the one used.
        connections["default"].execute_wrappers.append(count)
        worker.vl_counts, worker.vl_on = counts, False
        # CPU time of this thread, not the wall clock: on a shared machine, waits for the database, the
        # provider and the scheduler would land on whatever function was running.
        worker.vl_profile = cProfile.Profile(time.thread_time)


def pre_request(worker, req):
    # Measured from the first request after the warm-up (load.py then creates the file "measure"):
    # a worker's first requests import the URLconf's modules, which is not a callback's cost.
    if hasattr(worker, "vl_profile") and not worker.vl_on:
        if os.path.exists(os.path.join(os.environ["VL_LOAD_PROFILE"], "measure")):
            worker.vl_on = True
            worker.vl_profile.enable()


def post_request(worker, req, environ, resp):
    if getattr(worker, "vl_on", False):
        worker.vl_counts["requests"] += 1


def worker_exit(server, worker):
    if hasattr(worker, "vl_profile"):
        worker.vl_profile.disable()
        stem = os.path.join(os.environ["VL_LOAD_PROFILE"], f"{os.environ['DJANGO_SETTINGS_MODULE']}-{os.getpid()}")
        worker.vl_profile.dump_stats(stem + ".prof")
        with open(stem + ".json", "w") as out:
            json.dump(dict(worker.vl_counts), out)
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a gunicorn server to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A gunicorn server that answers: its master's pid (the root of its process tree) and its log."""

    pid: int
    log_path: Path
    settings: str


@contextlib.contextmanager
def gunicorn(
    port: int, workers: int, env: dict[str, str], workdir: Path, name: str = "gunicorn", settings: str = ""
) -> Iterator[Server]:
    """The example project under gunicorn; yields it once it answers. ``settings``: another
    ``DJANGO_SETTINGS_MODULE`` (the floor's) — the command line is the same for every server."""
    config = workdir / "gunicorn_conf.py"
    config.write_text(GUNICORN_CONFIG)
    log_path = workdir / f"{name}.log"
    env = {**env, "DJANGO_SETTINGS_MODULE": settings or env["DJANGO_SETTINGS_MODULE"]}
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
        yield Server(process.pid, log_path, env["DJANGO_SETTINGS_MODULE"])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


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


def server_log_health(log_path: Path, workers: int) -> tuple[bool, str]:
    """Whether a gunicorn log shows no traceback and no worker restarted (as many boots as workers, no
    timeout); and the counts, as the detail of the invariant."""
    text = log_path.read_text(errors="replace")
    tracebacks = text.count("Traceback (most recent call last)")
    boots = text.count("Booting worker")
    return (
        tracebacks == 0 and boots == workers and "WORKER TIMEOUT" not in text,
        f"{tracebacks} tracebacks, {boots} worker boots for {workers} workers",
    )
