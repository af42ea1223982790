# shellcheck shell=bash
# What the benchmark scripts share: a throwaway PostgreSQL preloaded with events, a relay run timed
# until its committed position reaches the last event, and the report's formatting. Sourced by
# tests/bench/bench-*.sh, which set ROOT first.
#
# BUILD_DIR overrides the build to use (default: build/); RELAY_BIN the binary (default:
# BUILD_DIR/outbox-relay). Do not use the sanitized build.

readonly RELAY_NAME=bench
# $EPOCHREALTIME and awk must agree on the decimal point.
export LC_ALL=C

EVENTS=1000000
BATCH_SIZE=1000
AGGREGATES=300
TIMEOUT=600
# The source settings write_config puts in the configuration; SOURCE_EXTRA is more YAML lines for
# the source section (indented by two spaces), e.g. "  max_gaps: 20000".
SAFETY_MARGIN=1s
POLL_INTERVAL=200ms
SOURCE_EXTRA=""
# 0: time_relay reports a relay that misses TIMEOUT (RELAY_TIMED_OUT=1, RELAY_POSITION where it
# got) instead of exiting.
RELAY_TIMEOUT_FATAL=1
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
RELAY_BIN=${RELAY_BIN:-$BUILD_DIR/outbox-relay}

WORK_DIR=""
CONNINFO=""
CONFIG=""
RELAY_PID=""
RELAY_SECONDS=""
RELAY_RSS_KIB=""
RELAY_CPU_TICKS=""
RELAY_POSTGRES_TICKS=""
RELAY_TIMED_OUT=0
RELAY_POSITION=""
STOP_STATUS=""
CLOCK_TICKS=$(getconf CLK_TCK)
readonly CLOCK_TICKS

say() {
    echo "bench: $*" >&2
}

die() {
    say "$*"
    exit 1
}

positive_integer() {
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 wants a positive whole number, not '$2'"
    printf '%s' "$2"
}

# Sets the option every benchmark takes; returns 1 for one it does not know.
parse_common_option() {
    case "$1" in
    --events) EVENTS=$(positive_integer "$1" "$2") ;;
    --batch-size) BATCH_SIZE=$(positive_integer "$1" "$2") ;;
    --aggregates) AGGREGATES=$(positive_integer "$1" "$2") ;;
    --timeout) TIMEOUT=$(positive_integer "$1" "$2") ;;
    *) return 1 ;;
    esac
}

# A work directory with a PostgreSQL inside; sets WORK_DIR, CONFIG and CONNINFO.
start_postgres() {
    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/outbox-relay-bench.XXXXXX")
    # The cluster inside runs as postgres when we are root; mktemp's 0700 would lock it out.
    chmod 0755 "$WORK_DIR"
    CONFIG="$WORK_DIR/bench.yaml"
    CONNINFO=$("$ROOT/scripts/pg-tmp" start "$WORK_DIR/pg")
}

# For the cleanup traps: whatever happened, the relay and the server stop and the files go.
stop_relay_at_once() {
    if [[ -n "$RELAY_PID" ]]; then
        kill -KILL "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=""
    fi
}

remove_work_dir() {
    if [[ -n "$WORK_DIR" ]]; then
        "$ROOT/scripts/pg-tmp" stop "$WORK_DIR/pg" >/dev/null 2>&1 || true
        rm -rf "$WORK_DIR"
        WORK_DIR=""
    fi
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

# Writes CONFIG with the given sink section (YAML lines, indented under "sink:").
write_config() {
    local sink=$1
    # A YAML double-quoted string; the relay expands ${VAR} in it, and reads $$ as a literal $.
    local conninfo=${CONNINFO//\\/\\\\}
    conninfo=${conninfo//\$/\$\$}
    cat >"$CONFIG" <<EOF
name: $RELAY_NAME
database:
  conninfo: "${conninfo//\"/\\\"}"
source:
  table: events
  safety_margin: $SAFETY_MARGIN
  batch_size: $BATCH_SIZE
  poll_interval: $POLL_INTERVAL
${SOURCE_EXTRA:+$SOURCE_EXTRA
}sink:
$sink
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
    preload_events ""
}

# The same with ids given by a SQL expression over n (0 to EVENTS - 1) instead of the sequence's,
# say "n + n / 49 + 1" for every 50th id missing, as rolled-back inserts leave them; the sequence
# is then set to the highest id.
preload_ids() {
    preload_events "$1"
}

preload_events() {
    local id_expr=$1 id_column="" id_value="" set_sequence="" start
    if [[ -n "$id_expr" ]]; then
        id_column="id, "
        id_value="$id_expr, "
        set_sequence="SELECT setval(pg_get_serial_sequence('events', 'id'), max(id)) FROM events;"
        say "preloading $EVENTS events over $AGGREGATES aggregates, ids $id_expr"
    else
        say "preloading $EVENTS events over $AGGREGATES aggregates"
    fi
    start=$EPOCHREALTIME
    sql >/dev/null <<EOF
INSERT INTO events (${id_column}aggregate_id, aggregate_type, aggregate_version, kind, body,
                    metadata, created_at)
SELECT ${id_value}'order-' || (n % $AGGREGATES),
       'order',
       n / $AGGREGATES + 1,
       (ARRAY['created', 'item_added', 'paid', 'shipped'])[n % 4 + 1],
       jsonb_build_object('order_id', n, 'customer', 'customer-' || (n % 9973),
                          'amount_cents', (n::bigint * 7919) % 100000,
                          'note', 'benchmark event'),
       '{"source": "bench"}',
       clock_timestamp() - interval '1 hour' + n * interval '1 microsecond'
FROM generate_series(0, $EVENTS - 1) AS n;
$set_sequence
VACUUM (ANALYZE) events;
EOF
    say "preloaded in $(seconds_since "$start") s (average body $(sql -A -t -c \
        'SELECT round(avg(length(body::text))) FROM events') bytes)"
}

# Makes the next relay run start from the first event again.
forget_relay_position() {
    sql -c "DELETE FROM relay_checkpoints WHERE name = '$RELAY_NAME';
            DELETE FROM relay_gaps WHERE relay_name = '$RELAY_NAME'"
}

# Prints the relay's committed position every 20 ms through one database session, until its
# output is closed (psql then dies of SIGPIPE). A psql process per look would cost a good part of a
# core, taken from the relay on a small machine.
watch_position() {
    echo "SELECT coalesce(max(position), 0) FROM relay_checkpoints WHERE name = '$RELAY_NAME'" \
        '\watch 0.02' | psql "$CONNINFO" -X -q -A -t
}

# CPU clock ticks (user and system, every thread) process $1 has used so far; 0 once it is gone.
process_ticks() {
    local stat fields
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || {
        echo 0
        return
    }
    # The command name in parentheses may hold spaces; after it, utime and stime are the 12th and
    # 13th fields (14 and 15 in proc(5)'s count).
    read -r -a fields <<<"${stat##*) }"
    echo $((fields[11] + fields[12]))
}

# CPU ticks used so far by the benchmark's PostgreSQL: its postmaster and every child process
# alive now (a backend that exits takes its figure along: read this before stopping a client).
postgres_ticks() {
    local postmaster pid total=0
    postmaster=$(head -n 1 "$WORK_DIR/pg/data/postmaster.pid")
    for pid in "$postmaster" $(pgrep -P "$postmaster"); do
        total=$((total + $(process_ticks "$pid")))
    done
    echo "$total"
}

# "S s" for T clock ticks, divided by N (default 1), for an average.
ticks_text() {
    awk -v t="$1" -v hz="$CLOCK_TICKS" -v n="${2:-1}" 'BEGIN { printf "%.2f s", t / hz / n }'
}

# "C s of CPU over W s: N cores" for C ticks in W seconds, each divided by N (default 1).
cpu_text() {
    awk -v t="$1" -v hz="$CLOCK_TICKS" -v w="$2" -v n="${3:-1}" \
        'BEGIN { printf "%.2f s of CPU over %.2f s: %.1f cores", t / hz / n, w / n, t / hz / w }'
}

# The median of the numbers given.
median_of() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The sum of the numbers given.
sum_of() {
    printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.3f", s }'
}

peak_rss_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# Stops the relay with SIGTERM, and with SIGKILL if it has not exited within $1 seconds (it may be
# waiting for a long statement); sets STOP_STATUS to its exit status.
stop_relay_within() {
    local deadline=$((SECONDS + $1))
    STOP_STATUS=0
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    while kill -0 "$RELAY_PID" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$RELAY_PID" 2>/dev/null; then
        say "the relay did not stop within $1 s of SIGTERM: killing it"
        kill -KILL "$RELAY_PID" 2>/dev/null || true
    fi
    # shellcheck disable=SC2034 # for the caller
    wait "$RELAY_PID" 2>/dev/null || STOP_STATUS=$?
    RELAY_PID=""
}

# Runs the relay until its committed position reaches the last event; sets RELAY_SECONDS,
# RELAY_RSS_KIB (its peak resident set, read just before stopping it), RELAY_CPU_TICKS (its CPU
# time, every thread), RELAY_POSTGRES_TICKS (the CPU time PostgreSQL used meanwhile) and
# RELAY_POSITION. With RELAY_TIMEOUT_FATAL=0, a relay that misses TIMEOUT is stopped and reported
# (RELAY_TIMED_OUT=1, the figures up to then) rather than ending the benchmark.
time_relay() {
    local max_id start deadline position=0 positions status=0 postgres_before
    RELAY_TIMED_OUT=0
    max_id=$(sql -A -t -c 'SELECT max(id) FROM events')
    exec {positions}< <(watch_position)
    postgres_before=$(postgres_ticks)
    start=$EPOCHREALTIME
    "$RELAY_BIN" run -c "$CONFIG" >/dev/null 2>"$WORK_DIR/relay.log" &
    RELAY_PID=$!
    deadline=$((SECONDS + TIMEOUT))
    # Each line is the condition itself; the watch's period bounds the timing error.
    while ((position < max_id)); do
        if ! kill -0 "$RELAY_PID" 2>/dev/null; then
            tail -n 20 "$WORK_DIR/relay.log" >&2
            RELAY_PID=""
            die "the relay exited before reaching event $max_id (position $position)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$WORK_DIR/relay.log" >&2
            ((RELAY_TIMEOUT_FATAL)) &&
                die "the relay did not reach event $max_id within ${TIMEOUT}s (position $position)"
            say "the relay did not reach event $max_id within ${TIMEOUT}s (position $position)"
            RELAY_TIMED_OUT=1
            break
        fi
        # A timeout (status above 128) runs the checks above again; end of file means psql is
        # gone. The watch writes whole lines with one write(2) each, so none is read in part.
        read -r -t 1 -u "$positions" position || (($? > 128)) || {
            tail -n 20 "$WORK_DIR/relay.log" >&2
            die "psql watching the relay's position exited (position $position)"
        }
    done
    # shellcheck disable=SC2034 # the results, for the sourcing script's report
    {
        RELAY_SECONDS=$(seconds_since "$start")
        RELAY_RSS_KIB=$(peak_rss_kib "$RELAY_PID")
        RELAY_CPU_TICKS=$(process_ticks "$RELAY_PID")
        RELAY_POSTGRES_TICKS=$(($(postgres_ticks) - postgres_before))
        RELAY_POSITION=$position
    }
    exec {positions}<&-
    if ((RELAY_TIMED_OUT)); then
        # A statement it was waiting for would run on without it: end every other session.
        stop_relay_within 5
        sql -A -t -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()
                        AND backend_type = 'client backend'" >/dev/null
        return
    fi
    kill -TERM "$RELAY_PID"
    wait "$RELAY_PID" || status=$?
    RELAY_PID=""
    if ((status != 0)); then
        tail -n 20 "$WORK_DIR/relay.log" >&2
        die "the relay exited with status $status on SIGTERM"
    fi
}

# A label, then the rest of the arguments joined by spaces.
report_line() {
    printf '%-22s %s\n' "$1" "${*:2}"
}

# "S s, R events/s" for EVENTS events in SECONDS.
rate_text() {
    awk -v s="$1" -v n="$EVENTS" 'BEGIN { printf "%.2f s, %.0f events/s", s, n / s }'
}

# Throughput of the relay over the floor's: floor seconds / relay seconds.
ratio_text() {
    awk -v f="$1" -v r="$2" 'BEGIN { printf "%.2fx the floor", f / r }'
}

rss_text() {
    awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'
}
