#!/usr/bin/env bash
# Memory benchmark: the relay's peak resident memory while it drains a backlog with the stdout
# sink (to /dev/null), at each size given (1,000,000 and 10,000,000 events by default). One
# throwaway PostgreSQL; for each size the table is emptied and preloaded with that many events,
# and the relay drains them from the start. The goal (issue 14): peak RSS flat across sizes,
# under 64 MB. The relay's own figure is VmHWM, read from /proc just before it is stopped.
#
#   tests/bench/bench-memory.sh [--sizes "N M ..."] [--batch-size N] [--aggregates N]
#                               [--timeout SECONDS]
#
# RELAY_BIN overrides the binary (default: build/outbox-relay; do not use the sanitized build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
# shellcheck source=tests/bench/bench-lib.sh
source "$ROOT/tests/bench/bench-lib.sh"

SIZES="1000000 10000000"
readonly RSS_GOAL_KIB=$((64 * 1024))
REPORT_WIDTH=30
RESULTS=()

usage() {
    echo "usage: $0 [--sizes \"N M ...\"] [--batch-size N] [--aggregates N] [--timeout SECONDS]" >&2
    exit 2
}

parse_arguments() {
    while (($# > 0)); do
        (($# >= 2)) || usage
        case "$1" in
        --sizes) SIZES=$2 ;;
        *) parse_common_option "$1" "$2" || usage ;;
        esac
        shift 2
    done
    local size
    for size in $SIZES; do
        positive_integer --sizes "$size" >/dev/null
    done
}

# Empties the table and preloads $1 events (the preload's aggregate versions start over).
load_events() {
    sql -c 'TRUNCATE events RESTART IDENTITY' >/dev/null
    EVENTS=$1
    preload
}

main() {
    parse_arguments "$@"
    trap cleanup_relay_and_postgres EXIT
    command -v psql >/dev/null 2>&1 || die "psql not found; run scripts/deps"
    have_relay || die "no relay at $RELAY_BIN (build it with: meson setup build && ninja -C build)"
    start_postgres
    write_config "  plugin: stdout"
    create_schema
    local size
    for size in $SIZES; do
        load_events "$size"
        forget_relay_position
        say "draining $size events from the start"
        time_relay
        say "$size events: $RELAY_SECONDS s, peak RSS $(rss_text "$RELAY_RSS_KIB")"
        RESULTS+=("$size $RELAY_RSS_KIB $RELAY_SECONDS")
    done

    echo
    report_line "batch_size" "$BATCH_SIZE"
    local result events kib seconds verdict
    for result in "${RESULTS[@]}"; do
        read -r events kib seconds <<<"$result"
        verdict="met"
        ((kib < RSS_GOAL_KIB)) || verdict="NOT met"
        report_line "peak RSS, $events events" \
            "$(rss_text "$kib") (drained in $seconds s; goal < 64 MB: $verdict)"
    done
}

main "$@"
