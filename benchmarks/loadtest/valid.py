"""The all-valid figure's plan and rounds: both sides' sessions (ours and the floor's, with the same
truth), one valid callback each, sent in rounds interleaved ABBA, each round's wall time and CPU."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from . import log
from .clients import Request, Target, run_load
from .cpu import CpuProbe
from .processes import Provider, Server

# Share of each group's sessions DONE (passing) at the provider; the rest stay IN_PROGRESS.
VALID_DONE_SHARE = 0.10
FLOOR_SETTINGS = "benchmarks.floor_settings"


@dataclass
class Side:
    """One side of the all-valid figure: its server, its sessions (by id), the warm-up and the measured
    rounds it sends, and what the rounds measured (wall times, CPU ms spent in their windows)."""

    name: str
    server: Server
    base: str
    targets: dict[str, Target]
    warmup: list[Request]
    rounds: list[list[Request]]
    walls: list[float] = field(default_factory=list)
    cpu: dict[str, float | None] = field(default_factory=dict)

    def add_cpu(self, spent: dict[str, float | None]) -> None:
        for key, value in spent.items():
            known = self.cpu.get(key, 0.0)
            self.cpu[key] = None if value is None or known is None else known + value

    def measured(self) -> list[Request]:
        return [r for chunk in self.rounds for r in chunk]

    def everything(self) -> list[Request]:
        return [*self.warmup, *self.measured()]


def create_sessions(count: int, threads: int = 4) -> list[str]:
    """``count`` user-less OOTO sessions through the real ``services.start_verification`` (its
    provider call included), from a few threads, each with a connection of its own; their ids."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from verification_link import services

    def make(n: int) -> list[str]:
        try:
            return [str(services.start_verification(provider="ooto").pk) for _ in range(n)]
        finally:
            connection.close()  # this thread's own connection

    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return [pk for part in pool.map(make, shares) for pk in part]


def valid_targets(count: int, warmup: int, provider: Provider, rng: random.Random) -> dict[str, list[list[Target]]]:
    """Both sides' sessions: ``{"ours": [measured, warm-up], "floor": [...]}``, every one IN_PROGRESS
    at its provider step and expiry in the database — the state a first callback would have left,
    so that an IN_PROGRESS answer changes nothing — and VALID_DONE_SHARE of each group DONE
    (passing) at the provider: the same truth on both sides."""
    from verification_link.models import VerificationSession
    from verification_link.providers import get_provider

    ids = create_sessions(2 * (count + warmup))
    rows = VerificationSession.objects.filter(pk__in=ids).values_list("id", "callback_secret", "token")
    targets = [Target(str(pk), secret, token, None) for pk, secret, token in rows]
    bodies = provider("set_truth", [(t.token, "IN_PROGRESS", None) for t in targets])
    backend = get_provider("ooto")
    reports = {t.id: backend.parse_status(body) for t, body in zip(targets, bodies, strict=True)}
    sessions = list(VerificationSession.objects.filter(pk__in=ids).only("id", "status", "next_step", "expires_at"))
    for session in sessions:
        report = reports[str(session.pk)]
        session.status, session.next_step, session.expires_at = report.status, report.next_step, report.expires_at
    VerificationSession.objects.bulk_update(sessions, ["status", "next_step", "expires_at"], batch_size=500)
    for target, body in zip(targets, bodies, strict=True):
        target.status, target.body = "IN_PROGRESS", body
    rng.shuffle(targets)
    half = count + warmup
    groups = {
        "ours": [targets[:count], targets[count:half]],
        "floor": [targets[half : half + count], targets[half + count :]],
    }
    finishing = [
        t
        for measured, warm in groups.values()
        for group in (measured, warm)
        for t in group[: round(VALID_DONE_SHARE * len(group))]
    ]
    for target, body in zip(
        finishing, provider("set_truth", [(t.token, "DONE", True) for t in finishing]), strict=True
    ):
        target.status, target.fine, target.body = "DONE", True, body
    return groups


def valid_requests(
    side: str, measured: list[Target], warm: list[Target], rounds: int, rng: random.Random
) -> tuple[list[Request], list[list[Request]]]:
    """The warm-up and ``rounds`` measured rounds of one side: one valid callback per session, the
    finishing sessions spread evenly over the rounds (each round of both sides has as many)."""

    def request(tag: str, n: int, target: Target) -> Request:
        body = json.dumps(target.body).encode()
        return Request(
            f"{side}-{tag}-{n:05d}", "valid", "POST", f"/verify/callback/ooto/{target.secret}/", body, target.id
        )

    done = [t for t in measured if t.status == "DONE"]
    rest = [t for t in measured if t.status != "DONE"]
    rng.shuffle(done)
    rng.shuffle(rest)
    chunks = []
    for r in range(rounds):
        part = done[r::rounds] + rest[r::rounds]
        rng.shuffle(part)
        chunks.append([request(f"r{r}", n, t) for n, t in enumerate(part)])
    return [request("warm", n, t) for n, t in enumerate(warm)], chunks


def run_valid_rounds(sides: list[Side], clients: int, timeout: float, probe: CpuProbe) -> None:
    """Warm both up, then the rounds ABBA: ours, floor, floor, ours, ours, floor, …"""
    for side in sides:
        run_load(side.base, side.warmup, clients, timeout)
    if os.environ.get("VL_LOAD_PROFILE"):
        Path(os.environ["VL_LOAD_PROFILE"], "measure").touch()  # the workers' profiles start now
    for r in range(len(sides[0].rounds)):
        for side in sides if r % 2 == 0 else sides[::-1]:
            before = probe.read(side.server.pid)
            wall = run_load(side.base, side.rounds[r], clients, timeout)
            side.add_cpu(probe.since(before, side.server.pid))
            side.walls.append(wall)
            log(f"round {r + 1} {side.name}: {len(side.rounds[r])} requests in {wall:.2f} s")
