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
# shellcheck source=tests/bench/bench-lib.sh
source "$ROOT/tests/bench/bench-lib.sh"

usage() {
    echo "usage: $0 [--events N] [--batch-size N] [--aggregates N] [--timeout SECONDS]" >&2
    exit 2
}

parse_arguments() {
    while (($# > 0)); do
        (($# >= 2)) || usage
        parse_common_option "$1" "$2" || usage
        shift 2
    done
}

# shellcheck disable=SC2317 # called by trap
cleanup() {
    local status=$?
    stop_relay_at_once
    remove_work_dir
    exit "$status"
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

main() {
    parse_arguments "$@"
    trap cleanup EXIT
    command -v psql >/dev/null 2>&1 || die "psql not found; run scripts/deps"

    start_postgres
    write_config "  plugin: stdout"
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
    report_line "COPY (floor)" "$(rate_text "$copy_seconds")"
    if [[ -n "$RELAY_SECONDS" ]]; then
        report_line "relay, stdout sink" "$(rate_text "$RELAY_SECONDS") (batch_size $BATCH_SIZE)"
        # Throughput, relay over floor: the goal is 0.5 or more.
        report_line "relay speed / COPY" "$(ratio_text "$copy_seconds" "$RELAY_SECONDS")"
        report_line "relay peak RSS" "$(rss_text "$RELAY_RSS_KIB")"
    else
        report_line "relay" "skipped (not built)"
    fi
}

main "$@"
