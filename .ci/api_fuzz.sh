#!/usr/bin/env bash
# Fuzzes the REST API of the example project with schemathesis, against its own OpenAPI schema
# (/api/schema/), authenticated with the token of the demo user.
#
#   .ci/api_fuzz.sh /path/to/venv/bin/python      (or PYTHON=...; default python3)
#
# The python must have the package with the extras [test,example] and schemathesis 4.x installed.
# The example site runs on a free port with a throwaway SQLite file and the built-in sandbox provider.
# A second user, "other", owns a session of their own. Two schemathesis runs:
#   1. every operation, every check, >= 500 generated requests (counted from the NDJSON report);
#   2. the operations on one session, with the session id pinned to the other user's session.
# Fails on any schemathesis failure (5xx, a status code / content type / body / header the schema does
# not document, ...), on fewer requests than VL_FUZZ_MIN_REQUESTS (500), or on any change to the
# other user's sessions or their events.
#
# Env: VL_FUZZ_SEED (default 20240611), VL_FUZZ_MAX_EXAMPLES (per operation and phase, default 60),
# VL_FUZZ_MIN_REQUESTS (default 500), VL_KEEP_TMP=1 keeps the temp dir (reports, server log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PY="${1:-${PYTHON:-python3}}"
SEED="${VL_FUZZ_SEED:-20240611}"
MAX_EXAMPLES="${VL_FUZZ_MAX_EXAMPLES:-60}"
MIN_REQUESTS="${VL_FUZZ_MIN_REQUESTS:-500}"

export PYTHONUNBUFFERED=1
unset DJANGO_SETTINGS_MODULE REDIS_URL DATABASE_URL PYTHONPATH VIRTUAL_ENV || true

fail() {
    printf 'api-fuzz: FAILED: %s\n' "$*" >&2
    exit 1
}
step() { printf '\n--- api-fuzz: %s\n' "$*"; }

command -v "$PY" >/dev/null || fail "no python at $PY"
"$PY" -c 'import verification_link, drf_spectacular, rest_framework.authtoken' \
    || fail "$PY lacks the package with its [test,example] extras"
ST_VERSION="$("$PY" -c 'from importlib.metadata import version; print(version("schemathesis"))' 2>/dev/null)" \
    || fail "$PY lacks schemathesis (pip install 'schemathesis>=4,<5')"
case "$ST_VERSION" in 4.*) ;; *) fail "schemathesis $ST_VERSION: this script speaks the 4.x CLI" ;; esac

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vl-api-fuzz.XXXXXX")"
SERVER_PID=""
cleanup() {
    local rc=$?
    set +e
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    if [ $rc -ne 0 ] && [ -f "$WORK/server.log" ]; then
        echo "--- api-fuzz: last lines of the server log" >&2
        tail -n 30 "$WORK/server.log" >&2
    fi
    if [ "${VL_KEEP_TMP:-}" = 1 ]; then
        echo "api-fuzz: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
export VL_DEMO_DB="$WORK/fuzz.sqlite3"
export PUBLIC_BASE_URL="$BASE"
export DJANGO_DEBUG=1
export VL_PROVIDER=sandbox
# Throttling would turn most of the run into 429s; the schema must document a 429 all the same.
export VL_API_THROTTLE=100000/minute
MANAGE=("$PY" "$ROOT/example_project/manage.py")

step "schemathesis $ST_VERSION, $("$PY" --version 2>&1), site $BASE, temp $WORK"

step "demo --setup-only, user 'other' with a session of their own"
"${MANAGE[@]}" demo --setup-only
# Their session is a plain row (no provider call): the server is not up yet, and nothing needs more.
OTHER_ID="" TOKEN=""
read -r OTHER_ID TOKEN < <("${MANAGE[@]}" shell --verbosity 0 -c '
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from verification_link.models import VerificationEvent, VerificationSession
other, _ = get_user_model().objects.get_or_create(username="other", defaults={"email": "other@example.com"})
session = VerificationSession.objects.create(
    user=other, provider="sandbox", status="IN_PROGRESS", scopes=["liveness"],
    url="https://example.invalid/flow/x", token="tok-other", external_id="ext-other", metadata={"owner": "other"},
)
VerificationEvent.objects.create(session=session, provider="sandbox", kind=VerificationEvent.Kind.CREATED, new_status="IN_PROGRESS")
print(session.pk, Token.objects.get(user__username="demo").key)
' | tail -n 1) || true
echo "other user's session: $OTHER_ID"
[ -n "$TOKEN" ] && [ -n "$OTHER_ID" ] || fail "no demo token or no session of the other user"

# Everything about the other user's sessions, and every event on them, as JSON.
snapshot() {
    "${MANAGE[@]}" shell --verbosity 0 -c '
from django.core import serializers
from verification_link.models import VerificationEvent, VerificationSession
sessions = VerificationSession.objects.filter(user__username="other").order_by("pk")
events = VerificationEvent.objects.filter(session__in=sessions).order_by("pk")
print(serializers.serialize("json", [*sessions, *events], indent=1))
' >"$1"
}

step "runserver $BASE (threaded: creating a session calls the sandbox on the same server)"
"${MANAGE[@]}" runserver "127.0.0.1:$PORT" --noreload >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 120); do
    code="$(curl -s -o /dev/null -w '%{http_code}' "$BASE/api/schema/" || true)"
    [ "$code" = 200 ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited"
    sleep 0.5
done
[ "$code" = 200 ] || fail "$BASE/api/schema/ did not answer 200 (last: $code)"
curl -fsS -o "$WORK/schema.json" "$BASE/api/schema/?format=json"
curl -fsS -o /dev/null -H "Authorization: Token $TOKEN" "$BASE/verify/api/sessions/" \
    || fail "the demo token is refused by GET /verify/api/sessions/"

snapshot "$WORK/other-before.json"
grep -q '"verification_link.verificationsession"' "$WORK/other-before.json" || fail "snapshot: no session of 'other'"

# The fuzz run is not throttled (VL_API_THROTTLE above), so a 429 may never be seen: make sure the
# schema documents one (application/json) for every operation all the same.
"$PY" - "$WORK/schema.json" <<'PY' || fail "the schema does not document 429 for every API operation"
import json, sys
schema = json.load(open(sys.argv[1]))
missing = [
    f"{method.upper()} {path}"
    for path, item in schema["paths"].items()
    for method, op in item.items()
    if method in ("get", "post", "put", "patch", "delete")
    and "application/json" not in (op.get("responses", {}).get("429", {}).get("content") or {})
]
for label in missing:
    print(f"api-fuzz: schema: no 429 (application/json) documented for {label}", file=sys.stderr)
sys.exit(1 if missing else 0)
PY

ST=("$PY" -m schemathesis.cli)
# Run from the temp dir: no schemathesis.toml of the cwd, no example database left behind.
# --generation-with-security-parameters false: the real token is sent with every request; otherwise
# schemathesis adds a random `sessionid` cookie (the schema's cookieAuth alternative) next to it and
# then flags the 2xx the valid token earns as "API accepts invalid authentication" (ST401). The
# ignored_auth check still runs: it replays 2xx requests without the token and with an invalid one.
# positive_data_acceptance is left out: which scopes a create body may name depends on the provider
# it names (Valify takes none, OOTO at least one), which one flat schema cannot state, so some
# schema-valid bodies are rightly refused with a 400 that lists the field. Everything the issue asks
# to fail on stays: 5xx, any response the schema does not describe, any change to another user's data.
ST_COMMON=(
    --url "$BASE"
    --header "Authorization: Token $TOKEN"
    --checks all
    --exclude-checks positive_data_acceptance
    --continue-on-failure
    --seed "$SEED"
    --workers 1
    --request-timeout 30
    --max-response-time 10
    --generation-with-security-parameters false
    --generation-database none
    --no-color
)
SCHEMATHESIS_FAILED=()

step "schemathesis run 1: every operation, every check, --max-examples $MAX_EXAMPLES, seed $SEED"
echo "+ schemathesis run $BASE/api/schema/ ${ST_COMMON[*]//$TOKEN/<token>} --max-examples $MAX_EXAMPLES" \
    "--report ndjson --report-ndjson-path run-all.ndjson"
rc=0
(cd "$WORK" && "${ST[@]}" run "$BASE/api/schema/" "${ST_COMMON[@]}" --max-examples "$MAX_EXAMPLES" \
    --report ndjson --report-ndjson-path "$WORK/run-all.ndjson") || rc=$?
[ $rc -eq 0 ] || SCHEMATHESIS_FAILED+=("run 1 (exit $rc)")

# The operations on one session, as the demo user, on the other user's session: every answer must
# be a 404 (or a 401/403/405 of a probe), and nothing of theirs may change.
step "schemathesis run 2: GET/refresh/cancel on the other user's session $OTHER_ID"
cat >"$WORK/other.toml" <<TOML
[parameters]
"path.id" = "$OTHER_ID"
TOML
echo "+ schemathesis --config-file other.toml run $BASE/api/schema/ ${ST_COMMON[*]//$TOKEN/<token>}" \
    "--include-path-regex '\\{id\\}' --phases coverage,fuzzing --max-examples 30 --report ndjson ..."
rc=0
(cd "$WORK" && "${ST[@]}" --config-file "$WORK/other.toml" run "$BASE/api/schema/" "${ST_COMMON[@]}" \
    --include-path-regex '\{id\}' --phases coverage,fuzzing --max-examples 30 \
    --report ndjson --report-ndjson-path "$WORK/run-other.ndjson") || rc=$?
[ $rc -eq 0 ] || SCHEMATHESIS_FAILED+=("run 2 (exit $rc)")

step "the other user's sessions and events after the runs"
snapshot "$WORK/other-after.json"
OTHER_CHANGED=""
if ! diff -u "$WORK/other-before.json" "$WORK/other-after.json"; then
    OTHER_CHANGED=1
fi

step "summary"
ANALYSIS_RC=0
"$PY" - "$WORK/run-all.ndjson" "$WORK/run-other.ndjson" "$OTHER_ID" "$MIN_REQUESTS" "$WORK/server.log" \
    >"$WORK/analysis.txt" <<'PY' || ANALYSIS_RC=$?
"""Requests made and failures found, from schemathesis' NDJSON event streams."""
import collections, json, re, sys

all_path, other_path, other_id, min_requests, server_log = sys.argv[1:6]


def scan(path):
    requests, failures, statuses = 0, collections.Counter(), []
    try:
        lines = open(path, encoding="utf-8")
    except FileNotFoundError:
        return None
    for line in lines:
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder") or {}
        for interaction in (recorder.get("interactions") or {}).values():
            requests += 1
            request, response = interaction.get("request") or {}, interaction.get("response") or {}
            statuses.append((request.get("method"), request.get("uri", ""), response.get("status_code")))
        for checks in (recorder.get("checks") or {}).values():
            for check in checks:
                if check.get("status") != "success":
                    info = ((check.get("failure_info") or {}).get("failure")) or {}
                    failures[(info.get("operation") or recorder.get("label"), info.get("code", "?"),
                              info.get("title") or check["name"])] += 1
    return requests, failures, statuses


errors = []
result_all = scan(all_path)
result_other = scan(other_path)
if result_all is None or result_other is None:
    print("api-fuzz: a schemathesis NDJSON report is missing")
    sys.exit(1)
total = 0
for name, (requests, failures, _) in (("run 1 (all operations)", result_all), ("run 2 (other's session)", result_other)):
    total += requests
    print(f"{name}: {requests} requests, {len(failures)} failures ({sum(failures.values())} failed checks)")
    for (operation, code, title), count in sorted(failures.items()):
        print(f"    {code} {title}: {operation} (x{count})")
if result_all[0] < int(min_requests):
    errors.append(f"run 1 made {result_all[0]} requests, fewer than {min_requests}")
# Run 2: the demo user must never get a 2xx (or a 5xx) on the other user's session.
# OPTIONS is DRF's metadata of the view (the same for any id, no object is looked up): not a leak.
leaks = [
    (m, u, s)
    for m, u, s in result_other[2]
    if other_id in u and m != "OPTIONS" and s is not None and (200 <= s < 300 or s >= 500)
]
for (method, uri, status), count in sorted(collections.Counter(leaks).items()):
    errors.append(f"demo user got {status} for {method} {uri} (the other user's session) x{count}")
other_requests = sum(1 for _, u, _ in result_other[2] if other_id in u)
if other_requests == 0:
    errors.append("run 2 sent no request to the other user's session")
seen = collections.Counter(s for _, u, s in result_other[2] if other_id in u)
print(f"run 2: {other_requests} requests on the other user's session, statuses {dict(sorted(seen.items()))}")
# Cross-check with the server's access log.
served = sum(1 for line in open(server_log, errors="replace") if re.search(r'"[A-Z]+ /verify/api/', line))
server_errors = sum(1 for line in open(server_log, errors="replace") if re.search(r'"[A-Z]+ /verify/api/[^"]*" 5\d\d ', line))
print(f"server access log: {served} API requests, {server_errors} answered 5xx")
if server_errors:
    errors.append(f"the server answered {server_errors} API requests with a 5xx (server log)")
# A failure: one (operation, check) pair that failed, however many generated cases hit it.
print(f"TOTAL {total} {sum(len(r[1]) for r in (result_all, result_other))}")
for error in errors:
    print(f"api-fuzz: {error}")
sys.exit(1 if errors else 0)
PY
grep -v '^TOTAL ' "$WORK/analysis.txt"
read -r _ REQUESTS FAILURES < <(grep '^TOTAL ' "$WORK/analysis.txt" || echo "TOTAL 0 0")

PROBLEMS=()
[ ${#SCHEMATHESIS_FAILED[@]} -eq 0 ] || PROBLEMS+=("schemathesis failures in ${SCHEMATHESIS_FAILED[*]}")
[ "$ANALYSIS_RC" -eq 0 ] || PROBLEMS+=("request count / other user's session checks (see above)")
[ -z "$OTHER_CHANGED" ] || PROBLEMS+=("the other user's session or its events changed (diff above)")
if [ -n "$OTHER_CHANGED" ]; then OTHER_STATE="CHANGED"; else OTHER_STATE="unchanged"; fi
echo "api-fuzz: $REQUESTS requests, $FAILURES failures, other user's session $OTHER_STATE"
if [ ${#PROBLEMS[@]} -gt 0 ]; then
    fail "$(printf '%s; ' "${PROBLEMS[@]}" | sed 's/; $//')"
fi
