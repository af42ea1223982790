#!/usr/bin/env bash
# Throughput benchmark of the relay with the stdout sink, against the floor of what PostgreSQL can
# hand out: preloads N events into a throwaway PostgreSQL, times a COPY of the columns the relay
# selects, then times the relay draining the same events (its stdout to /dev/null) and reports its
# peak resident memory.
#
#   tests/bench/bench-stdout.sh [--events N] [--batch-size N] [--aggregates N] [--timeout SECONDS]
#
# RELAY_BIN overrides the binary (default: build/outbox-relay; do not use the sanitized build).
# Needs a built relay for the relay part; without one it still preloads and times the COPY, and
# says that the relay part was skipped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
readonly RELAY_NAME=bench
# $EPOCHREALTIME and awk must agree on the decimal point.
export LC_ALL=C

EVENTS=1000000
BATCH_SIZE=1000
AGGREGATES=300
TIMEOUT=600
RELAY_BIN=${RELAY_BIN:-$ROOT/build/outbox-relay}

WORK_DIR=""
CONNINFO=""
CONFIG=""
RELAY_PID=""
RELAY_SECONDS=""
RELAY_RSS_KIB=""

say() {
    echo "bench: $*" >&2
}

die() {
    say "$*"
    exit 1
}

usage() {
    echo "usage: $0 [--events N] [--batch-size N] [--aggregates N] [--timeout SECONDS]" >&2
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
        --events) EVENTS=$(positive_integer "$1" "$2") ;;
        --batch-size) BATCH_SIZE=$(positive_integer "$1" "$2") ;;
        --aggregates) AGGREGATES=$(positive_integer "$1" "$2") ;;
        --timeout) TIMEOUT=$(positive_integer "$1" "$2") ;;
        *) usage ;;
        esac
        shift 2
    done
}

# shellcheck disable=SC2317 # called by trap
cleanup() {
    local status=$?
    if [[ -n "$RELAY_PID" ]]; then
        kill -KILL "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
    fi
    if [[ -n "$WORK_DIR" ]]; then
        "$ROOT/scripts/pg-tmp" stop "$WORK_DIR/pg" >/dev/null 2>&1 || true
        rm -rf "$WORK_DIR"
    fi
    exit "$status"
}

sql() {
    psql "$CONNINFO" -X -q -v ON_ERROR_STOP=1 "$@"
}

# Seconds elapsed since a start taken from $EPOCHREALTIME, with microseconds.
seconds_since() {
    awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.3f", now - start }'
}

have_relay() {
    [[ -x "$RELAY_BIN" ]]
}

write_config() {
    # A YAML double-quoted string; the relay expands ${VAR} in it, and reads $$ as a literal $.
    local conninfo=${CONNINFO//\\/\\\\}
    conninfo=${conninfo//\$/\$\$}
    cat >"$CONFIG" <<EOF
name: $RELAY_NAME
database:
  conninfo: "${conninfo//\"/\\\"}"
source:
  table: events
  safety_margin: 1s
  batch_size: $BATCH_SIZE
  poll_interval: 200ms
sink:
  plugin: stdout
log:
  level: warn
EOF
}

create_schema() {
    if have_relay; then
        "$RELAY_BIN" migrate -c "$CONFIG" >/dev/null
    else
        # The same migrations the relay embeds; they are idempotent CREATE ... IF NOT EXISTS.
        local file
        for file in "$ROOT"/sql/*.sql; do
            sql -f "$file"
        done
    fi
}

# One statement, created_at an hour in the past so that the safety margin holds nothing back. The
# body comes out of PostgreSQL at about 100 bytes.
preload() {
    local start
    say "preloading $EVENTS events over $AGGREGATES aggregates"
    start=$EPOCHREALTIME
    sql <<EOF
INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body, metadata, created_at)
SELECT 'order-' || (n % $AGGREGATES),
       'order',
       n / $AGGREGATES + 1,
       (ARRAY['created', 'item_added', 'paid', 'shipped'])[n % 4 + 1],
       jsonb_build_object('order_id', n, 'customer', 'customer-' || (n % 9973),
                          'amount_cents', (n::bigint * 7919) % 100000,
                          'note', 'benchmark event'),
       '{"source": "bench"}',
       clock_timestamp() - interval '1 hour' + n * interval '1 microsecond'
FROM generate_series(0, $EVENTS - 1) AS n;
VACUUM (ANALYZE) events;
EOF
    say "preloaded in $(seconds_since "$start") s (average body $(sql -A -t -c \
        'SELECT round(avg(length(body::text))) FROM events') bytes)"
}

copy_events() {
    sql -c "COPY (SELECT id, aggregate_id, kind, aggregate_version, body::text, metadata::text,
                         created_at FROM events ORDER BY id) TO STDOUT" >/dev/null
}

# Prints the seconds a COPY of every event took; a first, untimed COPY warms the caches, so that the
# relay, which runs after it, does not get an advantage from them.
time_copy() {
    local start
    copy_events
    start=$EPOCHREALTIME
    copy_events
    seconds_since "$start"
}

relay_position() {
    sql -A -t -c "SELECT coalesce(max(position), 0) FROM relay_checkpoints WHERE name = '$RELAY_NAME'"
}

peak_rss_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# Runs the relay until its committed position reaches the last event; sets RELAY_SECONDS and
# RELAY_RSS_KIB (its peak resident set, read just before stopping it).
time_relay() {
    local max_id start deadline position status=0
    max_id=$(sql -A -t -c 'SELECT max(id) FROM events')
    start=$EPOCHREALTIME
    "$RELAY_BIN" run -c "$CONFIG" >/dev/null 2>"$WORK_DIR/relay.log" &
    RELAY_PID=$!
    deadline=$((SECONDS + TIMEOUT))
    # Polling the committed position is the condition itself; 50 ms bounds the timing error.
    while position=$(relay_position) && ((position < max_id)); do
        if ! kill -0 "$RELAY_PID" 2>/dev/null; then
            tail -n 20 "$WORK_DIR/relay.log" >&2
            RELAY_PID=""
            die "the relay exited before reaching event $max_id (position $position)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$WORK_DIR/relay.log" >&2
            die "the relay did not reach event $max_id within ${TIMEOUT}s (position $position)"
        fi
        sleep 0.05
    done
    RELAY_SECONDS=$(seconds_since "$start")
    RELAY_RSS_KIB=$(peak_rss_kib "$RELAY_PID")
    kill -TERM "$RELAY_PID"
    wait "$RELAY_PID" || status=$?
    RELAY_PID=""
    if ((status != 0)); then
        tail -n 20 "$WORK_DIR/relay.log" >&2
        die "the relay exited with status $status on SIGTERM"
    fi
}

report_line() {
    printf '%-22s %s\n' "$1" "$2"
}

main() {
    parse_arguments "$@"
    trap cleanup EXIT
    command -v psql >/dev/null 2>&1 || die "psql not found; run scripts/deps"

    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/outbox-relay-bench.XXXXXX")
    # The cluster inside runs as postgres when we are root; mktemp's 0700 would lock it out.
    chmod 0755 "$WORK_DIR"
    CONFIG="$WORK_DIR/bench.yaml"
    CONNINFO=$("$ROOT/scripts/pg-tmp" start "$WORK_DIR/pg")
    write_config
    create_schema
    preload

    local copy_seconds
    say "timing COPY"
    copy_seconds=$(time_copy)
    if have_relay; then
        say "timing the relay (batch_size $BATCH_SIZE)"
        time_relay
    else
        say "no relay at $RELAY_BIN: skipping the relay part (build it with: meson setup build && ninja -C build)"
    fi

    echo
    report_line "events" "$EVENTS"
    report_line "COPY (floor)" "$(awk -v s="$copy_seconds" -v n="$EVENTS" \
        'BEGIN { printf "%.2f s, %.0f events/s", s, n / s }')"
    if [[ -n "$RELAY_SECONDS" ]]; then
        report_line "relay, stdout sink" "$(awk -v s="$RELAY_SECONDS" -v n="$EVENTS" -v b="$BATCH_SIZE" \
            'BEGIN { printf "%.2f s, %.0f events/s (batch_size %d)", s, n / s, b }')"
        # Throughput, relay over floor: the goal is 0.5 or more.
        report_line "relay speed / COPY" "$(awk -v r="$RELAY_SECONDS" -v c="$copy_seconds" \
            'BEGIN { printf "%.2fx the floor", c / r }')"
        report_line "relay peak RSS" "$(awk -v k="$RELAY_RSS_KIB" 'BEGIN { printf "%.1f MB", k / 1024 }')"
    else
        report_line "relay" "skipped (not built)"
    fi
}

main "$@"
