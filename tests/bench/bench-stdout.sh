#!/usr/bin/env bash
# Throughput benchmark of the relay with the stdout sink, against the floors of what PostgreSQL can
# hand out: preloads N events into a throwaway PostgreSQL; then, after an untimed COPY that warms
# the caches, for a number of rounds (3 by default) times a COPY of the columns the relay selects
# in text format, the same COPY in binary format (the true read floor: the relay reads ids,
# versions and timestamps in binary too), and the relay draining the same events from the start
# (its stdout to /dev/null). The report gives the medians, the relay's speed over each floor, and
# its peak resident memory; per-round figures go to stderr.
#
#   tests/bench/bench-stdout.sh [--events N] [--batch-size N] [--aggregates N] [--rounds N]
#                               [--timeout SECONDS] [--compare BIN] [--perf FILE] [--scrape RATE]
#
# --compare BIN times a second relay binary (an older build, say) in each round too, from the
# start, against the same rows and with the same configuration (each loads the stdout plugin of
# its own build, plugins/ beside it); the two take turns at going first. The report adds its
# median, the CPU time of each (relay and PostgreSQL) and the median of the rounds' ratios relay
# time / compare time: above 1 is a regression of the relay.
#
# --scrape RATE serves http.listen on a free local port and, while the relay (not the compare
# binary) drains, has curl fetch /metrics RATE times a second, as a Prometheus gone wild would. With
# --compare pointing at the same binary, "relay time / compare" is then what the scraping costs:
# the endpoint serves a snapshot the loop publishes, so it should be 1 within the noise that the
# same pair shows without --scrape. The report gives the scrapes answered 200 and their rate.
#
# --perf FILE records the relay's run in the first round (perf record -F 999 -g, the default
# event, attached to the relay's process only) into FILE, and prints the relay's top 25 symbols at
# the end; that run is slowed by perf. For more than the top 25, or callers:
#   perf report -i FILE --no-children --sort dso,symbol --stdio
#
# RELAY_BIN overrides the binary (default: build/outbox-relay; do not use the sanitized build).
# Needs a built relay for the relay part; without one it still preloads and times the COPYs, and
# says that the relay part was skipped (--compare needs the relay).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
# shellcheck source=tests/bench/bench-lib.sh
source "$ROOT/tests/bench/bench-lib.sh"

# The columns the relay selects by default, as COPY reads them (aggregate_type too: the default
# table maps it).
readonly COPY_COLUMNS="id, aggregate_id, kind, aggregate_version, body::text, metadata::text,
                       created_at, aggregate_type"
# The labels here ("compare speed / binary COPY") are longer than other benchmarks'.
REPORT_WIDTH=27

ROUNDS=3
SCRAPE_RATE=""
HTTP_PORT=""
SCRAPER_PID=""
SCRAPES_OK=0
SCRAPE_SECONDS=0
# One entry per round.
TEXT_RUNS=()
BINARY_RUNS=()

usage() {
    echo "usage: $0 [--events N] [--batch-size N] [--aggregates N] [--rounds N]" \
        "[--timeout SECONDS] [--compare BIN] [--perf FILE] [--scrape RATE]" >&2
    exit 2
}

parse_arguments() {
    while (($# > 0)); do
        (($# >= 2)) || usage
        case "$1" in
        --rounds) ROUNDS=$(positive_integer "$1" "$2") ;;
        --scrape) SCRAPE_RATE=$(positive_integer "$1" "$2") ;;
        *) parse_common_option "$1" "$2" || parse_round_option "$1" "$2" || usage ;;
        esac
        shift 2
    done
}

# A COPY of every event, in text format, or with $1 "(FORMAT binary)" in binary.
copy_events() {
    sql -c "COPY (SELECT $COPY_COLUMNS FROM events ORDER BY id) TO STDOUT ${1:-}" >/dev/null
}

# Prints the seconds a COPY of every event took, in the format copy_events takes as $1.
time_copy() {
    local start
    start=$EPOCHREALTIME
    copy_events "${1:-}"
    seconds_since "$start"
}

# For the per-round lines: the relay's speed over the round's binary COPY.
floor_text() {
    ratio_text "${BINARY_RUNS[-1]}" "$1" "binary COPY"
}

# A TCP port nothing listens on now, for http.listen.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# With --scrape, before relay $1 runs: curl fetches /metrics at SCRAPE_RATE a second, one
# status code per line into the work directory, until relay_timed stops it. The URL's query
# numbers the fetches (curl's globbing), which the endpoint ignores.
relay_starting() {
    [[ -n "$SCRAPE_RATE" && $1 -eq 0 ]] || return 0
    SCRAPE_START=$EPOCHREALTIME
    # The codes go to stderr, which curl does not buffer: it is killed, not let finish.
    curl -s -o /dev/null -w '%{stderr}%{http_code}\n' --rate "$SCRAPE_RATE/s" \
        --connect-timeout 1 "http://127.0.0.1:$HTTP_PORT/metrics?n=[1-100000000]" \
        >/dev/null 2>"$WORK_DIR/scrapes" &
    SCRAPER_PID=$!
}

# After relay $1 ran: stops the scraper and adds what it fetched (status 200) to the totals.
relay_timed() {
    [[ -n "$SCRAPER_PID" ]] || return 0
    kill "$SCRAPER_PID" 2>/dev/null || true
    wait "$SCRAPER_PID" 2>/dev/null || true
    SCRAPER_PID=""
    SCRAPE_SECONDS=$(awk -v a="$SCRAPE_SECONDS" -v b="$(seconds_since "$SCRAPE_START")" \
        'BEGIN { printf "%.3f", a + b }')
    SCRAPES_OK=$((SCRAPES_OK + $(grep -c '^200$' "$WORK_DIR/scrapes" || true)))
}

# One round: both COPYs, then the relays from position 0.
run_round() {
    local round=$1 text
    TEXT_RUNS+=("$(time_copy)")
    BINARY_RUNS+=("$(time_copy "(FORMAT binary)")")
    text="round $round/$ROUNDS: text COPY ${TEXT_RUNS[-1]} s, binary COPY ${BINARY_RUNS[-1]} s"
    if have_relay; then
        time_relays_in_round "$round"
        text+=", $(relays_round_text "$round")"
    fi
    say "$text"
}

# The report's lines for relay $1: its median, its speed over both floors (medians $2, binary, and
# $3, text) and its peak RSS, and with --compare its CPU time.
report_relay() {
    local index=$1 binary=$2 text=$3 label median
    label=$(relay_label "$index")
    median=$(bin_median "$index")
    report_line "$label, stdout sink" "$(rate_text "$median") (batch_size $BATCH_SIZE)"
    report_line "$label speed / binary COPY" "$(ratio_text "$binary" "$median")"
    # Throughput, relay over floor: the goal is 0.5 or more, set against the text COPY.
    report_line "$label speed / text COPY" "$(ratio_text "$text" "$median" "text COPY")"
    report_line "$label peak RSS" "$(rss_text "${BIN_RSS_MAX[index]}")"
    if [[ -n "$COMPARE_BIN" ]]; then
        report_line "$label, CPU" "$(bin_cpu_text "$index")"
    fi
}

# The exit trap: the scraper too, since it would go on fetching from nothing.
cleanup() {
    local status=$?
    [[ -z "$SCRAPER_PID" ]] || kill "$SCRAPER_PID" 2>/dev/null || true
    (exit "$status")
    cleanup_relay_and_postgres
}

main() {
    parse_arguments "$@"
    trap cleanup EXIT
    command -v psql >/dev/null 2>&1 || die "psql not found; run scripts/deps"
    if [[ -n "$COMPARE_BIN" ]]; then
        have_relay || die "--compare: no relay at $RELAY_BIN to compare"
        check_compare_plugin plugins/stdout/stdout.so
    fi

    start_postgres
    write_config "  plugin: stdout"
    if [[ -n "$SCRAPE_RATE" ]]; then
        command -v curl >/dev/null 2>&1 || die "--scrape needs curl; run scripts/deps"
        HTTP_PORT=$(free_port)
        printf 'http:\n  listen: "127.0.0.1:%s"\n' "$HTTP_PORT" >>"$CONFIG"
    fi
    create_schema
    preload

    # Untimed: it warms the caches, so that what runs after it gets no advantage from them.
    say "warming up with a COPY"
    copy_events
    if have_relay; then
        say "$ROUNDS rounds of text COPY, binary COPY, then the relay" \
            "${COMPARE_BIN:+and $COMPARE_BIN, taking turns at going first }(batch_size $BATCH_SIZE)"
    else
        say "no relay at $RELAY_BIN: skipping the relay part (build it with: meson setup build && ninja -C build)"
        say "$ROUNDS rounds of text COPY, then binary COPY"
    fi
    local round text binary index
    for ((round = 1; round <= ROUNDS; round++)); do
        run_round "$round"
    done

    text=$(median_of "${TEXT_RUNS[@]}")
    binary=$(median_of "${BINARY_RUNS[@]}")
    echo
    report_line "events" "$EVENTS"
    report_rounds "$ROUNDS"
    report_line "COPY, text" "$(rate_text "$text")"
    report_line "COPY, binary (floor)" "$(rate_text "$binary")"
    if have_relay; then
        for index in 0 ${COMPARE_BIN:+1}; do
            report_relay "$index" "$binary" "$text"
        done
        report_compare
        if [[ -n "$SCRAPE_RATE" ]]; then
            report_line "scrapes of the relay" "$SCRAPES_OK answered 200, $(awk -v n="$SCRAPES_OK" \
                -v s="$SCRAPE_SECONDS" 'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }')/s (asked: $SCRAPE_RATE/s)"
        fi
    else
        report_line "relay" "skipped (not built)"
    fi
    report_perf
}

main "$@"
