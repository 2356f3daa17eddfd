"""Fixtures for the browser tests: the example site served for real, and Debian's Chromium.

The site runs as its own process (``manage.py demo``) on a free port with a throwaway SQLite file,
exactly as the README's demo command runs it. Locally the tests skip when Chromium is missing; with
``CI=true`` they fail instead.
"""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("VL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config, items):
    missing = [
        name
        for name, path in (("chromium", CHROMIUM), ("zbarimg", shutil.which("zbarimg")))
        if not path or not Path(path).exists()
    ]
    if not missing or os.environ.get("CI") == "true":
        return
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(
                pytest.mark.skip(reason=f"needs {', '.join(missing)} (apt-get install chromium zbar-tools)")
            )


class DemoSite:
    def __init__(self, base_url: str, env: dict, log: Path):
        self.base_url = base_url
        self.env = env
        self.log = log

    def manage(self, *args: str) -> str:
        """Run a management command against the same database."""
        proc = subprocess.run(
            [sys.executable, "example_project/manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


@contextmanager
def serve_demo(tmp: Path, provider: str, **settings: str) -> Iterator[DemoSite]:
    """``manage.py demo`` on a free port, a throwaway SQLite file, ``VL_PROVIDER=provider`` and
    the example settings' other environment variables in ``settings``."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "REDIS_URL", "DATABASE_URL")}
    env.update(
        VL_DEMO_DB=str(tmp / "demo.sqlite3"),
        PUBLIC_BASE_URL=base_url,
        DJANGO_DEBUG="1",
        PYTHONUNBUFFERED="1",
        VL_PROVIDER=provider,
        **settings,
    )
    log = tmp / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "example_project/manage.py", "demo", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(base_url + "/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"demo server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield DemoSite(base_url, env, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def demo_site(tmp_path_factory):
    """The example site on its defaults: the OOTO sandbox."""
    with serve_demo(tmp_path_factory.mktemp("demo"), "sandbox") as site:
        yield site


@pytest.fixture(scope="session")
def valify_site(tmp_path_factory):
    """The example site switched to the Valify sandbox by its environment variable."""
    with serve_demo(tmp_path_factory.mktemp("demo-valify"), "sandbox_valify") as site:
        yield site


@pytest.fixture(scope="session")
def refusing_site(tmp_path_factory):
    """The example site with a start it must refuse: the OOTO client pointed at a port nobody
    listens on (the provider is down), and one start per user a day (``VL_MAX_ATTEMPTS=1``)."""
    with serve_demo(
        tmp_path_factory.mktemp("demo-refusing"),
        "ooto",
        OOTO_BASE_URL=f"http://127.0.0.1:{free_port()}",
        OOTO_APP_ID="app-of-a-provider-that-is-down",
        OOTO_APP_KEY="key-of-a-provider-that-is-down",
        VL_MAX_ATTEMPTS="1",
    ) as site:
        yield site


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    # The site of the test: ``valify_site`` when the test asks for it, else the OOTO demo.
    site = request.getfixturevalue("valify_site" if "valify_site" in request.fixturenames else "demo_site")
    context = browser.new_context(base_url=site.base_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()
