#!/usr/bin/env bash
# Cost of the gap watch (ids missing below the position, as rolled-back inserts leave them), in two
# parts, each against a throwaway PostgreSQL:
#
# drain  The relay (stdout sink to /dev/null, margin mode) drains N events from position 0, once
#        from a table of dense ids and once from a table where every 50th id is missing (2%; ids
#        simply absent, the sequence set to the highest, no transaction holding them), in turns
#        for a number of rounds (3 by default). Reports the median drain times and dense / gappy
#        (the goal is 0.8 or more).
# poll   A table of 10M events with 5,000 ids missing, spread evenly, and the relay's position past
#        them with those 5,000 single-id gaps watched (rows in relay_gaps). A transaction holds the
#        table's writer lock (RowExclusiveLock), as a long insert would, so that no gap can be
#        proven dead while it runs. The relay runs with auto_explain loaded into its own session
#        (PGOPTIONS; log_min_duration 0, so every statement it runs is logged with its plan), and
#        each watch (every poll while gaps exist) is read from the server log in its statements:
#        the writers look (the relay's prepared relay_observe_writers, told by its text: it reads
#        pg_locks for RowExclusiveLock), then the gap read (rows for only the gaps that may have
#        changed: new ones, and those whose writers ended), beside the relay's main fetch. Two
#        phases:
#        1. Steady state: the holder keeps holding for --poll-seconds. The first gap read (right
#           after start, every gap being new to the relay) is reported apart from the rest (none
#           are expected: no gap's writer ends). The figure that counts is the total per poll,
#           writers look plus gap reads of each watch after the first (the goal is under 5 ms).
#           The writers looks counted include the relay's one at start, when it loads the stored
#           gaps (the same statement, before the first watch).
#        2. Holder ended: it rolls back, every gap is then provably dead, and the next watch reads
#           them all once and forgets them. Waits (at most GAPS_EMPTY_TIMEOUT seconds, polling
#           SELECT count(*) FROM relay_gaps through one session every 20 ms) until relay_gaps is
#           empty, and reports that full read and the time from the end of the holder to an
#           empty relay_gaps.
#        A summary table gives, per phase and statement class, the polls (statements logged),
#        their median and maximum execution time (auto_explain's duration, so with its
#        instrumentation), and the gaps each gap read probed or the writers each look saw; then
#        the first plan of each class.
#
#   tests/bench/bench-gaps.sh [--only drain|poll] [--events N] [--rounds N] [--margin DURATION]
#                             [--rows N] [--gaps N] [--poll-seconds N] [--batch-size N]
#                             [--aggregates N] [--timeout SECONDS]
#
# --events (200000), --rounds, --margin (the relay's safety_margin, 1s) and --timeout (the most
# one drain may take, 300 s; a drain that misses it is reported as such and ends the rounds) are
# for the drain; --rows (10000000), --gaps (5000) and --poll-seconds (5, the steady state) for the
# poll part, whose second phase waits at most GAPS_EMPTY_TIMEOUT (60) seconds. Small
# values make a quick try: --events 20000 --rows 200000 --gaps 100.
#
# BUILD_DIR overrides the build (default: build/; do not use the sanitized build), RELAY_BIN the
# relay binary in it. KEEP_WORK_DIR=1 keeps the work directory (configurations, the relay's log,
# the server log with every plan) instead of removing it. GAP_WATCH_PATTERN (an awk regular
# expression, matched against the lowercased statement text) overrides how the gap watch's
# statement is told from the relay's others: by default a read of events that mentions unnest, an
# array, ANY( or relay_gaps. WRITERS_LOOK_PATTERN does the same for the writers look: by default a
# statement that mentions pg_locks and then rowexclusivelock (the relay's other reads of pg_locks,
# for pg_locks' existence at start and for its advisory lock, count as other).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
# shellcheck source=tests/bench/bench-lib.sh
source "$ROOT/tests/bench/bench-lib.sh"

# Every GAP_EVERY-th id is missing from the drain's gappy table.
readonly GAP_EVERY=50
# The relay's connections in the poll part carry this application_name (PGAPPNAME), so that they
# can be found in pg_stat_activity.
readonly RELAY_APP=bench-gaps-relay
# Seconds the relay gets to stop on SIGTERM in the poll part before its statement is terminated.
readonly STOP_GRACE=3
readonly DEFAULT_GAP_WATCH_PATTERN='unnest|\[\]|any[ \t]*\(|relay_gaps'
readonly DEFAULT_WRITERS_LOOK_PATTERN='pg_locks.*rowexclusivelock'
# The longest the poll part waits, once the holder has ended, for relay_gaps to be empty.
readonly GAPS_EMPTY_TIMEOUT=60
# The goal for a poll of the gap watch in the steady state, in ms.
readonly POLL_GOAL_MS=5

EVENTS=200000
TIMEOUT=300
RELAY_TIMEOUT_FATAL=0
ONLY=""
ROUNDS=3
ROWS=10000000
GAPS=5000
POLL_SECONDS=5

BASE_CONNINFO=""
HOLDER_PID=""
HOLDER_IN=""
HOLDER_OUT=""
HOLDER_XID=""
# 1 while the holder's transaction is open.
HOLDER_OPEN=0
# Gaps watched when the steady state ended, and when the relay stopped.
GAPS_STEADY=""
GAPS_FINAL=""
# Seconds from the end of the holder (its ROLLBACK answered) to an empty relay_gaps, or "" when
# it was not empty within GAPS_EMPTY_TIMEOUT.
GAPS_EMPTY_SECONDS=""
# The server log's size when the holder had ended: where phase 2's part of it begins.
STEADY_LOG_END=""
# One entry per round.
DENSE_RUNS=()
GAPPY_RUNS=()
# Set when a drain missed the timeout: which, its seconds and position, and the last id.
TIMED_OUT_KIND=""
TIMED_OUT_SECONDS=""
TIMED_OUT_POSITION=""
TIMED_OUT_MAX_ID=""

usage() {
    echo "usage: $0 [--only drain|poll] [--events N] [--rounds N] [--margin DURATION]" \
        "[--rows N] [--gaps N] [--poll-seconds N] [--batch-size N] [--aggregates N]" \
        "[--timeout SECONDS]" >&2
    exit 2
}

parse_arguments() {
    while (($# > 0)); do
        (($# >= 2)) || usage
        case "$1" in
        --only)
            [[ "$2" == drain || "$2" == poll ]] || die "--only wants drain or poll, not '$2'"
            ONLY=$2
            ;;
        --rounds) ROUNDS=$(positive_integer "$1" "$2") ;;
        --margin)
            [[ "$2" =~ ^[0-9]+(ms|s|m|h)$ ]] ||
                die "--margin wants a duration (250ms, 1s), not '$2'"
            SAFETY_MARGIN=$2
            ;;
        --rows) ROWS=$(positive_integer "$1" "$2") ;;
        --gaps) GAPS=$(positive_integer "$1" "$2") ;;
        --poll-seconds) POLL_SECONDS=$(positive_integer "$1" "$2") ;;
        *) parse_common_option "$1" "$2" || usage ;;
        esac
        shift 2
    done
    ((GAPS < ROWS)) || die "--gaps ($GAPS) must be fewer than --rows ($ROWS)"
    ((GAPS <= 1000000)) || die "--gaps is at most 1000000 (the relay's max_gaps)"
}

stop_holder() {
    local deadline=$((SECONDS + 10))
    if [[ -n "$HOLDER_PID" ]]; then
        if ((HOLDER_OPEN)); then
            printf 'ROLLBACK;\n' 1>&"$HOLDER_IN" 2>/dev/null || true
            HOLDER_OPEN=0
        fi
        printf '\\q\n' 1>&"$HOLDER_IN" 2>/dev/null || true
        exec {HOLDER_IN}>&- {HOLDER_OUT}<&-
        while kill -0 "$HOLDER_PID" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -TERM "$HOLDER_PID" 2>/dev/null || true
        wait "$HOLDER_PID" 2>/dev/null || true
        HOLDER_PID=""
    fi
}

# shellcheck disable=SC2317 # called by trap
cleanup() {
    local status=$?
    set +e
    stop_relay_at_once
    stop_holder
    if [[ "${KEEP_WORK_DIR:-0}" == 1 && -n "$WORK_DIR" ]]; then
        "$ROOT/scripts/pg-tmp" stop "$WORK_DIR/pg" >/dev/null 2>&1 || true
        say "kept $WORK_DIR (server log: $WORK_DIR/pg/log)"
    else
        remove_work_dir
    fi
    exit "$status"
}

# --- Databases ------------------------------------------------------------------------------------

# Creates database $1 in the cluster, its relay configuration $WORK_DIR/$1.yaml, and the schema,
# and makes it the current one (CONNINFO, CONFIG).
create_database() {
    CONNINFO=$BASE_CONNINFO
    sql -c "CREATE DATABASE $1"
    use_database "$1"
    write_config "  plugin: stdout"
    create_schema
}

use_database() {
    CONNINFO=${BASE_CONNINFO/ dbname=postgres / dbname=$1 }
    [[ "$CONNINFO" != "$BASE_CONNINFO" ]] ||
        die "cannot tell the database in the conninfo '$BASE_CONNINFO'"
    CONFIG="$WORK_DIR/$1.yaml"
}

watched_gaps() {
    sql -A -t -c "SELECT count(*) FROM relay_gaps WHERE relay_name = '$RELAY_NAME'"
}

# --- Part (a): drain, dense against gappy ---------------------------------------------------------

# The last id of the gappy table: ids n + n / (GAP_EVERY - 1) + 1 for n below EVENTS.
gappy_max_id() {
    echo $((EVENTS - 1 + (EVENTS - 1) / (GAP_EVERY - 1) + 1))
}

prepare_drain() {
    local missing=$(($(gappy_max_id) - EVENTS))
    create_database dense
    preload
    # Room for every gap: the cap's own hold (when the watch is full) is not what is measured here.
    if ((missing > 10000)); then
        SOURCE_EXTRA="  max_gaps: $missing"
        say "max_gaps $missing in the gappy table's configuration (the default 10000 is too few)"
    fi
    create_database gappy
    SOURCE_EXTRA=""
    preload_ids "n + n / $((GAP_EVERY - 1)) + 1"
    [[ "$(sql -A -t -c 'SELECT count(*) || $$ $$ || max(id) FROM events')" == \
        "$EVENTS $(gappy_max_id)" ]] || die "the gappy table does not hold the ids expected"
}

# Times one drain of database $1 (dense or gappy) from position 0; sets TIMED_OUT_KIND and the
# rest when it missed the timeout.
drain() {
    use_database "$1"
    forget_relay_position
    time_relay
    if ((RELAY_TIMED_OUT)); then
        TIMED_OUT_KIND=$1
        TIMED_OUT_SECONDS=$RELAY_SECONDS
        TIMED_OUT_POSITION=$RELAY_POSITION
        TIMED_OUT_MAX_ID=$(sql -A -t -c 'SELECT max(id) FROM events')
        return
    fi
    # It logs warnings and errors only: anything there explains a slow run.
    if [[ -s "$WORK_DIR/relay.log" ]]; then
        say "the relay ($1) logged $(wc -l <"$WORK_DIR/relay.log") lines; the last ones:"
        tail -n 10 "$WORK_DIR/relay.log" >&2
    fi
}

run_drain() {
    local round gaps
    prepare_drain
    say "$ROUNDS rounds of a drain of the dense table, then of the gappy one (batch_size" \
        "$BATCH_SIZE, safety_margin $SAFETY_MARGIN, at most ${TIMEOUT}s each)"
    for ((round = 1; round <= ROUNDS; round++)); do
        drain dense
        [[ -z "$TIMED_OUT_KIND" ]] || break
        DENSE_RUNS+=("$RELAY_SECONDS")
        drain gappy
        [[ -z "$TIMED_OUT_KIND" ]] || break
        GAPPY_RUNS+=("$RELAY_SECONDS")
        gaps=$(watched_gaps)
        say "round $round/$ROUNDS: dense ${DENSE_RUNS[-1]} s, gappy $RELAY_SECONDS s," \
            "dense/gappy $(awk -v d="${DENSE_RUNS[-1]}" -v g="$RELAY_SECONDS" \
                'BEGIN { printf "%.3f", d / g }') ($gaps gaps still watched when it stopped)"
    done
}

report_drain() {
    local max_id dense gappy
    max_id=$(gappy_max_id)
    report_line "drain events" "$EVENTS per drain, batch_size $BATCH_SIZE, safety_margin" \
        "$SAFETY_MARGIN, stdout sink to /dev/null, from position 0"
    report_line "gappy ids" "every ${GAP_EVERY}th missing: $((max_id - EVENTS)) of 1..$max_id" \
        "($(awk -v m=$((max_id - EVENTS)) -v n="$max_id" 'BEGIN { printf "%.1f", 100 * m / n }')%)"
    report_line "rounds" "${#GAPPY_RUNS[@]} of $ROUNDS complete (medians below)"
    if ((${#DENSE_RUNS[@]} > 0)); then
        dense=$(median_of "${DENSE_RUNS[@]}")
        report_line "drain, dense" "$(rate_text "$dense")"
    fi
    if ((${#GAPPY_RUNS[@]} > 0)); then
        gappy=$(median_of "${GAPPY_RUNS[@]}")
        report_line "drain, gappy" "$(rate_text "$gappy")"
        report_line "dense / gappy" "$(awk -v d="$dense" -v g="$gappy" \
            'BEGIN { printf "%.3f", d / g }') (goal: 0.8 or more)"
    fi
    if [[ -n "$TIMED_OUT_KIND" ]]; then
        report_line "drain, $TIMED_OUT_KIND" "did not finish: position $TIMED_OUT_POSITION of" \
            "$TIMED_OUT_MAX_ID after $TIMED_OUT_SECONDS s (--timeout $TIMEOUT)"
        if [[ "$TIMED_OUT_KIND" == gappy && -n "${dense:-}" ]]; then
            report_line "dense / gappy" "below $(awk -v d="$dense" -v g="$TIMED_OUT_SECONDS" \
                'BEGIN { printf "%.3f", d / g }') (goal: 0.8 or more)"
        fi
    fi
}

# --- Part (b): the cost of one poll of the gap watch ----------------------------------------------

# The missing ids of the poll table: GAPS ids k * SPACING - SPACING / 2 for k = 1..GAPS, spread
# evenly over 1..ROWS + GAPS, none of them the last.
spacing() {
    echo $(((ROWS + GAPS) / GAPS))
}

missing_ids_sql() {
    local s
    s=$(spacing)
    echo "SELECT k::bigint * $s - $((s / 2)) AS id FROM generate_series(1, $GAPS) AS k"
}

# One INSERT ... SELECT with a minimal payload, then VACUUM ANALYZE.
load_poll_table() {
    local start s
    s=$(spacing)
    say "loading $ROWS events, ids 1..$((ROWS + GAPS)) but $GAPS (one every $s)"
    start=$EPOCHREALTIME
    sql >/dev/null <<EOF
INSERT INTO events (id, aggregate_id, aggregate_type, aggregate_version, kind, body, created_at)
SELECT id, 'a' || (id % $AGGREGATES), 'o', id / $AGGREGATES + 1, 'k', '{}',
       now() - interval '1 hour'
FROM generate_series(1, $((ROWS + GAPS))) AS id
WHERE NOT ((id + $((s / 2))) % $s = 0 AND (id + $((s / 2))) / $s BETWEEN 1 AND $GAPS);
SELECT setval(pg_get_serial_sequence('events', 'id'), max(id)) FROM events;
VACUUM (ANALYZE) events;
EOF
    [[ "$(sql -A -t -c "SELECT count(*) FROM events WHERE id IN ($(missing_ids_sql))")" == 0 ]] ||
        die "ids meant to be missing are in the table"
    say "loaded in $(seconds_since "$start") s ($(sql -A -t -c \
        "SELECT pg_size_pretty(pg_total_relation_size('events'))") with indexes)"
}

# Begins a transaction that holds what an insert in flight holds on events (its writer lock,
# RowExclusiveLock, and a transaction id) until stop_holder: no gap seen while it runs can be
# proven dead, whichever evidence the relay reads (transaction ids or pg_locks).
start_holder() {
    coproc HOLDER_COPROC { psql "$CONNINFO" -X -q -A -t -v ON_ERROR_STOP=1; }
    # Copied: bash unsets the coprocess's variables as soon as it ends.
    HOLDER_PID=$HOLDER_COPROC_PID
    HOLDER_IN=${HOLDER_COPROC[1]}
    HOLDER_OUT=${HOLDER_COPROC[0]}
    echo 'BEGIN; LOCK TABLE events IN ROW EXCLUSIVE MODE; SELECT pg_current_xact_id();' \
        >&"$HOLDER_IN"
    read -r -t 30 -u "$HOLDER_OUT" HOLDER_XID ||
        die "the transaction holding the gaps did not start"
    HOLDER_OPEN=1
    say "transaction $HOLDER_XID holds RowExclusiveLock on events while the relay runs"
}

# Fills relay_gaps with the missing ids, one gap each, as the relay would have recorded them now.
# The columns are read from the table the relay's migrations made: relay_name, low_id, high_id and
# first_seen_ms are filled, snapshot_xmax (before migration 006) too, above the holder's xid (a
# snapshot's xmax is one past the latest completed xid, which the holder's xid may equal); any other
# column is left to its default, and one that needs a value stops the benchmark.
insert_gaps() {
    local columns="relay_name, low_id, high_id, first_seen_ms"
    local values="'$RELAY_NAME', id, id, (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    local name nullable has_default
    while IFS='|' read -r name nullable has_default; do
        case "$name" in
        relay_name | low_id | high_id | first_seen_ms) ;;
        snapshot_xmax)
            columns+=", snapshot_xmax"
            values+=", greatest(pg_snapshot_xmax(pg_current_snapshot())::text::bigint,"
            values+=" $((HOLDER_XID + 1)))"
            ;;
        *)
            [[ "$nullable" == YES || "$has_default" == t ]] ||
                die "relay_gaps.$name needs a value and bench-gaps.sh does not know which"
            say "relay_gaps.$name left to its default"
            ;;
        esac
    done < <(sql -A -t -c "SELECT column_name, is_nullable, column_default IS NOT NULL
                           FROM information_schema.columns
                           WHERE table_schema = current_schema() AND table_name = 'relay_gaps'
                           ORDER BY ordinal_position")
    sql -c "INSERT INTO relay_gaps ($columns) SELECT $values FROM ($(missing_ids_sql)) AS m"
    say "relay_gaps: $(watched_gaps) gaps ($columns)"
}

prepare_poll() {
    local max_id
    ((GAPS > 10000)) && SOURCE_EXTRA="  max_gaps: $GAPS"
    create_database poll
    SOURCE_EXTRA=""
    load_poll_table
    max_id=$(sql -A -t -c 'SELECT max(id) FROM events')
    # reset sets the position the way an operator would, with the cluster's identifier, and
    # forgets the gaps: they come after it.
    "$RELAY_BIN" reset -c "$CONFIG" --to "$max_id" 2>>"$WORK_DIR/reset.log" >&2 || {
        cat "$WORK_DIR/reset.log" >&2
        die "outbox-relay reset failed"
    }
    start_holder
    insert_gaps
}

# Writes "SECONDS|TEXT" to $WORK_DIR/in-flight.$1 for each of the relay's statements running for
# more than a second, and the text of the first of them as it is to $WORK_DIR/in-flight.$1.sql.
statements_in_flight() {
    sql -A -t -F '|' -c "
        SELECT round(extract(epoch FROM clock_timestamp() - query_start)::numeric, 1),
               regexp_replace(query, '\s+', ' ', 'g')
        FROM pg_stat_activity
        WHERE application_name = '$RELAY_APP' AND state = 'active'
          AND query_start < clock_timestamp() - interval '1 second'
        ORDER BY query_start" >"$WORK_DIR/in-flight.$1"
    sql -A -t -c "
        SELECT query FROM pg_stat_activity
        WHERE application_name = '$RELAY_APP' AND state = 'active'
          AND query_start < clock_timestamp() - interval '1 second'
        ORDER BY query_start LIMIT 1" >"$WORK_DIR/in-flight.$1.sql"
}

# The plan PostgreSQL would run $1 (a statement with parameters $1..$N) with, shown by EXPLAIN
# without ANALYZE of it prepared as a generic plan (parameters left symbolic): for a statement that
# did not end, whose real plan auto_explain never logs. Prints nothing when it cannot be prepared
# (a text cut short by track_activity_query_size, say).
generic_plan() {
    local n params
    n=$(grep -oE '\$[0-9]+' "$1" | tr -d '$' | sort -n | tail -n 1)
    params=""
    if [[ -n "$n" ]]; then
        params="($(printf 'NULL%.0s,' $(seq 1 "$n")))"
        params=${params/,)/)}
    fi
    {
        echo "SET plan_cache_mode = force_generic_plan;"
        echo "PREPARE bench_in_flight AS"
        cat "$1"
        echo ";"
        echo "EXPLAIN EXECUTE bench_in_flight$params;"
    } | sql -A -t 2>/dev/null || true
}

terminate_relay_backends() {
    sql -A -t -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                  WHERE application_name = '$RELAY_APP'"
}

relay_running_or_die() {
    if ! kill -0 "$RELAY_PID" 2>/dev/null; then
        tail -n 20 "$WORK_DIR/relay.log" >&2
        RELAY_PID=""
        die "the relay exited during $1"
    fi
}

# Prints the number of gaps the relay has stored every 20 ms through one database session, until
# its output is closed (psql then dies of SIGPIPE).
watch_gap_count() {
    echo "SELECT count(*) FROM relay_gaps WHERE relay_name = '$RELAY_NAME'" '\watch 0.02' |
        psql "$CONNINFO" -X -q -A -t
}

# Phase 2: ends the holder (ROLLBACK) and waits, at most GAPS_EMPTY_TIMEOUT seconds, until
# relay_gaps is empty; sets GAPS_EMPTY_SECONDS, and STEADY_LOG_END to the server log's ($1) size
# at the moment the holder had ended (the end of the steady state's part of the log).
end_holder_and_wait() {
    local log=$1 watch count="" reply ended deadline
    # The watch connects first, so that its connection time is not counted.
    exec {watch}< <(watch_gap_count)
    until [[ "$count" =~ ^[0-9]+$ ]]; do
        read -r -t 30 -u "$watch" count || die "psql watching relay_gaps did not start"
    done
    printf "ROLLBACK;\nSELECT 'ended';\n" >&"$HOLDER_IN"
    if ! read -r -t 30 -u "$HOLDER_OUT" reply || [[ "$reply" != ended ]]; then
        die "the transaction holding the gaps did not roll back"
    fi
    ended=$EPOCHREALTIME
    HOLDER_OPEN=0
    STEADY_LOG_END=$(stat -c %s "$log")
    say "phase 2: transaction $HOLDER_XID rolled back; waiting (at most ${GAPS_EMPTY_TIMEOUT}s)" \
        "until relay_gaps is empty"
    deadline=$((SECONDS + GAPS_EMPTY_TIMEOUT))
    while ((SECONDS < deadline)); do
        relay_running_or_die "phase 2"
        # A timeout (status above 128) runs the checks above again; end of file means psql is
        # gone. A blank line between results is no count.
        count=""
        read -r -t 1 -u "$watch" count || (($? > 128)) ||
            die "psql watching relay_gaps exited"
        if [[ "$count" == 0 ]]; then
            GAPS_EMPTY_SECONDS=$(seconds_since "$ended")
            break
        fi
    done
    exec {watch}<&-
    stop_holder
}

# Runs the relay with auto_explain in its session through both phases; leaves in
# $WORK_DIR/explain.steady.log and explain.end.log the server log written during each, and in
# $WORK_DIR/in-flight.steady and .end what was still running at the end of each.
run_poll() {
    local log="$WORK_DIR/pg/log" offset deadline terminated
    prepare_poll
    offset=$(stat -c %s "$log")
    say "phase 1, steady state: the relay runs for $POLL_SECONDS s with auto_explain" \
        "(poll_interval $POLL_INTERVAL) while transaction $HOLDER_XID holds the writer lock"
    # The relay's session only: libpq hands PGOPTIONS to the server at connection start, and the
    # benchmark's user (postgres) is a superuser, whom session_preload_libraries needs.
    # log_min_duration 0 logs every statement of the session, the writers look included.
    PGAPPNAME=$RELAY_APP PGOPTIONS="-c session_preload_libraries=auto_explain \
-c auto_explain.log_min_duration=0 -c auto_explain.log_analyze=on \
-c auto_explain.log_buffers=on" "$RELAY_BIN" run -c "$CONFIG" >/dev/null 2>"$WORK_DIR/relay.log" &
    RELAY_PID=$!
    deadline=$((SECONDS + POLL_SECONDS))
    while ((SECONDS < deadline)); do
        relay_running_or_die "the steady state"
        sleep 0.1
    done
    statements_in_flight steady
    GAPS_STEADY=$(watched_gaps)
    end_holder_and_wait "$log"
    if [[ -z "$GAPS_EMPTY_SECONDS" ]]; then
        say "relay_gaps was not empty within ${GAPS_EMPTY_TIMEOUT}s of the holder's end"
    fi
    GAPS_FINAL=$(watched_gaps)
    statements_in_flight end
    # SIGTERM makes it stop after the statement in hand; one that runs on is terminated, which
    # the stopping relay takes as the end.
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    deadline=$((SECONDS + STOP_GRACE))
    while kill -0 "$RELAY_PID" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$RELAY_PID" 2>/dev/null; then
        terminated=$(terminate_relay_backends)
        say "the relay was still in a statement $STOP_GRACE s after SIGTERM: terminated" \
            "$terminated backend(s)"
    fi
    # Its second signal would make it exit at once; this waits up to 10 s, then kills it.
    deadline=$((SECONDS + 10))
    while kill -0 "$RELAY_PID" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    kill -KILL "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=""
    terminate_relay_backends >/dev/null
    tail -c +$((offset + 1)) "$log" | head -c $((STEADY_LOG_END - offset)) \
        >"$WORK_DIR/explain.steady.log"
    tail -c +$((STEADY_LOG_END + 1)) "$log" >"$WORK_DIR/explain.end.log"
}

# Reads auto_explain's entries from the server log $1 (stderr format: an entry is its "duration:
# ... plan:" line and the lines after it that begin with a tab) and prints one line per entry,
# "CLASS<tab>MS<tab>DETAIL<tab>STATEMENT" (its first 100 characters), CLASS being writers (the
# writers look), gap (the gap watch's read), fetch (the main fetch) or other, and DETAIL the gaps
# the read probed (the rows of its function scan over the arrays) for gap, the writers seen (the
# rows but the clock's) for writers, - for the rest; writes the first and the last plan of each
# class to $WORK_DIR/plan.$2.CLASS.first and .last.
parse_explain_log() {
    # The patterns go through the environment: awk -v would take their backslashes for escapes.
    GAP_PATTERN=${GAP_WATCH_PATTERN:-$DEFAULT_GAP_WATCH_PATTERN} \
        WRITERS_PATTERN=${WRITERS_LOOK_PATTERN:-$DEFAULT_WRITERS_LOOK_PATTERN} \
        awk -v prefix="$WORK_DIR/plan.$2" '
        BEGIN {
            gap_pattern = ENVIRON["GAP_PATTERN"]
            writers_pattern = ENVIRON["WRITERS_PATTERN"]
        }
        function classify(q) {
            q = tolower(q)
            # Writes: the checkpoint, the stored gaps.
            if (q ~ /(^|[ \t(])(insert[ \t]+into|delete[ \t]+from)[ \t]/ ||
                q ~ /(^|[ \t(])update[ \t]+[^ \t]+[ \t]+set[ \t]/)
                return "other"
            # It names the table only as a parameter.
            if (q ~ writers_pattern)
                return "writers"
            if (q !~ /(from|join)[ \t]+("?public"?\.)?"?events"?([ \t),;]|$)/)
                return "other"
            if (q ~ gap_pattern)
                return "gap"
            if (q ~ /order[ \t]+by/ && q ~ /limit/)
                return "fetch"
            return "other"
        }
        # The actual rows of a plan line, or "" without them.
        function actual_rows(line,   s) {
            if (!match(line, /\(actual [^)]*rows=[0-9]+/))
                return ""
            s = substr(line, RSTART, RLENGTH)
            sub(/.*rows=/, "", s)
            return s
        }
        function finish(   cls, file, detail) {
            if (!in_entry)
                return
            in_entry = 0
            cls = classify(query)
            detail = "-"
            if (cls == "gap" && scan_rows != "")
                detail = scan_rows
            else if (cls == "writers" && top_rows != "")
                detail = top_rows - 1
            printf "%s\t%s\t%s\t%s\n", cls, duration, detail, substr(query, 1, 100)
            if (!(cls in seen)) {
                seen[cls] = 1
                file = prefix "." cls ".first"
                print text > file
                close(file)
            }
            last[cls] = text
        }
        /^\t/ && in_entry {
            line = substr($0, 2)
            text = text "\n" line
            if (line ~ /^Query Text: /) {
                query = substr(line, 13)
                in_query = 1
            } else if (in_query && line ~ /  \(cost=/) {
                in_query = 0
                top_rows = actual_rows(line)
            } else if (in_query) {
                query = query " " line
            } else if (scan_rows == "" && line ~ /Function Scan on /) {
                scan_rows = actual_rows(line)
            }
            next
        }
        { finish() }
        match($0, /LOG:  duration: [0-9.]+ ms  plan:$/) {
            duration = substr($0, RSTART + 16)
            sub(/ ms  plan:$/, "", duration)
            text = "duration: " duration " ms"
            query = ""
            in_query = 0
            top_rows = ""
            scan_rows = ""
            in_entry = 1
        }
        END {
            finish()
            for (cls in last) {
                file = prefix "." cls ".last"
                print last[cls] > file
                close(file)
            }
        }' "$1"
}

# The plan's shape: its node and condition lines without timings, counts or buffers, so that a
# switch from a custom plan to a generic one shows.
plan_shape() {
    grep -v -e '^duration:' -e 'Buffers:' -e 'Heap Blocks:' -e 'Memory:' "$1" |
        sed -E 's/  \((cost|actual)=.*//; s/[0-9]+/N/g'
}

print_plan() {
    sed 's/^/    /' "$1"
}

# The largest of the numbers given.
max_of() {
    printf '%s\n' "$@" | sort -g | tail -n 1
}

# "N" or "N..M" for the numbers given, then the unit $1 (singular; plural but for exactly 1): the
# spread of the details.
detail_text() {
    local unit=$1 low high
    shift
    low=$(printf '%s\n' "$@" | sort -g | head -n 1)
    high=$(max_of "$@")
    [[ "$low" == 1 && "$high" == 1 ]] || unit+=s
    if [[ "$low" == "$high" ]]; then
        printf '%s %s' "$low" "$unit"
    else
        printf '%s..%s %s' "$low" "$high" "$unit"
    fi
}

readonly ROW_FORMAT='  %-44s %6s %10s %10s  %s\n'

# A row of the summary: label $1, then the entries of class $3 in the entries file $2, all of them
# ($4 all), the first only (first) or all but the first (rest); their details in unit $5 (singular)
# if given.
summary_row() {
    local label=$1 entries=$2 cls=$3 which=$4 unit=${5:-} lines durations=() details=() d x
    mapfile -t lines < <(awk -F '\t' -v c="$cls" -v w="$which" '$1 == c {
            n++
            if (w == "all" || (w == "first" && n == 1) || (w == "rest" && n > 1))
                print $2 "\t" $3
        }' "$entries")
    for x in "${lines[@]}"; do
        durations+=("${x%%$'\t'*}")
        d=${x#*$'\t'}
        [[ "$d" == - ]] || details+=("$d")
    done
    if ((${#durations[@]} == 0)); then
        # shellcheck disable=SC2059 # the format is ROW_FORMAT
        printf "$ROW_FORMAT" "$label" 0 - - ""
        return
    fi
    # shellcheck disable=SC2059
    printf "$ROW_FORMAT" "$label" "${#durations[@]}" "$(median_of "${durations[@]}")" \
        "$(max_of "${durations[@]}")" \
        "$([[ -z "$unit" || ${#details[@]} == 0 ]] || detail_text "$unit" "${details[@]}")"
}

# The total of each watch of the steady state after the one that made the first gap read: its
# writers look plus the gap reads logged after it, before the next look; one line each. (Before the
# first watch comes the look at start; without any gap read, every look but that one.)
watch_totals() {
    awk -F '\t' '
        $1 == "writers" { total[++w] = $2 }
        $1 == "gap" {
            if (first == "")
                first = w
            if (w)
                total[w] += $2
        }
        END {
            for (i = (first == "" ? 2 : first + 1); i <= w; i++)
                printf "%.3f\n", total[i]
        }' "$1"
}

# "goal: under G ms: ..." for the totals given.
goal_text() {
    awk -v goal="$POLL_GOAL_MS" -v median="$1" -v max="$2" 'BEGIN {
        if (max < goal)
            verdict = "met by every poll"
        else if (median < goal)
            verdict = "met by the median, not by the slowest poll"
        else
            verdict = "NOT met"
        printf "goal: a poll under %s ms: %s", goal, verdict
    }'
}

# The lines about statements still running at the end of phase $1 ($2 its name).
report_in_flight() {
    local seconds text cls
    while IFS='|' read -r seconds text; do
        [[ -n "$seconds" ]] || continue
        cls=other
        if grep -qiE -- "${WRITERS_LOOK_PATTERN:-$DEFAULT_WRITERS_LOOK_PATTERN}" <<<"$text"; then
            cls="writers look"
        elif grep -qiE -- "${GAP_WATCH_PATTERN:-$DEFAULT_GAP_WATCH_PATTERN}" <<<"$text"; then
            cls="gap watch"
        fi
        report_line "in flight" "at the end of the $2: $cls statement running for $seconds s" \
            "(auto_explain logs a statement only when it ends; not counted): ${text:0:160}"
    done <"$WORK_DIR/in-flight.$1"
}

print_first_plan() {
    local file="$WORK_DIR/plan.$1.$2"
    [[ -f "$file.first" ]] || return 0
    echo
    echo "$3:"
    print_plan "$file.first"
    if [[ -f "$file.last" ]] && ! cmp -s <(plan_shape "$file.first") <(plan_shape "$file.last")
    then
        echo "the last one of that phase (another shape: a generic plan after five custom ones," \
            "say):"
        print_plan "$file.last"
    fi
}

report_poll() {
    local steady="$WORK_DIR/explain.steady.entries" end="$WORK_DIR/explain.end.entries"
    local totals median max phase
    parse_explain_log "$WORK_DIR/explain.steady.log" steady >"$steady"
    parse_explain_log "$WORK_DIR/explain.end.log" end >"$end"
    report_line "poll table" "$ROWS events, ids 1..$((ROWS + GAPS)), $GAPS missing (one every" \
        "$(spacing)), position $((ROWS + GAPS))"
    report_line "watched gaps" "$GAPS single-id gaps below the position; $GAPS_STEADY still" \
        "watched at the end of the steady state, $GAPS_FINAL when the relay stopped"
    ((GAPS_STEADY == GAPS)) ||
        say "some gaps were forgotten during the steady state: its later polls watched fewer" \
            "than $GAPS"
    report_line "relay run" "poll_interval $POLL_INTERVAL, safety_margin $SAFETY_MARGIN," \
        "auto_explain (log_analyze, log_buffers, log_min_duration 0) in its session"
    report_line "phase 1" "steady state: transaction $HOLDER_XID holds RowExclusiveLock on" \
        "events for $POLL_SECONDS s"
    report_line "phase 2" "it rolls back: every gap is provably dead; until relay_gaps is" \
        "empty (at most ${GAPS_EMPTY_TIMEOUT}s), then the relay stops"
    report_in_flight steady "steady state"
    report_in_flight end "run"

    echo
    echo "execution time on the server (auto_explain's duration; polls: statements logged):"
    # shellcheck disable=SC2059
    printf "$ROW_FORMAT" "phase / statement" polls "median ms" "max ms" "gaps read / writers seen"
    echo "1. steady state (holder running, $POLL_SECONDS s)"
    summary_row "writers look (pg_locks; one at start)" "$steady" writers all writer
    summary_row "gap read, first (every gap new to it)" "$steady" gap first gap
    summary_row "gap reads after the first" "$steady" gap rest gap
    summary_row "main fetch" "$steady" fetch all
    mapfile -t totals < <(watch_totals "$steady")
    if ((${#totals[@]} > 0)); then
        median=$(median_of "${totals[@]}")
        max=$(max_of "${totals[@]}")
        # shellcheck disable=SC2059
        printf "$ROW_FORMAT" "total per poll (look + gap reads)" "${#totals[@]}" "$median" "$max" \
            "$(goal_text "$median" "$max")"
        echo "     (each watch after the first: its writers look plus the gap reads it made)"
    else
        # shellcheck disable=SC2059
        printf "$ROW_FORMAT" "total per poll (look + gap reads)" 0 - - \
            "goal: a poll under $POLL_GOAL_MS ms: no watch after the first was logged"
    fi
    echo "2. holder ended (ROLLBACK), until relay_gaps is empty"
    summary_row "writers look" "$end" writers all writer
    summary_row "gap read, first (every gap, now dead)" "$end" gap first gap
    summary_row "gap reads after the first" "$end" gap rest gap
    summary_row "main fetch" "$end" fetch all
    if [[ -n "$GAPS_EMPTY_SECONDS" ]]; then
        echo "   holder's end to relay_gaps empty: $GAPS_EMPTY_SECONDS s (looked at every 20 ms)"
    else
        echo "   holder's end to relay_gaps empty: not within ${GAPS_EMPTY_TIMEOUT}s" \
            "($GAPS_FINAL gaps still stored when the relay stopped)"
    fi

    echo
    echo "statements captured (phase, count, median ms, max ms, class, statement):"
    for phase in steady end; do
        awk -F '\t' '{ key = $1 "\t" $4; n[key]++; d[key] = d[key] " " $2 }
            END { for (k in n) print n[k] "\t" k "\t" d[k] }' "$WORK_DIR/explain.$phase.entries" |
            while IFS=$'\t' read -r count cls text durations; do
                # shellcheck disable=SC2086 # the durations, one word each
                printf '  %-6s %6d %10s %10s  %-7s  %s\n' "$phase" "$count" \
                    "$(median_of $durations)" "$(max_of $durations)" "$cls" "${text:0:80}"
            done | sort -k5,5 -k2,2nr
    done

    print_first_plan steady writers "first writers-look plan (steady state)"
    print_first_plan steady gap "first gap-read plan (steady state: every gap new to the relay)"
    print_first_plan end gap "first gap-read plan after the holder ended (every gap, now dead)"
    print_first_plan steady fetch "first main-fetch plan (steady state)"
    if [[ ! -f "$WORK_DIR/plan.steady.gap.first" && -s "$WORK_DIR/in-flight.steady.sql" ]] &&
        grep -qiE -- "${GAP_WATCH_PATTERN:-$DEFAULT_GAP_WATCH_PATTERN}" \
            "$WORK_DIR/in-flight.steady.sql"; then
        generic_plan "$WORK_DIR/in-flight.steady.sql" >"$WORK_DIR/in-flight.plan"
        if [[ -s "$WORK_DIR/in-flight.plan" ]]; then
            echo
            echo "no gap read completed in the steady state; the generic plan of the one in" \
                "flight (EXPLAIN without ANALYZE, parameters symbolic; not measured):"
            print_plan "$WORK_DIR/in-flight.plan"
        fi
    fi
}

main() {
    parse_arguments "$@"
    trap cleanup EXIT
    command -v psql >/dev/null 2>&1 || die "psql not found; run scripts/deps"
    have_relay || die "no relay at $RELAY_BIN (build it with: meson setup build && ninja -C build)"

    start_postgres
    BASE_CONNINFO=$CONNINFO
    if [[ "$ONLY" != poll ]]; then
        run_drain
    fi
    if [[ "$ONLY" != drain ]]; then
        run_poll
    fi

    echo
    report_line "PostgreSQL" "$(CONNINFO=$BASE_CONNINFO sql -A -t -c 'SHOW server_version')," \
        "$(nproc) cores"
    if [[ "$ONLY" != poll ]]; then
        report_drain
    fi
    if [[ "$ONLY" != drain ]]; then
        [[ "$ONLY" == poll ]] || echo
        report_poll
    fi
}

main "$@"
