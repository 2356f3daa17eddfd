#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the test suite, listening only on a unix socket.
#
#   eval "$(.ci/postgres.sh start DIR)"   # creates DIR/data, starts the server, prints PG* exports
#   .ci/postgres.sh env DIR               # prints the exports again
#   .ci/postgres.sh stop DIR              # stops it (DIR is left for the caller to remove)
#
# Only the `export ...` lines go to stdout; everything else goes to stderr, so `eval` is safe.
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` user via runuser.
# If no PostgreSQL server binaries are installed and we are root, Debian's `postgresql` is installed.
# Env: VL_PGPORT (default 5432; the socket lives in DIR, so this never clashes with another server).
set -euo pipefail

PORT="${VL_PGPORT:-5432}"
PGSUPERUSER=postgres

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { die "usage: $0 {start|stop|env|status} DIR"; }

is_root() { [ "$(id -u)" = 0 ]; }

# Run a command as the server's OS user.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

find_bindir() {
    # Highest installed major version that has the server binaries.
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && printf '%s\n' "$d"
    done | sort -V | tail -n 1
}

ensure_installed() {
    BINDIR="$(find_bindir)"
    if [ -n "$BINDIR" ]; then
        return
    fi
    is_root || die "no PostgreSQL server found under /usr/lib/postgresql/*/bin and not root: install 'postgresql'"
    log "PostgreSQL server not found: installing Debian's postgresql (apt-get update + install)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 </dev/null
    apt-get install -y -qq postgresql >&2 </dev/null
    BINDIR="$(find_bindir)"
    [ -n "$BINDIR" ] || die "apt-get install postgresql did not provide /usr/lib/postgresql/*/bin/initdb"
}

ensure_pg_user() {
    is_root || return 0
    id -u postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user to run the server"
}

# Make sure the postgres user can reach DIR: ancestors need search (x) permission.
make_reachable() {
    local dir="$1" p
    is_root || return 0
    p="$dir"
    while [ "$p" != "/" ]; do
        p="$(dirname "$p")"
        if ! runuser -u postgres -- test -x "$p" 2>/dev/null; then
            case "$p" in
                /tmp/* | /var/tmp/* | "${TMPDIR:-/nonexistent}"/*)
                    log "granting search permission on $p so the postgres user can reach $dir"
                    chmod o+x "$p"
                    ;;
                *)
                    die "the postgres user cannot reach $dir (no search permission on $p); use a directory under /tmp"
                    ;;
            esac
        fi
    done
}

abspath() {
    mkdir -p "$1"
    (cd "$1" && pwd -P)
}

print_env() {
    local dir="$1"
    printf 'export PGHOST=%q PGPORT=%q PGUSER=%q PGDATABASE=%q\n' "$dir" "$PORT" "$PGSUPERUSER" postgres
}

cmd_start() {
    local dir data
    dir="$(abspath "$1")"
    data="$dir/data"
    case "$dir" in *"'"* | *" "*) die "DIR must not contain quotes or spaces: $dir" ;; esac
    ensure_installed
    ensure_pg_user
    if [ -f "$data/postmaster.pid" ] && as_pg "$BINDIR/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        die "a server is already running in $data (stop it first: $0 stop $dir)"
    fi
    [ -e "$data" ] && die "$data already exists; give a fresh DIR"

    is_root && chown postgres: "$dir"
    chmod 0755 "$dir"
    make_reachable "$dir"

    log "initdb in $data ($BINDIR)"
    as_pg "$BINDIR/initdb" -D "$data" -A trust -U "$PGSUPERUSER" -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }

    # Settings for a disposable test server: no TCP, socket in DIR, no durability.
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF

# --- .ci/postgres.sh: throwaway test cluster ---
listen_addresses = ''
unix_socket_directories = '$dir'
unix_socket_permissions = 0777
port = $PORT
max_connections = 100
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
shared_buffers = 128MB
logging_collector = off
log_min_messages = warning
EOF

    log "starting server (socket $dir/.s.PGSQL.$PORT)"
    if ! as_pg "$BINDIR/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start >&2; then
        cat "$dir/server.log" >&2 || true
        die "pg_ctl start failed"
    fi

    local i
    for i in $(seq 1 60); do
        if "$BINDIR/pg_isready" -q -h "$dir" -p "$PORT" -U "$PGSUPERUSER" -d postgres; then
            log "server ready after ${i} check(s)"
            print_env "$dir"
            return 0
        fi
        sleep 0.5
    done
    cat "$dir/server.log" >&2 || true
    die "server did not become ready (pg_isready) within 30s"
}

cmd_stop() {
    local dir data
    [ -d "$1" ] || { log "nothing to stop: $1 does not exist"; return 0; }
    dir="$(cd "$1" && pwd -P)"
    data="$dir/data"
    if [ ! -f "$data/postmaster.pid" ]; then
        log "no server running in $data"
        return 0
    fi
    BINDIR="$(find_bindir)"
    [ -n "$BINDIR" ] || die "no PostgreSQL binaries found to stop $data"
    log "stopping server in $data"
    as_pg "$BINDIR/pg_ctl" -D "$data" -m fast -w -t 60 stop >&2 \
        || as_pg "$BINDIR/pg_ctl" -D "$data" -m immediate -w -t 30 stop >&2
}

cmd_status() {
    local dir
    dir="$(cd "$1" && pwd -P)"
    BINDIR="$(find_bindir)"
    [ -n "$BINDIR" ] || die "no PostgreSQL binaries found"
    as_pg "$BINDIR/pg_ctl" -D "$dir/data" status >&2
}

[ $# -eq 2 ] || usage
case "$1" in
    start) cmd_start "$2" ;;
    stop) cmd_stop "$2" ;;
    env) print_env "$(cd "$2" && pwd -P)" ;;
    status) cmd_status "$2" ;;
    *) usage ;;
esac
