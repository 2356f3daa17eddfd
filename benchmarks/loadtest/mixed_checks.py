"""The mixed load's invariants, checked after the load on its answers, on what the database holds and on
the fake provider's calls (each is told in ``benchmarks/load.py``'s docstring)."""

from __future__ import annotations

import collections
from pathlib import Path

from .clients import Request, Target
from .processes import Provider, server_log_health
from .verdicts import Verdicts


def expected_codes(item: Request, target: Target | None) -> set[int]:
    """The answers a request of its kind may get (a valid body: 200 "already final" once its session is)."""
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


def check_mixed(
    planned: list[Request], targets: dict[str, Target], provider: Provider, log_path: Path, workers: int
) -> Verdicts:
    """Every invariant of the mixed load, after it: the answers, the events, the provider's calls, the
    final states, signals and decisions, the demo receiver, the server log."""
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
    healthy, detail = server_log_health(log_path, workers)
    v.check("server log: no traceback, no worker restarted", healthy, detail)
    return v
