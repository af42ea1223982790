#!/usr/bin/env bash
# Footprint benchmark: what the relay costs the database it serves. One throwaway PostgreSQL
# (scripts/pg-tmp, with track_commit_timestamp on), a fresh database for each measurement (CREATE
# DATABASE, `outbox-relay migrate`, dropped afterwards, so every one starts from an empty events
# table), and pgbench as the writers: --clients connections, kept for the whole run, each
# transaction one INSERT into events. The relay runs with the stdout sink and its default
# configuration except what a phase sets. Three phases, each of which --only selects:
#
# peak       The writers without a rate limit for --peak-seconds:
#            a. no relay, and no NOTIFY trigger on events (migrate's events_relay_notify dropped);
#            b. the trigger events_relay_notify (relay_notify('outbox_relay') per statement), no
#               relay; skipped, saying so, when migrate did not create relay_notify();
#            c. a relay attached (stdout to /dev/null), caught up when the writers start, the
#               trigger as migrate leaves it (read from pg_trigger).
#            Reports tps, b and c over a, and for c how far behind the relay was when the writers
#            stopped (max(id) minus its committed position in relay_checkpoints) and how long it
#            then took to catch up.
# steady     The writers at --rate events/s (pgbench -R) for --steady-seconds; the first --warmup
#            seconds are left out of every figure:
#            a. writers alone (no relay, no trigger, as in peak a): PostgreSQL's CPU in s/s;
#            b. a relay in margin mode (safety_margin MARGIN_MS), its stdout into the latency probe
#               (latency.py, as bench-latency.sh uses it): the server CPU the relay adds (b minus a;
#               the NOTIFY trigger migrate creates is part of that), in s/s and µs per event, the
#               relay process's own CPU in s/s, and the commit-to-sink latency (p50, p99, max) of
#               the events committed after the warm-up;
#            c. the same in settled mode.
# retention  The peak writers again, with a relay whose configuration has RETENTION_YAML (below):
#            tps, and the table's row count when the writers stop and once the relay has caught up
#            and the count has settled. When `outbox-relay check` refuses that configuration, says
#            "retention: not supported by this relay" and goes on.
#
#   tests/bench/bench-footprint.sh [--rate EVENTS_PER_S] [--clients N] [--peak-seconds N]
#                                  [--steady-seconds N] [--warmup N]
#                                  [--only peak|steady|retention[,...]]...
#
# Defaults: 4 clients, 10 s peaks, 2000 events/s for 15 s with 2 s of warm-up; about 2 minutes in
# all. The server is pg-tmp's: fsync and synchronous_commit off, so commits are cheap and the
# relay's share of the work is larger than on a durable server. On a shared machine peak tps can
# be a good part off either way from one run to the next: read the ratios with that in mind.
# SOURCE_EXTRA holds more YAML lines for the source section of every relay run (indented by two
# spaces), e.g. "  max_wait: 10ms", to weigh a setting.
# BUILD_DIR / RELAY_BIN override the build and the binary (default build/outbox-relay; do not use
# the sanitized build). Needs psql, pgbench and python3 (scripts/deps installs them).
# Goals: added server CPU <= 0.05 s/s and <= 25 µs/event, relay process <= 0.05 s/s, settled p99
# < 20 ms, margin p99 <= the margin + 20 ms.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
# shellcheck source=tests/bench/bench-lib.sh
source "$ROOT/tests/bench/bench-lib.sh"

readonly PROBE="$ROOT/tests/bench/latency.py"
readonly TRIGGER=events_relay_notify
readonly TRIGGER_SQL="CREATE TRIGGER $TRIGGER AFTER INSERT ON events FOR EACH STATEMENT
                      EXECUTE FUNCTION relay_notify('outbox_relay')"
# The retention section (top-level YAML) the retention phase adds to the relay's configuration:
# delete as soon as delivered, in DELETEs of at most 5000 rows, a round every second (and at once
# after a full one while the relay is idle). The keys are those of relay.yaml.example.
RETENTION_YAML="retention:
  delete_after: 0s
  batch_size: 5000
  interval: 1s
  drop_partitions: false"
# The retention phase's row count has settled once it stays the same this long (or reaches 0).
readonly RETENTION_SETTLE=3
# The steady phase's margin-mode relay: safety_margin, in ms (the default is 1s).
readonly MARGIN_MS=1000
# Seconds the relay may take to catch up once the writers stop, or to connect.
readonly CATCH_UP_TIMEOUT=60
readonly CONNECT_TIMEOUT=30
# The steady window ends this long before pgbench's -T does: every backend still busy, none of
# pgbench's disconnecting in it.
readonly WINDOW_END_LEAD=0.25
# The goals, next to the figures in the summary.
readonly GOAL_ADDED_CPU=0.05 # server CPU the relay adds, s/s
readonly GOAL_ADDED_US=25    # the same per event, µs
readonly GOAL_RELAY_CPU=0.05 # the relay process, s/s
readonly GOAL_SETTLED_P99=20 # ms, below
readonly GOAL_MARGIN_SLACK=20 # ms above the margin, at most

RATE=2000
CLIENTS=4
PEAK_SECONDS=10
STEADY_SECONDS=15
WARMUP=2
ONLY=() # empty: every phase

BASE_CONNINFO="" # the cluster's postgres database; CONNINFO is the current phase's
DATABASE=""      # the current phase's database
PGBENCH_PID=""
PROBE_PID=""
# The figures, for the summary: labels and texts, in the order they were measured.
SUMMARY_LABELS=()
SUMMARY_TEXTS=()
LOAD_AT_START=""
PEAK_PLAIN_TPS=""
STEADY_PLAIN_CPU=""
PEAK_TPS=""         # set by run_peak_writers
CATCH_UP_SECONDS="" # set by wait_for_catch_up
# Set by measure_steady.
WINDOW_SECONDS=""
WINDOW_EVENTS=""
POSTGRES_WINDOW_TICKS=""
RELAY_WINDOW_TICKS=""
SESSION_WINDOW_TICKS=""

usage() {
    echo "usage: $0 [--rate EVENTS_PER_S] [--clients N] [--peak-seconds N] [--steady-seconds N]" \
        "[--warmup N] [--only peak|steady|retention[,...]]..." >&2
    exit 2
}

parse_arguments() {
    local phase
    while (($# > 0)); do
        (($# >= 2)) || usage
        case "$1" in
        --rate) RATE=$(positive_integer "$1" "$2") ;;
        --clients) CLIENTS=$(positive_integer "$1" "$2") ;;
        --peak-seconds) PEAK_SECONDS=$(positive_integer "$1" "$2") ;;
        --steady-seconds) STEADY_SECONDS=$(positive_integer "$1" "$2") ;;
        --warmup) WARMUP=$(positive_integer "$1" "$2") ;;
        --only)
            for phase in ${2//,/ }; do
                [[ "$phase" == peak || "$phase" == steady || "$phase" == retention ]] ||
                    die "--only wants peak, steady or retention, not '$phase'"
                ONLY+=("$phase")
            done
            ;;
        *) usage ;;
        esac
        shift 2
    done
    ((WARMUP < STEADY_SECONDS)) ||
        die "--warmup ($WARMUP) must be shorter than --steady-seconds ($STEADY_SECONDS)"
}

wants() {
    ((${#ONLY[@]} == 0)) && return 0
    local phase
    for phase in "${ONLY[@]}"; do
        [[ "$phase" == "$1" ]] && return 0
    done
    return 1
}

stop_process() {
    [[ -n "$1" ]] || return 0
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# shellcheck disable=SC2317 # called by trap
cleanup() {
    local status=$?
    stop_process "$PGBENCH_PID"
    stop_relay_at_once
    stop_process "$PROBE_PID"
    remove_work_dir
    exit "$status"
}

# Records a figure for the summary, and says it now as well.
summary() {
    SUMMARY_LABELS+=("$1")
    SUMMARY_TEXTS+=("${*:2}")
    say "$1: ${*:2}"
}

# Latency needs each event's commit time (pg_xact_commit_timestamp), which is off by default and
# only read at start: pg-tmp writes PG_TMP_CONF into the settings of the one start.
start_cluster() {
    PG_TMP_CONF="track_commit_timestamp = on" start_postgres
    BASE_CONNINFO=$CONNINFO
    [[ "$(sql -A -t -c 'SHOW track_commit_timestamp')" == on ]] ||
        die "track_commit_timestamp did not turn on"
}

# A database of its own for each measurement, so that each starts from an empty table, a fresh
# sequence and no position; sets DATABASE and CONNINFO, and runs the relay's migrations there.
new_database() {
    DATABASE="footprint_$1"
    CONNINFO=$BASE_CONNINFO
    sql -c "CREATE DATABASE $DATABASE"
    CONNINFO="${BASE_CONNINFO/dbname=postgres/dbname=$DATABASE}"
    [[ "$CONNINFO" != "$BASE_CONNINFO" ]] || die "no dbname=postgres in the conninfo '$BASE_CONNINFO'"
    write_relay_config "$WORK_DIR/$1.yaml"
    "$RELAY_BIN" migrate -c "$WORK_DIR/$1.yaml" >/dev/null
}

# Dropped once measured: its tables would otherwise keep autovacuum busy in later phases.
drop_database() {
    CONNINFO=$BASE_CONNINFO
    sql -c "DROP DATABASE $DATABASE WITH (FORCE)"
    DATABASE=""
}

# Writes the relay's configuration for the current database into $1: the default one, plus the
# source settings in $2 (YAML lines indented by two spaces) and the top-level YAML in $3.
write_relay_config() {
    local file=$1 source_lines=${2:-} extra=${3:-}
    # SOURCE_EXTRA (YAML lines indented by two spaces) tries other source settings in every run.
    if [[ -n "${SOURCE_EXTRA:-}" ]]; then
        source_lines="${source_lines:+$source_lines
}$SOURCE_EXTRA"
    fi
    # A YAML double-quoted string; the relay expands ${VAR} in it, and reads $$ as a literal $.
    local conninfo=${CONNINFO//\\/\\\\}
    conninfo=${conninfo//\$/\$\$}
    cat >"$file" <<EOF
name: $RELAY_NAME
database:
  conninfo: "${conninfo//\"/\\\"}"
${source_lines:+source:
$source_lines
}sink:
  plugin: stdout
log:
  level: warn
${extra:+$extra
}
EOF
}

# One event per transaction, as a service writing its outbox would (bench-latency.sh's); a new
# aggregate each time keeps (aggregate_id, aggregate_version) unique.
write_insert_script() {
    cat >"$1" <<'EOF'
INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body, metadata)
VALUES ('order-' || gen_random_uuid(), 'order', 1, 'created',
        '{"customer": "customer-42", "amount_cents": 12345, "note": "footprint benchmark"}',
        '{"source": "bench"}');
EOF
}

# The triggers on events, as "name (definition)", or "none".
events_triggers() {
    sql -A -t -c "SELECT coalesce(string_agg(tgname || ' (' ||
                         regexp_replace(pg_get_triggerdef(oid), '^CREATE TRIGGER \S+ ', '') || ')',
                         '; ' ORDER BY tgname), 'none')
                  FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal"
}

drop_notify_trigger() {
    sql -c "DROP TRIGGER IF EXISTS $TRIGGER ON events"
}

# The writers, in the background (so that Ctrl-C is handled at once, and the steady phase can
# sample while they run): $1 the log, $2 the seconds, then more pgbench options (-R RATE). Without
# -C every client keeps its connection, so no backend comes or goes while they write.
start_writers() {
    local log=$1 seconds=$2
    shift 2
    pgbench -n -c "$CLIENTS" -j "$(((CLIENTS + 1) / 2))" -T "$seconds" "$@" \
        -f "$WORK_DIR/insert.sql" "$CONNINFO" >"$log" 2>&1 &
    PGBENCH_PID=$!
}

finish_writers() {
    if ! wait "$PGBENCH_PID"; then
        PGBENCH_PID=""
        tail -n 20 "$1" >&2
        die "pgbench failed"
    fi
    PGBENCH_PID=""
}

# pgbench's tps (without the initial connection time), whole.
writers_tps() {
    awk '/^tps = / { printf "%.0f", $3; found = 1 } END { exit !found }' "$1" ||
        die "no tps in $1"
}

# The writers without a rate limit for PEAK_SECONDS; sets PEAK_TPS.
run_peak_writers() {
    local log="$WORK_DIR/$1.pgbench.log"
    start_writers "$log" "$PEAK_SECONDS"
    finish_writers "$log"
    PEAK_TPS=$(writers_tps "$log")
}

# "R.RRx" for tps $1 over the no-relay peak's, or nothing without that peak.
peak_ratio() {
    [[ -n "$PEAK_PLAIN_TPS" ]] || return 0
    awk -v t="$1" -v a="$PEAK_PLAIN_TPS" 'BEGIN { printf ", %.2fx", t / a }'
}

relay_alive_or_die() {
    if ! kill -0 "$RELAY_PID" 2>/dev/null; then
        tail -n 20 "$1" >&2
        RELAY_PID=""
        die "the relay exited early"
    fi
}

# Starts the relay with configuration $1, its stdout into $2, its log into $3, and returns once it
# holds the advisory lock on its name, which it takes once connected and positioned.
start_relay() {
    local config=$1 out=$2 log=$3 deadline=$((SECONDS + CONNECT_TIMEOUT))
    "$RELAY_BIN" run -c "$config" >"$out" 2>"$log" &
    RELAY_PID=$!
    until [[ "$(sql -A -t -c "SELECT count(*) FROM pg_locks
                              WHERE locktype = 'advisory' AND granted
                                AND database = (SELECT oid FROM pg_database
                                                WHERE datname = current_database())")" != 0 ]]; do
        relay_alive_or_die "$log"
        ((SECONDS < deadline)) || die "the relay did not connect within ${CONNECT_TIMEOUT}s"
        sleep 0.05
    done
}

# Stops the relay (it flushes and commits on SIGTERM); anything it logged (at warn or above)
# explains odd figures, so it is shown.
stop_relay() {
    local log=$1 logged
    stop_relay_within 10
    if ((STOP_STATUS != 0)); then
        tail -n 20 "$log" >&2
        die "the relay exited with status $STOP_STATUS on SIGTERM"
    fi
    # The stdout sink warns that a pipe cannot acknowledge: expected with the probe, left out.
    logged=$(grep -v 'stdout is a pipe: it cannot acknowledge' "$log" || true)
    if [[ -n "$logged" ]]; then
        say "the relay logged:"
        tail -n 5 <<<"$logged" >&2
    fi
}

max_id() {
    sql -A -t -c 'SELECT coalesce(max(id), 0) FROM events'
}

# Waits until the relay's committed position reaches the table's last event; sets
# CATCH_UP_SECONDS to how long that took. One session watches the position (bench-lib's
# watch_position), so that the waiting takes little CPU from the relay.
wait_for_catch_up() {
    local log=$1 target start positions position=0 deadline=$((SECONDS + CATCH_UP_TIMEOUT))
    target=$(max_id)
    start=$EPOCHREALTIME
    exec {positions}< <(watch_position)
    while ((position < target)); do
        relay_alive_or_die "$log"
        ((SECONDS < deadline)) ||
            die "the relay did not reach event $target within ${CATCH_UP_TIMEOUT}s" \
                "(position $position)"
        # A timeout (status above 128) runs the checks again; end of file means psql is gone.
        read -r -t 1 -u "$positions" position || (($? > 128)) ||
            die "psql watching the relay's position exited (position $position)"
    done
    exec {positions}<&-
    CATCH_UP_SECONDS=$(seconds_since "$start")
}

# CPU clock ticks the whole cluster has used so far, the processes that have exited included.
# The postmaster forks every server process (backends, autovacuum workers, background workers)
# and reaps each one that exits, which adds the child's utime and stime to the postmaster's cutime
# and cstime (proc(5), fields 16 and 17). So the postmaster's four fields plus the utime and stime
# of every child alive now count each process's CPU once, whether it lived through the window,
# started in it (a relay's backend, an autovacuum worker) or ended in it. Only a child reaped
# between the look at the postmaster and the look at its children is missed, which with pgbench's
# persistent connections is rare and at worst one short-lived process.
cluster_ticks() {
    local postmaster stat fields pid total
    postmaster=$(head -n 1 "$WORK_DIR/pg/data/postmaster.pid")
    stat=$(<"/proc/$postmaster/stat")
    # After the command name in parentheses (which may hold spaces), utime, stime, cutime and
    # cstime are fields 12 to 15 (14 to 17 in proc(5)'s count).
    read -r -a fields <<<"${stat##*) }"
    total=$((fields[11] + fields[12] + fields[13] + fields[14]))
    for pid in $(pgrep -P "$postmaster"); do
        total=$((total + $(process_ticks "$pid")))
    done
    echo "$total"
}

sleep_until() {
    sleep "$(awk -v t="$1" -v now="$EPOCHREALTIME" \
        'BEGIN { d = t - now; printf "%.3f", (d > 0 ? d : 0) }')"
}

# The CPU ticks of the server processes given (0 for one gone).
processes_ticks() {
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(process_ticks "$pid")))
    done
    echo "$total"
}

# The steady writers, with the relay if one runs; the window runs from WARMUP seconds after their
# start to WINDOW_END_LEAD before their end, both ends sampled from /proc only (no statement of
# ours runs in it). Sets WINDOW_SECONDS, WINDOW_EVENTS (committed in the window),
# POSTGRES_WINDOW_TICKS, RELAY_WINDOW_TICKS and SESSION_WINDOW_TICKS, the part of PostgreSQL's
# that the relay's own sessions used (both 0 without a relay).
measure_steady() {
    local log="$WORK_DIR/$1.pgbench.log" launch start end pg_start pg_end relay_start=0 relay_end=0
    local sessions=() session_start=0 session_end=0
    # A checkpoint now rather than in some phase's window.
    sql -c CHECKPOINT
    if [[ -n "$RELAY_PID" ]]; then
        # The relay's backends, by the application_name it connects with.
        mapfile -t sessions < <(sql -A -t -c "SELECT pid FROM pg_stat_activity
                                              WHERE datname = current_database()
                                                AND application_name LIKE 'outbox-relay %'")
    fi
    start_writers "$log" "$STEADY_SECONDS" -R "$RATE"
    launch=$EPOCHREALTIME
    sleep_until "$(awk -v l="$launch" -v w="$WARMUP" 'BEGIN { printf "%.6f", l + w }')"
    start=$EPOCHREALTIME
    pg_start=$(cluster_ticks)
    [[ -z "$RELAY_PID" ]] || relay_start=$(process_ticks "$RELAY_PID")
    session_start=$(processes_ticks "${sessions[@]}")
    sleep_until "$(awk -v l="$launch" -v s="$STEADY_SECONDS" -v e="$WINDOW_END_LEAD" \
        'BEGIN { printf "%.6f", l + s - e }')"
    [[ -z "$RELAY_PID" ]] || relay_end=$(process_ticks "$RELAY_PID")
    session_end=$(processes_ticks "${sessions[@]}")
    pg_end=$(cluster_ticks)
    end=$EPOCHREALTIME
    finish_writers "$log"
    WINDOW_SECONDS=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')
    WINDOW_EVENTS=$(sql -A -t -c "SELECT count(*) FROM events
                                  WHERE pg_xact_commit_timestamp(xmin)
                                        BETWEEN to_timestamp($start) AND to_timestamp($end)")
    POSTGRES_WINDOW_TICKS=$((pg_end - pg_start))
    RELAY_WINDOW_TICKS=$((relay_end - relay_start))
    SESSION_WINDOW_TICKS=$((session_end - session_start))
}

# Ticks $1 over the window, in CPU seconds per second.
per_second() {
    awk -v t="$1" -v hz="$CLOCK_TICKS" -v w="$WINDOW_SECONDS" 'BEGIN { printf "%.3f", t / hz / w }'
}

window_rate() {
    awk -v n="$WINDOW_EVENTS" -v w="$WINDOW_SECONDS" 'BEGIN { printf "%.0f", n / w }'
}

# "met" or "missed": $1 against the limit $3 with $2 (<= or <).
verdict() {
    awk -v v="$1" -v op="$2" -v l="$3" \
        'BEGIN { ok = op == "<" ? v < l : v <= l; print ok ? "met" : "missed" }'
}

peak_phase() {
    local behind

    say "peak a: no relay, no trigger, $CLIENTS clients for ${PEAK_SECONDS}s"
    new_database peak_plain
    drop_notify_trigger
    run_peak_writers peak_plain
    PEAK_PLAIN_TPS=$PEAK_TPS
    summary "peak, no relay" "$PEAK_PLAIN_TPS tps (no trigger)"
    drop_database

    say "peak b: the NOTIFY trigger, no relay"
    new_database peak_notify
    if [[ "$(sql -A -t -c "SELECT to_regprocedure('relay_notify()') IS NOT NULL")" == t ]]; then
        drop_notify_trigger
        sql -c "$TRIGGER_SQL"
        run_peak_writers peak_notify
        summary "peak, NOTIFY trigger" "$PEAK_TPS tps$(peak_ratio "$PEAK_TPS")"
    else
        summary "peak, NOTIFY trigger" "skipped: migrate created no function relay_notify()"
    fi
    drop_database

    say "peak c: a caught-up relay attached, default configuration"
    new_database peak_relay
    summary "triggers after migrate" "$(events_triggers)"
    start_relay "$WORK_DIR/peak_relay.yaml" /dev/null "$WORK_DIR/peak_relay.relay.log"
    run_peak_writers peak_relay
    # At once, before the relay gains on the writers' last events.
    behind=$(sql -A -t -c "SELECT (SELECT coalesce(max(id), 0) FROM events) -
                                  (SELECT coalesce(max(position), 0) FROM relay_checkpoints
                                   WHERE name = '$RELAY_NAME')")
    wait_for_catch_up "$WORK_DIR/peak_relay.relay.log"
    stop_relay "$WORK_DIR/peak_relay.relay.log"
    summary "peak, relay attached" "$PEAK_TPS tps$(peak_ratio "$PEAK_TPS") (default configuration:" \
        "margin mode, safety_margin 1s)"
    summary "peak, relay behind" "$behind events when the writers stopped; caught up" \
        "${CATCH_UP_SECONDS}s later"
    drop_database
}

# The writers alone at RATE; sets STEADY_PLAIN_CPU.
steady_plain() {
    say "steady a: writers alone (no relay, no trigger), $RATE events/s for ${STEADY_SECONDS}s"
    new_database steady_plain
    drop_notify_trigger
    measure_steady steady_plain
    STEADY_PLAIN_CPU=$(per_second "$POSTGRES_WINDOW_TICKS")
    summary "steady, writers alone" "PostgreSQL $STEADY_PLAIN_CPU s/s at $(window_rate)" \
        "events/s (no relay, no trigger; ${WINDOW_SECONDS}s after ${WARMUP}s of warm-up)"
    drop_database
}

# The writers at RATE with a relay in mode $1, its stdout into the latency probe.
steady_relay() {
    local mode=$1 name="steady_$1" config log arrivals line count p50 p99 max
    local postgres added per_event relay_cpu margin_note="" p99_goal p99_verdict
    config="$WORK_DIR/$name.yaml"
    log="$WORK_DIR/$name.relay.log"
    arrivals="$WORK_DIR/$name.arrivals.tsv"
    say "steady $mode: $RATE events/s for ${STEADY_SECONDS}s, a relay in $mode mode"
    new_database "$name"
    write_relay_config "$config" "  mode: $mode
  safety_margin: ${MARGIN_MS}ms"
    mkfifo "$WORK_DIR/$name.stdout"
    python3 "$PROBE" probe "$arrivals" <"$WORK_DIR/$name.stdout" &
    PROBE_PID=$!
    start_relay "$config" "$WORK_DIR/$name.stdout" "$log"
    measure_steady "$name"
    wait_for_catch_up "$log"
    stop_relay "$log"
    # The relay's stdout has closed: the probe writes its arrivals and exits.
    wait "$PROBE_PID" || die "the probe failed"
    PROBE_PID=""

    sql -c "COPY (SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin)),
                         extract(epoch FROM created_at)
                  FROM events ORDER BY id) TO STDOUT" >"$WORK_DIR/$name.commits.tsv"
    # "LABEL EVENTS RATE P50 P90 P99 MAX INS>COMMIT", in ms.
    line=$(python3 "$PROBE" report "$mode" "$arrivals" "$WORK_DIR/$name.commits.tsv" "$WARMUP")
    read -r _ count _ p50 _ p99 max _ <<<"$line"

    postgres=$(per_second "$POSTGRES_WINDOW_TICKS")
    relay_cpu=$(per_second "$RELAY_WINDOW_TICKS")
    if [[ -n "$STEADY_PLAIN_CPU" ]]; then
        added=$(awk -v b="$postgres" -v a="$STEADY_PLAIN_CPU" 'BEGIN { printf "%.3f", b - a }')
        per_event=$(awk -v s="$added" -v n="$WINDOW_EVENTS" -v w="$WINDOW_SECONDS" \
            'BEGIN { printf "%.1f", s / (n / w) * 1e6 }')
        summary "$mode, server added" "$added s/s, $per_event µs/event (PostgreSQL $postgres s/s" \
            "at $(window_rate) events/s, the relay's session $(per_second "$SESSION_WINDOW_TICKS")" \
            "s/s of it; goals <= $GOAL_ADDED_CPU s/s:" \
            "$(verdict "$added" "<=" "$GOAL_ADDED_CPU"), <= $GOAL_ADDED_US µs/event:" \
            "$(verdict "$per_event" "<=" "$GOAL_ADDED_US"))"
    else
        summary "$mode, server" "PostgreSQL $postgres s/s (no writers-alone figure to subtract)"
    fi
    summary "$mode, relay process" "$relay_cpu s/s (goal <= $GOAL_RELAY_CPU s/s:" \
        "$(verdict "$relay_cpu" "<=" "$GOAL_RELAY_CPU"))"
    if [[ "$mode" == margin ]]; then
        p99_goal=$((MARGIN_MS + GOAL_MARGIN_SLACK))
        p99_verdict=$(verdict "$p99" "<=" "$p99_goal")
        p99_goal="<= $p99_goal ms"
        margin_note=", safety_margin ${MARGIN_MS}ms"
    else
        p99_verdict=$(verdict "$p99" "<" "$GOAL_SETTLED_P99")
        p99_goal="< $GOAL_SETTLED_P99 ms"
    fi
    summary "$mode, latency" "p50 $p50 ms, p99 $p99 ms, max $max ms over $count events" \
        "(goal p99 $p99_goal: $p99_verdict$margin_note)"
    drop_database
}

retention_phase() {
    local plain="$WORK_DIR/retention_plain.yaml" config="$WORK_DIR/retention.yaml"
    local log="$WORK_DIR/retention.relay.log" written left settled last since
    say "retention: the peak writers with a relay deleting what it has relayed"
    new_database retention
    # The same check of the configuration without the section tells a relay that does not know
    # retention from one that cannot reach the database or load its sink.
    write_relay_config "$plain"
    "$RELAY_BIN" check -c "$plain" >/dev/null 2>"$WORK_DIR/retention_plain.check.log" || {
        cat "$WORK_DIR/retention_plain.check.log" >&2
        die "outbox-relay check refuses even the configuration without retention"
    }
    write_relay_config "$config" "" "$RETENTION_YAML"
    if ! "$RELAY_BIN" check -c "$config" >/dev/null 2>"$WORK_DIR/retention.check.log"; then
        echo "retention: not supported by this relay"
        say "outbox-relay check said: $(head -n 1 "$WORK_DIR/retention.check.log")"
        summary "retention" "not supported by this relay"
        drop_database
        return
    fi
    start_relay "$config" /dev/null "$log"
    run_peak_writers retention
    read -r written left <<<"$(sql -A -t -F ' ' -c \
        'SELECT coalesce(max(id), 0), count(*) FROM events')"
    wait_for_catch_up "$log"
    # Until the count reaches 0 or stays the same for RETENTION_SETTLE seconds.
    last=$(sql -A -t -c 'SELECT count(*) FROM events')
    since=$SECONDS
    while ((last > 0 && SECONDS - since < RETENTION_SETTLE)); do
        relay_alive_or_die "$log"
        ((SECONDS < since + CATCH_UP_TIMEOUT)) || break
        sleep 0.5
        settled=$(sql -A -t -c 'SELECT count(*) FROM events')
        if ((settled != last)); then
            last=$settled
            since=$SECONDS
        fi
    done
    stop_relay "$log"
    summary "retention, writers" "$PEAK_TPS tps$(peak_ratio "$PEAK_TPS")"
    summary "retention, rows" "$left of $written events left when the writers stopped; $last" \
        "once the relay had caught up and the count settled"
    drop_database
}

print_summary() {
    local i
    echo
    echo "relay: $RELAY_BIN"
    report_line "writers" "pgbench, $CLIENTS clients, one INSERT per transaction, a fresh" \
        "database each"
    report_line "cores" "$(nproc) (load average $LOAD_AT_START before the run: other work on the" \
        "machine moves the figures)"
    for i in "${!SUMMARY_LABELS[@]}"; do
        report_line "${SUMMARY_LABELS[$i]}" "${SUMMARY_TEXTS[$i]}"
    done
}

main() {
    parse_arguments "$@"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    local tool
    for tool in psql pgbench python3 pgrep; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool not found; run scripts/deps"
    done
    have_relay || die "no relay at $RELAY_BIN; build it with: meson setup build && ninja -C build"

    LOAD_AT_START=$(cut -d ' ' -f 1-3 /proc/loadavg)
    start_cluster
    write_insert_script "$WORK_DIR/insert.sql"
    if wants peak; then
        peak_phase
    fi
    if wants steady; then
        steady_plain
        steady_relay margin
        steady_relay settled
    fi
    if wants retention; then
        retention_phase
    fi
    print_summary
}

main "$@"
