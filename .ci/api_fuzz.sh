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
# Env: VL_FUZZ_SEED (default 20240611), VL_FUZZ_MAX_EXAMPLES (per operation, default 120),
# VL_FUZZ_MIN_REQUESTS (default 500), VL_KEEP_TMP=1 keeps the temp dir (reports, server log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PY="${1:-${PYTHON:-python3}}"
SEED="${VL_FUZZ_SEED:-20240611}"
MAX_EXAMPLES="${VL_FUZZ_MAX_EXAMPLES:-120}"
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
ST_VERSION="$("$PY" -c 'from importlib.metadata import version; print(version("schemathesis"))')" \
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
"${MANAGE[@]}" shell --verbosity 0 -c '
from django.contrib.auth import get_user_model
from verification_link.models import VerificationEvent, VerificationSession
other, _ = get_user_model().objects.get_or_create(username="other", defaults={"email": "other@example.com"})
session = VerificationSession.objects.create(
    user=other, provider="sandbox", status="IN_PROGRESS", scopes=["liveness"],
    url="https://example.invalid/flow/x", token="tok-other", external_id="ext-other", metadata={"owner": "other"},
)
VerificationEvent.objects.create(session=session, provider="sandbox", kind="created", new_status="IN_PROGRESS")
print(f"other user session {session.pk}")
'
OTHER_ID="$("${MANAGE[@]}" shell --verbosity 0 -c '
from verification_link.models import VerificationSession
print(VerificationSession.objects.get(user__username="other").pk)
')"
TOKEN="$("${MANAGE[@]}" shell --verbosity 0 -c '
from rest_framework.authtoken.models import Token
print(Token.objects.get(user__username="demo").key)
')"
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
curl -fsS -o "$WORK/schema.yaml" "$BASE/api/schema/"
curl -fsS -o /dev/null -H "Authorization: Token $TOKEN" "$BASE/verify/api/sessions/" \
    || fail "the demo token is refused by GET /verify/api/sessions/"

snapshot "$WORK/other-before.json"
grep -q '"verification_link.verificationsession"' "$WORK/other-before.json" || fail "snapshot: no session of 'other'"

ST=("$PY" -m schemathesis.cli)
ST_COMMON=(
    --url "$BASE"
    --header "Authorization: Token $TOKEN"
    --checks all
    --seed "$SEED"
    --workers 1
    --request-timeout 30
    --max-response-time 30
    --generation-database none
    --no-color
    --output-truncate false
)

step "schemathesis run 1: every operation, --max-examples $MAX_EXAMPLES"
rc=0
(cd "$WORK" && "${ST[@]}" run "$BASE/api/schema/" "${ST_COMMON[@]}" \
    --max-examples "$MAX_EXAMPLES" \
    --report ndjson,junit --report-dir "$WORK/report-all") || rc=$?
echo "schemathesis exit status: $rc"
