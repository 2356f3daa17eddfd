"""The client side of a load: the sessions it targets, the requests planned for them, the threads that
send those and time each answer, and the percentiles of those timings."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Target:
    """A session a load calls back about: its callback secret, its provider token, its user."""

    id: str
    secret: str
    token: str
    user_id: int | None
    status: str = ""  # the true provider state
    fine: bool | None = None
    body: dict = field(default_factory=dict)  # the provider's callback body


@dataclass
class Request:
    """One request of a load as planned (``kind``, ``variant``: what it tests), then as answered."""

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


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100); NaN of nothing."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
