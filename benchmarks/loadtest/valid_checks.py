"""The all-valid figure's invariants: every request answered 202; ours each recorded once and confirmed
by a provider call of its own; one call per session on both sides; the final states; the server logs."""

from __future__ import annotations

import collections

from .processes import Provider, server_log_health
from .valid import Side
from .verdicts import Verdicts


def check_valid(sides: dict[str, Side], provider: Provider, workers: int) -> Verdicts:
    """Every invariant of the all-valid figure, after its rounds, on both sides."""
    from django.db.models import Q

    from verification_link.models import VerificationEvent, VerificationSession

    v = Verdicts()
    Kind = VerificationEvent.Kind
    ours, floor = sides["ours"], sides["floor"]
    sent = [r for side in sides.values() for r in side.everything()]

    # -- the answers
    broken = [r for r in sent if r.error]
    v.check("no transport errors", not broken, "; ".join(f"{r.rid}: {r.error}" for r in broken[:5]))
    unsent = [r for r in sent if r.code is None and not r.error]
    v.check("every request sent before the deadline", not unsent, f"{len(unsent)} not sent" if unsent else "")
    codes = collections.Counter(r.code for r in sent if r.code is not None)
    v.check(
        "every request answered 202, ours and the floor's",
        set(codes) <= {202},
        ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())),
    )

    # -- ours: each request recorded once, confirmed by a provider call of its own
    events = list(
        VerificationEvent.objects.filter(kind=Kind.CALLBACK, session_id__in=list(ours.targets)).values(
            "session_id", "headers", "valid", "processed", "error", "body", "data"
        )
    )
    by_rid: dict[str, list[dict]] = collections.defaultdict(list)
    for event in events:
        by_rid[(event["headers"] or {}).get("X-Request-Id", "")].append(event)
    per_session = collections.Counter(str(e["session_id"]) for e in events)
    missing = [r.rid for r in ours.everything() if len(by_rid.get(r.rid, [])) != 1]
    v.check(
        "ours: every request recorded as exactly one callback event (by X-Request-Id), one per session",
        len(events) == len(ours.everything()) and not missing and all(per_session[t] == 1 for t in ours.targets),
        f"{len(events)} events for {len(ours.everything())} requests, {len(ours.targets)} sessions"
        + (f"; {len(missing)} without exactly one (e.g. {missing[:3]})" if missing else ""),
    )
    bad_events = []
    for r in ours.everything():
        matched = by_rid.get(r.rid, [])
        if len(matched) != 1:
            continue
        event, data = matched[0], matched[0]["data"] or {}
        answer = data.get("answer") if isinstance(data.get("answer"), dict) else {}
        if not (
            str(event["session_id"]) == r.session
            and event["valid"] is True
            and event["processed"] is True
            and not event["error"]
            and event["body"] == r.body.decode()
            and answer.get("status") == ours.targets[r.session].status
            and not data.get("coalesced")
        ):
            bad_events.append(f"{r.rid}: {event}")
    v.check(
        "ours: each valid and processed, with the body sent and its own provider answer (none coalesced)",
        not bad_events,
        "; ".join(bad_events[:3])[:600],
    )

    # -- one provider call per request, per session
    paths = provider("paths", "GET")
    prefix = "/api/v1.0/flow/sessions/"
    detail = []
    ok = sum(paths.values()) == len(sent)
    for name, side in sides.items():
        calls = [paths.get(prefix + t.token, 0) for t in side.targets.values()]
        ok = ok and sum(calls) == len(side.everything()) and all(c == 1 for c in calls)
        detail.append(f"{name}: {sum(calls)} calls for {len(side.everything())} requests")
    v.check("provider Get Status calls = requests, exactly one per session, each side", ok, "; ".join(detail))

    # -- final states and decisions
    all_ids = [*ours.targets, *floor.targets]
    sessions = {
        str(s["id"]): s
        for s in VerificationSession.objects.filter(pk__in=all_ids).values(
            "id", "status", "finished_at", "url", "decision"
        )
    }
    changes: dict[str, list[tuple]] = collections.defaultdict(list)
    for row in VerificationEvent.objects.filter(kind=Kind.STATUS_CHANGED).values(
        "session_id", "old_status", "new_status", "source", "data"
    ):
        decision = (row["data"] or {}).get("decision")
        changes[str(row["session_id"])].append((row["old_status"], row["new_status"], row["source"], decision))
    wrong = []
    for t in ours.targets.values():
        s = sessions[t.id]
        if t.status == "DONE":
            ok = s["status"] == "DONE" and s["finished_at"] and not s["url"] and s["decision"] == "approved"
            ok = ok and changes[t.id] == [("IN_PROGRESS", "DONE", "callback", "approved")]
        else:
            ok = s["status"] == "IN_PROGRESS" and not s["finished_at"] and s["decision"] == "" and not changes[t.id]
        if not ok:
            wrong.append(f"{t.id} ({t.status}): {s['status']}/{s['decision']!r} {changes[t.id]}")
    finished = sum(1 for t in ours.targets.values() if t.status == "DONE")
    v.check(
        "ours: DONE ones finished and approved by one status_changed (IN_PROGRESS -> DONE, callback, decision); "
        "the rest IN_PROGRESS, undecided, unchanged",
        not wrong,
        f"{finished} finished of {len(ours.targets)}" + ("; " + "; ".join(wrong[:3]) if wrong else ""),
    )
    floor_events = list(
        VerificationEvent.objects.filter(kind=Kind.CALLBACK, session_id__in=list(floor.targets)).values_list(
            "session_id", "valid", "processed"
        )
    )
    recorded = collections.Counter(str(sid) for sid, _, _ in floor_events)
    confirmed = collections.Counter(str(sid) for sid, valid, processed in floor_events if valid and processed)
    wrong = []
    for t in floor.targets.values():
        s = sessions[t.id]
        if t.status == "DONE":  # the floor leaves the record of a finishing callback unjudged
            ok = s["status"] == "DONE" and s["finished_at"] and changes[t.id] == [("", "DONE", "", None)]
        else:
            ok = s["status"] == "IN_PROGRESS" and not changes[t.id] and confirmed[t.id] == 1
        if not ok or recorded[t.id] != 1:
            wrong.append(f"{t.id} ({t.status}): {s['status']} {changes[t.id]}, {recorded[t.id]} recorded")
    v.check(
        "floor: one recorded request per session; DONE ones finished with one status_changed, the rest confirmed",
        not wrong,
        "; ".join(wrong[:3]),
    )
    others = VerificationEvent.objects.filter(~Q(kind__in=[Kind.CALLBACK, Kind.STATUS_CHANGED, Kind.CREATED])).count()
    v.check("no other events (polls, poll_failed, reviews …)", others == 0, f"{others}" if others else "")

    # -- the servers
    for side in sides.values():
        healthy, detail = server_log_health(side.server.log_path, workers)
        v.check(f"server log of {side.name}: no traceback, no worker restarted", healthy, detail)
    return v
