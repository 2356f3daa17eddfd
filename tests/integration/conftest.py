"""A real stack for the integration tests: redis-server, the example site and a Celery worker, each
its own process, sharing one SQLite file; the provider is a local OOTO emulator over real HTTP.

Locally the tests skip when ``redis-server`` is missing; with ``CI=true`` they fail instead.
"""

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.servers import free_port, wait_for
from verification_link.testing import OotoServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_project"
APP_ID, APP_KEY = "integration-app", "integration-key"


def pytest_collection_modifyitems(config, items):
    if shutil.which("redis-server") or os.environ.get("CI") == "true":
        return
    for item in items:
        if "celery" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs redis-server (apt-get install redis-server)"))


class Stack:
    def __init__(self, tmp: Path, provider: OotoServer):
        self.tmp = tmp
        self.provider = provider
        self.processes: list[tuple[subprocess.Popen, Path]] = []
        self.redis_port = free_port()
        self.web_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.db = tmp / "site.sqlite3"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
        self.env.update(
            VL_DEMO_DB=str(self.db),
            REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            VL_PROVIDER="ooto",
            OOTO_BASE_URL=provider.base_url,
            OOTO_APP_ID=APP_ID,
            OOTO_APP_KEY=APP_KEY,
            PUBLIC_BASE_URL=self.base_url,
            DJANGO_DEBUG="1",
            PYTHONUNBUFFERED="1",
        )

    def spawn(self, name: str, args: list[str], cwd: Path = ROOT) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(args, cwd=cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append((proc, log))
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2500:]}" for _, log in self.processes)

    def manage(self, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "example_project/manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    def shell(self, code: str) -> str:
        """Run Python in the site's Django; returns the last line printed."""
        return self.manage("shell", "-c", code).strip().splitlines()[-1]

    def call_task(self, name: str) -> None:
        """Send a task through the broker, as beat would (the worker runs it)."""
        proc = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "example_project", "call", name],
            cwd=EXAMPLE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]

    def query(self, sql: str, *params):
        with sqlite3.connect(self.db, timeout=20) as conn:
            return conn.execute(sql, params).fetchall()

    def stop(self) -> None:
        for proc, _ in reversed(self.processes):
            proc.terminate()
        for proc, _ in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    with OotoServer(app_id=APP_ID, app_key=APP_KEY) as provider:
        stack = Stack(tmp, provider)
        try:
            stack.spawn(
                "redis",
                [
                    "redis-server",
                    "--port",
                    str(stack.redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
            )
            wait_for(
                lambda: socket.create_connection(("127.0.0.1", stack.redis_port), timeout=1).close() or True,
                timeout=20,
                what="redis-server",
            )
            stack.manage("demo", "--setup-only")
            stack.spawn(
                "web",
                [sys.executable, "example_project/manage.py", "runserver", f"127.0.0.1:{stack.web_port}", "--noreload"],
            )
            stack.spawn(
                "worker",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "example_project",
                    "worker",
                    "--loglevel=info",
                    "--concurrency=2",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=EXAMPLE,
            )
            wait_for(lambda: requests.get(stack.base_url + "/", timeout=2).ok, timeout=60, what="the web server")
            worker = stack.processes[-1][0]
            wait_for(
                lambda: "ready" in (tmp / "worker.log").read_text() or worker.poll() is not None,
                timeout=60,
                what="the Celery worker",
            )
            assert worker.poll() is None, "the Celery worker exited:\n" + stack.logs()
            yield stack
        except Exception:
            print(stack.logs())
            raise
        finally:
            stack.stop()
