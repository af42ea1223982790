#!/usr/bin/env bash
# Throughput benchmark of the relay with the Kafka sink, against the floor of a plain librdkafka
# producer: preloads N events into a throwaway PostgreSQL, starts a librdkafka mock cluster of 3
# brokers in a process of its own, times kafka_floor sending the messages the relay would send
# (idempotent, acks=all, read into memory first) to one topic, then times the relay draining the
# same events to another topic of as many partitions, and reports its peak resident memory and
# the CPU time each part used. Floor and relay take turns for a number of rounds (3 by default),
# from the start each time, and the report gives the medians: on a shared machine a single run
# can be a third off either way. Per-round figures go to stderr.
#
#   tests/bench/bench-kafka.sh [--events N] [--batch-size N] [--partitions N] [--aggregates N]
#                              [--rounds N] [--timeout SECONDS] [--compare BIN] [--perf FILE]
#
# --compare BIN times a second relay binary (an older build, say) in each round too, after the
# floor, from the start, to the same topic with the same configuration (each loads the Kafka
# plugin of its own build, plugins/ beside it). The two take turns at going first, since the one
# that runs second finds more messages in the cluster. The report adds its median, the CPU time
# of each (relay, PostgreSQL and brokers) and the median of the rounds' ratios relay time /
# compare time: above 1 is a regression of the relay.
#
# --perf FILE records the relay's run in the first round (perf record -F 999 -g, the default
# event, attached to the relay's process only, every thread of it) into FILE, and prints the
# relay's top 25 symbols at the end; that run is slowed by perf. For more than the top 25, or
# callers:
#   perf report -i FILE --no-children --sort dso,symbol --stdio
#
# BUILD_DIR overrides the build (default: build/; do not use the sanitized build), RELAY_BIN the
# relay binary in it. The build needs librdkafka and json-c (scripts/deps) for the benchmark's
# programs; without the relay or its Kafka plugin the floor still runs, and the relay part is
# reported as skipped (--compare needs them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
# shellcheck source=tests/bench/bench-lib.sh
source "$ROOT/tests/bench/bench-lib.sh"

readonly FLOOR_TOPIC=bench-floor
readonly RELAY_TOPIC=bench-relay
readonly MOCK_START_TIMEOUT=30
# Where a relay looks for its Kafka plugin: beside its own executable.
readonly PLUGIN_PATH_IN_BUILD=plugins/kafka/kafka.so

PARTITIONS=3
ROUNDS=3
MOCK_CLUSTER_BIN="$BUILD_DIR/tests/bench/kafka_mock_cluster"
FLOOR_BIN="$BUILD_DIR/tests/bench/kafka_floor"
KAFKA_PLUGIN="$(dirname "$RELAY_BIN")/$PLUGIN_PATH_IN_BUILD"

MOCK_PID=""
MOCK_STDIN=""
BOOTSTRAP=""
FLOOR_SECONDS=""
FLOOR_CPU_TICKS=""
FLOOR_BROKER_TICKS=""
# One entry per round.
FLOOR_RUNS=()
# Sums over the rounds.
FLOOR_CPU_SUM=0
FLOOR_BROKER_SUM=0
# The brokers' CPU ticks while each relay ran, summed over the rounds, by the index of
# bench-lib.sh's BIN_* arrays (0: the relay, 1: the compare binary).
BIN_BROKER_SUM=()

usage() {
    echo "usage: $0 [--events N] [--batch-size N] [--partitions N] [--aggregates N]" \
        "[--rounds N] [--timeout SECONDS] [--compare BIN] [--perf FILE]" >&2
    exit 2
}

parse_arguments() {
    while (($# > 0)); do
        (($# >= 2)) || usage
        case "$1" in
        --partitions) PARTITIONS=$(positive_integer "$1" "$2") ;;
        --rounds) ROUNDS=$(positive_integer "$1" "$2") ;;
        *) parse_common_option "$1" "$2" || parse_round_option "$1" "$2" || usage ;;
        esac
        shift 2
    done
}

stop_mock_cluster() {
    if [[ -n "$MOCK_PID" ]]; then
        kill -TERM "$MOCK_PID" 2>/dev/null || true
        wait "$MOCK_PID" 2>/dev/null || true
        MOCK_PID=""
    fi
    if [[ -n "$MOCK_STDIN" ]]; then
        exec {MOCK_STDIN}>&-
        MOCK_STDIN=""
    fi
}

# shellcheck disable=SC2317 # called by trap
cleanup() {
    local status=$?
    stop_relay_at_once
    stop_mock_cluster
    remove_work_dir
    exit "$status"
}

have_kafka_relay() {
    have_relay && [[ -f "$KAFKA_PLUGIN" ]]
}

# Starts the cluster with both topics; sets MOCK_PID and BOOTSTRAP. Its stdin is a FIFO that only
# this script holds open, so that the cluster also goes when the script is killed outright.
start_mock_cluster() {
    local fifo="$WORK_DIR/mock.stdin" out="$WORK_DIR/mock.out" deadline
    mkfifo "$fifo"
    # Created now: the cluster's own redirection only happens once the FIFO has its writer.
    : >"$out"
    "$MOCK_CLUSTER_BIN" "$PARTITIONS" "$FLOOR_TOPIC" "$RELAY_TOPIC" <"$fifo" >"$out" \
        2>"$WORK_DIR/mock.log" &
    MOCK_PID=$!
    # Meets the cluster's open of the FIFO for reading; neither returns before the other.
    exec {MOCK_STDIN}>"$fifo"
    deadline=$((SECONDS + MOCK_START_TIMEOUT))
    # The bootstrap line comes once the brokers listen; polling the file is waiting for it.
    until (($(wc -l <"$out") > 0)); do
        if ! kill -0 "$MOCK_PID" 2>/dev/null; then
            cat "$WORK_DIR/mock.log" >&2
            MOCK_PID=""
            die "the mock cluster exited before listing its brokers"
        fi
        ((SECONDS < deadline)) || die "the mock cluster did not list its brokers within" \
            "${MOCK_START_TIMEOUT}s"
        sleep 0.05
    done
    BOOTSTRAP=$(head -n 1 "$out")
    say "mock cluster of 3 brokers at $BOOTSTRAP, topics $FLOOR_TOPIC and $RELAY_TOPIC with" \
        "$PARTITIONS partitions"
}

kafka_sink_config() {
    cat <<EOF
  plugin: kafka
  options:
    topic: "$RELAY_TOPIC"
    properties:
      bootstrap.servers: "$BOOTSTRAP"
EOF
}

# Sets FLOOR_SECONDS and FLOOR_CPU_TICKS from kafka_floor's "floor SECONDS EVENTS CPU_SECONDS",
# and FLOOR_BROKER_TICKS to the mock cluster's CPU time meanwhile (it idles while the floor loads).
time_floor() {
    local output label seconds count cpu brokers_before
    brokers_before=$(process_ticks "$MOCK_PID")
    output=$("$FLOOR_BIN" "$CONNINFO" "$BOOTSTRAP" "$FLOOR_TOPIC" 2>"$WORK_DIR/floor.log") || {
        tail -n 20 "$WORK_DIR/floor.log" >&2
        die "kafka_floor failed"
    }
    FLOOR_BROKER_TICKS=$(($(process_ticks "$MOCK_PID") - brokers_before))
    read -r label seconds count cpu <<<"$output"
    [[ "$label" == floor && "$count" == "$EVENTS" && -n "$cpu" ]] ||
        die "kafka_floor said '$output', expected 'floor SECONDS $EVENTS CPU_SECONDS'"
    FLOOR_SECONDS=$seconds
    FLOOR_CPU_TICKS=$(awk -v s="$cpu" -v hz="$CLOCK_TICKS" 'BEGIN { printf "%.0f", s * hz }')
}

# For the per-round lines: a relay's speed over the round's floor.
floor_text() {
    ratio_text "$FLOOR_SECONDS" "$1"
}

# One round: the floor, then the relays from position 0 (relays_in_round), each with the brokers'
# CPU time while it ran; adds their figures to the runs and sums.
run_round() {
    local round=$1 index brokers_before
    time_floor
    FLOOR_RUNS+=("$FLOOR_SECONDS")
    FLOOR_CPU_SUM=$((FLOOR_CPU_SUM + FLOOR_CPU_TICKS))
    FLOOR_BROKER_SUM=$((FLOOR_BROKER_SUM + FLOOR_BROKER_TICKS))
    if ! have_kafka_relay; then
        say "round $round/$ROUNDS: floor $FLOOR_SECONDS s"
        return
    fi
    for index in $(relays_in_round "$round"); do
        brokers_before=$(process_ticks "$MOCK_PID")
        time_relay_in_round "$index" "$round"
        BIN_BROKER_SUM[index]=$((${BIN_BROKER_SUM[index]:-0} + $(process_ticks "$MOCK_PID") -
            brokers_before))
    done
    note_pair_ratio
    say "round $round/$ROUNDS: floor $FLOOR_SECONDS s, $(relays_round_text "$round")"
}

# The CPU lines of the report, per round on average: who used how much, and how many of the
# machine's cores that makes. A run that keeps them all busy is bound by the machine, not by
# waiting.
report_cpu() {
    local floor_seconds index
    floor_seconds=$(sum_of "${FLOOR_RUNS[@]}")
    report_line "floor, CPU" "$(cpu_text $((FLOOR_CPU_SUM + FLOOR_BROKER_SUM)) "$floor_seconds" \
        "$ROUNDS")" "(producer $(ticks_text "$FLOOR_CPU_SUM" "$ROUNDS")," \
        "brokers $(ticks_text "$FLOOR_BROKER_SUM" "$ROUNDS"))"
    if have_kafka_relay; then
        for index in 0 ${COMPARE_BIN:+1}; do
            report_line "$(relay_label "$index"), CPU" \
                "$(bin_cpu_text "$index" "${BIN_BROKER_SUM[index]}" brokers)"
        done
    fi
    report_line "cores" "$(nproc)"
}

main() {
    parse_arguments "$@"
    trap cleanup EXIT
    command -v psql >/dev/null 2>&1 || die "psql not found; run scripts/deps"
    [[ -x "$MOCK_CLUSTER_BIN" && -x "$FLOOR_BIN" ]] ||
        die "no $MOCK_CLUSTER_BIN or $FLOOR_BIN: build with librdkafka and json-c" \
            "(scripts/deps; meson setup build && ninja -C build)"
    if [[ -n "$COMPARE_BIN" ]]; then
        have_kafka_relay || die "--compare: no relay with a Kafka plugin at $KAFKA_PLUGIN to compare"
        check_compare_plugin "$PLUGIN_PATH_IN_BUILD"
    fi

    start_postgres
    start_mock_cluster
    write_config "$(kafka_sink_config)"
    create_schema
    preload

    say "$ROUNDS rounds of the floor (a plain idempotent producer, acks=all), then the relay" \
        "${COMPARE_BIN:+and $COMPARE_BIN, taking turns at going first }(batch_size $BATCH_SIZE)"
    have_kafka_relay || say "no relay with a Kafka plugin at $KAFKA_PLUGIN: skipping the relay" \
        "part (build it with: meson setup build && ninja -C build)"
    local round floor relay index label
    for ((round = 1; round <= ROUNDS; round++)); do
        run_round "$round"
    done

    floor=$(median_of "${FLOOR_RUNS[@]}")
    echo
    report_line "events" "$EVENTS"
    report_line "cluster" "3 mock brokers, $PARTITIONS partitions, idempotent, acks=all"
    report_rounds "$ROUNDS"
    report_line "floor, librdkafka" "$(rate_text "$floor")"
    if have_kafka_relay; then
        for index in 0 ${COMPARE_BIN:+1}; do
            label=$(relay_label "$index")
            relay=$(bin_median "$index")
            report_line "$label, kafka sink" "$(rate_text "$relay") (batch_size $BATCH_SIZE)"
            # Throughput, relay over floor: the goal is 0.7 or more.
            report_line "$label speed / floor" "$(ratio_text "$floor" "$relay")"
            report_line "$label peak RSS" "$(rss_text "${BIN_RSS_MAX[index]}")"
        done
    else
        report_line "relay" "skipped (no Kafka plugin built)"
    fi
    report_cpu
    report_compare
    report_perf
}

main "$@"
