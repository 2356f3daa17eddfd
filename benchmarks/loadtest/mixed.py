"""The mixed load's plan and table: its sessions and their true state at the provider (``TRUTH``), the
requests of each kind (``MIX``: valid, stale, bad, oversized, unknown, method), the figure printed."""

from __future__ import annotations

import collections
import json
import random
import secrets
from typing import Any

from .clients import Request, Target, percentile
from .processes import Provider
from .verdicts import Verdicts

MAX_BODY = 65536  # MAX_EVENT_BODY_BYTES, the default (the example project does not change it)
# Share of each request kind once every session has had its first valid callback.
MIX = {"valid": 0.50, "stale": 0.17, "bad": 0.12, "oversized": 0.04, "unknown": 0.09, "method": 0.08}
# True provider state: (status, fine) -> share.
TRUTH = [("DONE", True, 0.60), ("DONE", False, 0.10), ("FAILED", None, 0.15), ("IN_PROGRESS", None, 0.15)]


def mixed_targets(sessions: int, provider: Provider, rng: random.Random) -> tuple[dict[str, Target], list[Target], str]:
    """``sessions`` users and a session each through the real ``services.start_verification``, each given
    its true state at the provider in ``TRUTH``'s shares; returns them by id, the same in the shuffled
    order the plan deals from, and what the truth is (for the log)."""
    from django.contrib.auth import get_user_model

    from verification_link import services
    from verification_link.models import VerificationSession

    User = get_user_model()
    User.objects.bulk_create([User(username=f"load{n:05d}") for n in range(sessions)])
    for user in User.objects.filter(username__startswith="load").order_by("username"):
        services.start_verification(user=user, provider="ooto")
    targets = {
        str(pk): Target(str(pk), secret, token, user_id)
        for pk, secret, token, user_id in VerificationSession.objects.values_list(
            "id", "callback_secret", "token", "user_id"
        )
    }
    assert len(targets) == sessions, len(targets)
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
    return targets, order, ", ".join(cut)


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


def mixed_requests(targets: list[Target], total: int, rng: random.Random, result_of: Any) -> list[Request]:
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


def report_mixed(
    planned: list[Request],
    wall: float,
    phases: dict[str, float],
    verdicts: Verdicts,
    header: str,
    spent: dict[str, float | None] | None = None,
) -> None:
    done = [r for r in planned if r.code is not None]
    print()
    print("== the mixed load: duplicates, forged and malformed bodies, unknown secrets, wrong methods")
    print(header)
    print("phases: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()))
    print(f"load: {len(done)}/{len(planned)} requests answered in {wall:.2f} s = {len(done) / wall:.1f} requests/s")
    if spent and spent.get("server") is not None:
        db = "n/a" if spent.get("db") is None else f"{spent['db'] / len(planned):.2f}"
        print(f"CPU ms/request: server {spent['server'] / len(planned):.2f}, database {db}")
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
    verdicts.print_results()
    print()
    print("MIXED LOAD FAILED" if verdicts.failed else "MIXED LOAD PASSED")
