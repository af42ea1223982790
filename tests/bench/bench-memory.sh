#!/usr/bin/env bash
# Memory benchmark: the relay's peak resident memory while it drains a backlog with the stdout
# sink (to /dev/null), at each size given (1,000,000 and 10,000,000 events by default). One
# throwaway PostgreSQL; for each size the table is emptied and preloaded with that many events,
# and the relay drains them from the start. The goal (issue 14): peak RSS flat across sizes,
# under 64 MB. The relay's own figure is VmHWM, read from /proc just before it is stopped.
#
# Then the sizes change under it: --small small events (about 100 bytes) followed by --large events
# of 1 MB, read with batch_size 100000 and the default source.batch_bytes (16 MiB). A read sized by
# the small rows meets the large ones; before the relay read in single-row mode, its result held
# them all (367 MB for 200,000 + 300). The goal: no more than four times batch_bytes beside the
# first size's peak (two batches, each holding the buffers of its small rows and of its large ones).
#
#   tests/bench/bench-memory.sh [--sizes "N M ..."] [--small N] [--large N] [--batch-size N]
#                               [--aggregates N] [--timeout SECONDS]
#
# RELAY_BIN overrides the binary (default: build/outbox-relay; do not use the sanitized build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
# shellcheck source=tests/bench/bench-lib.sh
source "$ROOT/tests/bench/bench-lib.sh"

SIZES="1000000 10000000"
SMALL=200000
LARGE=300
readonly RSS_GOAL_KIB=$((64 * 1024))
readonly BATCH_BYTES_KIB=$((16 * 1024))
REPORT_WIDTH=30
RESULTS=()
MIXED_KIB=""
MIXED_SECONDS=""

usage() {
    echo "usage: $0 [--sizes \"N M ...\"] [--small N] [--large N] [--batch-size N]" \
        "[--aggregates N] [--timeout SECONDS]" >&2
    exit 2
}

parse_arguments() {
    while (($# > 0)); do
        (($# >= 2)) || usage
        case "$1" in
        --sizes) SIZES=$2 ;;
        --small) SMALL=$(positive_integer --small "$2") ;;
        --large) LARGE=$(positive_integer --large "$2") ;;
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

# Empties the table and loads $SMALL events of about 100 bytes, then $LARGE of 1 MB each.
load_mixed_events() {
    sql -c 'TRUNCATE events RESTART IDENTITY' >/dev/null
    EVENTS=$SMALL
    preload
    say "loading $LARGE events of 1 MB after them"
    sql >/dev/null <<EOF
INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body, created_at)
SELECT 'large-' || n, 'order', 1, 'created',
       jsonb_build_object('blob', repeat(md5(n::text), 32768)), clock_timestamp() - interval '1 hour'
FROM generate_series(1, $LARGE) AS n;
EOF
}

# Drains the mixed backlog with batch_size 100000; sets MIXED_KIB and MIXED_SECONDS.
drain_mixed() {
    local batch_size=$BATCH_SIZE
    BATCH_SIZE=100000
    write_config "  plugin: stdout"
    load_mixed_events
    forget_relay_position
    say "draining $SMALL small events, then $LARGE of 1 MB, with batch_size $BATCH_SIZE"
    time_relay
    MIXED_KIB=$RELAY_RSS_KIB
    MIXED_SECONDS=$RELAY_SECONDS
    BATCH_SIZE=$batch_size
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

    drain_mixed

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
    local base_kib
    read -r _ base_kib _ <<<"${RESULTS[0]}"
    verdict="met"
    ((MIXED_KIB - base_kib <= 4 * BATCH_BYTES_KIB)) || verdict="NOT met"
    report_line "peak RSS, mixed sizes" \
        "$(rss_text "$MIXED_KIB") ($SMALL small, then $LARGE of 1 MB; batch_size 100000)"
    report_line "  beyond the first size's" \
        "$(rss_text $((MIXED_KIB - base_kib))) (goal <= 4 x batch_bytes, 64 MB: $verdict)"
}

main "$@"
