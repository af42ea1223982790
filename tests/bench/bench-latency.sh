#!/usr/bin/env bash
# Latency benchmark: how long after its commit each event reaches the sink, under a steady load
# from concurrent writers. For each mode (margin with a 1 s margin, margin with 200 ms, settled) it
# creates a fresh database in one throwaway PostgreSQL, starts the relay with the stdout sink, and
# has pgbench insert one event per transaction at a fixed rate. A probe (latency.py) stamps every
# line the relay writes as it arrives; afterwards each event's arrival is joined with its commit
# time from PostgreSQL (track_commit_timestamp: pg_xact_commit_timestamp(xmin)), both read from
# CLOCK_REALTIME on this machine. Events committed during the warm-up are left out.
#
#   tests/bench/bench-latency.sh [--rate EVENTS_PER_S] [--seconds N] [--clients N] [--warmup N]
#
# Defaults: 2000 events/s for 15 s from 4 clients, the first 2 s left out; about 70 s in all. The
# writers run with synchronous_commit off (the server's default here), and on in the last run.
# RELAY_BIN overrides the binary (default: build/outbox-relay; do not use the sanitized build).
# Needs psql, pgbench and python3 (scripts/deps installs them).
# Goals: settled p99 < 50 ms; margin p99 about the margin plus a few ms.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
readonly RELAY_NAME=latency
readonly PROBE="$ROOT/tests/bench/latency.py"
# The mode runs: label, mode, safety margin, the writers' synchronous_commit. The relay delivers
# a row only once its commit is flushed: with synchronous_commit off, that is a flush of its own.
readonly RUNS=("margin 1s|margin|1s|off" "margin 200ms|margin|200ms|off" "settled|settled|1s|off"
    "settled, sync|settled|1s|on")
export LC_ALL=C

RATE=2000
LOAD_SECONDS=15
CLIENTS=4
WARMUP=2
RELAY_BIN=${RELAY_BIN:-$ROOT/build/outbox-relay}

WORK_DIR=""
BASE_CONNINFO=""
CONNINFO="" # of the current run's database
RELAY_PID=""
PROBE_PID=""
PGBENCH_PID=""

say() {
    echo "bench: $*" >&2
}

die() {
    say "$*"
    exit 1
}

usage() {
    echo "usage: $0 [--rate EVENTS_PER_S] [--seconds N] [--clients N] [--warmup N]" >&2
    exit 2
}

positive_integer() {
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 wants a positive whole number, not '$2'"
    printf '%s' "$2"
}

parse_arguments() {
    while (($# > 0)); do
        (($# >= 2)) || usage
        case "$1" in
        --rate) RATE=$(positive_integer "$1" "$2") ;;
        --seconds) LOAD_SECONDS=$(positive_integer "$1" "$2") ;;
        --clients) CLIENTS=$(positive_integer "$1" "$2") ;;
        --warmup) WARMUP=$(positive_integer "$1" "$2") ;;
        *) usage ;;
        esac
        shift 2
    done
    ((WARMUP < LOAD_SECONDS)) || die "--warmup ($WARMUP) must be shorter than --seconds ($LOAD_SECONDS)"
}

stop_process() {
    local pid=$1
    [[ -n "$pid" ]] || return 0
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # called by trap
cleanup() {
    local status=$?
    stop_process "$PGBENCH_PID"
    stop_process "$RELAY_PID"
    stop_process "$PROBE_PID"
    if [[ -n "$WORK_DIR" ]]; then
        "$ROOT/scripts/pg-tmp" stop "$WORK_DIR/pg" >/dev/null 2>&1 || true
        rm -rf "$WORK_DIR"
    fi
    exit "$status"
}

sql() {
    psql "$CONNINFO" -X -q -v ON_ERROR_STOP=1 "$@"
}

# Commit timestamps are off by default and the setting needs a restart; ALTER SYSTEM writes
# postgresql.auto.conf, which the server reads after pg-tmp's settings.
start_postgres() {
    BASE_CONNINFO=$("$ROOT/scripts/pg-tmp" start "$WORK_DIR/pg")
    CONNINFO=$BASE_CONNINFO
    sql -c 'ALTER SYSTEM SET track_commit_timestamp = on'
    "$ROOT/scripts/pg-tmp" restart "$WORK_DIR/pg" >/dev/null
    [[ "$(sql -A -t -c 'SHOW track_commit_timestamp')" == on ]] ||
        die "track_commit_timestamp did not turn on"
}

write_config() {
    local config=$1 mode=$2 margin=$3
    # A YAML double-quoted string; the relay expands ${VAR} in it, and reads $$ as a literal $.
    local conninfo=${CONNINFO//\\/\\\\}
    conninfo=${conninfo//\$/\$\$}
    cat >"$config" <<EOF
name: $RELAY_NAME
database:
  conninfo: "${conninfo//\"/\\\"}"
source:
  table: events
  mode: $mode
  safety_margin: $margin
  batch_size: 1000
  poll_interval: 200ms
sink:
  plugin: stdout
log:
  level: warn
EOF
}

# One event per transaction, as a service writing its outbox would; created_at takes its default.
# A new aggregate each time keeps (aggregate_id, aggregate_version) unique.
write_insert_script() {
    cat >"$1" <<'EOF'
INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body, metadata)
VALUES ('order-' || gen_random_uuid(), 'order', 1, 'created',
        '{"customer": "customer-42", "amount_cents": 12345, "note": "latency benchmark"}',
        '{"source": "bench"}');
EOF
}

relay_alive_or_die() {
    local run_dir=$1
    if ! kill -0 "$RELAY_PID" 2>/dev/null; then
        tail -n 20 "$run_dir/relay.log" >&2
        RELAY_PID=""
        die "the relay exited early"
    fi
}

# The relay holds an advisory lock on its name once connected and positioned.
wait_for_relay() {
    local run_dir=$1 deadline=$((SECONDS + 30))
    until [[ "$(sql -A -t -c "SELECT count(*) FROM pg_locks
                              WHERE locktype = 'advisory' AND granted
                                AND database = (SELECT oid FROM pg_database
                                                WHERE datname = current_database())")" != 0 ]]; do
        relay_alive_or_die "$run_dir"
        ((SECONDS < deadline)) || die "the relay did not connect within 30 s"
        sleep 0.05
    done
}

relay_position() {
    sql -A -t -c "SELECT coalesce(max(position), 0) FROM relay_checkpoints WHERE name = '$RELAY_NAME'"
}

wait_for_drain() {
    local run_dir=$1 max_id position deadline=$((SECONDS + 60))
    max_id=$(sql -A -t -c 'SELECT coalesce(max(id), 0) FROM events')
    while position=$(relay_position) && ((position < max_id)); do
        relay_alive_or_die "$run_dir"
        ((SECONDS < deadline)) || die "the relay did not reach event $max_id within 60 s (position $position)"
        sleep 0.05
    done
}

# Stops the relay (it flushes and commits on SIGTERM); its stdout closes, and the probe writes
# its arrivals and exits.
stop_relay_and_probe() {
    local status=0
    kill -TERM "$RELAY_PID"
    wait "$RELAY_PID" || status=$?
    RELAY_PID=""
    ((status == 0)) || die "the relay exited with status $status on SIGTERM"
    wait "$PROBE_PID" || die "the probe failed"
    PROBE_PID=""
}

run_mode() {
    local label=$1 mode=$2 margin=$3 index=$4 sync=$5
    local db="latency_$index" run_dir="$WORK_DIR/run$index"
    mkdir "$run_dir"
    # A database per run: each starts from an empty table and a fresh position.
    CONNINFO=$BASE_CONNINFO
    sql -c "CREATE DATABASE $db"
    CONNINFO="${BASE_CONNINFO/dbname=postgres/dbname=$db}"
    [[ "$CONNINFO" != "$BASE_CONNINFO" ]] || die "no dbname=postgres in the conninfo '$BASE_CONNINFO'"
    write_config "$run_dir/relay.yaml" "$mode" "$margin"
    "$RELAY_BIN" migrate -c "$run_dir/relay.yaml" >/dev/null

    mkfifo "$run_dir/stdout"
    python3 "$PROBE" probe "$run_dir/arrivals.tsv" <"$run_dir/stdout" &
    PROBE_PID=$!
    "$RELAY_BIN" run -c "$run_dir/relay.yaml" >"$run_dir/stdout" 2>"$run_dir/relay.log" &
    RELAY_PID=$!
    wait_for_relay "$run_dir"

    say "$label: $RATE events/s for ${LOAD_SECONDS}s from $CLIENTS clients"
    # In the background, so that Ctrl-C is handled at once rather than when pgbench ends.
    PGOPTIONS="-c synchronous_commit=$sync" pgbench -n -c "$CLIENTS" -j "$(((CLIENTS + 1) / 2))" -R "$RATE" -T "$LOAD_SECONDS" \
        -f "$WORK_DIR/insert.sql" "$CONNINFO" >"$run_dir/pgbench.log" 2>&1 &
    PGBENCH_PID=$!
    if ! wait "$PGBENCH_PID"; then
        PGBENCH_PID=""
        tail -n 20 "$run_dir/pgbench.log" >&2
        die "pgbench failed"
    fi
    PGBENCH_PID=""
    wait_for_drain "$run_dir"
    stop_relay_and_probe
    if [[ -s "$run_dir/relay.log" ]]; then
        say "$label: the relay logged:"
        tail -n 5 "$run_dir/relay.log" >&2
    fi

    sql -c "COPY (SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin)),
                         extract(epoch FROM created_at)
                  FROM events ORDER BY id) TO STDOUT" >"$run_dir/commits.tsv"
    python3 "$PROBE" report "$label" "$run_dir/arrivals.tsv" "$run_dir/commits.tsv" "$WARMUP" \
        >>"$WORK_DIR/report"
}

main() {
    parse_arguments "$@"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    local tool
    for tool in psql pgbench python3; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool not found; run scripts/deps"
    done
    [[ -x "$RELAY_BIN" ]] || die "no relay at $RELAY_BIN; build it with: meson setup build && ninja -C build"

    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/outbox-relay-latency.XXXXXX")
    # The cluster inside runs as postgres when we are root; mktemp's 0700 would lock it out.
    chmod 0755 "$WORK_DIR"
    start_postgres
    write_insert_script "$WORK_DIR/insert.sql"

    local i=0 run label mode margin sync
    for run in "${RUNS[@]}"; do
        IFS='|' read -r label mode margin sync <<<"$run"
        i=$((i + 1))
        run_mode "$label" "$mode" "$margin" "$i" "$sync"
    done

    echo
    echo "relay: $RELAY_BIN"
    echo "commit-to-sink latency, $RATE events/s offered for ${LOAD_SECONDS}s from $CLIENTS clients" \
        "(first ${WARMUP}s left out); commit time from track_commit_timestamp"
    printf '%-16s %7s %9s %8s %8s %8s %8s %10s\n' mode events "events/s" "p50 ms" "p90 ms" \
        "p99 ms" "max ms" "ins>commit"
    cat "$WORK_DIR/report"
    echo "(events/s: achieved, from the first to the last commit; ins>commit: p99 ms from" \
        "created_at to commit)"
}

main "$@"
